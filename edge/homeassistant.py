"""Present state for late subscribers, and Home Assistant MQTT discovery.

Vitals and alarm events are a stream: a client that subscribes after them learns nothing
until the next one. So every device's present state is also kept retained on the broker
(docs/mqtt.md, "Present state"):

    <prefix>/<node>/<device>/latest/<vital>  the last vitals message of that vital (same payload)
    <prefix>/<node>/<device>/active_alarms   every alarm active now, and per priority whether any is

With `[homeassistant] enabled = true`, the runtime also publishes Home Assistant's MQTT
discovery configs (retained, under `discovery_prefix`), pointing at those topics: per device a
sensor for heart rate, systolic and diastolic BP and glucose, a binary sensor per alarm
priority, all unavailable while the node's status says it is not online.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.config import PRIORITIES, HomeAssistantConfig
from edge.messages import ALARM_SCHEMA, VITALS_SCHEMA, Message, Topics, utc_now

ACTIVE_ALARMS_SCHEMA = "wearable-edge/active-alarms/1"


def latest_topic(topics: Topics, device: str, vital: str) -> str:
    return f"{topics.prefix}/{topics.node}/{device}/latest/{vital}"


def active_alarms_topic(topics: Topics, device: str) -> str:
    return f"{topics.prefix}/{topics.node}/{device}/active_alarms"


class PresentState:
    """Turns the published stream into retained present-state messages (a Publisher
    observer: `observe` sees every message and returns the ones to publish too)."""

    def __init__(self, topics: Topics, devices: Iterable[str]) -> None:
        self.topics = topics
        self._lock = threading.Lock()  # every device's ingest thread publishes
        self._latest: dict[tuple[str, str], Message] = {}
        self._alarms: dict[str, dict[str, dict[str, Any]]] = {d: {} for d in devices}

    def observe(self, message: Message) -> list[Message]:
        schema = message.payload.get("schema")
        if schema == VITALS_SCHEMA:
            p = message.payload
            latest = Message(latest_topic(self.topics, p["device"], p["vital"]), p, qos=0,
                             retain=True)
            with self._lock:
                self._latest[(p["device"], p["vital"])] = latest
            return [latest]
        if schema == ALARM_SCHEMA:
            with self._lock:
                return [self._apply(message.payload)]
        return []

    def _apply(self, alarm: dict[str, Any]) -> Message:
        active = self._alarms.setdefault(alarm["device"], {})
        if alarm["event"] == "cleared":
            active.pop(alarm["condition"], None)
        else:
            previous = active.get(alarm["condition"], {})
            # A reminder does not undo an acknowledgement or a silence.
            state = previous.get("state", "raised") if alarm["event"] == "reminder" else (
                alarm["event"])
            active[alarm["condition"]] = {
                "condition": alarm["condition"], "alarm_id": alarm["alarm_id"],
                "priority": alarm["priority"], "kind": alarm["kind"], "state": state,
                "since": previous.get("since", alarm["time"]),
                "onset_device_time_s": alarm["onset_device_time_s"],
                "value": alarm["value"], "limit": alarm["limit"], "unit": alarm["unit"],
                "message": alarm["message"], "operator": alarm["operator"]}
        return self._alarm_message(alarm["device"])

    def _alarm_message(self, device: str) -> Message:
        active = self._alarms.get(device, {})
        order = {p: i for i, p in enumerate(PRIORITIES)}
        alarms = sorted(active.values(), key=lambda a: (order[a["priority"]], a["since"]))
        payload = {"schema": ACTIVE_ALARMS_SCHEMA, "node": self.topics.node, "device": device,
                   "time": utc_now(), "alarms": alarms,
                   "priorities": {p: any(a["priority"] == p for a in alarms)
                                  for p in PRIORITIES}}
        return Message(active_alarms_topic(self.topics, device), payload, qos=1, retain=True)

    def restore(self, device: str, records: list[dict[str, Any]]) -> Message:
        """Alarms carried on across a restart (edge.alarmstate records): in the present set
        from the start, not only from their next event. What the record does not keep (the
        limit, the original onset) is unknown: the restart time stands for `since`."""
        now = utc_now()
        with self._lock:
            active = self._alarms.setdefault(device, {})
            for rec in records:
                active[rec["condition"]] = {
                    "condition": rec["condition"], "alarm_id": rec["alarm_id"],
                    "priority": rec["priority"], "kind": rec["kind"],
                    "state": "acknowledged" if rec["acknowledged"] else "raised",
                    "since": now, "onset_device_time_s": 0.0, "value": rec["value"],
                    "limit": None, "unit": rec["unit"],
                    "message": f"{rec['condition']}: active before the runtime restarted, "
                               "carried on", "operator": None}
            return self._alarm_message(device)

    def snapshot(self) -> list[Message]:
        """Everything retained, e.g. after a (re)connect: it replaces what a previous run
        left on the broker (an alarm set from before a restart is no longer true)."""
        with self._lock:
            return [*self._latest.values(),
                    *(self._alarm_message(device) for device in self._alarms)]


@dataclass(frozen=True)
class _Sensor:
    vital: str
    name: str
    unit: str
    device_class: str | None
    icon: str


# Home Assistant has no heart-rate device class; BP is a pressure in mmHg; glucose has its own.
SENSORS = (
    _Sensor("heart_rate", "Heart rate", "bpm", None, "mdi:heart-pulse"),
    _Sensor("systolic_bp", "Systolic blood pressure", "mmHg", "pressure", "mdi:heart"),
    _Sensor("diastolic_bp", "Diastolic blood pressure", "mmHg", "pressure", "mdi:heart"),
    _Sensor("glucose", "Glucose", "mg/dL", "blood_glucose_concentration", "mdi:water"),
)


def _object_id(*parts: str) -> str:
    """Home Assistant wants [a-zA-Z0-9_-] in a discovery topic's ids."""
    return "_".join("".join(c if c.isalnum() or c in "_-" else "_" for c in p) for p in parts)


