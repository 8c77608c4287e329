"""Real CGM traces for the glucose model (training.glucose_real): reading the Glucose-ML CSV
layout, split by person, gridding like the runtime, the classical baselines and the tuned
urgent-low-soon alert. Uses small CSVs the tests write; the shared datasets are only needed
by the replay sample at the end (skipped without them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge.features import cgm_on_grid
from training import glucose_data, glucose_metrics, glucose_real
from training.errors import TrainingError
from training.glucose import PREPROCESSING

SHARED_CGM = Path(os.environ.get("WEARABLE_CGM_DATA", "/work/shared/datasets/cgm"))


def write_trace(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,glucose_value_mg_dl\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return path


def stamp(minute: float) -> str:
    t = np.datetime64("2024-01-01T00:00:00") + np.timedelta64(int(minute * 60), "s")
    return str(t).replace("T", " ")


def test_a_trace_is_read_sorted_with_low_high_mapped_and_bad_values_dropped(tmp_path):
    rows = [(stamp(0), "100"), (stamp(10), "110"), (stamp(5), "105"), (stamp(10), "111"),
            (stamp(15), "Low"), (stamp(20), "HIGH"), (stamp(25), "700"), (stamp(30), "12"),
            (stamp(35), "n/a")]
    trace = glucose_real.read_trace(write_trace(tmp_path / "d" / "p1.csv", rows), "d")
    assert trace.times_s.tolist() == [float(m * 60 + trace.times_s[0]) for m in
                                      (0, 5, 10, 15, 20)]
    assert trace.mg_dl.tolist() == [100, 105, 110, 40, 400]  # the first of a repeated time
    assert trace.dropped == {"out_of_range": 2, "text_low_high": 2, "not_a_number": 1,
                             "duplicate": 1, "backwards": 1}


def test_time_of_day_only_traces_roll_over_midnight(tmp_path):
    rows = [("23:50:00", "90"), ("23:55:00", "95"), ("00:00:00", "100"), ("00:05:00", "98")]
    trace = glucose_real.read_trace(write_trace(tmp_path / "c" / "case 1.csv", rows))
    assert np.diff(trace.times_s).tolist() == [300.0, 300.0, 300.0]


def test_an_unreadable_timestamp_names_file_and_line(tmp_path):
    path = write_trace(tmp_path / "x.csv", [(stamp(0), "100"), ("yesterday", "90")])
    with pytest.raises(TrainingError, match=r"x\.csv:3: timestamp 'yesterday'"):
        glucose_real.read_trace(path)


def test_people_are_split_per_dataset_never_across_splits(tmp_path):
    for ds in ("A", "B"):
        for k in range(10):
            write_trace(tmp_path / ds / f"p{k}.csv", [(stamp(5 * i), "120") for i in range(3)])
    traces = glucose_real.load(tmp_path)
    split = glucose_real.split_people(traces, seed=3)
    names = {s: {(t.dataset, t.person) for t in v} for s, v in split.items()}
    assert sum(len(v) for v in names.values()) == 20
    assert not (names["train"] & names["val"] or names["train"] & names["test"]
                or names["val"] & names["test"])
    for ds in ("A", "B"):
        assert [sum(d == ds for d, _ in names[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert glucose_real.split_people(traces, seed=3)["test"] == split["test"]  # reproducible


@pytest.mark.parametrize("spacing_min", [1, 5, 15])
def test_segments_put_any_spacing_on_the_runtime_grid_and_cut_at_long_gaps(tmp_path,
                                                                          spacing_min):
    minutes = [m for m in np.arange(0, 300, spacing_min) if not 120 < m < 150]  # 30-min hole
    rows = [(stamp(m), f"{100 + m / 5:.1f}") for m in minutes]
    trace = glucose_real.read_trace(write_trace(tmp_path / f"s{spacing_min}.csv", rows))
    segs = glucose_real.segments(trace, min_points=5)
    assert len(segs) == 2  # the 30-min hole is never bridged
    # On a ramp, the grid is exact: 1 mg/dL per minute / 5 = 1 per 5-min grid step.
    for seg in segs:
        assert np.allclose(np.diff(seg), 1.0)
    grid = trace.times_s[0] + np.arange(len(segs[0])) * 300.0
    assert np.allclose(segs[0], cgm_on_grid(trace.times_s, trace.mg_dl, grid))


def test_windows_and_baselines_on_a_known_ramp(tmp_path):
    rows = [(stamp(m), f"{200 - m:.0f}") for m in range(0, 120, 5)]  # -1 mg/dL/min
    trace = glucose_real.read_trace(write_trace(tmp_path / "r.csv", rows))
    real = glucose_real.windows([trace], PREPROCESSING)
    w = real.windows
    assert len(w) == 24 - 12 - 6 + 1
    assert np.allclose(w.y[:, 1], w.last - 30)  # the +30 min target
    b = glucose_real.baselines(w)
    assert np.allclose(b["last value"][:, 1], w.last)
    assert np.allclose(b["linear trend (15 min)"][:, 1], w.last - 30)
    assert np.allclose(b["AR(2) per history"][:, 1], w.last - 30, atol=0.5)
    m = glucose_real.forecast_metrics(b["last value"], real)
    assert m["all"]["rmse_30"] == pytest.approx(30.0)


def test_persistence_delays_and_thins_urgent_low_alerts():
    cgm = np.array([120.0] * 14 + [100, 85, 75, 65, 58, 52, 50, 60, 80, 120] + [120.0] * 8)
    ends = np.arange(11, len(cgm))
    risk = np.full(len(ends), 0.01)
    risk[(ends >= 15) & (ends <= 18)] = 0.8  # an urgent low soon, from reading 15 on
    risk[ends == 27] = 0.8  # a lone false alert
    series = {1: cgm}
    one = glucose_metrics.urgent_low(series, np.ones(len(ends), int), ends, risk,
                                     window_readings=12,
                                     alarm=glucose_metrics.urgent_low_alarm(0.3))
    two = glucose_metrics.urgent_low(series, np.ones(len(ends), int), ends, risk,
                                     window_readings=12,
                                     alarm=glucose_metrics.urgent_low_alarm(0.3, 2))
    assert (one["detected"], one["false_alert_episodes"]) == (1, 1)
    assert (two["detected"], two["false_alert_episodes"]) == (1, 0)
    assert two["median_lead_min"] == one["median_lead_min"] - 5


CHATTER_CGM = np.array([120.0] * 12 + [90, 80, 72, 68, 66, 65, 66, 68, 67, 70, 80, 95]
                       + [120.0] * 10)


@pytest.mark.parametrize(("forecast", "quiet", "low", "high", "limit"), [
    (False, 0.01, 0.4, 0.2, 0.3),  # the risk, the runtime's rule: clears below half its limit
    (True, 130.0, 58.0, 64.0, 61.0),  # glucose 1.x's 20-min forecast: 10 mg/dL above it
])
def test_a_score_chattering_at_the_limit_is_one_alert_as_in_the_runtime(
        forecast, quiet, low, high, limit):
    # The score crosses its limit three times without a reading <= 55: the alarm stays
    # active until it is back past its hysteresis for its clear delay, so that is one
    # (false) alert, not three.
    cgm = CHATTER_CGM
    ends = np.arange(11, len(cgm))
    score = np.full(len(ends), quiet)
    chatter = (ends >= 15) & (ends <= 22)
    score[chatter] = np.where(ends[chatter] % 2, low, high)
    alarm = glucose_metrics.urgent_low_alarm(limit, forecast=forecast)
    result = glucose_metrics.urgent_low({1: cgm}, np.ones(len(ends), int), ends, score,
                                        window_readings=12, alarm=alarm, forecast=forecast)
    assert (result["alert_episodes"], result["false_alert_episodes"]) == (1, 1)
    assert result["false_alerts_reaching_70"] == 1
    # Through the runtime's alarm state machine: raised once, active throughout.
    raised, active = glucose_metrics.alarm_on_scores(ends, cgm[ends], score, alarm,
                                                     forecast=forecast)
    assert raised.sum() == 1 and active[chatter].all() and not active[-1]


def test_the_risk_is_trained_on_what_scores_an_alert_true():
    """`low_soon` (the risk's label) is a reading <= 55 now or within 30 min: exactly the
    readings the model card looks at to call an alert true."""
    cgm = np.array([100.0, 90, 80, 70, 60, 55, 60, 80, 100, 110, 120, 130, 140, 150])
    ends = np.arange(len(cgm) - glucose_data.LOW_SOON_READINGS)
    assert glucose_data.low_soon(cgm, ends).tolist() == [
        True, True, True, True, True, True, False, False]


def test_glucose_data_windows_match_real_windows_on_the_same_grid():
    cgm = 120 + 30 * np.sin(np.arange(40) / 5)
    s = glucose_data.Series(np.arange(40) * 300.0, cgm, cgm, (), ())
    w = glucose_data.series_windows(s, PREPROCESSING, 1)
    assert w.history.shape == (40 - 12 - 6 + 1, 12)


@pytest.mark.skipif(not SHARED_CGM.is_dir(),
                    reason=f"real CGM traces not here ({SHARED_CGM}); set WEARABLE_CGM_DATA")
def test_replaying_a_sample_of_real_traces_never_crashes():
    from training.glucose_replay import replay_trace

    paths = glucose_real.find_traces(SHARED_CGM)
    by_dataset: dict[str, list[Path]] = {}
    for p in paths:
        by_dataset.setdefault(glucose_real.dataset_of(p, SHARED_CGM), []).append(p)
    sample = [ps[0] for _, ps in sorted(by_dataset.items())]
    for path in sample:
        summary = replay_trace(path, max_days=3.0)
        assert summary["readings"] > 0 and summary["vitals"] == summary["readings"]


def test_evaluate_names_unknown_models_and_missing_bundles(tmp_path, capsys):
    from training.cli import main

    assert main(["evaluate", "nope"]) == 2
    assert "no evaluation for model 'nope'; valid: hr, glucose" in capsys.readouterr().err
    assert main(["evaluate", "glucose", "--bundle", str(tmp_path / "glucose.json"),
                 "--real-data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no glucose bundle" in err and "make models" in err


def test_real_data_without_the_models_recordings_is_one_line(tmp_path, capsys):
    """--real-data is the shared datasets folder; a folder without a model's own recordings
    says which it wanted, in one line, exit 2, and writes no bundle."""
    from training.cli import main

    assert main(["glucose", "--out", str(tmp_path / "o"), "--real-data", str(tmp_path),
                 "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err
    assert not (tmp_path / "o" / "glucose.json").exists()


def test_a_windows_sample_keeps_rows_whole_and_in_order():
    cgm = 120 + 30 * np.sin(np.arange(60) / 5)
    w = glucose_data.series_windows(glucose_data.Series(np.arange(60) * 300.0, cgm, cgm, (), ()),
                                    PREPROCESSING, 1)
    assert w.sample(len(w), seed=0) is w
    part = w.sample(10, seed=0)
    assert len(part) == 10 and np.all(np.diff(part.end) > 0)
    rows = np.searchsorted(w.end, part.end)
    assert np.array_equal(part.x, w.x[rows]) and np.array_equal(part.y, w.y[rows])
    assert np.array_equal(part.end, w.sample(10, seed=0).end)  # seeded
