"""Offline replay: a recording through the same pipeline as `run`, as fast as the CPU allows,
written as JSON Lines of the messages `run` would have published (docs/replay.md)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edge.config import Config
from edge.errors import WearableError
from edge.infer import Model
from edge.messages import Topics
from edge.pipeline import DevicePipeline

CHUNK = 1 << 16


@dataclass
class ReplaySummary:
    device_seconds: float = 0.0
    wall_seconds: float = 0.0
    messages: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)

    @property
    def speed(self) -> float:
        return self.device_seconds / self.wall_seconds if self.wall_seconds else 0.0


def replay(config: Config, models: list[Model], recording: Path, out: TextIO | None,
           device: str = "replay") -> ReplaySummary:
    topics = Topics(config.mqtt.topic_prefix, config.node)
    pipeline = DevicePipeline(device, models, config.alarms, topics, strict=True)
    summary = ReplaySummary()
    try:
        stream = recording.open("rb")
    except OSError as err:
        raise WearableError(f"recording {recording} cannot be read: {err.strerror}") from None
    start = time.perf_counter()
    with stream:
        while chunk := stream.read(CHUNK):  # StreamError propagates: the CLI names the problem
            for message in pipeline.feed(chunk):
                kind = message.topic.rsplit("/", 1)[-1]
                summary.messages[kind] = summary.messages.get(kind, 0) + 1
                if out is not None:
                    out.write(json.dumps({"topic": message.topic, "qos": message.qos,
                                          "payload": message.payload}) + "\n")
    summary.wall_seconds = time.perf_counter() - start
    summary.device_seconds = pipeline.last_device_time_s
    summary.frames = pipeline.decoder.stats.as_dict()
    if summary.frames["frames_ok"] == 0:
        raise WearableError(f"recording {recording} holds no valid wire-protocol frames; "
                            "is it a wearable-sim recording (wearable-sim run --out FILE)?")
    return summary
