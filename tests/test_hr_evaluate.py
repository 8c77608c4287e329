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
