"""Replay real CGM traces through the edge runtime, as `wearable-edge replay` does: each trace
becomes a replay CSV (`time_s,glucose`, docs/recording-csv.md) and goes through
`edge.replay.replay` with the shipped models and the default alarm settings. Nothing may
crash; the summary counts what was published.

    python -m training.glucose_replay ../shared/datasets/cgm [--models models] [--max-days D]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training import glucose_real

ROOT = Path(__file__).resolve().parent.parent


def replay_trace(path: Path, models_dir: Path = ROOT / "models",
                 max_days: float | None = None) -> dict[str, int]:
    """One trace through edge.replay.replay; returns message counts (vitals, alarm events,
    readings). Raises whatever the runtime raises: that is the point."""
    from edge.config import Config
    from edge.infer import load_model
    from edge.replay import replay

    trace = glucose_real.read_trace(path)
    t = trace.times_s - trace.times_s[0]
    keep = t <= max_days * 86400 if max_days else np.ones(len(t), bool)
    models = [load_model(models_dir / "glucose.json")]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "trace.csv"
        csv.write_text("time_s,glucose\n" + "".join(
            f"{a:.0f},{g:g}\n" for a, g in zip(t[keep], trace.mg_dl[keep], strict=True)))
        summary = replay(Config(), models, csv, out=None)
    return {"readings": int(keep.sum()), "vitals": summary.messages.get("vitals", 0),
            "alarm_events": summary.messages.get("alarms", 0)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.glucose_replay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder of CGM traces (e.g. "
                        "../shared/datasets/cgm)")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--max-days", type=float, default=None)
    args = parser.parse_args(argv)
    paths = glucose_real.find_traces(args.root)
    crashed, totals = 0, {"readings": 0, "vitals": 0, "alarm_events": 0}
    started = time.monotonic()
    for path in paths:
        try:
            counts = replay_trace(path, args.models, args.max_days)
        except Exception as err:  # counting crashes is this tool's job
            crashed += 1
            print(f"CRASH {path}: {type(err).__name__}: {err}", flush=True)
            continue
        for k, v in counts.items():
            totals[k] += v
        print(f"ok {glucose_real.dataset_of(path, args.root)}/{path.stem}: {counts}", flush=True)
    print(f"{len(paths)} traces, {crashed} crashed, {totals} in "
          f"{time.monotonic() - started:.0f} s")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
