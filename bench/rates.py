"""Slow and irregular sensors on real wrist PPG: the IEEE SP Cup 2015 recordings (125 Hz PPG
+ accelerometer, ECG-derived reference per 8-s window) replayed as CSV files at their own
rate, decimated to a watch's 25 and 20 Hz (upsampled to the HR model's 32 Hz by the
runtime), and at 25 Hz with a logger's jittered, batched timestamps (resampled onto a
uniform grid by the CSV reader), beside the peer that trusts the jittered stamps and
interpolates on them. Same windows, same model, every window scored.

    python -m bench.rates [--data ../shared/datasets/ieee_spc2015/Training_data]

Prints JSON: per-recording MAE (bpm, every reference window, whatever its quality) and the
median over recordings for each variant. Needs the shared dataset (not in a user's clone).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import io, signal

from edge.config import AlarmsConfig
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import recordings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "ieee_spc2015" / "Training_data"
FS = 125


def write_csv(path: Path, times: np.ndarray, ppg: np.ndarray, acc: np.ndarray) -> None:
    rows = np.column_stack([times, ppg, acc])
    np.savetxt(path, rows, delimiter=",", fmt=["%.4f", "%.6g", "%.5g", "%.5g", "%.5g"],
               header="time_s,ppg,acc_x,acc_y,acc_z", comments="")


def logger_times(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Stamps a phone logger writes: +-30 % jitter to the ms, every 50th batch of 4 samples
    under one stamp."""
    t = np.arange(n) / rate + rng.uniform(-0.3, 0.3, n) / rate
    for start in range(0, n - 4, 200):
        t[start : start + 4] = t[start]
    return np.round(t, 3)


def replay_mae(model, path: Path, reference: np.ndarray) -> tuple[float, int, str]:
    sig = recordings.load_csv(path)
    pipeline = DevicePipeline("bench", [model], AlarmsConfig(), Topics("w", "bench"),
                              quiet=True)
    data = b"".join(d for _, d in recordings.stream(sig))
    vitals = [m.payload for m in pipeline.feed(data) if m.topic.endswith("/vitals")]
    errors = []
    for v in vitals:
        k = round((v["device_time_s"] - 8) / 2)
        if 0 <= k < len(reference):
            errors.append(abs(v["value"] - reference[k]))
    return float(np.mean(errors)), len(errors), "; ".join(sig.notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    files = sorted(args.data.glob("DATA_*_TYPE0?.mat"))
    if not files:
        print(f"bench.rates: no DATA_*_TYPE0?.mat in {args.data}; give --data", file=sys.stderr)
        return 2
    model = load_model(ROOT / "models" / "hr.json")
    variants = ("125 Hz", "25 Hz", "20 Hz", "25 Hz logger", "25 Hz logger, on stamps")
    result: dict[str, dict] = {v: {} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            sig = io.loadmat(f)["sig"]
            ppg, acc = sig[1], sig[3:6].T
            reference = io.loadmat(f.with_name(f.stem + "_BPMtrace.mat"))["BPM0"][:, 0]
            name = f.stem
            for variant in variants:
                rate = 125 if variant == "125 Hz" else 20 if variant == "20 Hz" else 25
                up, down = rate, FS
                p = signal.resample_poly(ppg, up, down) if rate != FS else ppg
                a = signal.resample_poly(acc, up, down, axis=0) if rate != FS else acc
                # One draw of logger stamps per recording, shared by both logger variants.
                times = (logger_times(len(p), rate, np.random.default_rng(len(p)))
                         if "logger" in variant else np.arange(len(p)) / rate)
                path = Path(tmp) / f"{name}-{rate}.csv"
                write_csv(path, times, p, a)
                # The peer: never take the rows as regular, always interpolate on the stamps.
                keep = recordings.REGULAR_WANDER_STEPS
                if variant.endswith("on stamps"):
                    recordings.REGULAR_WANDER_STEPS = -1.0
                try:
                    mae, n, notes = replay_mae(model, path, reference)
                finally:
                    recordings.REGULAR_WANDER_STEPS = keep
                result[variant][name] = {"mae_bpm": round(mae, 2), "windows": n}
                if notes:
                    result[variant][name]["note"] = notes
            print(f"bench.rates: {name}: " + ", ".join(
                f"{v} {result[v][name]['mae_bpm']}" for v in variants), file=sys.stderr)
    summary = {v: {"median_mae_bpm": round(statistics.median(
        r["mae_bpm"] for r in result[v].values()), 2),
        "mean_mae_bpm": round(statistics.mean(r["mae_bpm"] for r in result[v].values()), 2)}
        for v in variants}
    print(json.dumps({"model": f"{model.manifest.name}@{model.manifest.version}",
                      "summary": summary, "per_recording": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
