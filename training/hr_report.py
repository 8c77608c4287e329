"""The HR model's Markdown report and figures, written beside its bundle."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest
from training import report
from training.data import Subject, Windows


def write(stage: Path, manifest: Manifest, results: dict[str, dict[str, Any]], test: Windows,
          predictions: dict[str, np.ndarray], with_acc: np.ndarray,
          test_subjects: Sequence[Subject], targets: dict[str, float],
          log: Callable[[str], None]) -> None:
    """Figures and `<name>_report.md` into `stage`. The figures show the headline set (devices
    with an accelerometer), like the table's float and int8 rows."""
    name = manifest.name
    int8, flt = predictions["int8"], predictions["float"]
    shown = test.select(with_acc)
    report.bland_altman_png(stage / f"{name}_bland_altman.png", int8[with_acc], shown.hr_bpm,
                            shown.moving, unit="bpm",
                            title=f"{name} int8 vs truth, held-out subjects")
    report.error_vs_motion_png(stage / f"{name}_error_vs_motion.png",
                               np.abs(int8[with_acc] - shown.hr_bpm), shown.motion_g,
                               unit="bpm", title=f"{name} int8 error against motion")
    checks = _checks(results, targets)
    for line in checks:
        if "MISSED" in line:
            log(f"{name}: WARNING: {line}")
    (stage / f"{name}_report.md").write_text(_markdown(
        manifest, results, test, int8, flt, test_subjects, checks))


def _checks(results: dict[str, dict[str, Any]], targets: dict[str, float]) -> list[str]:
    q, f = results["int8"], results["float"]
    rel = 100.0 * (q["all"]["mae"] - f["all"]["mae"]) / max(f["all"]["mae"], 1e-9)

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return [
        f"int8 MAE at rest {q['rest']['mae']:.2f} bpm ≤ {targets['rest_mae']:g}: "
        f"{mark(q['rest']['mae'] <= targets['rest_mae'])}",
        f"int8 MAE under motion {q['motion']['mae']:.2f} bpm ≤ {targets['motion_mae']:g}: "
        f"{mark(q['motion']['mae'] <= targets['motion_mae'])}",
        f"int8 MAE {rel:+.1f}% relative to float, within {targets['int8_vs_float_pct']:g}%: "
        f"{mark(rel <= targets['int8_vs_float_pct'])}",
    ]


def _group(subject: Subject) -> str:
    return subject.scenario + ("" if subject.has_acc else ", no accelerometer")


def _scenario_table(test: Windows, int8: np.ndarray, subjects: Sequence[Subject]) -> str:
    group_of = {s.id: _group(s) for s in subjects}
    groups = np.array([group_of[i] for i in test.subject])
    lines = ["| scenario | subjects | windows | moving | int8 MAE (bpm) | worst subject MAE |",
             "|---|---:|---:|---:|---:|---:|"]
    for group in dict.fromkeys(_group(s) for s in subjects):
        sel = groups == group
        err = np.abs(int8[sel] - test.hr_bpm[sel])
        per_subject = [err[test.subject[sel] == i].mean() for i in np.unique(test.subject[sel])]
        lines.append(f"| {group} | {len(per_subject)} | {sel.sum()} | "
                     f"{100 * test.moving[sel].mean():.0f}% | {err.mean():.2f} | "
                     f"{max(per_subject):.2f} |")
    return "\n".join(lines)


