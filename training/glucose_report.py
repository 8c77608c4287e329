"""The glucose forecaster's Markdown report and figures, written beside its bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest
from training import glucose_metrics as gm
from training.glucose_data import HORIZONS, CgmSubject, GlucoseWindows, Series
from training.report import _plt


def write(stage: Path, manifest: Manifest, results: dict[str, dict[str, Any]],
          test: GlucoseWindows, predictions: dict[str, np.ndarray],
          series: dict[int, Series], subjects: Sequence[CgmSubject],
          targets: dict[str, float], log: Callable[[str], None]) -> None:
    """Figures and `<name>_report.md` into `stage`."""
    name = manifest.name
    int8 = predictions["int8"]
    clarke_png(stage / f"{name}_clarke.png", test.y[:, 1], int8[:, 1],
               title=f"{name} int8, +30 min, held-out subjects (Clarke 1987)")
    shown = _hypo_subject(subjects, series)
    if shown is not None:
        timeseries_png(stage / f"{name}_hypo_timeseries.png", series[shown.id], test, int8,
                       shown.id, title=f"{name} int8 on a held-out '{shown.kind}' subject")
    checks = _checks(results, targets)
    for line in checks:
        if "MISSED" in line:
            log(f"{name}: WARNING: {line}")
    (stage / f"{name}_report.md").write_text(_markdown(
        manifest, results, test, predictions, series, subjects, checks, shown is not None))


def _hypo_subject(subjects: Sequence[CgmSubject], series: dict[int, Series]) -> CgmSubject | None:
    """The first held-out subject built like the hypoglycaemia scenario (as written), else
    the first subject with an urgent low."""
    for s in subjects:
        if s.kind == "hypoglycaemia" and not s.jitter:
            return s
    for s in subjects:
        if (series[s.id].cgm <= gm.URGENT_LOW_MG_DL).any():
            return s
    return None


def clarke_png(path: Path, ref: np.ndarray, pred: np.ndarray, *, title: str) -> None:
    """Clarke error grid (Clarke et al., Diabetes Care 1987;10:622-628) with its zones."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.6), dpi=100)
    zones = gm.clarke_zones(ref, pred)
    colours = {"A": "tab:green", "B": "tab:blue", "C": "tab:orange", "D": "tab:red",
               "E": "tab:purple"}
    for z in gm.ZONES:
        sel = zones == z
        if sel.any():
            ax.scatter(ref[sel], pred[sel], s=2, alpha=0.3, color=colours[z],
                       label=f"{z}: {100 * sel.mean():.2f}%")
    segments = [
        ([0, 400], [0, 400], ":"), ([0, 175 / 3], [70, 70], "-"),
        ([175 / 3, 400 / 1.2], [70, 400], "-"), ([70, 70], [84, 400], "-"),
        ([0, 70], [180, 180], "-"), ([70, 290], [180, 400], "-"), ([70, 70], [0, 56], "-"),
        ([70, 400], [56, 320], "-"), ([180, 180], [0, 70], "-"), ([180, 400], [70, 70], "-"),
        ([240, 240], [70, 180], "-"), ([240, 400], [180, 180], "-"),
        ([130, 180], [0, 70], "-"),
    ]
    for xs, ys, style in segments:
        ax.plot(xs, ys, "k" + style, linewidth=0.8)
    for label, x, y in (("A", 30, 15), ("B", 370, 260), ("B", 280, 370), ("C", 160, 370),
                        ("C", 160, 15), ("D", 30, 140), ("D", 370, 120), ("E", 30, 370),
                        ("E", 370, 15)):
        ax.text(x, y, label, fontsize=12, weight="bold")
    ax.set_xlim(0, 400)
    ax.set_ylim(0, 400)
    ax.set_xlabel("reference: CGM reading 30 min later (mg/dL)")
    ax.set_ylabel("forecast made 30 min earlier (mg/dL)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(0.02, 0.9), fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def timeseries_png(path: Path, s: Series, test: GlucoseWindows, int8: np.ndarray,
                   subject_id: int, *, title: str) -> None:
    plt = _plt()
    sel = test.subject == subject_id
    ends, pred = test.end[sel], int8[sel]
    hours = s.times_s / 3600.0
    step_h = (s.times_s[1] - s.times_s[0]) / 3600.0
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    ax.plot(hours, s.plasma, color="0.6", linewidth=1, label="true plasma glucose")
    ax.plot(hours, s.cgm, "k.", markersize=4, label="CGM reading")
    for col, (name, h) in enumerate(HORIZONS.items()):
        ax.plot(hours[ends] + h * step_h, pred[:, col], "-", linewidth=1.2,
                color=("tab:orange", "tab:blue")[col],
                label=f"int8 {name.split('_')[1]} forecast (at its target time)")
    limit = gm.urgent_low_alarm().threshold
    alerts = ends[pred[:, 2] > limit]
    if len(alerts):
        ax.plot(hours[alerts], np.full(len(alerts), 45.0), "rv", markersize=5,
                label=f"urgent-low risk > {limit:g}")
    ax.axhline(gm.URGENT_LOW_MG_DL, color="r", linestyle="--", linewidth=0.8)
    for t, g in s.meals:
        ax.annotate(f"{g:.0f} g", (t / 3600.0, 40), fontsize=7, color="tab:green")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("glucose (mg/dL)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _checks(results: dict[str, dict[str, Any]], targets: dict[str, float]) -> list[str]:
    q = results["int8"]
    sens = q["urgent_low"]["sensitivity_pct"]
    return [
        f"int8 +30 min RMSE {q['h30']['rmse']:.2f} mg/dL ≤ {targets['rmse_30']:g}: "
        f"{_mark(q['h30']['rmse'] <= targets['rmse_30'])}",
        f"int8 +30 min RMSE {q['improvement_vs_last_pct']:.1f}% below the last-value "
        f"baseline, at least {targets['improvement_vs_last_pct']:g}%: "
        f"{_mark(q['improvement_vs_last_pct'] >= targets['improvement_vs_last_pct'])}",
        f"int8 Clarke zones A+B {q['clarke_30']['A+B']:.2f}% ≥ {targets['clarke_ab_pct']:g}%: "
        f"{_mark(q['clarke_30']['A+B'] >= targets['clarke_ab_pct'])}",
        f"int8 urgent-low-soon sensitivity "
        f"{'–' if sens is None else f'{sens:.1f}'}% ≥ "
        f"{targets['urgent_low_sensitivity_pct']:g}%: "
        f"{_mark(sens is not None and sens >= targets['urgent_low_sensitivity_pct'])}",
    ]


def _f(value: Any, fmt: str = ".2f") -> str:
    return "–" if value is None else format(value, fmt)


def _accuracy_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| variant | RMSE | MAE | MARD | bias | vs last value | Clarke A | Clarke A+B | "
             "per-subject RMSE median / p90 / max | +20 min RMSE / MAE / MARD |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, r in results.items():
        h, c, p, h20 = r["h30"], r["clarke_30"], r["per_subject_rmse_30"], r["h20"]
        lines.append(
            f"| {name} | {h['rmse']:.2f} | {h['mae']:.2f} | {h['mard_pct']:.1f}% | "
            f"{h['bias']:+.2f} | {r['improvement_vs_last_pct']:+.1f}% | {c['A']:.2f}% | "
            f"{c['A+B']:.2f}% | {p['median']:.1f} / {p['p90']:.1f} / {p['max']:.1f} | "
            f"{h20['rmse']:.2f} / {h20['mae']:.2f} / {h20['mard_pct']:.1f}% |")
    return "\n".join(lines)


def _clarke_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| variant | A | B | C | D | E |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        c = r["clarke_30"]
        lines.append(f"| {name} | " + " | ".join(f"{c[z]:.2f}%" for z in gm.ZONES) + " |")
    return "\n".join(lines)


def _urgent_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| variant | events | detected | sensitivity | median lead | alerts | "
             "false alerts (reaching ≤ 70) | false alerts / day |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        u = r["urgent_low"]
        lead = u["median_lead_min"]
        lines.append(
            f"| {name} | {u['events']} | {u['detected']} | {_f(u['sensitivity_pct'], '.1f')}% "
            f"| {_f(lead, '.0f')} min | {u['alert_episodes']} | {u['false_alert_episodes']} "
            f"({u['false_alerts_reaching_70']}) | {_f(u['false_alerts_per_day'])} |")
    return "\n".join(lines)


def _group(s: CgmSubject) -> str:
    if s.kind == "random":
        return "random free-living"
    return f"scenario {s.kind}" + (" (varied)" if s.jitter else " (as written)")


def _group_table(test: GlucoseWindows, predictions: dict[str, np.ndarray],
                 series: dict[int, Series], subjects: Sequence[CgmSubject]) -> str:
    group_of = {s.id: _group(s) for s in subjects}
    groups = np.array([group_of[i] for i in test.subject])
    lines = ["| test group | subjects | windows | int8 RMSE | last value RMSE | "
             "int8 Clarke A+B | urgent lows detected (int8) | min / max CGM |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for group in dict.fromkeys(_group(s) for s in subjects):
        sel = groups == group
        if not sel.any():
            continue
        ids = np.unique(test.subject[sel])
        y = test.y[sel, 1]
        rmse = {k: np.sqrt(np.mean((predictions[k][sel, 1] - y) ** 2))
                for k in ("int8", "last value")}
        ab = gm.clarke_summary(y, predictions["int8"][sel, 1])["A+B"]
        u = gm.urgent_low({i: series[i].cgm for i in ids}, test.subject[sel], test.end[sel],
                          predictions["int8"][sel, 2], window_readings=test.x.shape[1])
        cgm = np.concatenate([series[i].cgm for i in ids])
        lines.append(f"| {group} | {len(ids)} | {sel.sum()} | {rmse['int8']:.2f} | "
                     f"{rmse['last value']:.2f} | {ab:.2f}% | {u['detected']} / {u['events']} "
                     f"| {cgm.min():.0f} / {cgm.max():.0f} |")
    return "\n".join(lines)


def _floor(test: GlucoseWindows, series: dict[int, Series]) -> dict[str, float]:
    """How far the +30 min CGM reading itself is from what it measures (sensor lag, noise,
    calibration): a forecaster of the reading cannot beat the sensor's own noise."""
    ahead = HORIZONS["glucose_30min"]
    plasma = np.array([series[s].plasma[e + ahead] for s, e in zip(test.subject, test.end,
                                                                    strict=True)])
    err = test.y[:, 1] - plasma
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def _markdown(m: Manifest, results: dict[str, dict[str, Any]], test: GlucoseWindows,
              predictions: dict[str, np.ndarray], series: dict[int, Series],
              subjects: Sequence[CgmSubject], checks: list[str], has_timeseries: bool) -> str:
    t, q = m.training, m.metrics["int8"]
    agree = np.abs(predictions["int8"] - predictions["float"]).mean(axis=0)
    quick = ("\n> **Quick run (`--quick`)**: few subjects and epochs, for CI; not for "
             "shipping.\n" if t.get("quick") else "")
    floor = _floor(test, series)
    n_win = round(m.window_s * m.sample_rate_hz)
    timeseries = ("![Forecast against truth, hypoglycaemia subject]"
                  f"({m.name}_hypo_timeseries.png)\n" if has_timeseries else "")
    return f"""# {m.name} {m.version}: CGM glucose forecast, +20 and +30 min
{quick}
Held-out subjects only (never seen in training or validation; split by subject). The
reference is the **CGM reading** 20 or 30 min after the window's newest reading (what the
model forecasts and what the device will show). int8 figures come through
`edge.infer.Model.estimates`, the runtime's own code path. Baselines: the last value (no
change) and a least-squares line through the last 15 or 30 min of readings, extrapolated.

## Accuracy at +30 min

{_accuracy_table(results)}

All errors in mg/dL; MARD = mean |forecast − reference| / reference. "vs last value": RMSE
change relative to the last-value baseline (negative = worse). Mean |int8 − float|:
{agree[0]:.2f} mg/dL at +20, {agree[1]:.2f} at +30.

Noise floor: the +30 min CGM reading itself differs from the true plasma glucose at that
moment by RMSE {floor['rmse']:.2f} mg/dL (MAE {floor['mae']:.2f}): sensor lag (~10 min),
AR(1) noise, per-sensor gain and offset. Of that, the reading's fresh noise (not predictable
from the past readings) is a hard floor for any forecaster of the reading.

### Clarke error grid (+30 min)

{_clarke_table(results)}

Zones after Clarke et al., Diabetes Care 1987;10:622-628, with the CGM reading 30 min later
as the reference.

![Clarke error grid](glucose_clarke.png)

## Urgent low soon

{_urgent_table(results)}

Definitions (CGM readings, 5 min apart, per subject):
- **Event**: a CGM reading ≤ {gm.URGENT_LOW_MG_DL:g} mg/dL whose previous reading was above
  {gm.URGENT_LOW_MG_DL:g}; after an event the CGM must rise above {gm.REARM_MG_DL:g} mg/dL
  before another one counts (chatter around the threshold is one event). Only events with
  forecast windows 20, 15, 10 and 5 min before them count (the first hour of a recording has
  no windows).
- **Alert**: the runtime's `glucose_urgent_low_soon` alarm (edge.alarm, its hysteresis
  and clear delay) driven by the model's `urgent_low_risk` above its default limit
  {gm.urgent_low_alarm().threshold:g}: an alarm stays one alert until the risk has been back
  below half the limit for the clear delay.
- **Detected**: the alarm is active on at least one of the windows ending 20, 15, 10 or 5
  min before the event. An alarm raised at the event's own reading does not count (a plain
  threshold alarm does that). **Lead time**: from that alarm's raise to the event.
- **False alerts**: alarms raised with no reading ≤ {gm.URGENT_LOW_MG_DL:g} from the raise
  through the next 30 min (an alarm during an ongoing low is not false); in brackets,
  those after which the CGM still fell to ≤ {gm.REARM_MG_DL:g} mg/dL within 30 min (near
  misses). Per day of windows (all held-out subjects, {q['urgent_low']['days']:.1f} days).

Linear extrapolation and last value have no risk: they are scored with glucose 1.x's rule,
their +20 min forecast ≤ {gm.URGENT_LOW_MG_DL:g} mg/dL (clearing
{gm.FORECAST_HYSTERESIS_MG_DL:g} mg/dL above it), through the same state machine.

## Targets

{chr(10).join(f"- {c}" for c in checks)}

### By test group (+30 min)

{_group_table(test, predictions, series, subjects)}

"random free-living": 1-3 day histories of simulated type-1 subjects (below). "scenario …":
built like the simulator's scenario files (`device_sim/scenario_files/09-hypoglycaemia.toml`,
`10-hyperglycaemia.toml`, `12-normal-day.toml`) with new sensor seeds; "(varied)" also draws
meal and bolus sizes ×0.8-1.25, event times ±20 min and basal glucose ±10%.

{timeseries}
## Model

- Input {m.input.shape} int8 (scale {m.input.scale:.6g}, zero point {m.input.zero_point}):
  `{m.features}` {m.feature_params} over the last {n_win} CGM readings ({m.window_s / 60:g}
  min, one every {m.hop_s / 60:g} min): the {n_win - 1} older readings minus the newest,
  and the newest reading's level, each divided by `scale_mg_dl`.
- Forecasts: two dense layers ({t['plan']['width']} units, ReLU) predict the change to +20
  and +30 min; a fixed residual adds the newest level back. Risk: two more dense layers
  ({t['plan']['width']} units, ReLU) and a sigmoid, the probability of a reading ≤
  {gm.URGENT_LOW_MG_DL:g} mg/dL now or within 30 min (binary cross-entropy). Output
  {m.output.shape} int8, estimate = {m.output_params['scale']}·y +
  {m.output_params['offset']} (mg/dL; the risk a probability), named
  {m.output_params['names']}. Forecast loss: squared error, times 1 + w·σ((
  {t['plan']['low_center_mg_dl']:g} − reading) / {t['plan']['low_width_mg_dl']:g}) when the
  forecast is above an actual low reading, w = {t['plan']['low_weight'][0]:g} at +20 min and
  {t['plan']['low_weight'][1]:g} at +30 min: a missed low costs more than a false alert, and
  plain squared error shrinks forecasts towards the mean so they reach a low too late. Adam
  with a cosine-decayed learning rate, early stopping on the validation loss.
- {m.tflite}: {q['tflite_bytes']} bytes, sha256 `{m.sha256[:16]}…`. Median latency of one
  `edge.infer.Model.estimates` call: {q['latency_ms_median']:.3f} ms (2000 calls, one
  thread, {t['machine']}).

## Data

- Subjects: {t['subjects']['train']} train, {t['subjects']['val']} validation,
  {t['subjects']['test']} test; windows {t['windows']['train']} / {t['windows']['val']} /
  {t['windows']['test']}. Split by subject: no subject or seed appears in two splits.
- `device_sim.glucose` (Hovorka 2004 model, CGM with 10 min interstitial lag, AR(1) noise,
  gain/offset error, 40-400 mg/dL range). Per random subject: basal glucose 85-175 mg/dL,
  insulin sensitivity ×0.5-2 (log-normal), three meals a day at jittered times (25-120 g)
  plus snacks; each meal bolus is about right (60%), forgotten (12%), 1.6-3.5× too large
  (14%) or 0.3-0.7× too small (14%); rescue carbohydrate 5-40 min into 75% of lows below
  65 mg/dL, correction boluses for half the highs above 250 mg/dL; sensor noise level
  0.5-2 (train) or 0.5-1.5 (test).

## Reproduce

    wearable-train {m.name} --seed {t['seed']}{' --quick' if t.get('quick') else ''} --out DIR

Seed {t['seed']}, trained {t['trained_at']} in {t['duration_s']:.0f} s, code
{t.get('git_commit') or 'unknown'}, versions {t['versions']}.
"""
