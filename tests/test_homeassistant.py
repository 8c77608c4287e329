"""Home Assistant MQTT discovery and the retained present state, against the real broker: a
simulated tachycardia streams into the runtime with `[homeassistant] enabled = true`; the
discovery configs must satisfy what Home Assistant's MQTT docs document for sensors and binary
sensors, point at topics that really carry the state, and a subscriber that arrives late must
see the present vitals and the active alarm at once (retained)."""

from __future__ import annotations

import json
import re
import signal
import threading
import uuid

import jsonschema
from e2e import ROOT, SCHEMAS, validate

import edge
from device_sim import get_scenario, simulate, stream
from device_sim.writers import PtyWriter
from edge.homeassistant import ACTIVE_ALARMS_SCHEMA, PresentState
from edge.messages import ALARM_SCHEMA, Message, Topics

ACTIVE_ALARMS = json.loads((ROOT / "edge" / "schemas" / "active_alarms.schema.json").read_text())
assert edge  # the runtime under test is this checkout's

# From Home Assistant's docs (integrations/mqtt "MQTT Discovery", sensor.mqtt,
# binary_sensor.mqtt, sensor device classes): the documented keys of a discovery config, the
# device and origin maps, and the units each device class accepts. additionalProperties: false,
# so a misspelt key (which Home Assistant would reject) fails here.
_AVAILABILITY = {
    "availability_topic": {"type": "string", "minLength": 1},
    "availability_template": {"type": "string"},
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "payload_available": {"type": "string"},
    "payload_not_available": {"type": "string"},
}
_DEVICE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "configuration_url": {"type": "string"}, "connections": {"type": "array"},
        "hw_version": {"type": "string"},
        "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "manufacturer": {"type": "string"}, "model": {"type": "string"},
        "model_id": {"type": "string"}, "name": {"type": "string"},
        "serial_number": {"type": "string"}, "suggested_area": {"type": "string"},
        "sw_version": {"type": "string"}, "via_device": {"type": "string"},
    },
    "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
}
_ORIGIN = {"type": "object", "additionalProperties": False, "required": ["name"],
           "properties": {"name": {"type": "string"}, "sw_version": {"type": "string"},
                          "support_url": {"type": "string"}}}
_COMMON = {
    **_AVAILABILITY,
    "device": _DEVICE, "origin": _ORIGIN,
    "enabled_by_default": {"type": "boolean"}, "encoding": {"type": "string"},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "expire_after": {"type": "integer", "minimum": 0}, "force_update": {"type": "boolean"},
    "icon": {"type": "string", "pattern": "^mdi:"},
    "json_attributes_template": {"type": "string"}, "json_attributes_topic": {"type": "string"},
    "name": {"type": ["string", "null"]}, "object_id": {"type": "string"},
    "qos": {"enum": [0, 1, 2]}, "state_topic": {"type": "string", "minLength": 1},
    "unique_id": {"type": "string", "minLength": 1}, "value_template": {"type": "string"},
}
HA_SENSOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["state_topic"],
    "properties": {
        **_COMMON,
        "device_class": {"type": "string"},
        "last_reset_value_template": {"type": "string"},
        "state_class": {"enum": ["measurement", "measurement_angle", "total",
                                 "total_increasing"]},
        "suggested_display_precision": {"type": "integer"},
        "unit_of_measurement": {"type": "string"},
    },
    "dependentRequired": {"device": ["unique_id"]},  # the device registry needs it
    "allOf": [
        {"if": {"properties": {"device_class": {"const": "pressure"}},
                "required": ["device_class"]},
         "then": {"properties": {"unit_of_measurement": {
             "enum": ["cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"]}}}},
        {"if": {"properties": {"device_class": {"const": "blood_glucose_concentration"}},
                "required": ["device_class"]},
         "then": {"properties": {"unit_of_measurement": {"enum": ["mg/dL", "mmol/L"]}}}},
    ],
}
HA_BINARY_SENSOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["state_topic"],
    "properties": {
        **_COMMON,
        "device_class": {"enum": [
            "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
            "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
            "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
            "smoke", "sound", "tamper", "update", "vibration", "window"]},
        "off_delay": {"type": "integer", "minimum": 0},
        "payload_off": {"type": "string"}, "payload_on": {"type": "string"},
    },
    "dependentRequired": {"device": ["unique_id"]},
}
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config
DISCOVERY_TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")


