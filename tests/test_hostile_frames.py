"""Hostile but valid frames (#12): every field of a frame at its limits, with a correct CRC,
through the whole DevicePipeline (decode -> estimate -> alarm -> message) with every shipped
model. Nothing escapes (in `run`); memory stays bounded; the device still monitors a clean
stream that follows; every message is JSON a consumer can parse."""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_sim import Scenario, frames, simulate
from edge.config import AlarmsConfig
from edge.errors import StreamError
from edge.infer import load_model
from edge.messages import Topics
from edge.pipeline import DevicePipeline
from wire import Channel, Flag, Frame, encode_frame
from wire.protocol import MAX_PAYLOAD

MODELS = Path(__file__).resolve().parents[1] / "models"
F32_MAX = float(np.finfo(np.float32).max)
TIMESTAMPS = st.one_of(st.sampled_from([0, 1, 2**32, 2**53, 2**63 - 1, 2**63, 2**64 - 1]),
                       st.integers(0, 2**64 - 1))
RATES = st.one_of(
    st.sampled_from([1e-38, 1e-6, 0.0033, 1.0, 31.999, 32.0, 50.0, 64.0, 64.0001, 250.0,
                     1e4, 1e6, 1e30, F32_MAX]),
    st.floats(0.0009765625, 1e5, width=32))
SCALES = st.sampled_from([1.0, 0.0, -1.0, 1e-30, 1e30, F32_MAX, math.inf, -math.inf,
                          math.nan])


@st.composite
def hostile_frame(draw: st.DrawFn, base: Frame) -> Frame:
    """`base` with some of its header fields, and its samples, pushed to their limits."""
    dtype = draw(st.sampled_from([np.int16, np.int32, np.float32]))
    axes = draw(st.integers(1, 4))
    n = draw(st.one_of(st.just(0), st.just(MAX_PAYLOAD // (np.dtype(dtype).itemsize * axes)),
                       st.integers(0, 64)))
    fill = draw(st.sampled_from(["zeros", "max", "min", "random", "special"]))
    info = np.finfo(dtype) if dtype == np.float32 else np.iinfo(dtype)
    if fill == "random":
        samples = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(
            -1000, 1000, (n, axes)).astype(dtype)
    elif fill == "special" and dtype == np.float32:
        samples = np.resize(np.array([np.nan, np.inf, -np.inf, 0.0], dtype), (n, axes))
    else:
        value = {"zeros": 0, "max": info.max, "min": info.min}.get(fill, 0)
        samples = np.full((n, axes), value, dtype)
    return dataclasses.replace(
        base,
        seq=draw(st.one_of(st.just(base.seq), st.integers(0, 2**32 - 1))),
        timestamp_us=draw(st.one_of(st.just(base.timestamp_us), TIMESTAMPS)),
        channel=draw(st.one_of(st.just(base.channel), st.sampled_from(list(Channel)))),
        sample_rate_hz=draw(st.one_of(st.just(base.sample_rate_hz), RATES)),
        scale=draw(st.one_of(st.just(base.scale), SCALES)),
        flags=Flag(draw(st.integers(0, 7))),
        samples=samples,
    )


@pytest.fixture(scope="module")
def models():
    return [load_model(MODELS / f"{name}.json") for name in ("hr", "bp", "glucose")]


@pytest.fixture(scope="module")
def stream() -> list[Frame]:
    rec = simulate(Scenario.constant(75, 40), seed=11, channels=("ppg", "acc", "ecg", "cgm"))
    return [frame for _, frame in frames(rec)]


def _json_safe(messages) -> None:
    for message in messages:
        json.loads(json.dumps(message.payload, allow_nan=False))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_hostile_valid_frames_never_escape_and_monitoring_goes_on(data, models, stream):
    device = DevicePipeline("d", models, AlarmsConfig(), Topics("w", "n"))
    positions = data.draw(st.lists(st.integers(0, len(stream) - 1), min_size=1, max_size=8))
    hostile = {i: data.draw(hostile_frame(stream[i])) for i in positions}
    tracemalloc.start()
    try:
        for i, frame in enumerate(stream):
            _json_safe(device.feed(encode_frame(hostile.get(i, frame))))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, peak
    # The same wearable reboots and streams cleanly: it is monitored again.
    after = device.feed(b"".join(encode_frame(f) for f in stream))
    _json_safe(after)
    hr = [m.payload for m in after if m.topic.endswith("/vitals")
          and m.payload["vital"] == "heart_rate"]
    assert len(hr) >= 10


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_in_replay_a_hostile_frame_is_a_stream_error_or_nothing(data, models, stream):
    """Replay (strict) may refuse a stream a model cannot use, as a StreamError naming it;
    nothing else escapes."""
    device = DevicePipeline("d", models, AlarmsConfig(), Topics("w", "n"), strict=True)
    i = data.draw(st.integers(0, len(stream) - 1))
    bad = data.draw(hostile_frame(stream[i]))
    try:
        for frame in [*stream[:i], bad, *stream[i + 1 :]]:
            _json_safe(device.feed(encode_frame(frame)))
    except StreamError as err:
        assert "cannot feed model" in str(err) or "Hz" in str(err)
