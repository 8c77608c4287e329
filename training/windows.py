"""Recording -> model inputs, through the runtime's own classes (one code path, no skew).

Each channel runs through `edge.signal.Conditioner` (band-pass at the sensor rate, resample
to the model rate) over the whole recording, then `edge.signal.SlidingWindow`, then the
feature function the manifest names. The runtime runs the same three steps block by block;
`Conditioner` and `SlidingWindow` carry state, so the result is identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.bundle import Preprocessing
from edge.features import get_feature, motion_rms_g
from edge.signal import Conditioner, SlidingWindow


@dataclass(frozen=True)
class RecordingWindows:
    """The windows of one recording: model inputs plus what each window saw."""

    features: np.ndarray  # (n, *input shape) float32
    end_s: np.ndarray  # (n,) time of each window's last sample, s from the recording start
    motion_g: np.ndarray  # (n,) RMS of the conditioned acceleration (0 without accelerometer)


def _condition(pre: Preprocessing, x: np.ndarray, rate: float) -> list[np.ndarray]:
    conditioner = Conditioner(rate, pre.sample_rate_hz, pre.bandpass_hz, pre.filter_order,
                              pre.min_sensor_rate_hz)
    window = SlidingWindow(pre.window_samples, pre.hop_samples)
    return window.push(conditioner.process(x))


def extract_windows(pre: Preprocessing, ppg: np.ndarray, ppg_rate: float,
                    acc: np.ndarray | None, acc_rate: float | None) -> RecordingWindows:
    """Condition, window and featurise one recording (acc=None: no accelerometer)."""
    feature = get_feature(pre.features)
    ppg_windows = _condition(pre, ppg, ppg_rate)
    if acc is None or acc_rate is None:
        acc_windows: list[np.ndarray | None] = [None] * len(ppg_windows)
    else:
        acc_windows = list(_condition(pre, acc, acc_rate))
    n = min(len(ppg_windows), len(acc_windows))  # the shorter stream bounds the windows
    if n == 0:  # recording shorter than one window
        features = np.zeros((0, *get_input_shape(pre)), np.float32)
    else:
        features = np.stack([feature(ppg_windows[i], acc_windows[i], fs=pre.sample_rate_hz,
                                     **pre.feature_params) for i in range(n)])
    return RecordingWindows(
        features=features,
        end_s=(pre.window_samples + pre.hop_samples * np.arange(n)) / pre.sample_rate_hz,
        motion_g=np.array([0.0 if a is None else motion_rms_g(a) for a in acc_windows[:n]]),
    )


def get_input_shape(pre: Preprocessing) -> tuple[int, ...]:
    """Model input shape without the batch axis, found by featurising one silent window."""
    feature = get_feature(pre.features)
    silent = np.zeros(pre.window_samples)
    acc = np.zeros((pre.window_samples, 3)) if "ACCEL" in pre.channels else None
    return feature(silent, acc, fs=pre.sample_rate_hz, **pre.feature_params).shape


def condition_channels(pre: Preprocessing,
                       signals: list[tuple[np.ndarray, float]]) -> list[list[np.ndarray]]:
    """Windows of every channel, in `pre.channels` order: `signals` holds one (samples, sensor
    rate) per channel. A 1-D channel is conditioned as (n, 1), so its windows are (W, 1), the
    shape the runtime hands to a multi-channel feature function. All channels start at sample
    0 of one clock, so window k of every channel covers the same span."""
    if len(signals) != len(pre.channels):
        raise ValueError(f"{len(signals)} signals for the channels {pre.channels}")
    out = []
    for (x, rate) in signals:
        x = np.asarray(x, dtype=np.float64)
        out.append(_condition(pre, x[:, None] if x.ndim == 1 else x, rate))
    return out


def extract_channel_windows(pre: Preprocessing,
                            signals: list[tuple[np.ndarray, float]]) -> RecordingWindows:
    """Condition, window and featurise a recording of `pre.channels` (each channel required);
    the feature function is called as f(*windows in channel order, fs=..., **params)."""
    feature = get_feature(pre.features)
    windows = condition_channels(pre, signals)
    n = min(len(w) for w in windows)
    if n == 0:
        shape = feature(*[np.zeros((pre.window_samples, 1))] * len(windows),
                        fs=pre.sample_rate_hz, **pre.feature_params).shape
        features = np.zeros((0, *shape), np.float32)
    else:
        features = np.stack([feature(*[w[i] for w in windows], fs=pre.sample_rate_hz,
                                     **pre.feature_params) for i in range(n)])
    return RecordingWindows(
        features=features,
        end_s=(pre.window_samples + pre.hop_samples * np.arange(n)) / pre.sample_rate_hz,
        motion_g=np.zeros(n),
    )
