"""How often the BP plausibility gate doubts simulated windows: the share of systolic
estimates published as "uncertain" (instead of "uncalibrated") over the BP-relevant built-in
scenarios, two seeds each, through the runtime's own pipeline.

    python -m bench.bp_gate
"""

from __future__ import annotations

import collections
from pathlib import Path

from device_sim import get_scenario, simulate
from edge.config import AlarmsConfig
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import recordings

MODELS = Path(__file__).resolve().parents[1] / "models"
SCENARIOS = ("hypertensive-crisis", "hypotension", "exercise", "normal")
SEEDS = (11, 12)


def main() -> None:
    model = load_model(MODELS / "bp.json")
    total: collections.Counter[str] = collections.Counter()
    for name in SCENARIOS:
        for seed in SEEDS:
            rec = simulate(get_scenario(name), seed, channels=("ppg", "acc", "ecg"))
            pipeline = DevicePipeline("d", [model], AlarmsConfig(), Topics("w", "n"))
            counts: collections.Counter[str] = collections.Counter()
            for _, data in recordings.stream(rec):
                counts.update(m.payload["quality"] for m in pipeline.feed(data)
                              if m.topic.endswith("/vitals")
                              and m.payload["vital"] == "systolic_bp")
            total.update(counts)
            print(f"{name} seed {seed}: {dict(counts)}", flush=True)
    share = 100 * total["uncertain"] / max(sum(total.values()), 1)
    print(f"all: {dict(total)}; uncertain {share:.2f}%")


if __name__ == "__main__":
    main()