def _markdown(m: Manifest, results: dict[str, dict[str, Any]], test: Windows,
              int8: np.ndarray, flt: np.ndarray, subjects: Sequence[Subject],
              checks: list[str]) -> str:
    t, q = m.training, m.metrics["int8"]
    agree = float(np.abs(int8 - flt).mean())
    quick = ("\n> **Quick run (`--quick`)**: few subjects and epochs, for CI; not for "
             "shipping.\n" if t.get("quick") else "")
    values = m.output_params["values"]
    real = " --real-data ../shared/datasets" if t.get("real_recordings") else ""
    band = f"{m.bandpass_hz[0]:g}-{m.bandpass_hz[1]:g} Hz"
    return f"""# {m.name} {m.version}: heart rate from wrist or finger PPG + accelerometer
{quick}
## Simulated subjects

Held-out subjects only (never seen in training or validation). Truth is the simulator's
beat-to-beat heart rate, Hann-weighted over each {m.window_s:g} s window like the spectrum the
model sees. int8 figures come through `edge.infer.Model`, the runtime's own code path. Rows
other than "int8, no accelerometer" are scored on subjects whose device has an accelerometer;
a window counts as "motion" when the subject walks or runs for part of it.

## Accuracy

{report.metrics_table(results, m.unit)}

Mean |int8 − float| per window: {agree:.2f} bpm. Median latency of one
`edge.infer.Model.predict` call: {q['latency_ms_median']:.3f} ms (2000 calls, one thread,
{t['machine']}).

### Targets

{chr(10).join(f"- {c}" for c in checks)}

### By scenario (int8)

{_scenario_table(test, int8, subjects)}

"random" subjects follow random HR trajectories (40-200 bpm) with random rest / walk / run
segments, HR independent of activity; the others are the simulator's built-in scenarios, each
with new seeds.

![Bland–Altman](hr_bland_altman.png)

![Error against motion](hr_error_vs_motion.png)

## Model

- Input {m.input.shape} int8 (scale {m.input.scale:.6g}, zero point {m.input.zero_point}):
  `{m.features}` {m.feature_params} over {m.window_s:g} s windows every {m.hop_s:g} s at
  {m.sample_rate_hz:g} Hz, after an order-{m.filter_order} {band} band-pass.
- Output {m.output.shape} int8 probabilities, one per spectrum bin
  ({values[0]:.1f}-{values[-1]:.1f} bpm). The table above scores each window alone by its
  expectation Σ p·bpm (comparable with 1.x); the runtime tracks the distribution across
  windows and publishes the belief's most probable rate (docs/models.md).
- Fully convolutional over frequency (dilated residual 1-D convolutions), trained on soft
  Gaussian labels (σ = {t['plan']['label_sigma_bpm']:g} bpm) with cross-entropy plus the
  expectation's absolute error.
- {m.tflite}: {q['tflite_bytes']} bytes, sha256 `{m.sha256[:16]}…`.

## Data

- Subjects: {t['subjects']['train']} train, {t['subjects']['val']} validation,
  {t['subjects']['test']} test; windows {t['windows']['train']} / {t['windows']['val']} /
  {t['windows']['test']}. Split by subject: no subject appears in two splits.
- Sensor rates drawn per subject (PPG 32-256 Hz, accelerometer 32-128 Hz), brought to
  {m.sample_rate_hz:g} Hz only by `edge.signal.Conditioner`; 10% of training subjects have
  no accelerometer, so the PPG-only fallback is trained too.
- Training subjects are augmented (clock ±3%, pulse shape, gain, offset, baseline wander,
  white noise, accelerometer gain) so the model learns pulses, not the simulator.
- Beside them, {t.get('randomised_recordings', {}).get('train', 0)} training and
  {t.get('randomised_recordings', {}).get('val', 0)} validation recordings of the
  domain-randomised simulator (`training/hr_sim.py`: pulse shapes smooth to sharp with strong
  harmonics and dicrotic waves, flat 35-210 bpm prior, respiration, baseline wander,
  PPG 32-500 Hz, arm swing and impacts, inverted sensors).
- Real recordings in training: {len(t.get('real_recordings', []))}
  ({', '.join(t.get('real_recordings', [])) or 'none'}; IEEE SP Cup 2015 training set,
  Zhang, Pi, Liu, "TROIKA", IEEE TBME 62(2):522-531, 2015; both PPG channels, time-stretched
  ×0.8/1/1.25). Their leave-subject-out results are in "Real recordings" below.

## Real recordings

Leave-one-subject-out on the 12 IEEE SP Cup 2015 recordings (each scored by a model never
trained on it) beside a spectral-peak and a HeartPy peer on the same windows, this model on
the same recordings, and how its credible interval's width predicts its error:
[hr_real_data.md](hr_real_data.md), written by `make eval` (`wearable-train evaluate hr
--real-data ../shared/datasets --loso --out models`).

## Reproduce

    wearable-train {m.name} --seed {t['seed']}{' --quick' if t.get('quick') else ''} --out DIR{real}

Seed {t['seed']}, trained {t['trained_at']} in {t['duration_s']:.0f} s, code
{t.get('git_commit') or 'unknown'}, versions {t['versions']}.
"""
