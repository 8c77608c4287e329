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

from edge.bundle import Manifest
from edge.config import Config
from edge.infer import Model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from edge.signal import check_sensor_rate
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

    A model the recording cannot feed (a channel it lacks, a rate too slow for it) is skipped
    with a note, as `run` does; the others run. RecordingError (one line: the file, the
    problem, the fix) if the file cannot be read, is malformed, or can feed no model at all."""
    topics = Topics(config.mqtt.topic_prefix, config.node)
    summary = ReplaySummary(kind=rec.recording_kind(recording))
    start = time.perf_counter()  # reading and parsing a CSV or WFDB file counts
    if summary.kind == "wire":
        chunks = _file_chunks(recording)
    else:
        signals = rec.load_csv(recording) if summary.kind == "csv" else rec.load_wfdb(recording)
        summary.notes = list(signals.notes)
        notes, models = _check_channels(signals, models, recording, summary.kind)
        summary.notes += notes
        chunks = _joined(data for _, data in rec.stream(signals))
    # Not strict: a model a frame cannot feed does without it (a note below), as in `run`.
    pipeline = DevicePipeline(device, models, config.alarms, topics, quiet=True,
                              cuff_calibration=config.bp_cuff_calibration)
    for chunk in chunks:
        for message in pipeline.feed(chunk):
            kind = message.topic.rsplit("/", 1)[-1]
            summary.messages[kind] = summary.messages.get(kind, 0) + 1
            if out is not None:
                out.write(json.dumps({"topic": message.topic, "qos": message.qos,
                                      "payload": message.payload}) + "\n")
    summary.wall_seconds = time.perf_counter() - start
    summary.device_seconds = pipeline.last_device_time_s
    summary.frames = pipeline.decoder.stats.as_dict()
    summary.notes += list(pipeline.cuff_events)
    if pipeline.faults:  # each one skipped its frame or window and raised runtime_error
        summary.notes.append(f"{pipeline.faults} runtime fault(s) caught and skipped, "
                             "replay went on (runtime_error alarm; see the log above)")
    if summary.frames["frames_ok"] == 0:
        raise rec.RecordingError(
            f"recording {recording} holds no valid wire-protocol frames and is not a CSV file "
            "(a header naming time_s) or a WFDB record (.hea); is it a wearable-sim recording "
            "(wearable-sim run --out FILE)?")
    # In the order of the models (the first one named is the one the user asked for first).
    order = [f"model {m.manifest.name}@{m.manifest.version} " for m in models]
    problems = sorted(pipeline.problems, key=lambda p: (
        next((i for i, label in enumerate(order) if label in p), len(order)), p))
    if problems and not summary.messages.get("vitals"):  # e.g. a PPG too slow for any model
        raise rec.RecordingError(f"{recording}: {problems[0]}")
    summary.notes += [f"{problem}; that model got none of those frames" for problem in problems]
    return summary


def _file_chunks(recording: Path) -> Iterator[bytes]:
    try:
        stream = recording.open("rb")
    except OSError as err:
        raise rec.RecordingError(f"recording {recording} cannot be read: {err.strerror}; "
                                 "check the path") from None
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
                    kind: str) -> tuple[list[str], list[Model]]:
    """Notes on what the recording cannot feed, and the models it can. A model that lacks a
    channel, or gets one at a rate it cannot take, is skipped; without the optional
    accelerometer a model runs on the rest. RecordingError, naming the channel, the model and
    the fix, if no model can run at all (and there are no CGM readings, which give glucose
    estimates without a model)."""
    have = signals.wire_channels
    notes, refused, usable = [], [], []
    for model in models:
        m = model.manifest
        label = f"{m.name}@{m.version}"
        lacks = [Channel[c] for c in m.channels if Channel[c] not in have]
        reason = next((r for r in (_rate_problem(signals, m, Channel[c]) for c in m.channels
                                   if Channel[c] in have) if r), None)
        if any(c not in OPTIONAL_CHANNELS for c in lacks):
            needed = next(c for c in lacks if c not in OPTIONAL_CHANNELS)
            if kind == "csv":
                fix = f"add the column(s) {rec.CSV_COLUMNS[needed]}"
            else:
                fix = f"use a record with a {_WFDB_SIGNALS.get(needed, needed.name)} signal"
            present = ", ".join(c.name for c in have)
            refused.append(f"recording {recording} has no {needed.name} channel, which model "
                           f"{label} needs (the recording has {present}); {fix}")
            notes.append(f"no {needed.name} in the recording: model {label} gives nothing")
        elif reason:
            refused.append(f"{recording}: {reason}")
            notes.append(f"{reason}; model {label} skipped")
        else:
            if lacks:
                notes.append(f"no {'/'.join(c.name for c in lacks)} in the recording: model "
                             f"{label} runs without it (motion unknown)")
            usable.append(model)
    if not any(m.manifest.task != "glucose_forecast" for m in usable) and refused \
            and Channel.CGM not in have:
        raise rec.RecordingError(refused[0])
    return notes, usable


def _rate_problem(signals: rec.Signals, m: Manifest, channel: Channel) -> str | None:
    """Why `channel` of the recording cannot feed the model (its rate), or None."""
    rate = {Channel.PPG: signals.ppg_rate, Channel.ACCEL: signals.acc_rate,
            Channel.ECG: signals.ecg_rate}.get(channel)
    if rate is None:  # CGM, cuff: readings, not a waveform
        return None
    try:
        check_sensor_rate(rate, m.sample_rate_hz, tuple(m.bandpass_hz), m.min_sensor_rate_hz)
    except ValueError as err:
        return (f"{channel.name} at {rate:g} Hz cannot feed model {m.name}@{m.version} "
                f"({m.sample_rate_hz:g} Hz): {err}")
    return None
