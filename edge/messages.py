"""MQTT topics and JSON payloads (docs/mqtt.md; JSON Schemas in edge/schemas/).

`run` publishes these messages and `replay` writes the very same ones as JSON Lines, so both
go through `Topics.message`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.alarm import AlarmEvent
from edge.estimate import GOOD, Estimate
from edge.news2 import news2_score

VITALS_SCHEMA = "wearable-edge/vitals/1"
ALARM_SCHEMA = "wearable-edge/alarm/1"
STATUS_SCHEMA = "wearable-edge/status/1"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Message:
    topic: str
    payload: dict[str, Any]
    qos: int
    retain: bool = False
    durable: bool = False  # goes through the on-disk outbox: never lost


@dataclass(frozen=True)
class Topics:
    prefix: str
    node: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.node}/status"

    def vitals(self, device: str) -> str:
        return f"{self.prefix}/{self.node}/{device}/vitals"

    def alarms(self, device: str) -> str:
        return f"{self.prefix}/{self.node}/{device}/alarms"

    @property
    def commands(self) -> str:
        """Subscription filter for every device's command topic."""
        return f"{self.prefix}/{self.node}/+/cmd"

    def device_of_command(self, topic: str) -> str:
        return topic[len(f"{self.prefix}/{self.node}/") : -len("/cmd")]

    def reply(self, device: str) -> str:
        return f"{self.prefix}/{self.node}/{device}/reply"

    def message(self, event: Estimate | AlarmEvent) -> Message:
        if isinstance(event, AlarmEvent):
            return Message(self.alarms(event.device), alarm_payload(event, self.node), qos=1,
                           durable=True)
        return Message(self.vitals(event.device), vitals_payload(event, self.node), qos=0)


def vitals_payload(e: Estimate, node: str) -> dict[str, Any]:
    return {
        "schema": VITALS_SCHEMA,
        "node": node,
        "device": e.device,
        "time": utc_now(),
        "device_time_s": round(e.device_time_s, 3),
        "vital": e.vital,
        "value": round(e.value, 1),
        "unit": e.unit,
        "quality": e.quality,
        "motion_g": None if e.motion_g is None else round(e.motion_g, 4),
        "model": e.model,
        "details": dict(e.details),
        # Only a trustworthy estimate gets an early-warning score.
        "news2": news2_score(e.vital, e.value) if e.quality == GOOD else None,
    }


def alarm_payload(e: AlarmEvent, node: str) -> dict[str, Any]:
    return {
        "schema": ALARM_SCHEMA,
        "id": uuid.uuid4().hex,  # unique per message: subscribers de-duplicate QoS 1 by it
        "alarm_id": e.alarm_id,
        "node": node,
        "device": e.device,
        "time": utc_now(),
        "device_time_s": round(e.device_time_s, 3),
        "onset_device_time_s": round(e.onset_s, 3),
        "condition": e.condition,
        "event": e.event,
        "priority": e.priority,
        "kind": e.kind,
        "value": None if e.value is None else round(e.value, 1),
        "limit": e.limit,
        "unit": e.unit,
        "message": e.message,
        "operator": e.operator or None,
    }


def status_payload(node: str, state: str, **fields: Any) -> dict[str, Any]:
    return {"schema": STATUS_SCHEMA, "node": node, "state": state, "time": utc_now(),
            "unix_time": round(time.time(), 3), **fields}
