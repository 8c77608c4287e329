"""Active alarms across a restart (#12 case 9): carried on or cleared with a reason, never
left hanging. Through the real CLI, a real pty and mosquitto; the store's file is hostile
input like any other."""

from __future__ import annotations

import json
import signal
import stat

from e2e import edge_config

from edge.alarm import AlarmEngine, Observation
from edge.alarmstate import AlarmStateStore
from edge.config import AlarmsConfig
from edge.estimate import GOOD, Estimate


def _alarms(event: str, condition: str = "hr_high"):
    return lambda m: (m.topic == "wearable/ward-7/wrist-1/alarms"
                      and m.json()["condition"] == condition and m.json()["event"] == event)


def test_an_alarm_active_at_a_crash_is_carried_on_and_cleared_by_the_data_after_restart(
        broker, mqtt_subscriber, processes, tmp_path):
    sub = mqtt_subscriber("wearable/#", broker=broker)
    _sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "3", "--speed", "6")
    config = edge_config(tmp_path, pty, broker.port)
    first = processes.start("-m", "edge", "run", "--config", str(config))
    raised = sub.wait_for(_alarms("raised"), timeout=90).json()
    state = tmp_path / "state" / "active-alarms.json"  # the config's state_dir
    kept = json.loads(state.read_text())["devices"]["wrist-1"]
    assert [r["alarm_id"] for r in kept] == [raised["alarm_id"]]
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    first.send_signal(signal.SIGKILL)  # a crash: nothing is cleared on the way out
    first.wait(timeout=10)

    _sim2, pty2 = processes.simulator("--scenario", "normal", "--seed", "1", "--speed", "4")
    config.write_text(config.read_text().replace(pty, pty2))
    sub.clear()  # from here on: what the restarted runtime says
    processes.start("-m", "edge", "run", "--config", str(config))
    # A late subscriber's present state has the carried-on alarm from the start.
    present = sub.wait_for(lambda m: m.topic == "wearable/ward-7/wrist-1/active_alarms"
                           and m.json()["alarms"], timeout=60).json()
    assert [a["alarm_id"] for a in present["alarms"]] == [raised["alarm_id"]]
    assert present["priorities"][raised["priority"]] is True
    cleared = sub.wait_for(_alarms("cleared"), timeout=90).json()
    assert cleared["alarm_id"] == raised["alarm_id"]  # the same alarm ends, with the data
    assert "ended" in cleared["message"]
    assert json.loads(state.read_text())["devices"] == {}


def _record(condition: str, **extra) -> dict:
    return {"alarm_id": "a" * 32, "condition": condition, "priority": "high",
            "kind": "technical", "value": None, "unit": "s", "acknowledged": False,
            "latched": False} | extra


def test_a_restart_clears_what_belongs_to_the_previous_process_with_the_reason():
    engine = AlarmEngine(AlarmsConfig())
    events = engine.restore("d", [_record("runtime_error"),
                                  _record("hr_low", kind="physiological", value=41.0,
                                          unit="bpm")])
    assert [(e.condition, e.event) for e in events] == [("runtime_error", "cleared")]
    assert "runtime restarted" in events[0].message
    assert engine.is_active("d", "hr_low")
    # Carried on: the next heart rate past the limit re-announces it (high priority) ...
    got = engine.update(Estimate("d", "heart_rate", 40.0, "bpm", GOOD, 0.0, 5.0, "hr"))
    assert [(e.event, e.alarm_id) for e in got] == [("reminder", "a" * 32)]
    # ... and one back inside clears the same alarm.
    got = []
    for t in range(6, 30, 2):
        got += engine.update(Estimate("d", "heart_rate", 70.0, "bpm", GOOD, 0.0, t, "hr"))
    assert [(e.event, e.alarm_id) for e in got] == [("cleared", "a" * 32)]
    # An observation-driven one carries on too: no_data clears with the next frame.
    events = engine.restore("d", [_record("no_data", value=40.0)])
    assert events == [] and engine.is_active("d", "no_data")
    got = engine.update(Observation("d", "data_age_s", 0.0, GOOD, 31.0))
    assert [e.event for e in got] == ["cleared"]


def test_a_hostile_or_broken_state_file_never_stops_the_start(tmp_path):
    path = tmp_path / "active-alarms.json"
    path.write_text("{not json")
    assert AlarmStateStore(path).devices() == []
    assert (tmp_path / "active-alarms.json.unreadable").exists()
    path.write_text(json.dumps({"format": "wearable-edge/active-alarms/1", "devices": {
        "d": [_record("hr_high", value="x"), _record("no_such_thing"),
              _record("no_data", value=40.0)]}}))
    store = AlarmStateStore(path)
    assert [r["condition"] for r in store.get("d")] == ["no_data"]
