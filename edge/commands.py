"""Operator commands over MQTT: acknowledge or silence an active alarm; calibrate the
cuffless blood pressure with a cuff reading.

A command is JSON on `<prefix>/<node>/<device>/cmd`; the answer goes to
`<prefix>/<node>/<device>/reply`. Every command names its operator and carries that operator's
token from `[commands.operators]`, compared in constant time: MQTT 3.1.1 does not tell a
subscriber who published, so the broker's ACL (deploy/mosquitto.acl) is the first gate and the
token the second. A refused command changes nothing and its reply says why (docs/alarms.md).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any

from edge.alarm import CONDITIONS
from edge.config import CommandsConfig
from edge.errors import CommandError

COMMANDS = ("acknowledge", "silence", "calibrate")
_FIELDS = {
    "acknowledge": {"id", "operator", "token", "command", "condition"},
    "silence": {"id", "operator", "token", "command", "condition", "minutes"},
    "calibrate": {"id", "operator", "token", "command", "systolic", "diastolic"},
}
# A cuff reading outside these is a typo or a failed measurement, not a calibration.
SYSTOLIC_RANGE, DIASTOLIC_RANGE, MIN_PULSE_PRESSURE = (60.0, 260.0), (30.0, 160.0), 10.0


@dataclass(frozen=True)
class Command:
    id: str
    operator: str
    command: str
    condition: str = ""
    minutes: float = 0.0
    systolic: float = 0.0  # calibrate: the cuff reading, mmHg
    diastolic: float = 0.0


def parse_command(payload: bytes, config: CommandsConfig) -> Command:
    """Validate and authorise one command message, or raise CommandError naming why."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise CommandError(f"invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object")
    command_id = data.get("id") if isinstance(data.get("id"), str) else None
    for key in ("id", "operator", "token", "command"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise CommandError(f"field '{key}' is required and must be a string", command_id)
    expected = config.operators.get(data["operator"])
    # Compare even for an unknown operator, so timing does not reveal which names exist.
    token_ok = hmac.compare_digest((expected or "").encode(), data["token"].encode())
    if expected is None or not token_ok:
        raise CommandError("not authorised: unknown operator or wrong token", command_id)
    name = data["command"]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; valid: {', '.join(COMMANDS)}",
                             command_id)
    unknown = sorted(set(data) - _FIELDS[name])
    if unknown:
        raise CommandError(f"unknown field {unknown[0]!r} for {name}; valid: "
                             f"{', '.join(sorted(_FIELDS[name]))}", command_id)
    if name == "calibrate":
        systolic = _number(data, "systolic", SYSTOLIC_RANGE, command_id)
        diastolic = _number(data, "diastolic", DIASTOLIC_RANGE, command_id)
        if systolic - diastolic < MIN_PULSE_PRESSURE:
            raise CommandError(f"systolic {systolic:g} must exceed diastolic {diastolic:g} by "
                               f"at least {MIN_PULSE_PRESSURE:g} mmHg", command_id)
        return Command(data["id"], data["operator"], name, systolic=systolic,
                       diastolic=diastolic)
    if data.get("condition") not in CONDITIONS:
        raise CommandError(f"field 'condition' must be one of {', '.join(CONDITIONS)}",
                             command_id)
    minutes = 0.0
    if name == "silence":
        minutes = data.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not (
                0 < minutes <= config.max_silence_min):
            raise CommandError(f"field 'minutes' must be a number in (0, "
                                 f"{config.max_silence_min:g}]", command_id)
    return Command(data["id"], data["operator"], name, data["condition"], float(minutes))


def _number(data: dict[str, Any], key: str, bounds: tuple[float, float],
            command_id: str | None) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            bounds[0] <= value <= bounds[1]):
        raise CommandError(f"field '{key}' must be a cuff reading in mmHg from {bounds[0]:g} "
                           f"to {bounds[1]:g}, not {value!r}", command_id)
    return float(value)


def reply_payload(node: str, device: str, command_id: str | None, ok: bool, reason: str,
                  time: str) -> dict[str, Any]:
    return {"schema": "wearable-edge/reply/1", "node": node, "device": device,
            "id": command_id, "ok": ok, "reason": reason, "time": time}