def ha_config(tmp_path, pty: str, port: int):
    path = tmp_path / "edge.toml"
    path.write_text(
        f'node = "ward-7"\nmodels_dir = "{ROOT / "models"}"\nmodels = ["hr"]\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        f"[mqtt]\nport = {port}\nstatus_interval_s = 1\n"
        f'[[devices]]\nname = "wrist-1"\nport = "{pty}"\n'
        "[homeassistant]\nenabled = true\n")
    return path


def test_discovery_and_present_state_for_a_late_subscriber(broker, mqtt_subscriber, processes,
                                                            tmp_path):
    # The tachycardia raises hr_high at ~28 s and clears it at ~60 s of device time. It is
    # played in two parts, the second only once the late subscriber has checked the active
    # set: on a busy machine the alarm cannot clear before that check.
    items = list(stream(simulate(get_scenario("tachycardia"), 3), 1))
    before = [item for item in items if item[0] < HOLD_AT_S]
    after = [item for item in items if item[0] >= HOLD_AT_S]
    writer = PtyWriter(link=tmp_path / "wrist-1")  # the link goes with the writer
    runtime = processes.start("-m", "edge", "run", "--config",
                              str(ha_config(tmp_path, str(writer.link), broker.port)))
    try:
        _discovery_and_present_state(broker, mqtt_subscriber, writer, before, after)
    finally:
        runtime.send_signal(signal.SIGTERM)  # before the pty goes: no reopen of a reused one
        runtime.wait(timeout=30)
        writer.close(drain=False)


HOLD_AT_S = 45.0  # device time: hr_high is active, and stays so until the rest is played


