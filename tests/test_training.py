"""wearable-train end to end: a --quick run writes a bundle the runtime loads and that beats a
naive baseline on held-out subjects; user errors are one line, non-zero, with no bundle."""

import json
from pathlib import Path

import numpy as np
import pytest
from training_cli import assert_one_line_error, train_cli

from edge.infer import load_model
from training import data, hr, steps
from training.cli import main


@pytest.fixture(scope="module")
def quick_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick")
    result = train_cli("hr", "--quick", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "epoch" in result.stdout and "wrote" in result.stdout  # progress is reported
    return out


@pytest.mark.slow
def test_quick_run_writes_a_complete_bundle(quick_bundle):
    names = sorted(p.name for p in quick_bundle.iterdir())
    assert names == ["hr.json", "hr.tflite", "hr_bland_altman.png", "hr_error_vs_motion.png",
                     "hr_report.md"]  # nothing else: no staging directory left behind
    manifest = json.loads((quick_bundle / "hr.json").read_text())
    assert manifest["training"]["seed"] == 1 and manifest["training"]["quick"] is True
    for variant in ("float", "int8"):
        assert set(manifest["metrics"][variant]) >= {"all", "rest", "motion", "per_subject_mae"}
    assert (quick_bundle / "hr.tflite").stat().st_size <= steps.MAX_TFLITE_BYTES
    assert "Quick run" in (quick_bundle / "hr_report.md").read_text()


@pytest.mark.slow
def test_quick_model_beats_the_naive_baseline_on_held_out_subjects(quick_bundle):
    """Re-simulate the held-out subjects independently and run the bundle as the runtime
    does: the int8 model must clearly beat always answering the training-set mean."""
    model = load_model(quick_bundle / "hr.json")
    assert model.manifest.output_kind == "expectation"
    test = hr.plan_splits(hr.Plan.for_run(quick=True), seed=1)["test"]
    test = [s for s in test if s.has_acc]
    windows = data.build_windows(test, hr.PREPROCESSING, workers=1)
    pred = np.array([model.predict(x) for x in windows.x])
    mae = np.abs(pred - windows.hr_bpm).mean()
    naive = np.abs(model.manifest.training["train_mean_bpm"] - windows.hr_bpm).mean()
    assert mae < 0.5 * naive, (mae, naive)
    rest = ~windows.moving
    assert np.abs(pred - windows.hr_bpm)[rest].mean() < 5.0
    # The numbers the bundle reports are the ones the runtime reproduces.
    reported = model.manifest.metrics["int8"]["all"]["mae"]
    assert mae == pytest.approx(reported, rel=1e-6)


def test_unknown_model_is_one_line_and_non_zero(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["heartbeat", "--out", str(out)]) != 0
    assert_one_line_error(capsys.readouterr().err, "unknown model 'heartbeat'", "hr", "all")
    assert not out.exists()


def test_unknown_model_from_the_command_line(tmp_path):
    result = train_cli("nope", "--out", str(tmp_path / "out"), timeout=60)
    assert result.returncode != 0
    assert_one_line_error(result.stderr, "unknown model 'nope'", "valid:")


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "models"
    target.write_text("not a directory")
    assert main(["hr", "--quick", "--out", str(target)]) != 0
    assert_one_line_error(capsys.readouterr().err, str(target), "directory")


def test_help_lists_the_models(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "hr" in text and "--quick" in text and "--seed" in text


def test_a_failed_run_leaves_the_previous_bundle_untouched(tmp_path):
    from training.bundle import staging

    (tmp_path / "hr.json").write_text("previous")
    with pytest.raises(RuntimeError), staging(tmp_path) as stage:
        (stage / "hr.tflite").write_bytes(b"half-written")
        raise RuntimeError("training failed")
    assert [p.name for p in tmp_path.iterdir()] == ["hr.json"]
    assert (tmp_path / "hr.json").read_text() == "previous"


def test_negative_seed_is_refused(tmp_path, capsys):
    assert main(["hr", "--seed", "-3", "--out", str(tmp_path)]) != 0
    assert_one_line_error(capsys.readouterr().err, "--seed -3", "integer from 0")
