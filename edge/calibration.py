"""Per-device BP calibrations, kept in one JSON file across restarts.

A calibration holds offsets for one BP model (by sha256): after a model update the old
offsets are refused at load and the device reports "uncalibrated" until a new cuff reading.
The file is replaced atomically (write, fsync, rename), so a power cut leaves the old or the
new file, never half of one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from pathlib import Path

from edge.errors import ConfigError
from edge.estimate import Calibration
from edge.state import write_private

log = logging.getLogger(__name__)


class CalibrationStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # devices calibrate from the MQTT command thread
        self._calibrations: dict[str, Calibration] = {}
        if not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self._calibrations = {device: Calibration(**values)
                                  for device, values in data["devices"].items()}
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"calibration file {self.path} is unreadable ({err}); fix or "
                              "delete it and calibrate the devices again") from None

    def get(self, device: str, model_sha256: str) -> Calibration | None:
        cal = self._calibrations.get(device)
        if cal is not None and cal.model_sha256 != model_sha256:
            log.warning("device %s: its BP calibration was made with another model; blood "
                        "pressure is uncalibrated until a new cuff reading", device)
            return None
        return cal

    def put(self, device: str, calibration: Calibration) -> None:
        with self._lock:
            self._calibrations[device] = calibration
            data = {"devices": {d: dataclasses.asdict(c)
                                for d, c in sorted(self._calibrations.items())}}
            # Health data: 0600, replaced atomically (edge/state.py).
            write_private(self.path, json.dumps(data, indent=2))
