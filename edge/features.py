"""Window -> model input. The one code path shared by training and the runtime.

A feature set is chosen by name in the model manifest; unknown names are rejected with the
list of valid ones. Each function takes windows already conditioned by edge.signal (band-passed,
at the model rate) and returns a float32 array shaped like the model input without the batch
axis. Normalisation is per window, so the model sees pulse shape and rhythm, not the sensor's
amplitude or offset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EPS = 1e-9


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    return x / (x.std(axis=0) + _EPS)


def spectrum_bins(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """Indices of the rFFT bins inside [f_lo, f_hi] Hz."""
    freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
    return np.flatnonzero((freqs >= f_lo) & (freqs <= f_hi))


def spectrum_frequencies(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """Centre frequency in Hz of each feature bin (also the HR classes of a binned model)."""
    return np.fft.rfftfreq(nfft, 1.0 / fs)[spectrum_bins(fs, nfft, f_lo, f_hi)]


def ppg_acc_spectrum(ppg: np.ndarray, acc: np.ndarray | None, *, fs: float, nfft: int,
                     f_lo: float, f_hi: float) -> np.ndarray:
    """Magnitude spectra of the PPG and of the accelerometer over the heart-rate band.

    ppg: (W,) band-passed PPG; acc: (W, 3) band-passed acceleration in g, or None (no
    accelerometer: the motion column is zero and the model relies on the PPG alone).
    Returns (n_bins, 2) float32 in [0, 1]. Column 0: PPG spectrum scaled to a maximum of 1 (the
    sensor's amplitude does not matter). Column 1: motion spectrum shape scaled by how strong
    the motion is (tanh of its RMS over MOTION_REF_G), so "no motion" and "a little noise"
    look different. Axes are summed in power: the wearable's orientation does not matter.
    """
    taper = np.hanning(len(ppg))
    bins = spectrum_bins(fs, nfft, f_lo, f_hi)
    ppg_spec = np.abs(np.fft.rfft(_zscore(ppg) * taper, nfft))[bins]
    ppg_spec /= ppg_spec.max() + _EPS
    if acc is None:
        acc_spec = np.zeros_like(ppg_spec)
    else:
        acc = acc - acc.mean(axis=0)
        acc_power = np.abs(np.fft.rfft(acc * taper[:, None], nfft, axis=0)) ** 2
        acc_spec = np.sqrt(acc_power.sum(axis=1))[bins]
        acc_spec *= np.tanh(motion_rms_g(acc) / MOTION_REF_G) / (acc_spec.max() + _EPS)
    return np.stack([ppg_spec, acc_spec], axis=1).astype(np.float32)


MOTION_REF_G = 0.1  # RMS band-passed acceleration at which motion counts as strong


def motion_rms_g(acc: np.ndarray) -> float:
    """RMS of the (band-passed) acceleration vector, in g: the window's motion level."""
    acc = acc - acc.mean(axis=0)
    return float(np.sqrt((acc**2).sum(axis=1).mean()))


FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "ppg_acc_spectrum": ppg_acc_spectrum,
}


def get_feature(name: str) -> Callable[..., np.ndarray]:
    try:
        return FEATURES[name]
    except KeyError:
        raise ValueError(
            f"unknown feature set {name!r}; valid: {', '.join(sorted(FEATURES))}"
        ) from None
