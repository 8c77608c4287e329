"""Soak: does the runtime's memory stay flat over a simulated day? (issue #12, case 5)

    python -m bench.soak [--hours 24] [--devices 4] [--speed 100] [--trim off]

One simulated hour of a wearable (`device_sim`, 72 bpm at rest, one seed per device; the
devices stream different channel sets, as real wards mix wearables: everything the shipped
models read, PPG + accelerometer only (no window for the BP model ever), PPG +
accelerometer + CGM, PPG alone) is
repeated back to back, the device clock and sequence numbers running on, for --hours, into
N `DevicePipeline`s sharing the loaded models, one reader thread per device as in `run`
(decode -> estimate -> alarm -> message; no serial port and no broker: the bytes come from
memory, the messages are counted and dropped). --speed paces the stream against the wall
clock (100: 24 h in 14.4 min); 0 runs as fast as the CPU allows. The process's RSS
(/proc/self/status VmRSS, native memory included) is sampled after every simulated hour;
the figure is its growth from the end of hour 1 (models loaded, buffers at their working
size) to the end, in MB, beside the Python-object growth tracemalloc would not show.

--trim off|on: `on` calls glibc's malloc_trim(0) after every hour, a diagnostic for memory
held by the allocator rather than by the program.

Results: one JSON object on stdout and bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import threading
import time
from pathlib import Path

from device_sim import Scenario, frames, simulate
from edge.config import AlarmsConfig
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Flag, encode_frame

ROOT = Path(__file__).resolve().parents[1]
HOUR_S = 3600


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


CHANNEL_SETS = (("ppg", "acc", "ecg", "cgm"), ("ppg", "acc"), ("ppg", "acc", "cgm"), ("ppg",))


def hour_frames(seed: int) -> list:
    rec = simulate(Scenario.constant(72, HOUR_S), seed=seed,
                   channels=CHANNEL_SETS[seed % len(CHANNEL_SETS)])
    return [frame for _, frame in frames(rec)]


def stream(hour: list, hours: int) -> object:
    """(device seconds, encoded frame) for `hours` repeats of one hour, clock and seq
    running on (only the very first frame of each channel carries BOOT)."""
    seq_step = {}
    for frame in hour:
        seq_step[frame.channel] = max(seq_step.get(frame.channel, 0), frame.seq + 1)
    for h in range(hours):
        shift_us = h * HOUR_S * 1_000_000
        for frame in hour:
            if h:
                frame = dataclasses.replace(
                    frame, timestamp_us=frame.timestamp_us + shift_us,
                    seq=(frame.seq + h * seq_step[frame.channel]) % (1 << 32),
                    flags=frame.flags & ~Flag.BOOT)
            yield frame.timestamp_us / 1e6, encode_frame(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--trim", choices=("off", "on"), default="off")
    args = parser.parse_args()

    libc = ctypes.CDLL("libc.so.6") if args.trim == "on" else None
    models = [load_model(ROOT / "models" / f"{n}.json") for n in ("hr", "bp", "glucose")]
    hours = [hour_frames(seed) for seed in range(args.devices)]
    topics = Topics("wearable", "soak")
    pipelines = [DevicePipeline(f"soak-{i}", models, AlarmsConfig(), topics)
                 for i in range(args.devices)]
    done_hours = [0] * args.devices
    counts = [0] * args.devices
    start = time.monotonic()
    samples: list[dict] = []
    lock = threading.Lock()
    barrier = threading.Barrier(args.devices, action=lambda: sample())

    def sample() -> None:
        if libc is not None:
            libc.malloc_trim(0)
        samples.append({"hour": len(samples) + 1, "rss_mb": round(rss_mb(), 1),
                        "wall_s": round(time.monotonic() - start, 1)})

    def device(i: int) -> None:
        hour_end = HOUR_S
        for t, data in stream(hours[i], args.hours):
            if t >= hour_end:
                barrier.wait()  # every device at the same simulated hour: one RSS sample
                hour_end += HOUR_S
            if args.speed > 0:
                lag = start + t / args.speed - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            n = len(pipelines[i].feed(data))
            with lock:
                counts[i] += n
        barrier.wait()
        done_hours[i] = args.hours

    threads = [threading.Thread(target=device, args=(i,)) for i in range(args.devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = samples[-1]["rss_mb"] - samples[0]["rss_mb"]
    result = {
        "hours": args.hours, "devices": args.devices, "speed": args.speed, "trim": args.trim,
        "rss_growth_mb_after_hour_1": round(growth, 1),
        "rss_mb_per_device_hour": round(growth / max(args.devices * (args.hours - 1), 1), 3),
        "achieved_speed": round(args.hours * HOUR_S / samples[-1]["wall_s"], 1),
        "messages": sum(counts), "faults": sum(getattr(p, "faults", 0) for p in pipelines),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        "samples": samples,
    }
    out = ROOT / "bench" / "results" / "soak.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))


if __name__ == "__main__":
    main()
