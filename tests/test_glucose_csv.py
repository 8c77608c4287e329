"""A CGM column in a replay CSV (docs/recording-csv.md): the sensor's "Low"/"High" become its
limits, flagged SATURATED (and alarm like any reading); impossible values, text and times
that go backwards are refused with one line naming file and line (exit 2, like every
unusable recording)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from e2e import ROOT

from wire import Channel, Flag
from wire import recordings as rec


def write_csv(tmp_path, rows: list[tuple[float, str]]):
    path = tmp_path / "cgm.csv"
    path.write_text("time_s,glucose\n" + "".join(f"{t:g},{g}\n" for t, g in rows))
    return path


def replay(path):
    return subprocess.run([sys.executable, "-m", "edge", "replay", str(path), "--models",
                           str(ROOT / "models")], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_low_and_high_are_the_sensor_limits_flagged_saturated(tmp_path):
    rows = [(0, "120"), (300, "High"), (600, "high"), (900, "90"), (1200, "LOW"), (1500, "")]
    signals = rec.load_csv(write_csv(tmp_path, rows))
    times, readings = signals.cgm
    assert times.tolist() == [0, 300, 600, 900, 1200]
    assert readings.tolist() == [120, 400, 400, 90, 40]
    assert signals.saturated["cgm"].tolist() == [False, True, True, False, True]
    frames = [f for _, f in rec.frames(signals) if f.channel == Channel.CGM]
    assert [bool(f.flags & Flag.SATURATED) for f in frames] == [False, True, True, False, True]


def test_a_low_reading_raises_the_urgent_low_alarm_in_replay(tmp_path):
    out = replay(write_csv(tmp_path, [(0, "120"), (300, "90"), (600, "Low")]))
    assert out.returncode == 0, out.stderr
    payloads = [json.loads(line)["payload"] for line in out.stdout.splitlines()]
    vitals = [m["value"] for m in payloads if m.get("vital") == "glucose"]
    assert vitals == [120, 90, 40]
    assert any(m.get("condition") == "glucose_urgent_low" and m["event"] == "raised"
               for m in payloads)


@pytest.mark.parametrize(("rows", "message"), [
    ([(0, "120"), (300, "700")], r"cgm\.csv:3: column 'glucose': 700 mg/dL is impossible"),
    ([(0, "120"), (300, "6.5")], r"cgm\.csv:3: column 'glucose': 6\.5 mg/dL is impossible"),
    ([(0, "120"), (300, "n/a")], r"cgm\.csv:3: column 'glucose': 'n/a' is not a number"),
    ([(0, "120"), (600, "110"), (300, "100")], r"cgm\.csv:4: column 'time_s' goes from 600"),
])
def test_impossible_readings_and_backwards_times_are_refused_with_the_line(tmp_path, rows,
                                                                          message):
    path = write_csv(tmp_path, rows)
    with pytest.raises(rec.RecordingError, match=message):
        rec.load_csv(path)
    out = replay(path)
    # wearable-edge replay exits 2 for every unusable recording (test_edge_replay_recordings)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_any_reading_spacing_replays(tmp_path):
    # 1-min and irregular readings are accepted as they are; the runtime grids them.
    t = np.cumsum(np.r_[0, np.random.default_rng(1).uniform(50, 1000, 40)])
    out = replay(write_csv(tmp_path, [(round(x), "110") for x in t]))
    assert out.returncode == 0, out.stderr
