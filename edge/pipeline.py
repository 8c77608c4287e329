"""One device's data path, bytes to messages: decode -> estimate -> alarm -> message.

`run` feeds it bytes from a serial port and `replay` bytes from a file: one code path, so a
replay produces exactly the messages the live runtime published for the same stream.
"""

from __future__ import annotations

import logging
import threading

from edge.alarm import AlarmEngine
from edge.commands import Command
from edge.config import AlarmsConfig
from edge.errors import StreamError
from edge.estimate import DeviceEstimator
from edge.infer import Model
from edge.messages import Message, Topics
from wire import Decoder

log = logging.getLogger(__name__)


class DevicePipeline:
    """`strict`: a frame that cannot feed a model raises StreamError (replay); otherwise it is
    dropped, counted in `rejected_frames` and logged once per distinct problem (run)."""

    def __init__(self, device: str, models: list[Model], alarms: AlarmsConfig,
                 topics: Topics, *, strict: bool = False) -> None:
        self.device, self.strict = device, strict
        self.rejected_frames = 0
        self.problems: set[str] = set()
        self.decoder = Decoder()
        self.estimator = DeviceEstimator(device, models)
        self.alarms = AlarmEngine(alarms)
        self.topics = topics
        self.last_device_time_s = 0.0
        self._lock = threading.Lock()  # feed() on the reader thread, reconfigure() on main

    def reconfigure(self, models: list[Model], alarms: AlarmsConfig) -> list[Message]:
        """New models and alarm limits, applied between two feeds (SIGHUP reload)."""
        with self._lock:
            self.estimator.replace_models(models)
            return [self.topics.message(e) for e in self.alarms.reconfigure(alarms)]

    def command(self, command: Command) -> list[Message]:
        """Apply an operator command to this device's alarms; CommandError if it cannot."""
        with self._lock:
            if command.command == "acknowledge":
                events = self.alarms.acknowledge(self.device, command.condition,
                                                 command.operator)
            else:
                events = self.alarms.silence(self.device, command.condition, command.operator,
                                             command.minutes * 60)
            return [self.topics.message(e) for e in events]

    def feed(self, data: bytes) -> list[Message]:
        with self._lock:
            return self._feed(data)

    def _feed(self, data: bytes) -> list[Message]:
        messages = []
        for frame in self.decoder.feed(data):
            try:
                estimates = self.estimator.add(frame)
            except StreamError as err:
                if self.strict:
                    raise
                self.rejected_frames += 1
                if str(err) not in self.problems:
                    self.problems.add(str(err))
                    log.error("device %s: %s; its frames are dropped", self.device, err)
                continue
            for estimate in estimates:
                self.last_device_time_s = estimate.device_time_s
                messages.append(self.topics.message(estimate))
                messages += [self.topics.message(e) for e in self.alarms.update(estimate)]
        return messages
