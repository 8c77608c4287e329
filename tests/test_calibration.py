"""BP calibrations persist per device and model, atomically, and a broken file is refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge.calibration import CalibrationStore
from edge.errors import ConfigError
from edge.estimate import Calibration

CAL = Calibration(124.0, 82.0, 6.5, -1.25, "a" * 64, 61.0, "nurse", "2026-11-23T10:00:00Z",
                  ppg_log_amplitude=6.91)  # the PPG pulse amplitude the model is relative to


def test_a_calibration_survives_a_restart_for_the_same_model(tmp_path):
    path = tmp_path / "state" / "calibration.json"
    CalibrationStore(path).put("wrist-1", CAL)
    store = CalibrationStore(path)  # the next start
    assert store.get("wrist-1", "a" * 64) == CAL
    assert store.get("wrist-2", "a" * 64) is None
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left over


def test_a_new_model_needs_a_new_calibration(tmp_path):
    path = tmp_path / "calibration.json"
    CalibrationStore(path).put("wrist-1", CAL)
    assert CalibrationStore(path).get("wrist-1", "b" * 64) is None


def test_a_file_from_before_the_amplitude_reference_still_loads(tmp_path):
    """bp 3.0.0 stored no amplitude reference: the file loads (the runtime starts) and its
    calibrations, made with another model, are refused as any other model's."""
    path = tmp_path / "calibration.json"
    old = {k: v for k, v in dataclasses.asdict(CAL).items() if k != "ppg_log_amplitude"}
    path.write_text(json.dumps({"devices": {"wrist-1": old}}))
    store = CalibrationStore(path)
    assert store.get("wrist-1", "a" * 64).ppg_log_amplitude is None
    assert store.get("wrist-1", "b" * 64) is None


@pytest.mark.parametrize("text", ["{not json", '{"devices": {"wrist-1": {"systolic": 1}}}', "[]"])
def test_a_broken_calibration_file_is_refused_with_the_fix(tmp_path, text):
    path = tmp_path / "calibration.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"calibration file .* is unreadable .* fix or delete"):
        CalibrationStore(path)
