"""Peak memory of a long simulation, one JSON object on stdout.

    python -m bench.sim_memory [--hours 1,24] [--scenario normal-day] [--no-peer]

`streamed`: `wearable-sim run --out /dev/null` for each duration, which computes and sends
the signals chunk by chunk. `whole` (the peer): the same recording held whole, as
`simulate()` returns it, then streamed the same way. Each run is its own process; its peak
resident set size (ru_maxrss, as `/usr/bin/time -v` reports it), wall and CPU seconds come
from wait4. The channels are the scenario's (normal-day: PPG, accelerometer, ECG, cuff, CGM).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _measure(argv: list[str]) -> dict[str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {proc.returncode}")
    return {"peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.perf_counter() - start, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def _whole(scenario_name: str, hours: float) -> None:
    """The peer, in its own process: the recording in memory, then streamed to /dev/null."""
    from device_sim.physiology import simulate
    from device_sim.scenarios import get_scenario
    from device_sim.stream import stream
    from device_sim.writers import FileWriter

    recording = simulate(get_scenario(scenario_name).with_duration(hours * 3600), 0)
    with FileWriter(os.devnull) as sink:
        sink.play(stream(recording, 1), speed=0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_memory", description=__doc__)
    parser.add_argument("--hours", default="1,24", help="durations, hours (default: 1,24)")
    parser.add_argument("--scenario", default="normal-day", help="default: normal-day")
    parser.add_argument("--no-peer", action="store_true", help="skip the whole-recording peer")
    parser.add_argument("--whole", type=float, metavar="HOURS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.whole is not None:
        _whole(args.scenario, args.whole)
        return
    result: dict[str, object] = {"scenario": args.scenario, "seed": 0}
    for hours in (float(h) for h in args.hours.split(",")):
        row = {"streamed": _measure([sys.executable, "-m", "device_sim", "run",
                                     "--scenario", args.scenario,
                                     "--duration", str(hours * 3600), "--out", os.devnull,
                                     "--progress", "0"])}
        if not args.no_peer:
            row["whole"] = _measure([sys.executable, "-m", "bench.sim_memory",
                                     "--scenario", args.scenario, "--whole", str(hours)])
        result[f"{hours:g} h"] = row
        print(f"{hours:g} h: {json.dumps(row)}", file=sys.stderr, flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
