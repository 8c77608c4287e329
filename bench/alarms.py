"""Alarm performance against simulator ground truth, one JSON object on stdout.

    python -m bench.alarms [--runs 20] [--day-hours 24]

* `hr_alarm_delay_s`: for tachycardia and bradycardia runs (different seeds), the time from
  the true onset (the first second the true HR is past the limit and stays there for the
  alarm-condition delay) to the `raised` event; p50/p95, plus misses.
* `false_alarms_per_day`: the `normal-day` scenario (24 h: meals with matched boluses, a
  commute, a run, sleep) through the same pipeline with every shipped model (hr, bp
  uncalibrated, glucose); a physiological alarm is false when the true vital was never past
  its limit shortly before it was raised (15 s for HR; 30 min for glucose, the CGM lags);
  rate and forecast alarms always count as false on a normal day. Technical alarms are
  listed separately.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from device_sim.physiology import simulate
from device_sim.scenarios import get_scenario
from device_sim.stream import frames
from edge.config import AlarmsConfig, Config
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from edge.runtime import load_models
from wire import encode_frame

MODELS = Path(__file__).resolve().parents[1] / "models"


def alarm_events(recording, models, alarms: AlarmsConfig) -> list[dict]:
    pipeline = DevicePipeline("bench", models, alarms, Topics("wearable", "bench"), strict=True)
    events = []
    for _, frame in frames(recording):
        for message in pipeline.feed(encode_frame(frame)):
            if message.topic.endswith("/alarms"):
                events.append(message.payload)
    return events


def true_onset(hr: np.ndarray, above: bool, limit: float, hold_s: int) -> int | None:
    past = hr > limit if above else hr < limit
    for t in range(len(past) - hold_s):
        if past[t : t + hold_s].all():
            return t
    return None


def delays(name: str, condition: str, runs: int, models, alarms: AlarmsConfig) -> dict:
    rule = getattr(alarms, condition)
    above = condition == "hr_high"
    found, misses = [], 0
    for seed in range(runs):
        rec = simulate(get_scenario(name), seed)
        onset = true_onset(rec.truth.hr_bpm, above, rule.threshold, int(rule.delay_s))
        raised = [e for e in alarm_events(rec, models, alarms)
                  if e["condition"] == condition and e["event"] == "raised"]
        if onset is None or not raised:
            misses += 1
            continue
        found.append(raised[0]["device_time_s"] - onset)
    return {"runs": runs, "missed": misses,
            "p50": round(float(np.percentile(found, 50)), 1) if found else None,
            "p95": round(float(np.percentile(found, 95)), 1) if found else None,
            "max": round(max(found), 1) if found else None}


# Which truth series a physiological alarm is checked against, and how far back a true
# crossing may lie (the CGM lags plasma glucose by ~10 min and reads every 5 min).
TRUTH = {"hr": ("hr_bpm", 15), "sbp": ("sbp_mmhg", 30), "dbp": ("dbp_mmhg", 30),
         "glucose": ("glucose_mg_dl", 1800)}


def false_alarms(hours: float, models, alarms: AlarmsConfig) -> dict:
    """Every physiological alarm on a normal day (hr, bp and glucose, all models loaded): false
    when the true vital was never past the alarm's limit shortly before it."""
    rec = simulate(get_scenario("normal-day").with_duration(hours * 3600), 0)
    false, true, technical = [], [], []
    for event in alarm_events(rec, models, alarms):
        if event["event"] != "raised":
            continue
        if event["kind"] != "physiological":
            technical.append((event["condition"], event["device_time_s"]))
            continue
        series, back_s = TRUTH[event["condition"].split("_")[0]]
        t = int(event["device_time_s"])
        window = getattr(rec.truth, series)[max(0, t - back_s) : t + 1]
        limit = event["limit"]
        above = event["condition"].endswith(("high", "rising"))
        past = window > limit if above else window <= limit
        if event["condition"] in ("glucose_rising", "glucose_falling",
                                  "glucose_urgent_low_soon"):
            past = np.array([False])  # no truth to check a trend or forecast against
        (true if past.any() else false).append((event["condition"], event["device_time_s"]))
    return {"hours": hours, "false_alarms": len(false),
            "false_alarms_per_day": round(len(false) * 24 / hours, 2),
            "true_alarms": len(true), "false_at_s": false[:10],
            "technical_alarms": technical[:10]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--day-hours", type=float, default=24)
    args = parser.parse_args(argv)
    models = load_models(Config(models_dir=str(MODELS)))
    alarms = AlarmsConfig()
    start = time.perf_counter()
    result = {
        "limits": {"hr_high": alarms.hr_high.threshold, "hr_low": alarms.hr_low.threshold,
                   "delay_s": alarms.hr_high.delay_s},
        "hr_alarm_delay_s": {
            "tachycardia": delays("tachycardia", "hr_high", args.runs, models, alarms),
            "bradycardia": delays("bradycardia", "hr_low", args.runs, models, alarms)},
        "normal_day": false_alarms(args.day_hours, models, alarms),
    }
    result["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
