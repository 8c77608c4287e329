"""Offline replay: a recording through the same pipeline as `run`, as fast as the CPU allows,
written as JSON Lines of the messages `run` would have published (docs/replay.md).

A recording is wire-protocol bytes (`wearable-sim run --out`, a serial capture), a CSV file
or a PhysioNet WFDB record. CSV and WFDB are turned by `wire.recordings` into exactly the
bytes a wearable would send, and those bytes go through `DevicePipeline.feed` like a file's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edge.config import Config
from edge.errors import StreamError, WearableError
from edge.infer import Model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Channel
from wire import recordings as rec

CHUNK = 1 << 16
# A model needs every channel of its manifest, except the accelerometer: without one,
# edge.estimate.ModelRunner estimates from the rest (motion unknown), as for a live device
# that has none.
OPTIONAL_CHANNELS = frozenset({Channel.ACCEL})
_WFDB_SIGNALS = {Channel.PPG: "PLETH, PPG or BVP", Channel.ECG: "an ECG lead (II, MLII, ...)"}


@dataclass
class ReplaySummary:
    kind: str = "wire"  # "wire", "csv" or "wfdb"
    device_seconds: float = 0.0
    wall_seconds: float = 0.0
    messages: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a model ran without an optional input

    @property
    def speed(self) -> float:
        return self.device_seconds / self.wall_seconds if self.wall_seconds else 0.0


def replay(config: Config, models: list[Model], recording: Path, out: TextIO | None,
           device: str = "replay") -> ReplaySummary:
    """Replay `recording` (wire bytes, CSV or WFDB: `wire.recordings.recording_kind`).

    WearableError (one line: the file, the problem, the fix) if the file cannot be read, is
    malformed, lacks a channel a model needs, or has a rate a model cannot use."""
    topics = Topics(config.mqtt.topic_prefix, config.node)
    pipeline = DevicePipeline(device, models, config.alarms, topics, strict=True,
                              cuff_calibration=config.bp_cuff_calibration)
    summary = ReplaySummary(kind=rec.recording_kind(recording))
    start = time.perf_counter()  # reading and parsing a CSV or WFDB file counts
    if summary.kind == "wire":
        chunks = _file_chunks(recording)
    else:
        signals = rec.load_csv(recording) if summary.kind == "csv" else rec.load_wfdb(recording)
        summary.notes = _check_channels(signals, models, recording, summary.kind)
        chunks = _joined(data for _, data in rec.stream(signals))
    try:
        for chunk in chunks:
            for message in pipeline.feed(chunk):
                kind = message.topic.rsplit("/", 1)[-1]
                summary.messages[kind] = summary.messages.get(kind, 0) + 1
                if out is not None:
                    out.write(json.dumps({"topic": message.topic, "qos": message.qos,
                                          "payload": message.payload}) + "\n")
    except StreamError as err:  # e.g. a rate the model cannot use: name the recording too
        raise StreamError(f"{recording}: {err}") from None
    summary.wall_seconds = time.perf_counter() - start
    summary.device_seconds = pipeline.last_device_time_s
    summary.frames = pipeline.decoder.stats.as_dict()
    summary.notes += list(pipeline.cuff_events)
    if summary.frames["frames_ok"] == 0:
        raise WearableError(f"recording {recording} holds no valid wire-protocol frames and is "
                            "not a CSV file (a header naming time_s) or a WFDB record (.hea); "
                            "is it a wearable-sim recording (wearable-sim run --out FILE)?")
    return summary


def _file_chunks(recording: Path) -> Iterator[bytes]:
    try:
        stream = recording.open("rb")
    except OSError as err:
        raise WearableError(f"recording {recording} cannot be read: {err.strerror}; check the "
                            "path") from None
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def _joined(frames: Iterable[bytes]) -> Iterator[bytes]:
    """Encoded frames in chunks of about CHUNK bytes, as a file read delivers them."""
    parts: list[bytes] = []
    size = 0
    for data in frames:
        parts.append(data)
        size += len(data)
        if size >= CHUNK:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


def _check_channels(signals: rec.Signals, models: list[Model], recording: Path,
                    kind: str) -> list[str]:
    """Notes on what the recording cannot feed; WearableError, naming the channel and the
    model, if it can feed nothing at all (no model has its channels, and no CGM readings,
    which give glucose estimates without a model)."""
    have = signals.wire_channels
    notes, missing = [], []
    for model in models:
        m = model.manifest
        label = f"{m.name}@{m.version}"
        lacks = [Channel[c] for c in m.channels if Channel[c] not in have]
        if lacks and all(c in OPTIONAL_CHANNELS for c in lacks):
            notes.append(f"no {'/'.join(c.name for c in lacks)} in the recording: model "
                         f"{label} runs without it (motion unknown)")
        elif lacks:
            needed = next(c for c in lacks if c not in OPTIONAL_CHANNELS)
            missing.append((needed, label))
            notes.append(f"no {needed.name} in the recording: model {label} gives nothing")
    if missing and len(missing) == len(models) and Channel.CGM not in have:
        channel, label = missing[0]
        if kind == "csv":
            fix = f"add the column(s) {rec.CSV_COLUMNS[channel]}"
        else:
            fix = f"use a record with a {_WFDB_SIGNALS.get(channel, channel.name)} signal"
        present = ", ".join(c.name for c in have)
        raise WearableError(f"recording {recording} has no {channel.name} channel, which "
                            f"model {label} needs (the recording has {present}); {fix}")
    return notes
