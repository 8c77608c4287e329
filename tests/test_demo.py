"""`make demo` (deploy/demo.py) end to end, on one short device so it stays under a minute:
the simulator, the runtime and the private broker it starts, the nurse's cuff calibration
over MQTT, the alarm lines and the summary it prints, and that it cleans up after itself."""

from __future__ import annotations

import subprocess
import sys

from e2e import ROOT


def test_demo_calibrates_blood_pressure_and_shows_its_alarm(mosquitto_path):
    # hypotension (8 min) at x16: 30 s of wall time; its chest device measures BP.
    result = subprocess.run(
        [sys.executable, "-m", "deploy.demo", "--scenario", "hypotension", "--speed", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=150)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "status: node demo online" in out and "status: node demo offline (shutdown)" in out
    assert "nurse -> calibrate systolic=118 diastolic=76" in out
    assert "ok, calibrated to 118/76 mmHg" in out
    # BP alarms only once calibrated.
    assert out.index("calibrated to 118/76") < out.index("ALARM RAISED       sbp_low (high)")
    assert "\x1b[" not in out  # no colour when stdout is not a terminal
    summary = out[out.index("\nsummary"):]
    assert "chest-1  hypotension x16, 0:08:00 of 0:08:00 device time" in summary
    assert "uncalibrated estimate(s), then calibrated to 118/76 mmHg" in summary
    assert "alarm sbp_low (high): raised" in summary


def test_demo_rejects_an_unknown_scenario():
    result = subprocess.run([sys.executable, "-m", "deploy.demo", "--scenario", "nope"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr
