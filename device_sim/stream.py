"""A Recording as the byte stream a real wearable would send over its serial line.

Each channel is cut into blocks of about 1/frames_per_second seconds. A block is sent once its
last sample has been acquired, so frames of all channels come out merged in the order of that
device time. Per channel, seq starts at 0 and the first frame carries Flag.BOOT (the device
just started); timestamp_us is the device clock at the block's first sample.

Encoding on the wire:
- PPG: INT32 with scale PPG_SCALE (1.0): raw ADC counts, arbitrary units.
- ACCEL: INT16, 3 axes, scale ACC_SCALE = 1/4096 g: +-8 g full scale, like a MEMS part at
  its +-8 g range. A block that clips is flagged Flag.SATURATED.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import numpy as np

from device_sim.errors import SimulatorError
from device_sim.physiology import Recording
from wire.protocol import MAX_PAYLOAD, Channel, Flag, Frame, encode_frame

PPG_SCALE = 1.0
ACC_SCALE = 1.0 / 4096.0
FRAMES_PER_SECOND = 4.0


def _channel_frames(
    channel: Channel,
    values: np.ndarray,
    rate: float,
    dtype: np.dtype,
    scale: float,
    device_id: int,
    frames_per_second: float,
) -> Iterator[tuple[float, int, Frame]]:
    """(send time, channel, Frame) for one channel, in order."""
    values = values.reshape(len(values), -1)
    info = np.iinfo(dtype)
    raw = np.round(values / scale)
    clipped = (raw < info.min) | (raw > info.max)
    raw = np.clip(raw, info.min, info.max).astype(dtype)
    bytes_per_sample = dtype.itemsize * values.shape[1]
    block = max(1, min(round(rate / frames_per_second), MAX_PAYLOAD // bytes_per_sample))
    for seq, start in enumerate(range(0, len(raw), block)):
        stop = min(start + block, len(raw))
        flags = Flag.BOOT if seq == 0 else Flag.NONE
        if clipped[start:stop].any():
            flags |= Flag.SATURATED
        frame = Frame(
            device_id=device_id,
            seq=seq,
            timestamp_us=round(start / rate * 1e6),
            channel=channel,
            sample_rate_hz=rate,
            samples=raw[start:stop],
            scale=scale,
            flags=flags,
        )
        yield (stop - 1) / rate, int(channel), frame


def frames(
    recording: Recording,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
) -> Iterator[tuple[float, Frame]]:
    """(device_time_s, Frame) for every channel, merged in send order.

    Frames (rather than bytes) are the place to inject faults: drop, reorder, flag lead-off.
    """
    if not (isinstance(device_id, int) and 0 <= device_id <= 0xFFFF):
        raise SimulatorError(f"device id {device_id!r} must be an integer from 0 to 65535")
    if not (0 < frames_per_second <= 1000):
        raise SimulatorError(f"frames per second {frames_per_second!r} must be in (0, 1000]")
    channels = [
        _channel_frames(Channel.PPG, recording.ppg, recording.ppg_rate, np.dtype("<i4"),
                        PPG_SCALE, device_id, frames_per_second),
        _channel_frames(Channel.ACCEL, recording.acc, recording.acc_rate, np.dtype("<i2"),
                        ACC_SCALE, device_id, frames_per_second),
    ]
    # Ties in time go to the lower channel number, so the order never depends on anything else.
    for send_time, _, frame in heapq.merge(*channels, key=lambda item: item[:2]):
        yield send_time, frame


def stream(
    recording: Recording,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
) -> Iterator[tuple[float, bytes]]:
    """(device_time_s, frame_bytes) in send order: exactly what goes down the wire."""
    for send_time, frame in frames(recording, device_id, frames_per_second=frames_per_second):
        yield send_time, encode_frame(frame)
