"""A Recording as the byte stream a real wearable would send over its serial line.

Cutting channels into frames is `wire.recordings` (shared with `wearable-edge replay`, which
turns CSV and WFDB recordings into the same bytes): each channel is cut into blocks of about
1/frames_per_second seconds, sent once the block's last sample has been acquired, so frames of
all channels come out merged in the order of that device time. Per channel, seq starts at 0
and the first frame carries Flag.BOOT (the device just started); timestamp_us is the device
clock at the block's first sample. The encoding of each channel (PPG int32, ACCEL int16 at
1/4096 g, ECG int16 at 1 uV, CGM and BP_CUFF one reading per frame) is described there.

This module adds what only a simulated device does: the frame-level faults (reboot, clock
drift, dropped frames, disconnects, corrupted bytes).
"""

from __future__ import annotations

from collections.abc import Iterator

from device_sim.errors import SimulatorError
from device_sim.faults import Fault, corrupt, in_windows, windows
from device_sim.glucose import CGM_PERIOD_S
from device_sim.physiology import CUFF_INTERVAL_S, Recording, Simulation
from wire import recordings as shared
from wire.protocol import Frame, encode_frame
from wire.recordings import (  # noqa: F401 - the encoding constants, re-exported
    ACC_SCALE,
    CGM_SCALE,
    CUFF_SCALE,
    ECG_SCALE,
    FRAMES_PER_SECOND,
    PPG_SCALE,
)


def _clock(faults: tuple[Fault, ...]) -> shared.DeviceClock:
    """The device clock the faults leave: a `reboot` ends one epoch and starts the next once
    the device has booted; `drift` makes it run fast or slow."""
    epochs, start = [], 0.0
    for fault in sorted((f for f in faults if f.kind == "reboot"), key=lambda f: f.start_s):
        if fault.start_s > start:
            epochs.append((start, fault.start_s))
        start = max(start, fault.end_s)
    epochs.append((start, float("inf")))
    drift = tuple((f.start_s, f.end_s, f.ppm) for f in faults if f.kind == "drift")
    return shared.DeviceClock(tuple(epochs), drift)


def frames(
    recording: Recording | Simulation,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
) -> Iterator[tuple[float, Frame]]:
    """(device_time_s, Frame) for every channel the recording streams, merged in send order.

    The recording's frame-level faults act here: `reboot` (seq restarts with BOOT, the
    device clock restarts), `drift` (timestamps run fast or slow), and `drop` and
    `disconnect` (frames lost; seq still advances, as the device kept counting).
    `device_time_s` is the simulation's time, which pacing follows. A `Simulation` is
    computed chunk by chunk as the frames go out, so a day is never in memory.
    """
    if not (isinstance(device_id, int) and 0 <= device_id <= 0xFFFF):
        raise SimulatorError(f"device id {device_id!r} must be an integer from 0 to 65535")
    if not (0 < frames_per_second <= 1000):
        raise SimulatorError(f"frames per second {frames_per_second!r} must be in (0, 1000]")
    pieces = recording.chunks() if isinstance(recording, Simulation) else None
    lost = windows(recording.faults, "drop") + windows(recording.faults, "disconnect")
    for send_time, frame in shared.frames(recording, device_id,
                                          frames_per_second=frames_per_second,
                                          clock=_clock(recording.faults),
                                          cgm_rate_hz=1.0 / CGM_PERIOD_S,
                                          cuff_rate_hz=1.0 / CUFF_INTERVAL_S,
                                          pieces=pieces):
        if not in_windows(send_time, lost):
            yield send_time, frame


def stream(
    recording: Recording | Simulation,
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
