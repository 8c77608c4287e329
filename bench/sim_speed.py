"""Simulator throughput: device-seconds generated per wall-second, one JSON object on stdout.

    python -m bench.sim_speed [--minutes 10] [--devices 1,2,4,8] [--repeats 3]

`one_device`: one wearable with every channel (PPG 64 Hz, accelerometer 32 Hz, ECG 250 Hz,
BP cuff, CGM) through the whole path the CLI takes: simulate, encode into wire frames, write
(to /dev/null, as fast as possible), split into its stages. `devices`: N wearables driven
from one process the way `wearable-sim run --devices N` does it (one thread each), aggregate
and per-device rates. Medians over repeats; a shared machine is noisy, compare ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

from device_sim.physiology import simulate
from device_sim.scenarios import CHANNELS, get_scenario
from device_sim.stream import stream
from device_sim.writers import FileWriter


def _one(duration_s: float, seed: int) -> tuple[float, float, int]:
    """(simulate s, encode+write s, bytes) for one device."""
    scenario = get_scenario("normal").with_duration(duration_s)
    start = time.perf_counter()
    rec = simulate(scenario, seed, channels=CHANNELS)
    simulated = time.perf_counter()
    with FileWriter(os.devnull) as sink:
        stats = sink.play(stream(rec, seed + 1), speed=0)
    return simulated - start, time.perf_counter() - simulated, stats.bytes


def _many(n: int, duration_s: float) -> float:
    """Wall seconds for n devices in n threads, each simulating and streaming."""
    threads = [threading.Thread(target=_one, args=(duration_s, i)) for i in range(n)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_speed", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="device time per device (default: 10)")
    parser.add_argument("--devices", default="1,2,4,8", help="N values (default: 1,2,4,8)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure")
    args = parser.parse_args()
    duration = args.minutes * 60
    runs = [_one(duration, 0) for _ in range(args.repeats)]
    sim = statistics.median(r[0] for r in runs)
    enc = statistics.median(r[1] for r in runs)
    total = statistics.median(r[0] + r[1] for r in runs)
    result = {
        "cpus": len(os.sched_getaffinity(0)),
        "device_time_s": duration,
        "one_device": {
            "channels": list(CHANNELS),
            "device_s_per_wall_s": round(duration / total, 1),
            "simulate_only_device_s_per_wall_s": round(duration / sim, 1),
            "encode_and_write_device_s_per_wall_s": round(duration / enc, 1),
            "wire_bytes_per_device_s": round(runs[0][2] / duration, 1),
        },
        "devices": [],
    }
    for n in (int(x) for x in args.devices.split(",")):
        wall = statistics.median(_many(n, duration) for _ in range(args.repeats))
        result["devices"].append({
            "n": n,
            "aggregate_device_s_per_wall_s": round(n * duration / wall, 1),
            "per_device_device_s_per_wall_s": round(duration / wall, 1),
            "real_time_devices_supported": int(n * duration / wall),
        })
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
