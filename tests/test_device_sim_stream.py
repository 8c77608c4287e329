"""The simulated device's byte stream: deterministic, decodable, well sequenced and timed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from device_sim import SimulatorError, simulate, stream
from device_sim.stream import ACC_SCALE, frames
from wire.protocol import Channel, Decoder, Flag, SampleType


def digest(recording, device_id: int = 1) -> str:
    h = hashlib.sha256()
    for _, data in stream(recording, device_id):
        h.update(data)
    return h.hexdigest()


def test_same_seed_byte_identical_stream() -> None:
    assert digest(simulate("tachycardia", 1)) == digest(simulate("tachycardia", 1))
    assert digest(simulate("tachycardia", 1)) != digest(simulate("tachycardia", 2))


@pytest.mark.parametrize(("ppg_rate", "acc_rate"), [(64.0, 32.0), (117.0, 25.0), (25.0, 100.0)])
def test_stream_decodes_cleanly_in_order(ppg_rate: float, acc_rate: float) -> None:
    rec = simulate("tachycardia", 4, ppg_rate=ppg_rate, acc_rate=acc_rate)
    items = list(stream(rec, device_id=513))
    times = [t for t, _ in items]
    assert times == sorted(times)

    decoder = Decoder()
    blob = b"".join(data for _, data in items)
    got = []
    for i in range(0, len(blob), 1000):  # arbitrary chunking, as a serial line delivers it
        got += decoder.feed(blob[i:i + 1000])
    assert len(got) == len(items)
    stats = decoder.stats
    assert (stats.crc_errors, stats.malformed, stats.seq_gaps, stats.duplicates,
            stats.bytes_discarded, stats.device_resets) == (0, 0, 0, 0, 0, 0)

    for channel, rate, n in ((Channel.PPG, ppg_rate, len(rec.ppg)),
                             (Channel.ACCEL, acc_rate, len(rec.acc))):
        mine = [f for f in got if f.channel == channel]
        assert [f.seq for f in mine] == list(range(len(mine)))
        assert [bool(f.flags & Flag.BOOT) for f in mine] == [True] + [False] * (len(mine) - 1)
        assert {f.device_id for f in mine} == {513}
        assert all(f.sample_rate_hz == pytest.approx(rate) for f in mine)
        # ~4 frames per second; timestamps are the device time of each block's first sample.
        assert abs(len(mine) / rec.duration_s - 4) < 0.3
        first = np.cumsum([0] + [len(f.samples) for f in mine[:-1]])
        assert [f.timestamp_us for f in mine] == [round(i / rate * 1e6) for i in first]
        assert sum(len(f.samples) for f in mine) == n

    ppg = np.concatenate([f.values[:, 0] for f in got if f.channel == Channel.PPG])
    acc = np.concatenate([f.values for f in got if f.channel == Channel.ACCEL])
    assert {f.sample_type for f in got if f.channel == Channel.PPG} == {SampleType.INT32}
    assert {f.sample_type for f in got if f.channel == Channel.ACCEL} == {SampleType.INT16}
    assert np.abs(ppg - rec.ppg).max() <= 0.5  # integer ADC counts
    assert np.abs(acc - rec.acc).max() <= ACC_SCALE / 2 + 1e-12  # 1/4096 g steps


def test_frames_are_sent_when_their_last_sample_exists() -> None:
    rec = simulate("tachycardia", 0)
    for send_time, frame in frames(rec):
        last = frame.timestamp_us / 1e6 + (len(frame.samples) - 1) / frame.sample_rate_hz
        assert send_time == pytest.approx(last, abs=1e-6)


def test_clipped_accelerometer_blocks_are_flagged() -> None:
    rec = simulate("tachycardia", 0)
    rec.acc[10, 2] = 9.0  # beyond +-8 g
    flagged = [f for _, f in frames(rec) if f.flags & Flag.SATURATED]
    assert len(flagged) == 1 and flagged[0].channel == Channel.ACCEL
    assert flagged[0].samples.max() == 32767


def test_bad_device_id_is_rejected() -> None:
    with pytest.raises(SimulatorError, match="0 to 65535"):
        next(stream(simulate("tachycardia", 0), device_id=70000))
