"""A Recording as the byte stream a real wearable would send over its serial line.

Each channel is cut into blocks of about 1/frames_per_second seconds. A block is sent once its
last sample has been acquired, so frames of all channels come out merged in the order of that
device time. Per channel, seq starts at 0 and the first frame carries Flag.BOOT (the device
just started); timestamp_us is the device clock at the block's first sample.

Encoding on the wire:
- PPG: INT32 with scale PPG_SCALE (1.0): raw ADC counts, arbitrary units.
- ACCEL: INT16, 3 axes, scale ACC_SCALE = 1/4096 g: +-8 g full scale, like a MEMS part at
  its +-8 g range. A block that clips is flagged Flag.SATURATED.
- ECG: INT16, scale 1/1000 mV (1 uV per count), default 250 Hz.
- CGM: INT16 mg/dL, one reading per frame every 5 minutes (rate 1/300 Hz).
- BP_CUFF: INT16 mmHg, 2 axes (systolic, diastolic), one reading per frame (rate 1/300 Hz).
A block with no skin/electrode contact is flagged Flag.LEAD_OFF.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from device_sim.errors import SimulatorError
from device_sim.faults import Fault, corrupt, in_windows, windows
from device_sim.glucose import CGM_PERIOD_S
from device_sim.physiology import CUFF_INTERVAL_S, Recording
from wire.protocol import MAX_PAYLOAD, Channel, Flag, Frame, encode_frame

PPG_SCALE = 1.0  # simulated PPG; a replayed recording may carry its own (Recording.ppg_scale)
ACC_SCALE = 1.0 / 4096.0
ECG_SCALE = 1.0 / 1000.0  # mV per count: 1 uV resolution, +-32 mV range
CGM_SCALE = 1.0  # mg/dL
CUFF_SCALE = 1.0  # mmHg
FRAMES_PER_SECOND = 4.0


@dataclass(frozen=True)
class _Clock:
    """The device's clock: restarts at 0 on every reboot and may drift.

    `epochs` are (start, end, ...) spans of true time during which the device runs; between
    a reboot and the end of its boot time nothing is acquired.
    """

    epochs: tuple[tuple[float, float], ...]
    drift: tuple[tuple[float, float, float], ...]  # (start, end, ppm)

    @classmethod
    def from_faults(cls, faults: tuple[Fault, ...]) -> _Clock:
        epochs, start = [], 0.0
        for fault in sorted((f for f in faults if f.kind == "reboot"), key=lambda f: f.start_s):
            if fault.start_s > start:
                epochs.append((start, fault.start_s))
            start = max(start, fault.end_s)
        epochs.append((start, float("inf")))
        drift = tuple((f.start_s, f.end_s, f.ppm) for f in faults if f.kind == "drift")
        return cls(tuple(epochs), drift)

    def _offset(self, t: float) -> float:
        """Seconds the drifting clock has gained by true time t."""
        return sum(ppm * 1e-6 * max(0.0, min(t, b) - a) for a, b, ppm in self.drift)

    def device_time(self, t: float, epoch_start: float) -> float:
        return t - epoch_start + self._offset(t) - self._offset(epoch_start)


def _channel_frames(
    channel: Channel,
    values: np.ndarray,
    rate: float,
    dtype: np.dtype,
    scale: float,
    device_id: int,
    frames_per_second: float,
    *,
    times: np.ndarray | None = None,
    lead_off: np.ndarray | None = None,
    clock: _Clock | None = None,
) -> Iterator[tuple[float, int, Frame]]:
    """(send time, channel, Frame) for one channel, in order.

    Regular channels are sampled at `rate` from t=0; sparse ones (CGM, cuff) pass the
    `times` of their readings, one frame per reading, and skip readings that are NaN (the
    sensor had none, so no frame and no seq). Each epoch of the device clock restarts seq
    at 0 with Flag.BOOT.
    """
    values = values.reshape(len(values), -1)
    info = np.iinfo(dtype)
    with np.errstate(invalid="ignore"):
        raw = np.round(values / scale)
    missing = np.isnan(raw).any(axis=1)
    clipped = (raw < info.min) | (raw > info.max)
    raw = np.clip(np.nan_to_num(raw), info.min, info.max).astype(dtype)
    sparse = times is not None
    if times is None:
        times = np.arange(len(raw)) / rate
    clock = clock or _Clock(((0.0, float("inf")),), ())
    bytes_per_sample = dtype.itemsize * values.shape[1]
    block = 1 if sparse else max(1, min(round(rate / frames_per_second),
                                        MAX_PAYLOAD // bytes_per_sample))
    for epoch_start, epoch_end in clock.epochs:
        first, last = np.searchsorted(times, [epoch_start, epoch_end])
        seq = 0
        for start in range(first, last, block):
            stop = min(start + block, last)
            if missing[start:stop].all():
                continue
            flags = Flag.BOOT if seq == 0 else Flag.NONE
            if clipped[start:stop].any():
                flags |= Flag.SATURATED
            if lead_off is not None and lead_off[start:stop].any():
                flags |= Flag.LEAD_OFF
            frame = Frame(
                device_id=device_id,
                seq=seq,
                timestamp_us=round(clock.device_time(float(times[start]), epoch_start) * 1e6),
                channel=channel,
                sample_rate_hz=rate,
                samples=raw[start:stop],
                scale=scale,
                flags=flags,
            )
            seq += 1
            yield float(times[stop - 1]), int(channel), frame


def frames(
    recording: Recording,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
) -> Iterator[tuple[float, Frame]]:
    """(device_time_s, Frame) for every channel the recording streams, merged in send order.

    The recording's frame-level faults act here: `reboot` (seq restarts with BOOT, the
    device clock restarts), `drift` (timestamps run fast or slow), and `drop` and
    `disconnect` (frames lost; seq still advances, as the device kept counting).
    `device_time_s` is the simulation's time, which pacing follows.
    """
    if not (isinstance(device_id, int) and 0 <= device_id <= 0xFFFF):
        raise SimulatorError(f"device id {device_id!r} must be an integer from 0 to 65535")
    if not (0 < frames_per_second <= 1000):
        raise SimulatorError(f"frames per second {frames_per_second!r} must be in (0, 1000]")
    rec = recording
    clock = _Clock.from_faults(rec.faults)
    common = {"device_id": device_id, "frames_per_second": frames_per_second, "clock": clock}
    channels = []
    if "ppg" in rec.channels:
        channels.append(_channel_frames(Channel.PPG, rec.ppg, rec.ppg_rate, np.dtype("<i4"),
                                        rec.ppg_scale, lead_off=rec.lead_off.get("ppg"),
                                        **common))
    if "acc" in rec.channels:
        channels.append(_channel_frames(Channel.ACCEL, rec.acc, rec.acc_rate, np.dtype("<i2"),
                                        ACC_SCALE, **common))
    if rec.ecg is not None and "ecg" in rec.channels:
        channels.append(_channel_frames(Channel.ECG, rec.ecg, rec.ecg_rate, np.dtype("<i2"),
                                        ECG_SCALE, lead_off=rec.lead_off.get("ecg"), **common))
    if rec.cgm is not None and "cgm" in rec.channels:
        times, readings = rec.cgm
        channels.append(_channel_frames(Channel.CGM, readings, 1.0 / CGM_PERIOD_S,
                                        np.dtype("<i2"), CGM_SCALE, times=times, **common))
    if rec.cuff is not None and "bp" in rec.channels:
        times, readings = rec.cuff
        channels.append(_channel_frames(Channel.BP_CUFF, readings, 1.0 / CUFF_INTERVAL_S,
                                        np.dtype("<i2"), CUFF_SCALE, times=times, **common))
    lost = windows(rec.faults, "drop") + windows(rec.faults, "disconnect")
    # Ties in time go to the lower channel number, so the order never depends on anything else.
    for send_time, _, frame in heapq.merge(*channels, key=lambda item: item[:2]):
        if not in_windows(send_time, lost):
            yield send_time, frame


def stream(
    recording: Recording,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
) -> Iterator[tuple[float, bytes]]:
    """(device_time_s, frame_bytes) in send order: exactly what goes down the wire, with
    one byte flipped in every frame sent during a `corrupt` fault."""
    damaged = windows(recording.faults, "corrupt")
    for i, (send_time, frame) in enumerate(
            frames(recording, device_id, frames_per_second=frames_per_second)):
        data = encode_frame(frame)
        yield send_time, corrupt(data, i) if in_windows(send_time, damaged) else data
