"""Clinical metrics of a CGM forecast: error summaries with MARD, the Clarke error grid, and
how well a predictive "urgent low soon" alert anticipates urgent lows."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge.alarm import replay_rule, replay_threshold
from edge.config import AlarmsConfig, ThresholdAlarmConfig
from edge.estimate import GOOD, URGENT_LOW_RISK, Estimate
from training.glucose_data import HORIZONS, LOW_SOON_READINGS, URGENT_LOW_MG_DL

# URGENT_LOW_MG_DL: an urgent low (Dexcom, ISO 15197) is a CGM reading at or below it.
REARM_MG_DL = 70.0  # a new urgent-low event needs the CGM back above this first
ALERT_WINDOW_READINGS = 4  # "within the 20 min before the event": 20, 15, 10, 5 min before
READING_MIN = 5.0
FALSE_ALERT_HORIZON_READINGS = LOW_SOON_READINGS  # no reading <= 55 within 30 min: false
RISK = URGENT_LOW_RISK  # what the runtime's alarm reads
FORECAST_20 = next(iter(HORIZONS))  # glucose_20min: what glucose 1.x's alarm read
FORECAST_HYSTERESIS_MG_DL = 10.0  # that alarm cleared 10 mg/dL above its limit
ZONES = "ABCDE"


def forecast_summary(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, MARD (mean |pred − ref| / ref, %), bias and p95 |error|, in mg/dL."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    err = pred - ref
    if err.size == 0:
        return {"n": 0}
    return {
        "n": int(err.size),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "mard_pct": float(100.0 * np.mean(np.abs(err) / ref)),
        "bias": float(err.mean()),
        "p95_abs": float(np.percentile(np.abs(err), 95)),
    }


def clarke_zones(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Clarke error grid zone ('A'..'E') of each (reference, estimate) pair in mg/dL.

    Clarke WL, Cox D, Gonder-Frederick LA, Carter W, Pohl SL. Evaluating clinical accuracy of
    systems for self-monitoring of blood glucose. Diabetes Care 1987;10(5):622-628. The zone
    boundaries are the published ones (as coded in most open implementations):
    A: within 20 % of the reference, or both below 70 mg/dL.
    E: reference ≥ 180 with estimate ≤ 70, or reference ≤ 70 with estimate ≥ 180 (opposite
       treatment).
    C: reference 70-290 with estimate ≥ reference + 110, or reference 130-180 with estimate
       ≤ 7/5·reference − 182 (overcorrection).
    D: reference ≥ 240 with estimate 70-180, reference ≤ 175/3 with estimate 70-180, or
       reference 175/3-70 with estimate ≥ 6/5·reference (failure to detect).
    B: everything else (benign).
    """
    ref, pred = np.asarray(ref, np.float64), np.asarray(pred, np.float64)
    zones = np.full(ref.shape, "B")
    a = ((ref <= 70) & (pred <= 70)) | ((pred <= 1.2 * ref) & (pred >= 0.8 * ref))
    e = ((ref >= 180) & (pred <= 70)) | ((ref <= 70) & (pred >= 180))
    c = (((ref >= 70) & (ref <= 290) & (pred >= ref + 110))
         | ((ref >= 130) & (ref <= 180) & (pred <= 7 / 5 * ref - 182)))
    d = (((ref >= 240) & (pred >= 70) & (pred <= 180))
         | ((ref <= 175 / 3) & (pred <= 180) & (pred >= 70))
         | ((ref >= 175 / 3) & (ref <= 70) & (pred >= 6 / 5 * ref)))
    # First match wins, in the order A, E, C, D, B.
    zones[d] = "D"
    zones[c] = "C"
    zones[e] = "E"
    zones[a] = "A"
    return zones


