"""Scenarios as data: the shipped TOML files, users' own files, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_sim import ScenarioError, get_scenario, scenario_names, simulate
from device_sim.cli import main
from device_sim.scenarios import SCENARIO_DIR, load_scenario

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("normal", "tachycardia", "bradycardia", "exercise", "rest", "atrial-fibrillation",
           "hypertensive-crisis", "hypotension", "hypoglycaemia", "hyperglycaemia", "sleep",
           "normal-day")


def test_every_shipped_scenario_is_a_file_and_listed(capsys) -> None:
    assert scenario_names() == list(SHIPPED)
    assert len(list(SCENARIO_DIR.glob("*.toml"))) == len(SHIPPED)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED:
        assert name in out
        assert get_scenario(name).description in out


def test_trajectory_carries_bp_rhythm_and_meals() -> None:
    traj = get_scenario("hypertensive-crisis").trajectory()
    assert traj.sbp_mmhg[0] == pytest.approx(135) and traj.sbp_mmhg[-1] == pytest.approx(195)
    assert traj.dbp_mmhg[-1] == pytest.approx(125)
    af = get_scenario("atrial-fibrillation").trajectory().af
    assert not af[:60].any() and af[60:300].all() and not af[300:].any()
    meals = get_scenario("hyperglycaemia").trajectory()
    assert meals.meal_g.sum() == 80 and meals.meal_g[600] == 80 and meals.bolus_u.sum() == 0
    # Without BP in a scenario, 120/80 throughout.
    plain = get_scenario("tachycardia").trajectory()
    assert set(plain.sbp_mmhg) == {120.0} and set(plain.dbp_mmhg) == {80.0}


GOOD = """
name = "mine"
description = "my own"
channels = ["ppg", "acc", "bp"]

[[segment]]
duration_s = 20
hr_bpm = 70

[[segment]]  # a comment
duration_s = 20
hr_bpm = 110
activity = "walk"
sbp_mmhg = 140
dbp_mmhg = 90

[[event]]
at_s = 5
meal_g = 20
bolus_u = 2

[[fault]]
kind = "detach"
at_s = 10
duration_s = 3
"""


def test_user_file_runs_through_the_cli(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    scenario = load_scenario(path)
    assert scenario.name == "mine" and scenario.duration_s == 40
    assert scenario.channels == ("ppg", "acc", "bp")
    assert [f.kind for f in scenario.faults] == ["detach"]
    out = tmp_path / "mine.bin"
    assert main(["run", "--scenario-file", str(path), "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_with_duration_keeps_events_and_faults_that_still_fit(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    short = load_scenario(path).with_duration(8)
    assert len(short.events) == 1 and short.faults == ()


@pytest.mark.parametrize(("edit", "line", "needle"), [
    (("hr_bpm = 110", "hr_bpm = 900"), 12, "hr_bpm = 900 is out of range; use beats per minute"),
    (("duration_s = 20\nhr_bpm = 70", "duration_s = -5\nhr_bpm = 70"), 7, "duration_s = -5"),
    (("activity = \"walk\"", "activty = \"walk\""), 13, "unknown key 'activty'; use one of"),
    (("activity = \"walk\"", "activity = \"swim\""), 13,
     "activity = 'swim' is not known; use one of: rest, walk, run"),
    (("kind = \"detach\"", "kind = \"melt\""), 23, "kind = 'melt' is not known; use one of"),
    (("dbp_mmhg = 90", "dbp_mmhg = 150"), 10, "diastolic 150"),
    (("channels = [\"ppg\", \"acc\", \"bp\"]", "channels = [\"ppg\", \"eeg\"]"), 4,
     "unknown channel 'eeg'"),
    (("name = \"mine\"", "nmae = \"mine\""), 2, "unknown key 'nmae'"),
    (("hr_bpm = 110", "hr_bpm = \"fast\""), 12, "wrong type"),
    (("at_s = 5", "at_s = 500"), None, "after the end"),
    (("hr_bpm = 110", "hr_bpm = 110 ="), None, "not valid TOML"),
])
def test_bad_files_name_file_line_key_and_fix(tmp_path, edit, line, needle) -> None:
    path = tmp_path / "bad.toml"
    assert edit[0] in GOOD
    path.write_text(GOOD.replace(edit[0], edit[1], 1))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert needle in message and str(path) in message and "\n" not in message
    if line is not None:
        assert message.startswith(f"{path}:{line}:"), message


def test_bad_file_from_the_cli_is_one_line_exit_2(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace("hr_bpm = 110", "hr_bpm = 900"))
    result = subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario-file",
                             str(path), "--out", str(tmp_path / "x.bin")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{path}:12:" in result.stderr and "hr_bpm" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario-file",
                              str(tmp_path / "nope.toml"), "--out", "x.bin"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "cannot read scenario file" in missing.stderr


def test_short_scenarios_simulate() -> None:
    for name in ("atrial-fibrillation", "hypertensive-crisis", "hypotension"):
        rec = simulate(get_scenario(name).with_duration(30), 1)
        assert np.isfinite(rec.ppg).all()
