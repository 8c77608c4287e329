"""wearable-train glucose: a --quick run writes a bundle the runtime loads, fed by the runtime's
own feature function, that beats the last-value forecast on held-out and freshly simulated
subjects; the clinical metrics are right on known cases; user errors leave no bundle."""

import json
from pathlib import Path

import numpy as np
import pytest
from training_cli import assert_one_line_error, train_cli

from edge.features import FEATURES, cgm_history
from edge.infer import load_model
from training import glucose, glucose_data, glucose_metrics, steps
from training.cli import main

SEED = 1


def runtime_forecasts(model, cgm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the runtime does: the last N readings -> cgm_history -> Model.estimates, for every
    reading with N readings behind it. Returns (window end indices, (n, 3) estimates: the
    +20 and +30 min forecasts and the urgent-low risk)."""
    m = model.manifest
    n = round(m.window_s * m.sample_rate_hz)
    ends = np.arange(n - 1, len(cgm))
    pred = np.stack([model.estimates(cgm_history(cgm[e - n + 1 : e + 1].reshape(-1, 1),
                                                 fs=m.sample_rate_hz, **m.feature_params))
                     for e in ends])
    return ends, pred


@pytest.fixture(scope="module")
def quick_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    result = train_cli("glucose", "--quick", "--seed", str(SEED), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch" in result.stdout and "wrote" in result.stdout  # progress is reported
    return out


@pytest.mark.slow
def test_quick_run_writes_a_complete_bundle_with_the_runtime_contract(quick_bundle):
    names = sorted(p.name for p in quick_bundle.iterdir())
    assert names == ["glucose.json", "glucose.tflite", "glucose_clarke.png",
                     "glucose_hypo_timeseries.png", "glucose_report.md"]  # no staging left
    m = json.loads((quick_bundle / "glucose.json").read_text())
    assert (m["name"], m["task"], m["unit"], m["output_kind"]) == (
        "glucose", "glucose_forecast", "mg/dL", "affine")
    assert m["output_params"]["names"] == ["glucose_20min", "glucose_30min", "urgent_low_risk"]
    assert m["output_params"]["scale"] == [100.0, 100.0, 1.0]  # the risk is a probability
    assert m["output_params"]["offset"] == [140.0, 140.0, 0.0]
    assert m["channels"] == ["CGM"] and m["sample_rate_hz"] == pytest.approx(1 / 300)
    assert m["hop_s"] == 300 and m["window_s"] % 300 == 0
    assert m["bandpass_hz"] == [] and m["filter_order"] == 0
    assert m["features"] == "cgm_history"
    assert m["training"]["seed"] == SEED and m["training"]["quick"] is True
    for variant in ("float", "int8"):
        assert set(m["metrics"][variant]) >= {"h20", "h30", "clarke_30", "urgent_low",
                                              "per_subject_rmse_30"}
    assert (quick_bundle / "glucose.tflite").stat().st_size <= steps.MAX_TFLITE_BYTES
    report = (quick_bundle / "glucose_report.md").read_text()
    assert "Quick run" in report and "Clarke" in report and "Urgent low soon" in report


@pytest.mark.slow
def test_int8_beats_last_value_in_the_manifest(quick_bundle):
    model = load_model(quick_bundle / "glucose.json")  # the runtime's loader: hash and specs
    metrics = model.manifest.metrics
    last = metrics["baselines"]["last value"]["h30"]["rmse"]
    assert metrics["int8"]["h30"]["rmse"] < 0.9 * last
    assert metrics["int8"]["h30"]["rmse"] < 25.0
    assert metrics["int8"]["clarke_30"]["E"] == 0.0


@pytest.mark.slow
def test_int8_beats_last_value_on_freshly_simulated_subjects(quick_bundle):
    """New subjects (a seed no split used), forecast exactly as the runtime does."""
    model = load_model(quick_bundle / "glucose.json")
    subjects = glucose_data.plan_subjects("test", 4, seed=987_654, days=(1.0, 1.0),
                                          noise_range=(0.5, 1.5), first_index=90_000)
    ahead = glucose_data.HORIZONS["glucose_30min"]
    err_model, err_last = [], []
    for s in subjects:
        cgm = glucose_data.simulate(s).cgm
        ends, pred = runtime_forecasts(model, cgm)
        keep = ends + ahead < len(cgm)
        truth = cgm[ends[keep] + ahead]
        err_model.append(pred[keep, 1] - truth)
        err_last.append(cgm[ends[keep]] - truth)
    rmse = np.sqrt(np.mean(np.concatenate(err_model) ** 2))
    rmse_last = np.sqrt(np.mean(np.concatenate(err_last) ** 2))
    assert rmse < 0.9 * rmse_last, (rmse, rmse_last)


@pytest.mark.slow
def test_the_risk_is_higher_before_an_urgent_low_than_elsewhere(quick_bundle):
    """Fresh subjects built like the hypoglycaemia scenario, through the runtime's path: the
    urgent-low risk is a probability, and it is higher on windows with a reading <= 55
    within 30 min than on the others (a risk that ignored the history would not be)."""
    model = load_model(quick_bundle / "glucose.json")
    subjects = glucose_data.plan_subjects("test", 4, seed=987_655, kind="hypoglycaemia",
                                          noise_range=(0.5, 1.5), first_index=91_000)
    low, rest = [], []
    for s in subjects:
        cgm = glucose_data.simulate(s).cgm
        ends, pred = runtime_forecasts(model, cgm)
        keep = ends + glucose_data.LOW_SOON_READINGS < len(cgm)
        soon = glucose_data.low_soon(cgm, ends[keep])
        low.append(pred[keep, 2][soon])
        rest.append(pred[keep, 2][~soon])
    low, rest = np.concatenate(low), np.concatenate(rest)
    assert len(low) and len(rest)
    assert ((low >= 0) & (low <= 1)).all() and ((rest >= 0) & (rest <= 1)).all()
    assert np.median(low) > 3 * np.median(rest) + 0.05, (np.median(low), np.median(rest))


@pytest.mark.slow
def test_training_used_the_runtime_feature_function(quick_bundle):
    """The manifest names cgm_history with the parameters training used, training's windows
    are exactly cgm_history of the raw readings, and the runtime path reproduces the int8
    metrics the bundle reports on its held-out set."""
    model = load_model(quick_bundle / "glucose.json")
    m = model.manifest
    assert FEATURES[m.features] is cgm_history
    assert m.preprocessing == glucose.PREPROCESSING
    test = glucose.plan_splits(glucose.Plan.for_run(quick=True), seed=SEED)["test"]
    ahead = glucose_data.HORIZONS["glucose_30min"]
    errors = []
    for s in test:
        series = glucose_data.simulate(s)
        windows = glucose_data.series_windows(series, glucose.PREPROCESSING, s.id)
        ends, pred = runtime_forecasts(model, series.cgm)
        n = round(m.window_s * m.sample_rate_hz)
        for k, e in enumerate(windows.end[:5]):
            np.testing.assert_array_equal(
                windows.x[k], cgm_history(series.cgm[e - n + 1 : e + 1], fs=m.sample_rate_hz,
                                          **m.feature_params))
        keep = ends + ahead < len(series.cgm)
        np.testing.assert_array_equal(ends[keep], windows.end)
        errors.append(pred[keep, 1] - windows.y[:, 1])
    rmse = float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))
    assert rmse == pytest.approx(m.metrics["int8"]["h30"]["rmse"], rel=1e-6)


def test_unknown_model_is_one_line_and_non_zero(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["glucoze", "--out", str(out)]) != 0
    assert_one_line_error(capsys.readouterr().err, "unknown model 'glucoze'", "glucose", "all")
    assert not out.exists()


def test_unwritable_out_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")
    out = blocker / "models"  # cannot be created, even by root
    assert main(["glucose", "--quick", "--out", str(out)]) != 0
    assert_one_line_error(capsys.readouterr().err, "cannot write", str(out))
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-dir"]


@pytest.mark.slow
def test_a_run_that_fails_while_writing_leaves_no_partial_bundle(tmp_path, monkeypatch):
    """A tiny training run whose report step fails: nothing is published, the previous
    bundle is untouched and no staging directory is left."""
    from training import glucose_report

    (tmp_path / "glucose.json").write_text("previous")
    tiny = glucose.Plan(train_subjects=3, val_subjects=1, test_subjects=2, scenario_seeds=0,
                        train_days=(0.5, 0.5), test_days=(0.5, 0.5), epochs=1)
    monkeypatch.setattr(glucose.Plan, "for_run", staticmethod(lambda quick: tiny))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(glucose_report, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        glucose.train(tmp_path, quick=True, seed=3, log=lambda message: None)
    assert [p.name for p in tmp_path.iterdir()] == ["glucose.json"]
    assert (tmp_path / "glucose.json").read_text() == "previous"


def test_cgm_history_shape_and_values():
    readings = np.arange(100.0, 112.0).reshape(-1, 1)
    x = cgm_history(readings, fs=1 / 300, center_mg_dl=140.0, scale_mg_dl=100.0)
    assert x.dtype == np.float32 and x.shape == (12,)
    np.testing.assert_allclose(x[:-1], (readings[:-1, 0] - 111.0) / 100.0, rtol=1e-6)
    assert x[-1] == pytest.approx((111.0 - 140.0) / 100.0)
    with pytest.raises(ValueError, match="missing"):
        cgm_history(np.array([100.0, np.nan, 90.0]), fs=1 / 300, center_mg_dl=140.0,
                    scale_mg_dl=100.0)


@pytest.mark.parametrize(("ref", "pred", "zone"), [
    (100, 100, "A"), (100, 119, "A"), (50, 65, "A"),  # within 20 %, or both below 70
    (100, 150, "B"), (300, 200, "B"),
    (100, 250, "C"), (150, 20, "C"),  # overcorrection
    (50, 100, "D"), (300, 150, "D"), (65, 80, "D"),  # failure to detect
    (200, 60, "E"), (60, 200, "E"),  # opposite treatment
])
def test_clarke_zones_on_known_points(ref, pred, zone):
    assert glucose_metrics.clarke_zones(np.array([ref]), np.array([pred]))[0] == zone


def test_urgent_low_events_count_a_chattering_low_once():
    cgm = np.array([120, 100, 80, 60, 54, 57, 53, 56, 65, 75, 60, 50, 45, 80], float)
    assert glucose_metrics.urgent_low_events(cgm, first_index=0) == [4, 11]
    assert glucose_metrics.urgent_low_events(cgm, first_index=5) == [11]


def test_urgent_low_sensitivity_lead_time_and_false_alerts():
    cgm = np.array([150.0] * 20 + [120, 100, 80, 60, 50] + [150.0] * 20)
    ends = np.arange(11, len(cgm))
    pred = np.where((ends >= 20) & (ends <= 23), 50.0, 150.0)  # alerts 20..5 min before
    pred[ends == 35] = 40.0  # and one false alert
    result = glucose_metrics.urgent_low({7: cgm}, np.full(len(ends), 7), ends, pred,
                                        window_readings=12, forecast=True)
    assert (result["events"], result["detected"]) == (1, 1)
    assert result["median_lead_min"] == 20.0
    assert (result["alert_episodes"], result["false_alert_episodes"]) == (2, 1)
    assert result["false_alerts_reaching_70"] == 0
