"""One device's data path, bytes to messages: decode -> estimate -> alarm -> message.

`run` feeds it bytes from a serial port and `replay` bytes from a file: one code path, so a
replay produces exactly the messages the live runtime published for the same stream.
"""

from __future__ import annotations

from edge.alarm import AlarmEngine
from edge.config import AlarmsConfig
from edge.estimate import DeviceEstimator
from edge.infer import Model
from edge.messages import Message, Topics
from wire import Decoder


class DevicePipeline:
    def __init__(self, device: str, models: list[Model], alarms: AlarmsConfig,
                 topics: Topics) -> None:
        self.device = device
        self.decoder = Decoder()
        self.estimator = DeviceEstimator(device, models)
        self.alarms = AlarmEngine(alarms)
        self.topics = topics
        self.last_device_time_s = 0.0

    def feed(self, data: bytes) -> list[Message]:
        messages = []
        for frame in self.decoder.feed(data):
            for estimate in self.estimator.add(frame):
                self.last_device_time_s = estimate.device_time_s
                messages.append(self.topics.message(estimate))
                messages += [self.topics.message(e) for e in self.alarms.update(estimate)]
        return messages
