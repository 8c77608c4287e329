"""Real recordings as a wearable's stream: a CSV file (docs/recording-csv.md) or a PhysioNet
WFDB record, turned into a `Recording` that `stream()` and the writers send like a simulated
one. The ground truth of a recording is unknown, so its truth holds only the time axis.

Reading and checking the files is `wire.recordings`, shared with `wearable-edge replay`; this
module only wraps what it reads as the simulator's `Recording`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from device_sim.physiology import Recording, Truth
from wire import recordings as shared
from wire.recordings import RecordingError

__all__ = ["RecordingError", "as_recording", "load_csv", "load_recording", "load_wfdb"]


def as_recording(signals: shared.Signals) -> Recording:
    """A recording's channels as a simulator `Recording` whose truth is unknown (NaN)."""
    n_sec = max(1, math.ceil(signals.duration_s))
    nan = np.full(n_sec, np.nan)
    truth = Truth(t=np.arange(n_sec, dtype=float), hr_bpm=nan, motion=nan.copy())
    return Recording(signals.ppg, signals.ppg_rate, signals.acc, signals.acc_rate, truth,
                     signals.ecg, signals.ecg_rate, signals.cgm, signals.cuff,
                     lead_off=dict(signals.lead_off), channels=signals.channels,
                     ppg_scale=signals.ppg_scale)


def load_csv(path: str | os.PathLike) -> Recording:
    """A CSV recording (`wire.recordings.load_csv`) as a `Recording`."""
    return as_recording(shared.load_csv(path))


def load_wfdb(path: str | os.PathLike) -> Recording:
    """A PhysioNet WFDB record (`wire.recordings.load_wfdb`) as a `Recording`."""
    return as_recording(shared.load_wfdb(path))


def load_recording(path: str | os.PathLike) -> Recording:
    """A CSV file or a WFDB record (`wire.recordings.load_recording`) as a `Recording`."""
    return as_recording(shared.load_recording(path))