def _discovery_and_present_state(broker, mqtt_subscriber, writer: PtyWriter, before: list,
                                 after: list) -> None:

    # Discovery: 4 sensors and 3 alarm binary sensors for the device, retained.
    ha = mqtt_subscriber("homeassistant/#", broker=broker)
    ha.wait_for_n("homeassistant/#", 7, timeout=60)
    # Retained: a subscriber that arrives after they were published gets them all.
    again = mqtt_subscriber("homeassistant/#", broker=broker)
    configs = {m.topic: m for m in again.wait_for_n(lambda m: m.retain, 7, timeout=10)}
    assert len(configs) == 7
    sensors = {}
    for topic, message in configs.items():
        assert DISCOVERY_TOPIC.match(topic), topic
        payload = message.json()
        schema = HA_SENSOR if "/sensor/" in topic else HA_BINARY_SENSOR
        jsonschema.validate(payload, schema)
        assert payload["availability_topic"] == "wearable/ward-7/status"
        assert payload["device"]["identifiers"] == ["wearable_ward-7_wrist-1"]
        sensors[payload["unique_id"]] = payload
    assert len(sensors) == 7  # unique ids
    hr = sensors["wearable_ward-7_wrist-1_heart_rate"]
    assert (hr["unit_of_measurement"], hr["state_class"]) == ("bpm", "measurement")
    assert "device_class" not in hr  # Home Assistant has none for heart rate
    assert sensors["wearable_ward-7_wrist-1_systolic_bp"]["device_class"] == "pressure"
    glucose = sensors["wearable_ward-7_wrist-1_glucose"]
    assert (glucose["device_class"], glucose["unit_of_measurement"]) == (
        "blood_glucose_concentration", "mg/dL")
    medium = sensors["wearable_ward-7_wrist-1_alarm_medium"]
    assert medium["device_class"] == "problem"
    assert medium["state_topic"] == "wearable/ward-7/wrist-1/active_alarms"

    # The tachycardia raises hr_high (medium), once the wearable sends. A client that
    # connects only now...
    live = mqtt_subscriber("wearable/ward-7/wrist-1/alarms", broker=broker)
    first = threading.Thread(target=writer.play, args=(before, 0), daemon=True)
    first.start()
    raised = live.wait_for(lambda m: m.json()["event"] == "raised", timeout=90).json()
    late = mqtt_subscriber("wearable/#", broker=broker)
    # ...gets the present state at once, from the retained messages.
    status = late.wait_for(lambda m: m.topic == hr["availability_topic"] and m.retain,
                           timeout=10).json()
    assert status["state"] == "online"
    active = late.wait_for(lambda m: m.topic == medium["state_topic"] and m.retain,
                           timeout=10).json()
    jsonschema.validate(active, ACTIVE_ALARMS,
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert active["schema"] == ACTIVE_ALARMS_SCHEMA
    assert [(a["condition"], a["alarm_id"]) for a in active["alarms"]] == [
        ("hr_high", raised["alarm_id"])]
    assert active["priorities"] == {"high": False, "medium": True, "low": False}
    latest = late.wait_for(lambda m: m.topic == hr["state_topic"] and m.retain,
                           timeout=10).json()
    validate("vitals", latest)
    assert latest["vital"] == "heart_rate" and latest["device"] == "wrist-1"

    # When it clears, the retained set empties: the next late subscriber sees no alarm.
    first.join(timeout=30)
    assert not first.is_alive()
    threading.Thread(target=writer.play, args=(after, 0), daemon=True).start()
    live.wait_for(lambda m: m.json()["event"] == "cleared", timeout=90)
    later = mqtt_subscriber(medium["state_topic"], broker=broker)
    cleared = later.wait_for(lambda m: m.retain, timeout=10).json()
    assert cleared["alarms"] == [] and not any(cleared["priorities"].values())


def _alarm(event: str, condition: str = "hr_high", priority: str = "medium",
           alarm_id: str = "a1") -> Message:
    payload = {"schema": ALARM_SCHEMA, "id": uuid.uuid4().hex, "alarm_id": alarm_id.ljust(32, "0"),
               "node": "n", "device": "d", "time": "2026-11-30T01:00:00.000Z",
               "device_time_s": 10.0, "onset_device_time_s": 8.0, "condition": condition,
               "event": event, "priority": priority, "kind": "physiological", "value": 130.0,
               "limit": 120.0, "unit": "bpm", "message": "Heart rate high",
               "operator": "nurse" if event in ("acknowledged", "silenced") else None}
    validate("alarm", payload)
    return Message("wearable/n/d/alarms", payload, qos=1, durable=True)


def test_the_active_set_follows_an_alarm_through_its_life():
    state = PresentState(Topics("wearable", "n"), ["d"])
    (empty,) = state.snapshot()
    assert empty.retain and empty.payload["alarms"] == []
    steps = {}
    for event in ("raised", "acknowledged", "reminder"):
        (msg,) = state.observe(_alarm(event))
        jsonschema.validate(msg.payload, ACTIVE_ALARMS,
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        steps[event] = [(a["condition"], a["state"]) for a in msg.payload["alarms"]]
    assert steps == {"raised": [("hr_high", "raised")],
                     "acknowledged": [("hr_high", "acknowledged")],
                     # a reminder does not undo the acknowledgement
                     "reminder": [("hr_high", "acknowledged")]}
    (both,) = state.observe(_alarm("raised", "no_data", "high", "a2"))
    assert [a["condition"] for a in both.payload["alarms"]] == ["no_data", "hr_high"]
    assert both.payload["priorities"] == {"high": True, "medium": True, "low": False}
    (after,) = state.observe(_alarm("cleared"))
    assert [a["condition"] for a in after.payload["alarms"]] == ["no_data"]
    assert set(SCHEMAS) >= {"vitals", "alarm"}


def test_the_shipped_acl_lets_the_runtime_write_discovery(mosquitto_path, tmp_path,
                                                          mqtt_subscriber, mqtt_publish):
    """deploy/mosquitto.acl as shipped, plus the line docs/mqtt.md tells Home Assistant's
    login to add: the runtime's user may publish discovery configs, HA may read them."""
    from deploy.broker import PrivateBroker, write_password_file

    acl = tmp_path / "acl"
    acl.write_text((ROOT / "deploy" / "mosquitto.acl").read_text()
                   + "\nuser ha\ntopic read wearable/#\ntopic read homeassistant/#\n")
    passwd = write_password_file(tmp_path / "passwd", {"wearable-edge": "edge-pass",
                                                       "ha": "ha-pass"})
    with PrivateBroker(password_file=passwd, acl_file=acl) as private:
        ha = mqtt_subscriber("homeassistant/#", broker=private, username="ha",
                             password="ha-pass")
        mqtt_publish("homeassistant/sensor/wearable_n/x/config", b'{"state_topic": "t"}',
                     broker=private, retain=True, username="wearable-edge",
                     password="edge-pass")
        assert ha.wait_for("homeassistant/sensor/wearable_n/x/config").payload == (
            b'{"state_topic": "t"}')