def clarke_summary(ref: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    zones = clarke_zones(ref, pred)
    out = {z: float(100.0 * np.mean(zones == z)) for z in ZONES}
    out["A+B"] = out["A"] + out["B"]
    return out


def urgent_low_events(cgm: np.ndarray, first_index: int) -> list[int]:
    """Indices of urgent-low events in one CGM series: a reading ≤ 55 mg/dL whose previous
    reading was above 55, the CGM having been above 70 since the previous event (so noise
    chatter around 55 is one event). Events before `first_index` (no forecast could have
    preceded them by 20 min) are left out."""
    events, armed = [], bool(cgm[0] > REARM_MG_DL)
    for j in range(1, len(cgm)):
        if cgm[j] > REARM_MG_DL:
            armed = True
        if armed and cgm[j] <= URGENT_LOW_MG_DL < cgm[j - 1]:
            armed = False
            if j >= first_index:
                events.append(j)
    return events


def urgent_low_alarm(threshold: float | None = None, persistence: int = 1, *,
                     forecast: bool = False) -> ThresholdAlarmConfig:
    """The runtime's `glucose_urgent_low_soon` alarm settings (its clear delay) with this limit
    (default: the runtime's risk limit, or 55 mg/dL for a `forecast` rule) and persistence
    (readings in a row: its delay_s). A risk clears at the runtime default's fraction of its
    limit (half), a forecast FORECAST_HYSTERESIS_MG_DL above it."""
    runtime = AlarmsConfig().glucose_urgent_low_soon
    if threshold is None:
        threshold = URGENT_LOW_MG_DL if forecast else runtime.threshold
    return dataclasses.replace(
        runtime, threshold=threshold, delay_s=(persistence - 1) * READING_MIN * 60.0,
        hysteresis=FORECAST_HYSTERESIS_MG_DL if forecast
        else threshold * runtime.hysteresis / runtime.threshold)


def alarm_on_scores(ends: np.ndarray, cgm_now: np.ndarray, score: np.ndarray,
                    alarm: ThresholdAlarmConfig, *,
                    forecast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The urgent-low-soon alarm over one series' windows, through edge.alarm's state machine
    (the one `run` and `replay` use): per window, (raised on it, active after it). `score`
    is the urgent-low risk, driving the runtime's own rule; or (`forecast`) a 20-min
    forecast, alarming at or below the limit, as glucose 1.x's rule did."""
    name = FORECAST_20 if forecast else RISK
    estimates = [Estimate("eval", "glucose", float(g), "mg/dL", GOOD, None, e * READING_MIN
                          * 60.0, "eval", {name: float(f)})
                 for e, g, f in zip(ends.tolist(), cgm_now.tolist(), score.tolist(),
                                    strict=True)]
    if forecast:
        states = replay_threshold(alarm, name, False, estimates)
    else:
        config = dataclasses.replace(AlarmsConfig(), glucose_urgent_low_soon=alarm)
        states = replay_rule(config, "glucose_urgent_low_soon", estimates)
    flat = np.array(states, bool).reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def urgent_low(series_cgm: Mapping[int, np.ndarray], subject: np.ndarray, end: np.ndarray,
               score: np.ndarray, *, window_readings: int,
               alarm: ThresholdAlarmConfig | None = None,
               forecast: bool = False) -> dict[str, Any]:
    """How the urgent-low-soon alarm, driven by `score` (the risk; a 20-min forecast with
    `forecast`), anticipates urgent lows.

    Per subject, window k ends at reading `end[k]` with score `score[k]`; the scores go
    through the alarm's state machine (`alarm_on_scores`; default `urgent_low_alarm()`), so
    one alarm is one alert however long the score chatters around its limit.
    - Event: see `urgent_low_events` (on the CGM readings, what the device sees and the model
      forecasts). Only events with all four windows ending 20, 15, 10 and 5 min before them
      inside the series count.
    - Detected: the alarm is active on at least one of those four windows (raised before the
      event's own reading). Lead time: from that alarm's raise to the event.
    - False alerts: alarms raised with no reading ≤ 55 mg/dL from the raise through the next
      30 min (so an alarm during an ongoing low is not false), as in the true-alert rate of
      CGM labelling (a predicted low confirmed within 30 min). Per day: over the total time
      covered by windows. Near misses: false alerts with a reading ≤ 70 mg/dL within those
      30 min.
    """
    alarm = alarm or urgent_low_alarm(forecast=forecast)
    detected, missed, leads = 0, 0, []
    false_alerts = raises = near_misses = 0
    windows_total = 0
    for sid, cgm in series_cgm.items():
        sel = subject == sid
        ends = end[sel]
        raised, active = alarm_on_scores(ends, cgm[ends], score[sel], alarm,
                                         forecast=forecast)
        windows_total += int(sel.sum())
        raise_index = np.maximum.accumulate(np.where(raised, np.arange(len(ends)), -1))
        at = {e: k for k, e in enumerate(ends.tolist())}
        for j in urgent_low_events(cgm, window_readings - 1 + ALERT_WINDOW_READINGS):
            before = [j - k for k in range(ALERT_WINDOW_READINGS, 0, -1)]
            if not all(i in at for i in before):
                continue
            hits = [at[i] for i in before if active[at[i]]]
            if hits:
                detected += 1
                leads.append((j - ends[raise_index[hits[0]]]) * READING_MIN)
            else:
                missed += 1
        for e in ends[raised].tolist():
            raises += 1
            ahead = cgm[e : e + FALSE_ALERT_HORIZON_READINGS + 1]
            if not (ahead <= URGENT_LOW_MG_DL).any():
                false_alerts += 1
                near_misses += int((ahead <= REARM_MG_DL).any())
    days = windows_total * READING_MIN / 1440.0
    events = detected + missed
    return {
        "events": events,
        "detected": detected,
        "sensitivity_pct": float(100.0 * detected / events) if events else None,
        "median_lead_min": float(np.median(leads)) if leads else None,
        "alert_episodes": raises,
        "false_alert_episodes": false_alerts,
        "false_alerts_reaching_70": near_misses,  # of those, reading <= 70 within 30 min
        "false_alerts_per_day": float(false_alerts / days) if days else None,
        "days": float(days),
    }


def pooled(results: list[dict[str, Any]]) -> dict[str, Any]:
    """`urgent_low` results of several series as one (the median lead time is left out)."""
    keys = ("events", "detected", "alert_episodes", "false_alert_episodes",
            "false_alerts_reaching_70", "days")
    out: dict[str, Any] = {k: sum(r[k] for r in results) for k in keys}
    out["sensitivity_pct"] = (100.0 * out["detected"] / out["events"]) if out["events"] else None
    out["false_alerts_per_day"] = (out["false_alert_episodes"] / out["days"]) if out["days"] \
        else None
    return out


def per_subject_rmse(pred: np.ndarray, ref: np.ndarray, subject: np.ndarray) -> dict[str, Any]:
    rmse = np.array([np.sqrt(np.mean((pred[subject == s] - ref[subject == s]) ** 2))
                     for s in np.unique(subject)])
    return {"n_subjects": int(rmse.size), "median": float(np.median(rmse)),
            "p90": float(np.percentile(rmse, 90)), "max": float(rmse.max())}


def linear_extrapolation(history: np.ndarray, horizon_min: float, fit_readings: int) -> np.ndarray:
    """Least-squares line through the last `fit_readings` readings (5 min apart), evaluated
    `horizon_min` after the last one."""
    h = np.asarray(history, np.float64)[:, -fit_readings:]
    t = (np.arange(fit_readings) - (fit_readings - 1)) * READING_MIN
    tc = t - t.mean()
    slope = (h - h.mean(axis=1, keepdims=True)) @ tc / (tc @ tc)
    return h.mean(axis=1) + slope * (horizon_min - t.mean())
