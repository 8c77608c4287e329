"""Glucose readings, their trend and alarms, stale-data and no-data technical alarms: CGM
frames encoded on the wire and fed through DevicePipeline (the path `run` and `replay` share).
The glucose model's forecasts are covered by test_scenarios.py with the shipped bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.commands import parse_command, signed_command
from edge.config import AlarmsConfig, CommandsConfig, config_from_dict
from edge.errors import CommandError, ConfigError
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Channel, Flag, Frame, encode_frame

PERIOD_S = 300


def cgm_frame(seq: int, t_s: float, mg_dl: float, flags: Flag = Flag.NONE) -> bytes:
    return encode_frame(Frame(7, seq, round(t_s * 1e6), Channel.CGM, 1 / PERIOD_S,
                              np.array([[round(mg_dl)]], dtype="<i2"), 1.0, flags))


def acc_frame(seq: int, t_s: float) -> bytes:
    """One second of accelerometer: the device is alive while the CGM may be silent."""
    samples = np.zeros((32, 3), dtype="<i2")
    return encode_frame(Frame(7, seq, round(t_s * 1e6), Channel.ACCEL, 32.0, samples, 1e-3))


def pipeline(**alarms: object) -> DevicePipeline:
    config = config_from_dict({"alarms": alarms}) if alarms else None
    return DevicePipeline("cgm-1", [], config.alarms if config else AlarmsConfig(),
                          Topics("wearable", "node"), strict=True)


def feed_readings(p: DevicePipeline, readings: list[float], start_s: float = 0.0) -> list:
    messages = []
    for i, g in enumerate(readings):
        messages += p.feed(cgm_frame(i, start_s + i * PERIOD_S, g))
    return [m.payload for m in messages]


def alarms(payloads: list[dict]) -> list[tuple[str, str]]:
    return [(m["condition"], m["event"]) for m in payloads if "alarm_id" in m]


def test_every_reading_is_published_with_its_trend():
    payloads = feed_readings(pipeline(), [120, 115, 110, 105])
    vitals = [m for m in payloads if m.get("vital") == "glucose"]
    assert [m["value"] for m in vitals] == [120, 115, 110, 105]
    assert all(m["unit"] == "mg/dL" and m["quality"] == "good" for m in vitals)
    # Fewer than three readings: no trend yet; then 5 mg/dL per 5 min = -1 mg/dL/min.
    assert [m["details"]["trend_mg_dl_per_min"] for m in vitals] == [None, None, -1.0, -1.0]
    assert alarms(payloads) == []


def test_urgent_low_fires_on_the_first_reading_at_55_and_clears():
    payloads = feed_readings(pipeline(), [90, 82, 74, 66, 55, 58, 66, 59, 62, 75, 80, 82, 85])
    events = alarms(payloads)
    urgent = [m for m in payloads if m.get("condition") == "glucose_urgent_low"]
    assert urgent[0]["event"] == "raised"
    assert urgent[0]["value"] == 55 and urgent[0]["priority"] == "high"
    assert urgent[0]["device_time_s"] == 4 * PERIOD_S  # on the very reading, no delay
    # One alarm through the bounce above the limit (66, then 59): it clears after 10 min
    # back past the hysteresis (>= 60 mg/dL from 62 at 8 * 5 min), at 10 * 5 min.
    assert len({m["alarm_id"] for m in urgent}) == 1
    assert [m["event"] for m in urgent].count("cleared") == 1
    assert urgent[-1]["event"] == "cleared" and urgent[-1]["device_time_s"] == 10 * PERIOD_S
    # Low (70) was raised at 66 and cleared 10 min after 75; falling fast was not (-1.9).
    assert events.count(("glucose_low", "raised")) == 1
    assert ("glucose_low", "cleared") in events
    assert all(c != "glucose_falling" for c, _ in events)


def test_high_and_rate_of_change_alarms():
    payloads = feed_readings(pipeline(), [150, 165, 180, 200, 225, 255, 270, 260, 250, 240])
    events = alarms(payloads)
    assert ("glucose_high", "raised") in events
    rising = [m for m in payloads if m.get("condition") == "glucose_rising"]
    assert rising and rising[0]["event"] == "raised" and rising[0]["unit"] == "mg/dL/min"
    assert rising[0]["value"] > 3.0 and rising[0]["limit"] == 3.0


def test_falling_fast_with_a_stricter_configured_rate():
    readings = [200, 190, 178, 165, 150]  # about -2.5 mg/dL/min
    assert ("glucose_falling", "raised") in alarms(feed_readings(pipeline(), readings))
    strict = pipeline(glucose_falling={"threshold": 3.0})
    assert all(c != "glucose_falling" for c, _ in alarms(feed_readings(strict, readings)))


def test_a_signal_loss_reading_is_flagged_and_drives_no_alarm():
    p = pipeline()
    payloads = [m.payload for m in p.feed(cgm_frame(0, 0, 40, Flag.LEAD_OFF))]
    assert payloads[0]["quality"] == "sensor"
    assert alarms(payloads) == []
    # A sensor reading "LOW" at the bottom of its range (saturated) is real and alarms.
    payloads = [m.payload for m in p.feed(cgm_frame(1, PERIOD_S, 40, Flag.SATURATED))]
    assert ("glucose_urgent_low", "raised") in alarms(payloads)


def test_no_cgm_reading_for_15_then_30_minutes_raises_escalating_technical_alarms():
    p = pipeline()
    payloads = feed_readings(p, [120, 121, 119])
    last_reading_s = 2 * PERIOD_S
    for s in range(last_reading_s + 1, last_reading_s + 31 * 60):
        payloads += [m.payload for m in p.feed(acc_frame(s, s))]
    stale = [m for m in payloads if m.get("condition") in ("cgm_stale", "cgm_lost")]
    assert [(m["condition"], m["event"], m["priority"], m["kind"]) for m in stale] == [
        ("cgm_stale", "raised", "medium", "technical"),
        ("cgm_lost", "raised", "high", "technical")]
    assert stale[0]["device_time_s"] == pytest.approx(last_reading_s + 15 * 60, abs=1.5)
    assert stale[1]["device_time_s"] == pytest.approx(last_reading_s + 30 * 60, abs=1.5)
    # The next reading ends both (stale-data alarms have no clear delay).
    payloads = [m.payload for m in p.feed(cgm_frame(3, last_reading_s + 31 * 60, 118))]
    assert sorted(alarms(payloads)) == [("cgm_lost", "cleared"), ("cgm_stale", "cleared")]


def test_no_data_from_the_wearable_raises_a_technical_alarm_on_the_wall_clock():
    p = pipeline()
    feed_readings(p, [120])
    now = p._last_frame_wall
    assert p.tick(now + 10) == []
    raised = [m.payload for m in p.tick(now + 31)]
    assert [(m["condition"], m["event"], m["kind"]) for m in raised] == [
        ("no_data", "raised", "technical")]
    cleared = [m.payload for m in p.feed(cgm_frame(1, PERIOD_S, 121))]
    assert ("no_data", "cleared") in alarms(cleared)


@pytest.mark.parametrize(("alarms_table", "message"), [
    ({"glucose_urgent_low": {"enabled": False}}, "cannot be false"),
    ({"glucose_urgent_low": {"threshold": 50}}, "never lowered"),
    ({"glucose_low": {"threshold": 300}}, "must be below alarms.glucose_high.threshold"),
    ({"cgm_stale": {"after_s": 3600}}, "shorter than alarms.cgm_lost.after_s"),
    ({"hr_high": {"delay_s": 12}}, "between 0 and 10 seconds"),
    # A glucose 1.x config's forecast limit in mg/dL: now a probability.
    ({"glucose_urgent_low_soon": {"threshold": 60}}, "is a probability since glucose 2.0.0"),
    ({"glucose_urgent_low_soon": {"threshold": 0.2, "hysteresis": 0.2}},
     "hysteresis' must be below its threshold"),
])
def test_unsafe_alarm_settings_are_refused(alarms_table, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"alarms": alarms_table})


@pytest.mark.parametrize(("fields", "reason"), [
    ({"systolic": 400, "diastolic": 80}, "'systolic' must be a cuff reading in mmHg from 60"),
    ({"systolic": 120, "diastolic": 20}, "'diastolic' must be a cuff reading"),
    ({"systolic": 90, "diastolic": 85}, "must exceed diastolic"),
    ({"systolic": "120", "diastolic": 80}, "'systolic' must be"),
    ({"systolic": 120, "diastolic": 80, "arm": "left"}, "unknown field 'arm'"),
])
def test_calibration_commands_out_of_range_are_refused(fields, reason):
    import json

    config = CommandsConfig(operators={"nurse": "nurse-token-0123456"})
    payload = json.dumps(signed_command("nurse", "nurse-token-0123456", "wrist-1", "calibrate",
                                        fields, node="ward-7", command_id="c1")).encode()
    with pytest.raises(CommandError, match=reason) as err:
        parse_command(payload, config, "wrist-1", node="ward-7")
    assert err.value.command_id == "c1"


def test_calibration_without_a_bp_model_is_refused():
    import json

    config = CommandsConfig(operators={"nurse": "nurse-token-0123456"})
    command = parse_command(json.dumps(signed_command(
        "nurse", "nurse-token-0123456", "wrist-1", "calibrate",
        {"systolic": 120, "diastolic": 80}, node="ward-7", command_id="c2")).encode(), config,
        "wrist-1", node="ward-7")
    with pytest.raises(CommandError, match="no blood-pressure model"):
        pipeline().command(command)


def test_the_default_urgent_low_soon_limit_is_the_one_the_shipped_model_was_scored_at():
    """Training tunes the risk limit on real validation people and scores the model card at
    it; a node with the default configuration must alarm at that same limit, clearing below
    half of it as the card's scoring did."""
    manifest = json.loads((Path(__file__).parents[1] / "models" / "glucose.json").read_text())
    tuned = manifest["output_params"]["urgent_low_soon"]
    default = AlarmsConfig().glucose_urgent_low_soon
    assert default.threshold == tuned["threshold"]
    assert default.hysteresis == tuned["threshold"] / 2
    assert default.delay_s == 300 * (tuned["persistence_readings"] - 1)
