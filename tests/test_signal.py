"""Streaming conditioning equals offline processing of the whole signal."""

import numpy as np
import pytest
from scipy import signal

import edge.signal
from edge.features import ppg_acc_spectrum, spectrum_frequencies
from edge.signal import Conditioner, Decimator, SlidingWindow, StreamingFilter, bandpass_sos


def random_blocks(x, rng):
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=40, replace=False))
    return np.split(x, cuts)


@pytest.mark.parametrize("fs", [25.0, 64.0, 100.0, 117.0])
@pytest.mark.parametrize("axes", [1, 3])
@pytest.mark.parametrize("kernel", ["scipy's compiled kernel", "the public sosfilt"])
def test_streaming_bandpass_equals_offline(fs, axes, kernel, monkeypatch):
    if kernel == "the public sosfilt":  # what a SciPy without the private kernel runs
        monkeypatch.setattr(edge.signal, "_sosfilt", edge.signal._sosfilt_public)
    rng = np.random.default_rng(int(fs) * axes)
    x = 50_000 + rng.normal(0, 100, (int(fs * 60), axes)).cumsum(axis=0)
    sos = bandpass_sos(fs, (0.5, 4.0))
    streaming = StreamingFilter(sos)
    got = np.concatenate([streaming.process(b) for b in random_blocks(x, rng)])
    offline, _ = signal.sosfilt(sos, x, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * x[0])
    np.testing.assert_allclose(got, offline, rtol=1e-9, atol=1e-6)


def test_streaming_conditioner_equals_offline_decimation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64 * 30, 1))
    conditioner = Conditioner(64.0, 32.0, (0.5, 4.0))
    got = np.concatenate([conditioner.process(b) for b in random_blocks(x, rng)])
    sos = bandpass_sos(64.0, (0.5, 4.0))
    offline, _ = signal.sosfilt(sos, x, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * x[0])
    np.testing.assert_allclose(got, offline[::2], atol=1e-9)


def test_decimator_align_puts_late_streams_on_the_same_grid():
    d = Decimator(4)
    d.align(6)  # the stream's first sample has index 6: keep 8, 12, ...
    assert d.process(np.arange(6, 20)).tolist() == [8, 12, 16]


@pytest.mark.parametrize(("size", "hop"), [(256, 64), (10, 10), (5, 7)])
def test_sliding_window_matches_offline_windows(size, hop):
    rng = np.random.default_rng(size)
    x = np.arange(2000.0)
    window = SlidingWindow(size, hop)
    got = [w for b in random_blocks(x, rng) for w in window.push(b)]
    expected = [x[end - size : end] for end in range(size, len(x) + 1, hop)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bandpass_rejects_band_outside_nyquist():
    with pytest.raises(ValueError, match="inside"):
        bandpass_sos(6.0, (0.5, 4.0))


def test_conditioner_upsamples_only_down_to_the_models_minimum_rate():
    with pytest.raises(ValueError, match="25 Hz is below the 32 Hz this model takes"):
        Conditioner(25.0, 32.0, (0.5, 4.0))  # no min_sensor_rate: the model rate
    assert len(Conditioner(25.0, 32.0, (0.5, 4.0), min_sensor_rate=16.0).process(
        np.ones((250, 1)))) > 0
    with pytest.raises(ValueError, match="12 Hz is below 16 Hz, the slowest any model takes"):
        Conditioner(12.0, 32.0, (0.5, 4.0), min_sensor_rate=10.0)


def test_spectrum_feature_peaks_at_the_pulse_rate_and_ignores_amplitude():
    fs, n = 32.0, 256
    t = np.arange(n) / fs
    ppg = np.sin(2 * np.pi * 1.5 * t)  # 90 bpm
    still = np.zeros((n, 3))
    params = dict(fs=fs, nfft=1024, f_lo=0.5, f_hi=3.6)
    a = ppg_acc_spectrum(ppg, still, **params)
    b = ppg_acc_spectrum(1000 * ppg + 7, still, **params)
    np.testing.assert_allclose(a, b, atol=1e-5)
    freqs = spectrum_frequencies(32.0, 1024, 0.5, 3.6)
    assert abs(freqs[np.argmax(a[:, 0])] - 1.5) < 0.04
    assert a[:, 1].max() == 0.0  # no motion
    swing = 0.3 * np.sin(2 * np.pi * 2.0 * t)[:, None] * np.array([1.0, 0.5, 0.0])
    moving = ppg_acc_spectrum(ppg, swing, **params)
    assert abs(freqs[np.argmax(moving[:, 1])] - 2.0) < 0.04 and moving[:, 1].max() > 0.9
