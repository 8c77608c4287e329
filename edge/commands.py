"""Operator commands over MQTT: acknowledge or silence an active alarm; calibrate the
cuffless blood pressure with a cuff reading.

A command is JSON on `<prefix>/<node>/<device>/cmd`; the answer goes to
`<prefix>/<node>/<device>/reply`. A command message is hostile until checked: its size and
nesting are bounded before it is decoded, and it must be SIGNED by its operator with the
secret from `[commands.operators]` (HMAC-SHA256 over the canonical string below, with a
timestamp accepted within `max_clock_skew_s`), so the secret never travels and a captured
command cannot be altered or re-targeted. Command ids are remembered (`CommandLog`), so a
replay within the window is answered `duplicate` and not applied twice. A refused command
changes nothing and its reply says why (docs/alarms.md).

The canonical string (UTF-8, lines joined by "\\n", no trailing newline):

    wearable-edge-command/1
    <id>
    <operator>
    <device>
    <command>
    <time>
    <field>=<value>        one line per other field, sorted by field name

Numbers are written as integers when integral (124, not 124.0), else as the shortest
decimal that reads back to the same double (Python repr, JavaScript String(x)).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.alarm import CONDITIONS
from edge.config import CommandsConfig
from edge.errors import CommandError
from edge.state import write_private

log = logging.getLogger(__name__)

COMMANDS = ("acknowledge", "silence", "calibrate")
CANONICAL_VERSION = "wearable-edge-command/1"
# Every command carries these; its other keys are its fields.
_ENVELOPE = ("id", "operator", "device", "command", "time", "signature")
_FIELDS = {
    "acknowledge": {"condition"},
    "silence": {"condition", "minutes"},
    "calibrate": {"systolic", "diastolic"},
}
# A real command is ~300 bytes of flat JSON: anything much larger or nested is refused
# before it is decoded (1000 '[' once exhausted the decoder's recursion).
MAX_COMMAND_BYTES = 4096
MAX_NESTING = 2
MAX_ID_CHARS = 128
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


def canonical_number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise TypeError(f"a command field must be a string or a finite number, not {value!r}")
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def canonical_string(command_id: str, operator: str, device: str, command: str,
                     timestamp: float, fields: Mapping[str, object]) -> str:
    """What an operator signs (module docstring, docs/alarms.md)."""
    lines = [CANONICAL_VERSION, command_id, operator, device, command,
             canonical_number(timestamp)]
    for key in sorted(fields):
        value = fields[key]
        text = value if isinstance(value, str) else canonical_number(value)
        lines.append(f"{key}={text}")
    return "\n".join(lines)


def sign(secret: str, canonical: str) -> str:
    return hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def signed_command(operator: str, secret: str, device: str, command: str,
                   fields: Mapping[str, object], *, now: float | None = None,
                   command_id: str | None = None) -> dict:
    """The JSON payload of a signed command, ready for json.dumps and `.../<device>/cmd`."""
    timestamp = round(time.time() if now is None else now, 3)
    command_id = command_id or uuid.uuid4().hex
    canonical = canonical_string(command_id, operator, device, command, timestamp, fields)
    return {"id": command_id, "operator": operator, "device": device, "command": command,
            "time": timestamp, **fields, "signature": sign(secret, canonical)}


def _nesting(payload: bytes) -> int:
    """The deepest [/{ nesting outside strings: checked before json.loads recurses."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                break
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def decode(payload: bytes) -> dict[str, Any]:
    """A command message as a flat JSON object, or CommandError (no id known yet)."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(f"command of {len(payload)} bytes refused: the limit is "
                           f"{MAX_COMMAND_BYTES} bytes")
    if _nesting(payload) > MAX_NESTING:
        raise CommandError("a command must be one flat JSON object (nested arrays or objects "
                           "refused)")
    try:
        data = json.loads(payload, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CommandError(f"invalid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CommandError("a command must be a JSON object")
    return data


def parse_command(payload: bytes, config: CommandsConfig, device: str,
                  now: float | None = None) -> Command:
    """Validate and authorise one command message sent to `device`, or raise CommandError
    naming why."""
    data = decode(payload)
    raw_id = data.get("id")
    command_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_ID_CHARS and (
        raw_id.isprintable()) else None
    if "token" in data:
        raise CommandError("the 'token' field is no longer accepted: sign the command with "
                           "HMAC-SHA256 instead (docs/alarms.md, 'Signed commands')", command_id)
    if command_id is None:
        raise CommandError(f"field 'id' is required: a printable string of 1-{MAX_ID_CHARS} "
                           "characters")
    for key in ("operator", "device", "command", "signature"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise CommandError(f"field '{key}' is required and must be a string", command_id)
    timestamp = data.get("time")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
        raise CommandError("field 'time' is required: the Unix time in seconds when the "
                           "command was signed", command_id)
    fields = {k: v for k, v in data.items() if k not in _ENVELOPE}
    for key, value in fields.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float) or (
                isinstance(value, str) and not value.isprintable()):
            raise CommandError(f"field {key!r} must be a number or a printable string",
                               command_id)
    secret = config.operators.get(data["operator"])
    canonical = canonical_string(command_id, data["operator"], data["device"], data["command"],
                                 timestamp, fields)
    # Compare even for an unknown operator, so timing does not reveal which names exist.
    expected = sign(secret or "unknown-operator", canonical)
    if not hmac.compare_digest(expected, data["signature"].lower()) or secret is None:
        raise CommandError("not authorised: unknown operator or bad signature", command_id)
    if data["device"] != device:
        raise CommandError(f"signed for device {data['device']!r}, sent to {device!r}",
                           command_id)
    now = time.time() if now is None else now
    skew = timestamp - now
    if abs(skew) > config.max_clock_skew_s:
        side = "ahead of" if skew > 0 else "behind"
        raise CommandError(f"expired: signed {abs(skew):.0f} s {side} this node's clock "
                           f"(limit ±{config.max_clock_skew_s:g} s); "
                           "send a fresh command, and check both clocks (NTP)", command_id)
    return _validate(data["command"], fields, command_id, data["operator"], config)


def _validate(name: str, fields: dict[str, Any], command_id: str, operator: str,
              config: CommandsConfig) -> Command:
    if name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; valid: {', '.join(COMMANDS)}",
                           command_id)
    unknown = sorted(set(fields) - _FIELDS[name])
    if unknown:
        raise CommandError(f"unknown field {unknown[0]!r} for {name}; valid: "
                           f"{', '.join(sorted(_FIELDS[name]))}", command_id)
    if name == "calibrate":
        systolic = _number(fields, "systolic", SYSTOLIC_RANGE, command_id)
        diastolic = _number(fields, "diastolic", DIASTOLIC_RANGE, command_id)
        if systolic - diastolic < MIN_PULSE_PRESSURE:
            raise CommandError(f"systolic {systolic:g} must exceed diastolic {diastolic:g} by "
                               f"at least {MIN_PULSE_PRESSURE:g} mmHg", command_id)
        return Command(command_id, operator, name, systolic=systolic, diastolic=diastolic)
    if fields.get("condition") not in CONDITIONS:
        raise CommandError(f"field 'condition' must be one of {', '.join(CONDITIONS)}",
                           command_id)
    minutes = 0.0
    if name == "silence":
        asked = fields.get("minutes")
        if not isinstance(asked, int | float) or not math.isfinite(asked) or not (
                0 < asked <= config.max_silence_min):
            raise CommandError(f"field 'minutes' must be a number in (0, "
                               f"{config.max_silence_min:g}]", command_id)
        minutes = float(asked)
    return Command(command_id, operator, name, fields["condition"], minutes)


def _number(data: dict[str, Any], key: str, bounds: tuple[float, float],
            command_id: str | None) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            bounds[0] <= value <= bounds[1]):
        raise CommandError(f"field '{key}' must be a cuff reading in mmHg from {bounds[0]:g} "
                           f"to {bounds[1]:g}, not {value!r}", command_id)
    return float(value)


class CommandLog:
    """The ids of authenticated commands, with whether they were applied: a replay is answered
    `duplicate`. Bounded (oldest forgotten first; a command older than the clock window is
    refused as expired anyway) and kept in a 0600 JSON file so a restart does not reopen the
    window."""

    def __init__(self, path: Path, capacity: int = 1000) -> None:
        self.path, self.capacity = path, capacity
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, bool] = OrderedDict()
        try:
            data = json.loads(path.read_text())
            self._seen.update((str(k), bool(v)) for k, v in data["ids"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as err:
            # Losing the memory only reopens replays inside the clock window: warn, go on.
            log.warning("command id file %s is unreadable (%s); starting a new one", path, err)

    def seen(self, command_id: str) -> bool | None:
        """None if new, else whether it was applied."""
        with self._lock:
            return self._seen.get(command_id)

    def remember(self, command_id: str, applied: bool) -> None:
        with self._lock:
            self._seen[command_id] = applied
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            text = json.dumps({"ids": list(self._seen.items())})
        try:
            write_private(self.path, text)
        except OSError as err:
            log.warning("cannot save command ids to %s: %s", self.path, err.strerror or err)


def reply_payload(node: str, device: str, command_id: str | None, ok: bool, reason: str,
                  time: str) -> dict[str, Any]:
    return {"schema": "wearable-edge/reply/1", "node": node, "device": device,
            "id": command_id, "ok": ok, "reason": reason, "time": time}
