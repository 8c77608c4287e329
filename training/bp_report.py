"""The BP model's Markdown report and figures, written beside its bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest
from training import report
from training.bp_data import BpSubject, BpWindows

LABELS = {"systolic": "SBP", "diastolic": "DBP"}
# How this version was developed (a fact about the process, not computed by the run).
DEVELOPMENT_NOTE = (
    "Test-set looks while developing this version: 1. 3.1.0 is 3.0.0 (whose design came "
    "from 2.0.0's two test-set looks) with the pulse amplitude back as its ratio to the "
    "amplitude at calibration; the design, plan and seed were fixed before this run, the "
    "first full one, which is the shipped one. Nothing was changed after looking at the "
    "test set.")


def write(stage: Path, manifest: Manifest, results: dict[str, dict[str, Any]],
          results_moving: dict[str, dict[str, Any]], test: BpWindows,
          raw: dict[str, np.ndarray], calibrated: dict[str, np.ndarray], scored: np.ndarray,
          test_subjects: Sequence[BpSubject], targets: dict[str, float],
          log: Callable[[str], None]) -> None:
    name = manifest.name
    int8 = calibrated["int8"]
    shown = test.select(scored)
    for i, label in enumerate(LABELS.values()):
        report.bland_altman_png(
            stage / f"{name}_bland_altman_{label.lower()}.png", int8[scored, i],
            shown.y[:, i], shown.moving, unit="mmHg",
            title=f"{name} int8 {label}, after one cuff calibration, held-out subjects")
    _tracking_png(stage / f"{name}_tracking.png", test, calibrated, test_subjects)
    checks = _checks(results, targets)
    for line in checks:
        if "MISSED" in line:
            log(f"{name}: WARNING: {line}")
    (stage / f"{name}_report.md").write_text(_markdown(
        manifest, results, results_moving, test, raw, calibrated, scored, test_subjects,
        checks))


def _checks(results: dict[str, dict[str, Any]], targets: dict[str, float]) -> list[str]:
    q, f = results["int8, calibrated"], results["float, calibrated"]

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = []
    for output, label in LABELS.items():
        mean, sd = q[output]["mean"], q[output]["sd"]
        lim_m, lim_sd = targets["abs_mean_mmhg"], targets["sd_mmhg"]
        lines.append(f"int8 {label} mean error {mean:+.2f} mmHg, |mean| ≤ {lim_m:g}: "
                     f"{mark(abs(mean) <= lim_m)}"
                     + ("" if abs(mean) <= lim_m else f" (by {abs(mean) - lim_m:.2f})"))
        lines.append(f"int8 {label} SD {sd:.2f} mmHg ≤ {lim_sd:g}: {mark(sd <= lim_sd)}"
                     + ("" if sd <= lim_sd else f" (by {sd - lim_sd:.2f})"))
    for output, label in LABELS.items():
        rel = 100.0 * (q[output]["mae"] - f[output]["mae"]) / max(f[output]["mae"], 1e-9)
        lim = targets["int8_vs_float_pct"]
        lines.append(f"int8 {label} MAE {rel:+.1f}% relative to float, within {lim:g}%: "
                     f"{mark(rel <= lim)}")
    return lines


def _table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| variant | output | mean ± SD | MAE | ≤5 / ≤10 / ≤15 mmHg | BHS | "
             "per-subject MAE median / p90 / max |",
             "|---|---|---:|---:|---|:-:|---|"]
    for variant, by_output in rows.items():
        for output, label in LABELS.items():
            m = by_output[output]
            if not m.get("n"):
                continue
            w, s = m["bhs_within_pct"], m["per_subject_mae"]
            lines.append(f"| {variant} | {label} | {m['mean']:+.2f} ± {m['sd']:.2f} | "
                         f"{m['mae']:.2f} | {w['5']:.0f}% / {w['10']:.0f}% / {w['15']:.0f}% "
                         f"| {m['bhs_grade']} | {s['median']:.2f} / {s['p90']:.2f} / "
                         f"{s['max']:.2f} |")
    return "\n".join(lines)


def _scenario_table(test: BpWindows, calibrated: dict[str, np.ndarray], scored: np.ndarray,
                    subjects: Sequence[BpSubject]) -> str:
    group_of = {s.id: s.scenario for s in subjects}
    groups = np.array([group_of[i] for i in test.subject])
    variants = ("int8", "calibration only", "PAT-only linear")
    head = " | ".join(f"{v} SBP / DBP" for v in variants)
    lines = [f"| scenario | subjects | scored windows | true SBP range | {head} |",
             "|---|---:|---:|---:|" + "---:|" * len(variants)]
    for group in dict.fromkeys(s.scenario for s in subjects):
        sel = (groups == group) & scored
        if not sel.any():
            continue
        cells = []
        for v in variants:
            err = np.abs(calibrated[v][sel] - test.y[sel]).mean(axis=0)
            cells.append(f"{err[0]:.2f} / {err[1]:.2f}")
        ranges = [np.ptp(test.sbp[sel & (test.subject == s)])
                  for s in np.unique(test.subject[sel])]
        lines.append(f"| {group} | {len(ranges)} | {sel.sum()} | "
                     f"{np.median(ranges):.0f} mmHg (median) | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n\nMAE in mmHg after calibration."


def _tracking_png(path: Path, test: BpWindows, calibrated: dict[str, np.ndarray],
                  subjects: Sequence[BpSubject]) -> None:
    """Truth and calibrated estimates over time for the first subject of two scenarios."""
    plt = report._plt()
    picks = []
    for scenario in ("hypertensive-crisis", "hypotension"):
        ids = [s.id for s in subjects if s.scenario == scenario]
        if ids:
            picks.append((scenario, ids[0]))
    if not picks:
        picks = [(subjects[0].scenario, subjects[0].id)]
    fig, axes = plt.subplots(len(picks), 1, figsize=(7.0, 3.2 * len(picks)), dpi=100,
                             squeeze=False)
    for ax, (scenario, sid) in zip(axes[:, 0], picks, strict=True):
        mine = test.subject == sid
        t = test.end_s[mine]
        for i, (color, label) in enumerate((("tab:red", "SBP"), ("tab:blue", "DBP"))):
            ax.plot(t, test.y[mine, i], color="k", linewidth=1,
                    label="truth" if i == 0 else None)
            ax.plot(t, calibrated["int8"][mine, i], color=color, linewidth=1,
                    label=f"int8 {label}")
            ax.plot(t, calibrated["PAT-only linear"][mine, i], color=color, linewidth=1,
                    linestyle=":", label=f"PAT-only {label}")
            ax.plot(t, calibrated["calibration only"][mine, i], color=color, linewidth=1,
                    linestyle="--", alpha=0.6, label=f"cuff held {label}")
        ax.axvline(test.cal_time[mine][0], color="gray", linewidth=0.8)
        ax.set_title(f"{scenario} (held-out subject {sid % 1_000_000}), calibrated at "
                     f"{test.cal_time[mine][0]:g} s", fontsize=9)
        ax.set_ylabel("mmHg")
        ax.legend(fontsize=6, ncol=4, loc="best")
    axes[-1, 0].set_xlabel("window end (s)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _selection(m: Manifest) -> str:
    """How the variant was chosen: validation figures (float, calibrated) per scenario and
    the output gain's validation SD."""
    val = m.metrics.get("validation_float_calibrated")
    if not val or not val["all"]["systolic"].get("n"):
        return ""
    lines = ["", "### Validation subjects (model selection)", "",
             "Variants (window, features, data, ensemble, gain) were chosen on these "
             "validation subjects only (random trajectories plus the built-in scenarios with "
             "validation seeds and bodies), float model, calibrated as above:", "",
             "| validation group | scored windows | SBP mean ± SD | DBP mean ± SD |",
             "|---|---:|---:|---:|"]
    for group, r in val.items():
        s, d = r["systolic"], r["diastolic"]
        lines.append(f"| {group} | {s['n']} | {s['mean']:+.2f} ± {s['sd']:.2f} | "
                     f"{d['mean']:+.2f} ± {d['sd']:.2f} |")
    q = m.metrics.get("validation_int8_calibrated", {})
    if q.get("systolic", {}).get("n"):
        lines += ["", f"int8 on the same validation windows: SBP {q['systolic']['mean']:+.2f} ± "
                  f"{q['systolic']['sd']:.2f}, DBP {q['diastolic']['mean']:+.2f} ± "
                  f"{q['diastolic']['sd']:.2f} mmHg."]
    gains = m.metrics.get("output_gain", {}).get("validation_sd_sbp_dbp_by_gain", {})
    if gains:
        lines += ["", "Output gain → validation SD (SBP / DBP): " + ", ".join(
            f"{g}: {a:.2f} / {b:.2f}" for g, (a, b) in gains.items()) + "."]
    if not m.training.get("quick"):
        lines += ["", DEVELOPMENT_NOTE]
    return "\n".join(lines) + "\n"


