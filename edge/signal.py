"""Streaming signal conditioning: state carried across blocks, so processing a stream block
by block gives exactly what processing the whole signal at once gives. Training runs the same
classes over whole recordings (one code path, no train/serve skew)."""

from __future__ import annotations

import numpy as np
from scipy import signal


def bandpass_sos(fs: float, band_hz: tuple[float, float], order: int = 4) -> np.ndarray:
    """Butterworth band-pass as second-order sections (numerically safe at low cut-offs)."""
    low, high = band_hz
    if not 0 < low < high < fs / 2:
        raise ValueError(f"band {band_hz} Hz must lie inside (0, {fs / 2}) Hz for fs={fs} Hz")
    return signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


class StreamingFilter:
    """sosfilt along axis 0 with its state carried from block to block.

    The state starts at the steady state for the first sample, which avoids the large start-up
    transient a raw PPG offset would cause; the offline equivalent is
    `sosfilt(sos, x, axis=0, zi=sosfilt_zi(sos)[:, :, None] * x[0])`.
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = sos
        self._zi: np.ndarray | None = None

    def reset(self) -> None:
        self._zi = None

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64)
        if block.shape[0] == 0:
            return block
        if self._zi is None:
            steady = signal.sosfilt_zi(self.sos)  # (sections, 2)
            self._zi = steady.reshape(steady.shape + (1,) * (block.ndim - 1)) * block[0]
        out, self._zi = signal.sosfilt(self.sos, block, axis=0, zi=self._zi)
        return out


class Decimator:
    """Keeps every `factor`-th sample across block boundaries (input must already be
    band-limited below the new Nyquist frequency, as the band-pass guarantees)."""

    def __init__(self, factor: int) -> None:
        if factor < 1:
            raise ValueError("decimation factor must be >= 1")
        self.factor = factor
        self._phase = 0

    def reset(self) -> None:
        self._phase = 0

    def align(self, first_index: int) -> None:
        """Keep the samples whose stream index is a multiple of the factor, given the index of
        the next sample; streams that start at different times then share one grid."""
        self._phase = (-first_index) % self.factor

    def keep(self, n: int) -> slice:
        """Which of the next `n` samples to keep (advances the phase)."""
        kept = slice(self._phase, n, self.factor)
        self._phase = (self._phase - n) % self.factor
        return kept

    def process(self, block: np.ndarray) -> np.ndarray:
        return block[self.keep(len(block))]


class Conditioner:
    """One channel: band-pass at the sensor rate, then decimate to the model rate."""

    def __init__(self, sensor_rate: float, model_rate: float, band_hz: tuple[float, float],
                 order: int = 4) -> None:
        factor = sensor_rate / model_rate
        if abs(factor - round(factor)) > 1e-6 or round(factor) < 1:
            raise ValueError(
                f"sensor rate {sensor_rate:g} Hz is not an integer multiple of the model rate "
                f"{model_rate:g} Hz"
            )
        self.filter = StreamingFilter(bandpass_sos(sensor_rate, band_hz, order))
        self.decimator = Decimator(round(factor))

    def reset(self) -> None:
        self.filter.reset()
        self.decimator.reset()

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.decimator.process(self.filter.process(block))


class SlidingWindow:
    """Cuts a stream of samples into windows of `size` samples every `hop` samples.

    Windows end at sample counts size, size + hop, size + 2*hop, ... of the stream.
    """

    def __init__(self, size: int, hop: int) -> None:
        if size < 1 or hop < 1:
            raise ValueError("window size and hop must be >= 1")
        self.size, self.hop = size, hop
        self._buf: np.ndarray | None = None
        self._count = 0  # samples pushed so far
        self._next_end = size

    def reset(self) -> None:
        self._buf, self._count, self._next_end = None, 0, self.size

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        buf = block if self._buf is None else np.concatenate([self._buf, block])
        buf_start = self._count - (0 if self._buf is None else len(self._buf))
        self._count += len(block)
        windows = []
        while self._next_end <= self._count:
            end = self._next_end - buf_start
            windows.append(buf[end - self.size : end].copy())
            self._next_end += self.hop
        # Keep only what the next window needs.
        self._buf = buf[max(self._next_end - self.size - buf_start, 0) :]
        return windows
