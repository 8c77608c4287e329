"""The shipped model bundle: it loads, fits the budget, and the runtime's streaming path
reproduces the training path's estimates (no train/serve skew)."""

from pathlib import Path

import numpy as np
import pytest

from device_sim import frames, simulate
from device_sim.stream import ACC_SCALE, PPG_SCALE
from edge.estimate import GOOD, DeviceEstimator, HeartRateRunner
from edge.infer import load_model
from training import hr
from training.windows import extract_windows

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def shipped():
    return load_model(MODELS / "hr.json")


def test_shipped_hr_bundle_loads_and_fits_the_budget(shipped):
    m = shipped.manifest
    assert (MODELS / m.tflite).stat().st_size <= 64 * 1024
    assert m.input.dtype == m.output.dtype == "int8"
    assert m.training["quick"] is False, "models/ must hold a full training run"
    # The manifest's preprocessing is the one training uses.
    assert (m.sample_rate_hz, m.window_s, m.hop_s) == (32.0, 8.0, 2.0)
    assert m.features == hr.PREPROCESSING.features
    assert m.feature_params == hr.PREPROCESSING.feature_params
    np.testing.assert_allclose(m.output_params["values"], hr.classes_bpm(), atol=1e-3)


def test_shipped_metrics_meet_the_targets(shipped):
    q, f = shipped.manifest.metrics["int8"], shipped.manifest.metrics["float"]
    assert q["rest"]["mae"] <= hr.TARGETS["rest_mae"]
    assert q["all"]["mae"] <= f["all"]["mae"] * (1 + hr.TARGETS["int8_vs_float_pct"] / 100)
    assert q["all"]["mae"] < 0.25 * shipped.manifest.metrics["baseline_train_mean"]["all"]["mae"]


def test_shipped_model_on_a_new_resting_subject(shipped):
    rec = simulate("rest", seed=987_654)
    win = extract_windows(hr.PREPROCESSING, rec.ppg, rec.ppg_rate, rec.acc, rec.acc_rate)
    pred = np.array([shipped.predict(x) for x in win.features])
    assert np.abs(pred - rec.truth.hr_bpm.mean()).mean() < 2.0


@pytest.mark.parametrize(("scenario", "ppg_rate"), [("tachycardia", 64.0), ("exercise", 128.0)])
def test_runtime_stream_reproduces_the_training_path(shipped, scenario, ppg_rate):
    """Frames through the runtime's estimator give the estimates training computes offline
    from the same samples: same window times, same values (to rounding). Since hr 2.0.0 the
    runtime publishes a belief tracked across windows, so the offline windows go through the
    same tracking (HeartRateRunner.interpret), not the per-window expectation."""
    rec = simulate(scenario, seed=31, ppg_rate=ppg_rate, acc_rate=32.0)
    estimator = DeviceEstimator("dev", [shipped])
    estimates = [e for _, frame in frames(rec) for e in estimator.add(frame)[0]]

    # The wire carries integer PPG counts and 1/4096 g accelerometer steps.
    ppg = np.round(rec.ppg / PPG_SCALE) * PPG_SCALE
    acc = np.round(rec.acc / ACC_SCALE) * ACC_SCALE
    win = extract_windows(hr.PREPROCESSING, ppg, rec.ppg_rate, acc, rec.acc_rate)
    tracker = HeartRateRunner("offline", shipped)
    offline = np.array([tracker.interpret(tracker.outputs(x), GOOD, 0.0, t)[0].value
                        for x, t in zip(win.features, win.end_s, strict=True)])

    times = np.array([e.device_time_s for e in estimates])
    online = np.array([e.value for e in estimates])
    assert len(online) >= len(offline) - 1 and len(offline) > 20
    n = min(len(online), len(offline))
    np.testing.assert_allclose(times[:n], win.end_s[:n])
    diff = np.abs(online[:n] - offline[:n])
    assert np.median(diff) < 1e-6 and diff.max() < 0.5, diff.max()
