"""CGM readings at any spacing (1, 5, 15 min, irregular, with gaps) through DevicePipeline with
the shipped glucose bundle: the history goes on the model's grid, gaps are bridged only when
short, the vitals say whether a forecast was possible, and no alarm crashes on a reading that
has no forecast or no trend (issue 11)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from e2e import ROOT, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import config_from_dict
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Channel, Flag, Frame, encode_frame

MODEL = load_model(ROOT / "models" / "glucose.json")
GLUCOSE_RULES = ("glucose_urgent_low", "glucose_low", "glucose_high", "glucose_rising",
                 "glucose_falling", "glucose_urgent_low_soon")


def cgm_frame(seq: int, t_s: float, mg_dl: float, flags: Flag = Flag.NONE) -> bytes:
    return encode_frame(Frame(7, seq, round(t_s * 1e6), Channel.CGM, 1 / 300,
                              np.array([[round(mg_dl)]], dtype="<i2"), 1.0, flags))


def pipeline(model: bool = True, **alarms: object) -> DevicePipeline:
    config = config_from_dict({"alarms": {"realert_s": 10, **alarms}})
    return DevicePipeline("cgm-1", [MODEL] if model else [], config.alarms,
                          Topics("wearable", "node"), strict=True)


def feed(p: DevicePipeline, times_s, values, flags=None) -> list[dict]:
    payloads = []
    for i, (t, g) in enumerate(zip(times_s, values, strict=True)):
        f = Flag.NONE if flags is None else flags[i]
        payloads += [m.payload for m in p.feed(cgm_frame(i, t, g, f))]
    return payloads


def vitals(payloads: list[dict]) -> list[dict]:
    return [m for m in payloads if m.get("vital") == "glucose"]


@pytest.mark.parametrize("spacing_min", [1, 5, 15])
def test_a_ramp_gives_the_same_trend_and_forecast_at_any_spacing(spacing_min):
    # 100 -> 40 mg/dL at -1 mg/dL/min over 60 min: on the 5-min grid every spacing gives the
    # same history, so the same trend and the same forecasts as 5-min readings.
    times = np.arange(0, 61, spacing_min) * 60.0
    values = 100.0 - times / 60.0
    out = vitals(feed(pipeline(), times, values))
    last = out[-1]["details"]
    reference = vitals(feed(pipeline(), np.arange(0, 61, 5) * 60.0,
                            100.0 - np.arange(0, 61, 5)))[-1]["details"]
    assert last["forecast_available"] is True
    assert last["trend_mg_dl_per_min"] == pytest.approx(-1.0, abs=0.02)
    assert last["glucose_20min"] == reference["glucose_20min"] is not None
    assert last["glucose_30min"] == reference["glucose_30min"]
    # A fall to 40 mg/dL: an urgent low is certain, and the risk says so.
    assert last["urgent_low_risk"] == reference["urgent_low_risk"] > 0.9
    assert last["interval_s"] == spacing_min * 60.0 and last["reading_age_s"] == 0.0
    # No forecast before the model's whole hour is covered (1-min CGM is not 5-min history).
    early = [m for m in out if m["device_time_s"] < 3300 - 60]  # 11 grid steps of 5 min
    assert all(m["details"]["forecast_available"] is False for m in early)
    assert all(m["details"]["glucose_20min"] is None for m in early)
    for m in out:
        validate("vitals", m)


def test_rising_alarm_works_on_15_minute_readings():
    times = np.arange(0, 8) * 900.0
    values = 120 + np.array([0, 0, 0, 60, 120, 180, 180, 180])  # +4 mg/dL/min, then flat
    payloads = feed(pipeline(), times, values)
    trends = [m["details"]["trend_mg_dl_per_min"] for m in vitals(payloads)]
    assert trends == [None, 0.0, 0.0, 4.0, 4.0, 4.0, 0.0, 0.0]
    rising = [m["event"] for m in payloads if m.get("condition") == "glucose_rising"]
    assert rising[0] == "raised" and "cleared" in rising


def test_a_long_gap_is_never_bridged():
    # 5-min readings, then 30 min without one: neither trend nor forecast across it.
    times = [*np.arange(0, 13) * 300.0, 3600 + 1800, 3600 + 2100, 3600 + 2400]
    values = [120.0] * len(times)
    out = vitals(feed(pipeline(), times, values))
    assert out[12]["details"]["forecast_available"] is True
    after = [m["details"] for m in out[13:]]
    assert [d["forecast_available"] for d in after] == [False, False, False]
    assert [d["trend_mg_dl_per_min"] for d in after] == [None, None, 0.0]
    assert after[0]["interval_s"] == 1800.0


def test_a_short_gap_is_interpolated():
    # One missed 5-min reading (a 10-min gap) inside the hour: the forecast still comes.
    times = [t for t in np.arange(0, 14) * 300.0 if t != 2100.0]
    out = vitals(feed(pipeline(), times, [150.0] * len(times)))
    assert out[-1]["details"]["forecast_available"] is True
    assert out[-1]["details"]["glucose_20min"] is not None


def test_a_signal_loss_reading_gives_neither_trend_nor_forecast():
    times = np.arange(0, 14) * 300.0
    flags = [Flag.NONE] * 13 + [Flag.LEAD_OFF]
    out = vitals(feed(pipeline(), times, [150.0] * 14, flags))
    assert out[-1]["quality"] == "sensor"
    assert out[-1]["details"]["trend_mg_dl_per_min"] is None
    assert out[-1]["details"]["forecast_available"] is False


def _falling_then_gap(gap_s: float) -> tuple[list[float], list[float]]:
    """A fast fall to an urgent low, a gap of `gap_s` (forecast and trend gone), then more
    low readings: every glucose alarm but 'high'/'rising' is active across the gap."""
    times = list(np.arange(0, 19) * 300.0)
    values = list(np.linspace(245, 50, 19))  # -2.2 mg/dL/min
    t = times[-1] + gap_s
    for k in range(6):
        times.append(t + k * 300.0)
        values.append(48.0 + k)
    return times, values


def test_every_active_alarm_survives_a_reading_without_forecast_or_trend():
    times, values = _falling_then_gap(1500.0)
    # High priority so the falling alarm gets reminders too (the path that formats its value).
    payloads = feed(pipeline(glucose_falling={"priority": "high"}), times, values)
    events = [m for m in payloads if "alarm_id" in m]
    raised = {m["condition"] for m in events if m["event"] == "raised"}
    assert {"glucose_urgent_low_soon", "glucose_falling", "glucose_urgent_low",
            "glucose_low"} <= raised
    # The predictive alarm's value is the model's risk, a probability, above its limit.
    soon_raised = next(m for m in events if m["condition"] == "glucose_urgent_low_soon")
    assert soon_raised["unit"] == "probability" and soon_raised["limit"] == 0.25
    assert 0.25 < soon_raised["value"] <= 1.0
    said = re.search(r"(\d+)% risk of a reading <= 55 mg/dL within 30 min \(above limit 25%\)",
                     soon_raised["message"])
    assert said and abs(int(said[1]) - 100 * soon_raised["value"]) <= 1, soon_raised["message"]
    after_gap = [m for m in events if m["device_time_s"] > times[18]]
    # Reminders of the predictive and rate alarms on readings with neither forecast nor trend.
    soon = [m for m in after_gap if m["condition"] == "glucose_urgent_low_soon"]
    falling = [m for m in after_gap if m["condition"] == "glucose_falling"]
    assert soon and soon[0]["event"] == "reminder" and soon[0]["value"] is None
    assert "no forecast" in soon[0]["message"]
    assert falling and falling[0]["value"] is None and "no trend" in falling[0]["message"]
    for m in payloads:
        validate("alarm" if "alarm_id" in m else "vitals", m)


def test_a_rising_alarm_survives_a_gap_and_the_high_one_clears():
    times = [*np.arange(0, 8) * 300.0, 2100 + 1500, 2100 + 1800, *(2100 + 1800
             + np.arange(1, 6) * 300.0)]
    values = [150, 170, 190, 210, 230, 255, 270, 280, 260, 240, 220, 200, 190, 180, 170]
    payloads = feed(pipeline(), times, values)
    events = [(m["condition"], m["event"]) for m in payloads if "alarm_id" in m]
    assert ("glucose_rising", "raised") in events and ("glucose_high", "raised") in events
    assert ("glucose_high", "cleared") in events


def test_replay_of_a_csv_with_gaps_during_alarms(tmp_path):
    """The same fall and gap as a CSV through `python -m edge replay`: exit 0, no traceback,
    the reminder without a forecast is in the output."""
    import json
    import subprocess
    import sys

    times, values = _falling_then_gap(1500.0)
    csv = tmp_path / "cgm.csv"
    csv.write_text("time_s,glucose\n" + "".join(f"{t:g},{g:.0f}\n"
                                                 for t, g in zip(times, values, strict=True)))
    out = subprocess.run([sys.executable, "-m", "edge", "replay", str(csv), "--models",
                          str(ROOT / "models")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    payloads = [m.get("payload", m) for m in lines]
    soon = [m for m in payloads if m.get("condition") == "glucose_urgent_low_soon"]
    assert any(m["event"] == "raised" for m in soon)


spacings = st.one_of(st.floats(50, 1000), st.sampled_from([60.0, 300.0, 900.0]),
                     st.floats(1000, 7200))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(spacings, st.floats(20, 420), st.booleans()), min_size=1,
                max_size=60), st.booleans())
def test_random_spacings_gaps_and_values_never_raise(readings, with_model):
    p = pipeline(with_model)
    t, payloads = 0.0, []
    for i, (dt, g, lost) in enumerate(readings):
        t += dt
        payloads += [m.payload for m in
                     p.feed(cgm_frame(i, t, g, Flag.LEAD_OFF if lost and i % 3 == 0
                                      else Flag.NONE))]
    out = vitals(payloads)
    assert len(out) == len(readings)
    for m in out:
        d = m["details"]
        assert d["forecast_available"] is (d.get("glucose_20min") is not None)
        if d["trend_mg_dl_per_min"] is not None:
            assert abs(d["trend_mg_dl_per_min"]) <= 400 / 5  # bounded by the readings' range