def _markdown(m: Manifest, results: dict[str, dict[str, Any]],
              results_moving: dict[str, dict[str, Any]], test: BpWindows,
              raw: dict[str, np.ndarray], calibrated: dict[str, np.ndarray],
              scored: np.ndarray, subjects: Sequence[BpSubject], checks: list[str]) -> str:
    t, q = m.training, m.metrics["int8"]
    agree = np.abs(raw["int8"] - raw["float"]).mean(axis=0)
    quick = ("\n> **Quick run (`--quick`)**: few subjects and epochs, for CI; not for "
             "shipping.\n" if t.get("quick") else "")
    band = f"{m.bandpass_hz[0]:g}-{m.bandpass_hz[1]:g} Hz"
    order = ("float, calibrated", "int8, calibrated", "calibration only, calibrated",
             "PAT-only linear, calibrated")
    main_rows = {k.replace(", calibrated", "").replace("calibration only",
                                                       "calibration only (cuff held)"):
                 results[k] for k in order}
    moving_rows = {k: results_moving[k] for k in ("float", "int8", "calibration only",
                                                  "PAT-only linear")}
    slope = m.metrics["baseline_pat_linear"]["slope_mmhg_per_ms"]
    n_moving = m.metrics["test_set"]["moving_subjects"]
    bodies = t["bodies"]
    return f"""# {m.name} {m.version}: cuffless blood pressure from ECG + wrist PPG
{quick}
Held-out subjects only (never seen in training or validation), each with its own simulated
body: heart-to-wrist arterial path {bodies['path_m'][0]:g}-{bodies['path_m'][1]:g} m,
arterial stiffness ×{bodies['stiffness'][0]:g}-{bodies['stiffness'][1]:g}, pulse-arrival
offset {bodies['pat_offset_ms'][0]:+g}…{bodies['pat_offset_ms'][1]:+g} ms, so the PAT-BP
relation differs from person to person. Truth is the simulator's SBP/DBP averaged over each
{m.window_s:g} s window. int8 figures come through `edge.infer.Model.estimates`, the runtime's
own code path.

**Experimental: validated on simulated people only.** Every figure below is on the
simulator. Real data the project has: PPG-BP (Liang et al. 2018, Sci Data 5:180020; one 2.1-s
finger PPG and one cuff reading per person, no ECG), which cannot run this model (no R peak)
nor show tracking after a calibration; on it the model's PPG pulse-shape features explain
little of the between-person spread of BP ([bp_real_data.md](bp_real_data.md),
`wearable-train evaluate bp --real-data ../shared/datasets --out models`). Tracking after a
calibration has not been shown to beat holding the cuff value on any real recording, so the
manifest marks the model `experimental` and its vitals carry `"experimental": true`.
The pulse amplitude enters as its ratio to the amplitude at the calibration: in the simulator
the pulse grows in proportion to the pulse pressure, but on a real wrist it also changes with
vasomotor tone, skin temperature, sensor contact pressure and a sensor's automatic LED
gain, none of which is simulated; what it adds after a calibration is unvalidated on real
people. A ratio outside 0.22-4.5 (where the model's input is clipped: a sensor whose gain
or seat changed since the calibration) is published as `uncertain`.

**Calibration, as the runtime does it.** Each subject's first cuff reading (the simulator's
cuff at 30 s: true BP plus N(0, (4·min(noise, 1))²) mmHg cuff error, whole mmHg) sets
offset = cuff − median of the model's estimates over the windows ending in the
{m.metrics['calibration']['procedure'].split('ending in the ')[1].split(' before')[0]}
before it, per output; every later window is scored as estimate + offset
({m.metrics['test_set']['scored_windows']} windows of {m.metrics['test_set']['subjects']}
subjects). "calibration only" publishes the cuff value unchanged: the honest competitor.
"PAT-only linear" is SBP/DBP linear in the median pulse arrival time, slopes fitted within
training subjects ({slope[0]:+.3f} / {slope[1]:+.3f} mmHg per ms), with the same calibration.

## Accuracy after one cuff calibration (all held-out subjects)

{_table(main_rows)}

ISO 81060-2 / AAMI: |mean| ≤ 5 mmHg and SD ≤ 8 mmHg. BHS grade A: 60/85/95% within
5/10/15 mmHg, B: 50/75/90%, C: 40/65/85%, else D. Mean |int8 − float| per window:
{agree[0]:.2f} / {agree[1]:.2f} mmHg (SBP / DBP). Median latency of one
`edge.infer.Model.estimates` call: {q['latency_ms_median']:.3f} ms (2000 calls, one thread,
{t['machine']}); the feature function adds about 1 ms per window in numpy/scipy.

### Subjects whose blood pressure moves

The {n_moving} held-out subjects whose true SBP spans at least 20 mmHg after calibration
(where holding the cuff value fails):

{_table(moving_rows)}

### Uncalibrated (absolute) estimates

{_table({k: results[k] for k in ('float, uncalibrated', 'int8, uncalibrated')})}

Without a cuff reading the model can only guess each person's arteries, and it has no
amplitude reference (the ratio is 1, as in the runtime before a calibration); do not publish
uncalibrated BP.

### Targets (after calibration)

{chr(10).join(f"- {c}" for c in checks)}

### By scenario

{_scenario_table(test, calibrated, scored, subjects)}

"random" subjects follow random BP trajectories (segments of 30-120 s around a personal
baseline, SBP 75-210 mmHg) with HR drawn independently of BP, mostly at rest; the others are
the simulator's built-in scenarios with new seeds and new bodies (`exercise` and `normal` keep
120/80 mmHg while HR and motion change: the model must not read BP off the heart rate).

![Bland–Altman SBP](bp_bland_altman_sbp.png)

![Bland–Altman DBP](bp_bland_altman_dbp.png)

![Tracking](bp_tracking.png)

## Model

- Input {m.input.shape} int8 (scale {m.input.scale:.6g}, zero point {m.input.zero_point}):
  `{m.features}` {m.feature_params} on {m.window_s:g} s ECG + PPG windows every
  {m.hop_s:g} s at {m.sample_rate_hz:g} Hz, after an order-{m.filter_order} {band}
  band-pass (`edge.signal.Conditioner` per channel).
- Pulse amplitude: `ecg_ppg_pat` measures the mean pulse's peak-to-peak amplitude in the
  PPG's units; the model takes ln(amplitude / reference) / 0.5
  (`edge.features.bp_relative_amplitude`), the reference being the median amplitude of the
  windows a calibration is made against (training: the windows ending in the 30 s before
  the cuff reading; the runtime: the usable windows of the 30 s before the command, stored
  with the calibration). A sensor's gain cancels in the ratio.
- Output {m.output.shape} int8, affine: {m.output_params}.
- {t['plan'].get('ensemble', 1)} × Dense {' → '.join(str(h) for h in t['plan']['hidden'])}
  → 2 (ReLU), averaged in one graph (seeds {t['seed']} to
  {t['seed'] + t['plan'].get('ensemble', 1) - 1}), each trained
  with {t['plan']['absolute_weight']:g} × the absolute squared error plus the squared error of
  the change between two windows of one subject (what survives calibration); then an output
  gain of {m.metrics.get('output_gain', {}).get('chosen', 1.0):g} (estimate = offset + gain ×
  net change), chosen on the validation subjects.
- {m.tflite}: {q['tflite_bytes']} bytes, sha256 `{m.sha256[:16]}…`.
- Plausibility (manifest `plausibility`): each feature's and output's 0.1-99.9% range over
  the valid training windows, widened by 25% of its span; the runtime publishes a window
  outside it, an output at the int8 range limit, or a > 20 mmHg systolic jump in one hop at
  a steady heart rate as `uncertain`. Test windows outside the feature range:
  {m.metrics['test_set'].get('outside_training_range', 0)} of {len(test)}.
{_selection(m)}
## Data

- Training subjects: {t['plan']['train_subjects']} random BP trajectories (as the test's
  "random", 70% rest / 25% walk / 5% run, HR independent of BP) and
  {t['plan'].get('activity_subjects', 0)} activity subjects (35% rest / 40% walk / 25% run, HR
  rising with the activity, BP held in 70% of the segments); validation:
  {t['plan']['val_subjects']} random subjects plus {t['plan'].get('val_builtin_seeds', 0)}
  validation seeds of each built-in test scenario; all
  {t['plan']['duration_s']:g} s long except the built-in scenarios.
- Subjects: {t['subjects']['train']} train, {t['subjects']['val']} validation,
  {t['subjects']['test']} test; windows {t['windows']['train']} / {t['windows']['val']} /
  {t['windows']['test']}. Split by subject: no subject appears in two splits.
- Sensor rates drawn per subject (ECG 128/250/500 Hz, PPG 64/100/128/256 Hz), brought to
  {m.sample_rate_hz:g} Hz only by `edge.signal.Conditioner`; noise 0.3-2 (train), 0.5-1.5
  (test).

## Reproduce

    wearable-train {m.name} --seed {t['seed']}{' --quick' if t.get('quick') else ''} --out DIR

Seed {t['seed']}, trained {t['trained_at']} in {t['duration_s']:.0f} s, code
{t.get('git_commit') or 'unknown'}, versions {t['versions']}.
"""
