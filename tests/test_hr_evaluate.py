"""wearable-train evaluate hr: a user's labelled recording scored through the runtime beside
the two peers; bad input is one line, exit 2; the SP Cup reader on the shared set (skipped
where the shared datasets are absent, e.g. a user's clone or CI)."""

from pathlib import Path

import numpy as np
import pytest
from test_training_recordings import sim, write_csv
from training_cli import assert_one_line_error, train_cli

from training import hr_real

SPC = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ieee_spc2015"
SPC = SPC if SPC.is_dir() else Path("/work/shared/datasets/ieee_spc2015")


def test_evaluate_a_labelled_recording_prints_every_column(tmp_path):
    from device_sim import get_scenario

    rec = sim(60, seed=3, scenario=get_scenario("rest").with_duration(60))
    csv = write_csv(tmp_path / "rest.csv", rec, cuff=False)
    result = train_cli("evaluate", "hr", "--data", str(csv))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| rest ")]
    assert len(rows) == 1, result.stdout
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    windows, mae, good = int(cells[1]), float(cells[2]), float(cells[3])
    assert windows >= 20
    assert mae < 5.0  # a simulated resting recording: the runtime reads it
    assert 0 <= good <= 100
    assert cells[7] == "0 (0)"  # no false HR alarm (none at rest)


@pytest.mark.parametrize("args, fragment", [
    ((), "nothing to evaluate on"),
    (("--real-data", "/nonexistent"), "no SP Cup 2015 recordings"),
    (("--data", "/nonexistent.csv"), "/nonexistent.csv"),
    (("--loso",), "nothing to evaluate on"),
])
def test_evaluate_bad_input_is_one_line_exit_2(args, fragment):
    result = train_cli("evaluate", "hr", *args)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, fragment)


def test_evaluate_unknown_model_names_the_valid_ones():
    result = train_cli("evaluate", "spo2", "--data", "x.csv")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "'spo2'", "valid: hr")


@pytest.mark.skipif(not SPC.is_dir(), reason="IEEE SP Cup 2015 set not here (../shared/datasets)")
def test_sp_cup_recordings_read_in_g_with_their_reference():
    recs = hr_real.load_spc2015(SPC)
    assert len(recs) == 12
    for r in recs:
        at_rest = np.linalg.norm(r.acc[: int(8 * r.acc_rate)], axis=1)
        assert 0.8 < np.median(at_rest) < 1.2  # gravity reads ~1 g
        assert len(r.ref_bpm) > 100 and np.all((r.ref_bpm > 40) & (r.ref_bpm < 200))
        assert len(r.ppg_extra) == 1


def _tiny_recordings(n: int) -> list[hr_real.Recording]:
    """Short randomised simulations as SP Cup-like recordings (a second PPG channel too)."""
    recs = [hr_real.simulated_recording(seed, duration_s=40.0) for seed in range(11, 11 + n)]
    return [hr_real.Recording(f"REC_{k}", r.ppg, r.ppg_rate, r.acc, r.acc_rate, r.ref_end_s,
                              r.ref_bpm, ppg_extra=(r.ppg[::-1].copy(),))
            for k, r in enumerate(recs)]


def test_a_fold_trains_on_every_other_recording_and_never_the_held_out_one():
    from training import data, hr, hr_loso

    recs = _tiny_recordings(4)
    plan = hr.Plan.for_run(True)
    parts = hr.real_windows(recs, plan)
    sim = data.Windows.concat([parts[0]])  # stands in for the simulation: any labelled windows
    sim = data.Windows(sim.x, sim.hr_bpm, sim.motion, sim.motion_g,
                       np.full(len(sim), 123, np.int64))
    train = hr_loso.fold_training_set(sim, parts, held=[1, 3], rng=np.random.default_rng(0))
    real_ids = set(np.unique(train.subject)) - {123}
    assert real_ids == {hr.REAL_ID + 0, hr.REAL_ID + 2}
    for k in (0, 2):  # every window of the trained-on recordings, both PPG channels
        assert np.sum(train.subject == hr.REAL_ID + k) == len(parts[k])
    n_real = len(parts[0]) + len(parts[2])
    assert np.sum(train.subject == 123) == min(n_real, len(sim))  # as many simulated windows


def test_loso_scores_each_recording_once_with_a_model_trained_without_it(tmp_path):
    """Two tiny folds end to end: shared simulation stage, per-fold stage, int8 bundles, the
    held-out recordings through the runtime; then the card from those rows."""
    from dataclasses import asdict

    from edge.infer import load_model
    from training import hr, hr_loso

    recs = _tiny_recordings(2)
    sim = hr.Plan(train_subjects=2, val_subjects=1, test_subjects=0, builtin_seeds=0,
                  duration_s=40, epochs=1, batch=64, randomised_train=2, randomised_val=1,
                  real_stretches=(1.0,))
    lines: list[str] = []
    rows = hr_loso.loso(recs, tmp_path / "work", hr_loso.LosoPlan(sim, 1, 1), folds=2,
                        log=lines.append)
    assert [r.name for r in rows] == ["REC_0", "REC_1"]
    assert all(r.windows == int(np.isfinite(rec.ref_bpm).sum())
               for r, rec in zip(rows, recs, strict=True))
    # One simulation-only stage, then each fold holds out its recording: its training set is
    # the other recording's windows (both channels) and as many simulated ones.
    n = [len(p) for p in hr.real_windows(recs, sim)]
    assert sum("stage 1: simulation only" in line for line in lines) == 1
    assert any(f"fold 1/2: holding out REC_0; {2 * n[1]} windows" in line for line in lines)
    assert any(f"fold 2/2: holding out REC_1; {2 * n[0]} windows" in line for line in lines)
    for fold in (0, 1):  # one int8 bundle per fold, loadable by the runtime
        load_model(tmp_path / "work" / f"fold{fold:02d}" / "hr.json")

    mean = hr_loso._means(rows)
    results = {
        "written": {"at": "now", "git_commit": "abc", "machine": "here", "versions": {}},
        "bundle": {"path": "models/hr.json", "name": "hr", "version": "9.9.9",
                   "sha256": "0" * 64},
        "loso": {"recipe_version": "9.9.9", "folds": 2, "seed": 0, "quick": False,
                 "minutes": 1.0, "procedure": hr_loso.procedure(hr_loso.LosoPlan(sim, 1, 1)),
                 "rows": [asdict(r) for r in rows], "mean": mean},
        "in_sample": {"rows": [asdict(r) for r in rows], "mean": mean},
        "ci_calibration": {"seeds": [5, 7], "rows": [
            {"low": 5.0, "high": 10.0, "windows": 3, "mae": 1.5, "off5_pct": 0.0,
             "off10_pct": 0.0}]},
    }
    text = hr_loso.card(results)
    for r in rows:  # both tables carry every recording
        assert text.count(f"| {r.name} | {r.windows} | {r.mae:.2f} |") == 2
    verdict = "**met**" if mean["mae"] <= 2.5 else "**missed**"
    assert f"≤ 2.5 bpm: {verdict} ({mean['mae']:.2f})" in text
    assert "| 5-10 | 3 | 1.50 | 0 % | 0 % |" in text
    assert "2 device_sim subjects and 2 randomised recordings" in text


def test_the_card_needs_leave_subject_out(tmp_path):
    result = train_cli("evaluate", "hr", "--data", "x.csv", "--out", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--real-data DIR --loso")
    assert not any(tmp_path.iterdir())  # nothing written
