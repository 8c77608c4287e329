"""Active alarms kept across a restart (a crash, a power cut, an update).

Without this a restart forgets every active alarm: the nurse station keeps showing an alarm
that nothing will ever clear. The file holds, per device, the alarms active at the last
change; at start each is carried on (the data that comes clears it as usual) or cleared with
the reason (edge.alarm.AlarmEngine.restore). It is health data: 0600, replaced atomically.
A file that cannot be read is set aside with one error line and monitoring starts without
it: a monitor never stops monitoring for its own bookkeeping.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from pathlib import Path
from typing import Any

from edge.alarm import CONDITIONS
from edge.config import PRIORITIES
from edge.state import write_private

log = logging.getLogger(__name__)
FORMAT = "wearable-edge/active-alarms/1"


def _valid(rec: Any) -> bool:
    """A record as AlarmEngine.snapshot writes it (the file is outside input: checked)."""
    return (isinstance(rec, dict)
            and isinstance(rec.get("alarm_id"), str) and 0 < len(rec["alarm_id"]) <= 64
            and rec.get("condition") in CONDITIONS
            and rec.get("priority") in PRIORITIES
            and rec.get("kind") in ("physiological", "technical")
            and (rec.get("value") is None or (isinstance(rec["value"], int | float)
                                              and not isinstance(rec["value"], bool)
                                              and math.isfinite(rec["value"])))
            and isinstance(rec.get("unit"), str) and len(rec["unit"]) <= 32
            and isinstance(rec.get("acknowledged"), bool)
            and isinstance(rec.get("latched"), bool))


class AlarmStateStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # devices write from their reader threads
        self._devices: dict[str, list[dict[str, Any]]] = {}
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as err:
            log.error("active-alarm file %s cannot be read (%s); starting without it",
                      self.path, err.strerror)
            return
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or not isinstance(data.get("devices"), dict):
                raise ValueError(f"not a {FORMAT} file")
        except (ValueError, AttributeError) as err:
            aside = self.path.with_name(self.path.name + ".unreadable")
            os.replace(self.path, aside)
            log.error("active-alarm file %s is unreadable (%s); set aside as %s, starting "
                      "without it", self.path, err, aside)
            return
        for device, records in data["devices"].items():
            good = [r for r in records if _valid(r)] if isinstance(records, list) else []
            if not isinstance(records, list) or len(good) != len(records):
                log.error("active-alarm file %s: device %r has invalid records, ignored",
                          self.path, device)
            if good:
                self._devices[str(device)] = good

    def devices(self) -> list[str]:
        return sorted(self._devices)

    def get(self, device: str) -> list[dict[str, Any]]:
        return list(self._devices.get(device, []))

    def put(self, device: str, records: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._devices.get(device, []) == records:
                return
            if records:
                self._devices[device] = records
            else:
                self._devices.pop(device, None)
            text = json.dumps({"format": FORMAT, "devices": self._devices}, indent=1,
                              sort_keys=True)
            try:
                write_private(self.path, text)
            except OSError as err:  # a full disk must not stop the alarm that caused it
                log.error("active-alarm file %s cannot be written (%s); alarms go on, but a "
                          "restart now would forget them", self.path, err.strerror)