def discovery_messages(topics: Topics, devices: Iterable[str], config: HomeAssistantConfig,
                       version: str) -> list[Message]:
    """Retained discovery configs for every device: the sensors and alarm binary sensors."""
    node_id = _object_id("wearable", topics.node)
    availability = {
        "availability_topic": topics.status,
        "availability_template": "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online", "payload_not_available": "offline"}
    origin = {"name": "wearable-edge", "sw_version": version}
    messages = []
    for device in devices:
        dev = {"identifiers": [_object_id("wearable", topics.node, device)],
               "name": f"{device} ({topics.node})", "manufacturer": "wearable-edge",
               "model": "wearable health monitor", "sw_version": version}
        for sensor in SENSORS:
            state = latest_topic(topics, device, sensor.vital)
            unique = _object_id("wearable", topics.node, device, sensor.vital)
            payload: dict[str, Any] = {
                "name": sensor.name, "unique_id": unique,
                "state_topic": state,
                # Only a good estimate is a reading; any other quality shows as unknown
                # (the quality is an attribute), never as if it were good.
                "value_template": "{{ value_json.value if value_json.quality == 'good' "
                                  "else None }}",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ {'quality': value_json.quality, 'model': "
                                            "value_json.model, 'time': value_json.time} "
                                            "| tojson }}",
                "unit_of_measurement": sensor.unit, "state_class": "measurement",
                "icon": sensor.icon, "device": dev, "origin": origin, **availability}
            if sensor.device_class:
                payload["device_class"] = sensor.device_class
            messages.append(Message(
                f"{config.discovery_prefix}/sensor/{node_id}/{unique}/config", payload,
                qos=1, retain=True))
        for priority in PRIORITIES:
            unique = _object_id("wearable", topics.node, device, f"alarm_{priority}")
            state = active_alarms_topic(topics, device)
            messages.append(Message(
                f"{config.discovery_prefix}/binary_sensor/{node_id}/{unique}/config", {
                    "name": f"{priority.capitalize()}-priority alarm", "unique_id": unique,
                    "state_topic": state,
                    "value_template": f"{{{{ 'ON' if value_json.priorities.{priority} "
                                      "else 'OFF' }}",
                    "payload_on": "ON", "payload_off": "OFF",
                    "json_attributes_topic": state,
                    "json_attributes_template": "{{ {'alarms': value_json.alarms | "
                                                f"selectattr('priority', 'eq', '{priority}')"
                                                " | map(attribute='message') | list} | tojson }}",
                    "device_class": "problem", "device": dev, "origin": origin,
                    **availability}, qos=1, retain=True))
    return messages
