"""The cuffless BP model end to end: a --quick run writes a bundle the runtime loads; after one
cuff calibration (done as the runtime does it) its int8 estimates beat holding the cuff value,
in the manifest and on freshly simulated subjects run through the runtime's own path; the
ECG + PPG feature never fails on bad windows; bad recordings give one clear error."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_sim import simulate
from edge.bundle import load_manifest
from edge.features import (
    BP_SCALARS,
    FEATURES,
    bp_log_amplitude,
    bp_pat_s,
    bp_relative_amplitude,
    ecg_ppg_pat,
)
from edge.infer import load_model
from edge.signal import Conditioner
from training import bp, bp_data
from training.errors import TrainingError

ROOT = Path(__file__).resolve().parent.parent
PARAMS = bp.PREPROCESSING.feature_params
FS = bp.PREPROCESSING.sample_rate_hz
W = bp.PREPROCESSING.window_samples


@pytest.fixture(scope="module")
def quick_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bp-quick")
    result = subprocess.run([sys.executable, "-m", "training", "bp", "--quick", "--seed", "1",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch" in result.stdout and "wrote" in result.stdout
    return out


@pytest.mark.slow
def test_quick_run_writes_a_bundle_the_runtime_loads(quick_bundle):
    names = sorted(p.name for p in quick_bundle.iterdir())
    assert names == ["bp.json", "bp.tflite", "bp_bland_altman_dbp.png",
                     "bp_bland_altman_sbp.png", "bp_report.md", "bp_tracking.png"]
    manifest = load_manifest(quick_bundle / "bp.json")
    assert (manifest.name, manifest.task, manifest.unit) == ("bp", "blood_pressure", "mmHg")
    assert manifest.channels == ["ECG", "PPG"] and manifest.features == "ecg_ppg_pat"
    assert manifest.output_kind == "affine"
    assert manifest.output_params["names"] == ["systolic", "diastolic"]
    model = load_model(quick_bundle / "bp.json")
    est = model.estimates(np.zeros(manifest.input.shape[1:], np.float32))
    assert est.shape == (2,) and np.isfinite(est).all()
    assert "Quick run" in (quick_bundle / "bp_report.md").read_text()
    raw = json.loads((quick_bundle / "bp.json").read_text())
    for variant in ("float", "int8"):
        for output in ("systolic", "diastolic"):
            summary = raw["metrics"][variant]["calibrated"][output]
            assert {"mean", "sd", "mae", "bhs_grade", "per_subject_mae"} <= set(summary)


@pytest.mark.slow
def test_calibrated_int8_beats_holding_the_cuff_value_in_the_manifest(quick_bundle):
    m = load_manifest(quick_bundle / "bp.json").metrics
    moving = m["subjects_whose_bp_moves"]
    for model, cuff in ((m["int8"]["calibrated"], m["baseline_calibration_only"]),
                        (moving["int8"], moving["calibration only"])):
        total = sum(model[o]["mae"] for o in bp.OUTPUTS)
        assert total < sum(cuff[o]["mae"] for o in bp.OUTPUTS), (model, cuff)


@pytest.mark.slow
def test_fresh_subjects_through_the_runtime_path(quick_bundle):
    """New seeds and bodies whose BP really moves, conditioned with edge.signal, featurised
    with edge.features, estimated with edge.infer and calibrated like the runtime: the model
    tracks BP better than the cuff value held constant."""
    model = load_model(quick_bundle / "bp.json")
    subjects = bp_data.plan_subjects("test", 2, seed=12345, duration_s=None,
                                     scenarios=("hypertensive-crisis", "hypotension"),
                                     noise_range=(0.8, 1.0), first_index=900)
    windows = bp_data.build_windows(subjects, bp.PREPROCESSING, workers=1)
    pred = np.array([model.estimates(x) for x in windows.x])
    calibrated, scored = bp.calibrate(pred, windows)
    assert scored.sum() > 100
    err_model = np.abs(calibrated[scored] - windows.y[scored]).mean()
    err_cuff = np.abs(windows.cal[scored] - windows.y[scored]).mean()
    assert err_model < 0.8 * err_cuff, (err_model, err_cuff)


def test_calibration_uses_the_median_of_the_last_30_s_and_scores_later_windows():
    end = np.arange(8.0, 70.0, 2.0)
    n = len(end)
    w = bp_data.BpWindows(
        x=np.zeros((n, 1)), sbp=np.full(n, 130.0), dbp=np.full(n, 85.0), hr=np.zeros(n),
        motion=np.zeros(n), end_s=end, subject=np.zeros(n, int), cal_time=np.full(n, 30.0),
        cal_sbp=np.full(n, 131.0), cal_dbp=np.full(n, 84.0))
    pred = np.stack([100 + end, 50 + 0 * end], axis=1)
    out, scored = bp.calibrate(pred, w)
    before = (end > 0) & (end <= 30)  # windows ending 8..30 s: median end 19 s
    assert np.allclose(out[:, 0], pred[:, 0] + 131 - np.median(100 + end[before]))
    assert np.allclose(out[:, 1], 84.0)
    assert np.array_equal(scored, end > 30)


def test_bhs_grades():
    assert bp.bhs_grade({"5": 60, "10": 85, "15": 95}) == "A"
    assert bp.bhs_grade({"5": 59, "10": 85, "15": 95}) == "B"
    assert bp.bhs_grade({"5": 40, "10": 65, "15": 85}) == "C"
    assert bp.bhs_grade({"5": 90, "10": 90, "15": 84}) == "D"


@pytest.mark.parametrize("make", [
    lambda rng: (np.zeros(W), np.zeros(W)),
    lambda rng: (np.full(W, 3.0), np.full(W, -7.0)),
    lambda rng: (rng.normal(size=W), rng.normal(size=W)),
    lambda rng: (rng.normal(size=W) * 1e6, np.zeros(W)),
    lambda rng: (np.where(rng.uniform(size=W) < 0.1, np.nan, rng.normal(size=W)),
                 np.full(W, np.inf)),
    lambda rng: (np.zeros(3), np.zeros(3)),
    lambda rng: (np.sin(np.arange(W) / FS * 2 * np.pi * 1.2) ** 51, rng.normal(size=W)),
], ids=["flat", "constant", "noise", "huge", "nan-inf", "tiny", "ecg-without-pulse"])
def test_feature_is_finite_on_bad_windows(make):
    rng = np.random.default_rng(0)
    ecg, ppg = make(rng)
    good = ecg_ppg_pat(np.zeros((W, 1)), np.zeros((W, 1)), fs=FS, **PARAMS)
    with np.errstate(all="ignore"):
        out = ecg_ppg_pat(ecg[:, None], ppg[:, None], fs=FS, **PARAMS)
    assert out.dtype == np.float32 and out.shape == good.shape
    assert np.isfinite(out).all()
    assert FEATURES["ecg_ppg_pat"] is ecg_ppg_pat


def test_feature_reads_the_pulse_arrival_time_whatever_the_sensor_units():
    rec = simulate("hypertensive-crisis", seed=3, channels=("ppg", "acc", "ecg", "bp"))
    win = bp_data.recording_windows(rec, bp.PREPROCESSING)
    scaled = simulate("hypertensive-crisis", seed=3, channels=("ppg", "acc", "ecg", "bp"))
    other = bp_data.extract_channel_windows(
        bp.PREPROCESSING, [(scaled.ecg * 3.0, scaled.ecg_rate),
                           (scaled.ppg * 0.2 + 5e4, scaled.ppg_rate)])
    # only the pulse amplitude is in sensor units (the model takes it relative to calibration)
    amplitude = PARAMS["shape_points"] + BP_SCALARS.index("amplitude")
    units = np.arange(win.features.shape[1]) == amplitude
    assert np.allclose(win.features[:, ~units], other.features[:, ~units], atol=1e-4)
    assert np.allclose(bp_log_amplitude(other.features) - bp_log_amplitude(win.features),
                       np.log(0.2), atol=1e-4)
    assert (win.features[:, -1] == 1).all()  # every window found its beats
    # the amplitude follows the pulse pressure (the simulated pulse is proportional to it)
    pulse_pressure = rec.truth.sbp_mmhg - rec.truth.dbp_mmhg
    window = int(bp.PREPROCESSING.window_s)
    pp = np.array([pulse_pressure[e - window:e].mean() for e in win.end_s.astype(int)])
    assert np.corrcoef(bp_log_amplitude(win.features), np.log(pp))[0, 1] > 0.9
    pat = bp_pat_s(win.features)
    end = win.end_s.astype(int)
    truth = np.array([rec.truth.pat_ms[e - window:e].mean() for e in end]) / 1e3
    assert np.corrcoef(pat, truth)[0, 1] > 0.95  # falls as BP climbs
    # (W,) and (W, 1) windows are the same input
    ecg_w, ppg_w = (np.asarray(c) for c in np.random.default_rng(1).normal(size=(2, W)))
    assert np.array_equal(ecg_ppg_pat(ecg_w, ppg_w, fs=FS, **PARAMS),
                          ecg_ppg_pat(ecg_w[:, None], ppg_w[:, None], fs=FS, **PARAMS))


def test_bad_recordings_give_one_clear_error():
    slow = simulate("hypotension", seed=1, ppg_rate=32.0, channels=("ppg", "ecg"))
    with pytest.raises(TrainingError, match="PPG at 32 Hz is below the model rate 64 Hz"):
        bp_data.recording_windows(slow, bp.PREPROCESSING)
    with pytest.raises(ValueError, match="below the 64 Hz this model takes"):  # the runtime's
        Conditioner(32.0, FS, bp.PREPROCESSING.bandpass_hz, bp.PREPROCESSING.filter_order,
                    bp.PREPROCESSING.min_sensor_rate_hz)
    no_ecg = simulate("hypotension", seed=1, channels=("ppg",))
    with pytest.raises(TrainingError, match="no ECG"):
        bp_data.recording_windows(no_ecg, bp.PREPROCESSING)
    short = simulate(bp_data.random_bp_scenario(np.random.default_rng(0), 5.0), seed=1,
                     channels=("ppg", "ecg"))
    with pytest.raises(TrainingError,
                       match=f"shorter than one {bp.PREPROCESSING.window_s:g} s window"):
        bp_data.recording_windows(short, bp.PREPROCESSING)


SHIPPED = ROOT / "models" / "bp.json"


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped BP bundle")
def test_shipped_bundle_streams_like_the_training_path():
    """The shipped bundle: a full run, and frames of a new subject through the runtime's
    DeviceEstimator give the estimates training computes offline from the same samples."""
    from device_sim import frames
    from device_sim.stream import ECG_SCALE, PPG_SCALE
    from edge.estimate import DeviceEstimator

    shipped = load_model(SHIPPED)
    m = shipped.manifest
    assert m.training["quick"] is False, "models/ must hold a full training run"
    assert m.preprocessing == bp.PREPROCESSING
    rec = simulate("hypertensive-crisis", seed=4321, ppg_rate=64.0, ecg_rate=250.0)
    estimator = DeviceEstimator("dev", [shipped])
    online = {}
    for _, frame in frames(rec):
        for e in estimator.add(frame)[0]:
            online.setdefault(e.device_time_s, {})[e.vital] = e.value
    ecg = np.round(rec.ecg / ECG_SCALE) * ECG_SCALE  # what the wire carries
    ppg = np.round(rec.ppg / PPG_SCALE) * PPG_SCALE
    win = bp_data.extract_channel_windows(bp.PREPROCESSING, [(ecg, rec.ecg_rate),
                                                             (ppg, rec.ppg_rate)])
    # uncalibrated: the amplitude ratio is 1 (no reference yet)
    offline = np.array([shipped.estimates(x)
                        for x in bp_relative_amplitude(win.features, None)])
    times = sorted(online)
    n = min(len(times), len(offline))
    assert n >= 0.9 * (rec.duration_s - m.window_s) / m.hop_s  # every window of 10 min
    np.testing.assert_allclose(times[:n], win.end_s[:n])
    got = np.array([[online[t]["systolic_bp"], online[t]["diastolic_bp"]] for t in times[:n]])
    diff = np.abs(got - offline[:n])
    assert np.median(diff) < 1e-6 and diff.max() < 1.0, diff.max()
