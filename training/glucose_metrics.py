"""Clinical metrics of a CGM forecast: error summaries with MARD, the Clarke error grid, and
how well a predictive "urgent low soon" alert anticipates urgent lows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

URGENT_LOW_MG_DL = 55.0  # the runtime's "urgent low soon" threshold on glucose_20min
REARM_MG_DL = 70.0  # a new urgent-low event needs the CGM back above this first
ALERT_WINDOW_READINGS = 4  # "within the 20 min before the event": 20, 15, 10, 5 min before
FALSE_ALERT_HORIZON_READINGS = 6  # an alert is false if no reading <= 55 within 30 min
READING_MIN = 5.0
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


def urgent_low(series_cgm: Mapping[int, np.ndarray], subject: np.ndarray, end: np.ndarray,
               pred_20: np.ndarray, *, window_readings: int,
               threshold: float = URGENT_LOW_MG_DL, persistence: int = 1) -> dict[str, Any]:
    """How a predictive alert `pred_20 <= 55` anticipates urgent lows on held-out series.

    Per subject, window k ends at reading `end[k]` with forecast `pred_20[k]`.
    - Event: see `urgent_low_events` (on the CGM readings, what the device sees and the model
      forecasts). Only events with all four windows ending 20, 15, 10 and 5 min before them
      inside the series count.
    - Alert: `pred_20 <= threshold` on `persistence` consecutive windows (the runtime's
      threshold and condition delay).
    - Detected: at least one of those four windows alerts. Lead time: from the earliest of
      them that alerts to the event.
    - Alert episodes: runs of consecutive alerting windows. An episode is false when no
      reading from its first window through the next 30 min is ≤ 55 mg/dL (so an alert
      during an ongoing low is not false). Per day: over the total time covered by windows.
      Near misses: false episodes with a reading ≤ 70 mg/dL within those 30 min.
    """
    detected, missed, leads = 0, 0, []
    false_episodes = episodes = near_misses = 0
    windows_total = 0
    for sid, cgm in series_cgm.items():
        sel = subject == sid
        ends, alerts = end[sel], pred_20[sel] <= threshold
        if persistence > 1:  # the alarm's condition delay: `persistence` alerting readings
            run = np.zeros(len(alerts), int)
            for k in range(len(alerts)):
                contiguous = k > 0 and ends[k] == ends[k - 1] + 1
                run[k] = (run[k - 1] + 1 if contiguous else 1) if alerts[k] else 0
            alerts = run >= persistence
        windows_total += int(sel.sum())
        alert_at = dict(zip(ends.tolist(), alerts.tolist(), strict=True))
        for j in urgent_low_events(cgm, window_readings - 1 + ALERT_WINDOW_READINGS):
            before = [j - k for k in range(ALERT_WINDOW_READINGS, 0, -1)]
            if not all(i in alert_at for i in before):
                continue
            hits = [i for i in before if alert_at[i]]
            if hits:
                detected += 1
                leads.append((j - hits[0]) * READING_MIN)
            else:
                missed += 1
        prev_end, prev_alert = -2, False
        for e, a in zip(ends.tolist(), alerts.tolist(), strict=True):
            if a and not (prev_alert and e == prev_end + 1):
                episodes += 1
                ahead = cgm[e : e + FALSE_ALERT_HORIZON_READINGS + 1]
                if not (ahead <= URGENT_LOW_MG_DL).any():
                    false_episodes += 1
                    near_misses += int((ahead <= REARM_MG_DL).any())
            prev_end, prev_alert = e, a
    days = windows_total * READING_MIN / 1440.0
    events = detected + missed
    return {
        "events": events,
        "detected": detected,
        "sensitivity_pct": float(100.0 * detected / events) if events else None,
        "median_lead_min": float(np.median(leads)) if leads else None,
        "alert_episodes": episodes,
        "false_alert_episodes": false_episodes,
        "false_alerts_reaching_70": near_misses,  # of those, reading <= 70 within 30 min
        "false_alerts_per_day": float(false_episodes / days) if days else None,
        "days": float(days),
    }


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
