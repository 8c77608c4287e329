"""Wire protocol v1: round trips, the shipped hex vectors, and a decoder that survives damage."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from wire import Channel, Decoder, Flag, Frame, ProtocolError, SampleType, cobs
from wire.errors import CrcError

VECTORS = json.loads((Path(wire.__file__).parent / "vectors.json").read_text())
DTYPES = {SampleType.INT16: "<i2", SampleType.INT32: "<i4", SampleType.FLOAT32: "<f4"}


@st.composite
def frames(draw, device_id=None, channel=None):
    sample_type = draw(st.sampled_from(list(SampleType)))
    axes = draw(st.integers(1, 3))
    n = draw(st.integers(0, 40))
    dtype = np.dtype(DTYPES[sample_type])
    raw = draw(st.binary(min_size=n * axes * dtype.itemsize, max_size=n * axes * dtype.itemsize))
    samples = np.frombuffer(raw, dtype=dtype).reshape(n, axes)
    if sample_type is SampleType.FLOAT32:
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return Frame(
        device_id=draw(st.integers(0, 0xFFFF)) if device_id is None else device_id,
        seq=draw(st.integers(0, 2**32 - 1)),
        timestamp_us=draw(st.integers(0, 2**64 - 1)),
        channel=draw(st.sampled_from(list(Channel))) if channel is None else channel,
        sample_rate_hz=float(np.float32(draw(st.floats(0.001, 10000.0)))),
        samples=samples,
        scale=float(np.float32(draw(st.floats(-1e3, 1e3, allow_nan=False)))),
        flags=Flag(draw(st.integers(0, 7))),
    )


def assert_same(a: Frame, b: Frame) -> None:
    assert (a.device_id, a.seq, a.timestamp_us, a.channel, a.flags) == (
        b.device_id, b.seq, b.timestamp_us, b.channel, b.flags)
    assert a.sample_rate_hz == b.sample_rate_hz and a.scale == b.scale
    assert a.samples.dtype == b.samples.dtype
    np.testing.assert_array_equal(a.samples, b.samples)


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero_bytes(data):
    encoded = cobs.encode(data)
    assert b"\x00" not in encoded
    assert cobs.decode(encoded) == data


@settings(max_examples=300)
@given(frames())
def test_frame_round_trip(frame):
    encoded = wire.encode_frame(frame)
    assert encoded.endswith(b"\x00") and encoded.count(b"\x00") == 1
    assert_same(wire.decode_frame(encoded[:-1]), frame)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors(vector):
    f = vector["frame"]
    samples = np.array(f["samples"], dtype=DTYPES[SampleType[f["sample_type"]]])
    frame = Frame(f["device_id"], f["seq"], f["timestamp_us"], Channel[f["channel"]],
                  f["sample_rate_hz"], samples, f["scale"], Flag(f["flags"]))
    assert wire.encode_frame(frame).hex() == vector["wire_hex"]
    decoded = wire.decode_frame(bytes.fromhex(vector["wire_hex"])[:-1])
    assert decoded.samples.tolist() == f["samples"]
    assert decoded.seq == f["seq"] and decoded.channel.name == f["channel"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors(vector):
    encoded = bytes.fromhex(vector["wire_hex"])
    expected = CrcError if vector["error"] == "crc" else ProtocolError
    with pytest.raises(expected):
        wire.decode_frame(encoded[:-1])
    decoder = Decoder()
    assert decoder.feed(encoded) == []
    counter = "crc_errors" if vector["error"] == "crc" else "malformed"
    assert getattr(decoder.stats, counter) == 1


def sequence(n, seed):
    rng = np.random.default_rng(seed)
    return [Frame(7, i, i * 250_000, Channel.PPG, 64.0,
                  rng.integers(-2**31, 2**31, (16, 1)).astype("<i4")) for i in range(n)]


@given(st.lists(st.binary(max_size=64), max_size=8), st.integers(0, 10**6))
def test_random_garbage_never_raises(chunks, seed):
    decoder = Decoder()
    for chunk in chunks:
        decoder.feed(chunk)
    good = sequence(3, seed)
    decoded = decoder.feed(b"\x00" + b"".join(wire.encode_frame(f) for f in good))
    assert [f.seq for f in decoded] == [0, 1, 2]


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1))
def test_damage_loses_only_the_damaged_frames(seed):
    """Truncate, bit-flip or prefix garbage to some frames of a stream fed in random chunks:
    every intact frame is recovered and the counters account for the damage."""
    rng = np.random.default_rng(seed)
    n = 30
    original = sequence(n, seed)
    damaged = set(rng.choice(n, size=rng.integers(0, 9), replace=False).tolist())
    stream = bytearray()
    for i, frame in enumerate(original):
        encoded = bytearray(wire.encode_frame(frame))
        if i in damaged:
            kind = rng.choice(["truncate", "flip", "garbage"])
            if kind == "truncate":  # cable pulled mid-frame: the delimiter is lost too
                encoded = encoded[: rng.integers(1, len(encoded) - 1)]
            elif kind == "flip":
                encoded[rng.integers(0, len(encoded) - 1)] ^= 1 << int(rng.integers(0, 8))
            else:  # noise on the line before the frame; this frame itself stays intact
                encoded = bytearray(rng.bytes(int(rng.integers(1, 30)))) + encoded
                damaged.discard(i)
        stream += encoded
    decoder = Decoder()
    got = []
    pos = 0
    while pos < len(stream):
        step = int(rng.integers(1, 200))
        got += decoder.feed(bytes(stream[pos : pos + step]))
        pos += step
    got += decoder.feed(b"\x00")  # end of stream
    intact = [i for i in range(n) if i not in damaged]
    # Every intact frame is recovered, in order; a damaged one never sneaks in (CRC).
    assert [f.seq for f in got] == intact
    assert decoder.stats.frames_ok == len(intact)
    # Loss shows up as sequence gaps between intact frames.
    if intact:
        assert decoder.stats.frames_lost == sum(intact[0] < i < intact[-1] for i in damaged)
    if damaged:
        assert decoder.stats.bytes_discarded > 0 and (
            decoder.stats.crc_errors + decoder.stats.malformed > 0)


def test_decoder_counts_gaps_duplicates_and_resets():
    f = sequence(6, 0)
    decoder = Decoder()
    stream = [f[0], f[1], f[1], f[4], f[5]]  # duplicate of 1, frames 2 and 3 lost
    got = decoder.feed(b"".join(wire.encode_frame(x) for x in stream))
    assert [x.seq for x in got] == [0, 1, 4, 5]
    s = decoder.stats
    assert (s.duplicates, s.seq_gaps, s.frames_lost) == (1, 1, 2)
    reboot = Frame(7, 0, 0, Channel.PPG, 64.0, np.zeros((16, 1), "<i4"), flags=Flag.BOOT)
    assert len(decoder.feed(wire.encode_frame(reboot))) == 1
    assert decoder.stats.device_resets == 1


def test_no_delimiter_bounds_memory():
    decoder = Decoder()
    decoder.feed(b"\x01" * 100_000)
    assert len(decoder._pending) < 10_000 and decoder.stats.bytes_discarded >= 90_000
    assert [x.seq for x in decoder.feed(b"\x00" + wire.encode_frame(sequence(1, 0)[0]))] == [0]
