"""Streaming signal conditioning: state carried across blocks, so processing a stream block
by block gives exactly what processing the whole signal at once gives. Training runs the same
classes over whole recordings (one code path, no train/serve skew)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal

MAX_DENOMINATOR = 10_000  # bounds the resampling filter: 20 * down taps, <= 1.6 MB
# The slowest waveform sensor any model takes, upsampled to the model rate: heart rate lives
# below 4 Hz, and a 16 Hz sensor still carries up to 8 Hz. A model that needs finer timing
# says so in its manifest (`min_sensor_rate_hz`); without one it takes its own rate and up.
MIN_SENSOR_RATE_HZ = 16.0


def bandpass_sos(fs: float, band_hz: tuple[float, float], order: int = 4) -> np.ndarray:
    """Butterworth band-pass as second-order sections (numerically safe at low cut-offs)."""
    low, high = band_hz
    if not 0 < low < high < fs / 2:
        raise ValueError(f"band {band_hz} Hz must lie inside (0, {fs / 2}) Hz for fs={fs} Hz")
    return signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


def _sosfilt_public(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter x (signals, samples) in place, carrying zi (signals, sections, 2)."""
    x[...], zf = signal.sosfilt(sos, x, axis=-1, zi=zi.transpose(1, 0, 2))
    zi[...] = zf.transpose(1, 0, 2)


try:
    # sosfilt's compiled kernel, same contract as _sosfilt_public. The public wrapper's
    # checks and axis moves cost ~4x the filtering of a 2-s block, and the runtime filters
    # one such block per channel per hop.
    from scipy.signal._sosfilt import _sosfilt
except ImportError:  # a SciPy that moved it
    _sosfilt = _sosfilt_public


class StreamingFilter:
    """sosfilt along axis 0 with its state carried from block to block.

    The state starts at the steady state for the first sample, which avoids the large start-up
    transient a raw PPG offset would cause; the offline equivalent is
    `sosfilt(sos, x, axis=0, zi=sosfilt_zi(sos)[:, :, None] * x[0])`.
    """

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._zi: np.ndarray | None = None  # (signals, sections, 2): the kernel's layout

    def reset(self) -> None:
        self._zi = None

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64)
        if block.shape[0] == 0:
            return block
        x = np.array(block.reshape(len(block), -1).T, order="C")  # (signals, samples) copy
        if self._zi is None:
            steady = signal.sosfilt_zi(self.sos)  # (sections, 2)
            self._zi = np.ascontiguousarray(steady[None] * x[:, :1, None])
        _sosfilt(self.sos, x, self._zi)
        return x.T.reshape(block.shape)


class Decimator:
    """Keeps every `factor`-th sample across block boundaries (input must already be
    band-limited below the new Nyquist frequency, as the band-pass guarantees)."""

    delay = 0  # output j is input sample j * factor: no filter, no delay

    def __init__(self, factor: int) -> None:
        if factor < 1:
            raise ValueError("decimation factor must be >= 1")
        self.factor = factor
        self.up, self.down = 1, factor
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


_CHUNK = 1024  # outputs per gather in Resampler.process


def rate_ratio(model_rate: float, sensor_rate: float) -> Fraction:
    """model_rate / sensor_rate as a fraction up/down (down <= MAX_DENOMINATOR).

    Rates cross the wire as float32 (117.3 Hz arrives as 117.30000305...): read as the
    6-significant-digit decimals the device meant, 32/117.3 is exactly 320/1173 instead of a
    large-denominator approximation of float noise. An approximate ratio would make the
    model-rate grid drift from the device clock by its relative error (at worst 5e-5,
    0.18 s an hour, for rates such as 800.04 Hz; exact for rates like 100, 117 or 99.97 Hz).
    """
    exact = Fraction(f"{model_rate:.6g}") / Fraction(f"{sensor_rate:.6g}")
    ratio = exact.limit_denominator(MAX_DENOMINATOR)
    if ratio == 0:
        raise ValueError(f"sensor rate {sensor_rate:g} Hz is more than {MAX_DENOMINATOR} times "
                         f"the model rate {model_rate:g} Hz")
    return ratio


class Resampler:
    """Streaming rational resampling by up/down: what `scipy.signal.resample_poly(x, up,
    down)` gives for the whole signal (same Kaiser FIR, same delay compensation), block by
    block.

    Output j is the signal at input position j * down / up, so it needs input up to sample
    (j * down + delay) // up: outputs lag the input by `delay / up` input samples (10 periods
    of the slower rate: output when downsampling, input when upsampling), the price of a
    linear-phase filter whose output stays on the input's clock.
    Polyphase: output j is one dot product of the few input samples under the filter with
    the filter phase (j * down + delay) % up, so the upsampled stream is never built.
    """

    def __init__(self, up: int, down: int) -> None:
        if up < 1 or down < 1:
            raise ValueError("resampling factors must be >= 1")
        self.up, self.down = up, down
        max_rate = max(up, down)
        self.delay = 10 * max_rate  # resample_poly's half filter length
        h = signal.firwin(2 * self.delay + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
        self.taps = -(-len(h) // up)  # input samples under the filter
        phases = np.zeros(up * self.taps)
        phases[: len(h)] = h
        # Row p: the taps of phase p, oldest input first (ready for a dot with a window).
        self._phases = phases.reshape(self.taps, up).T[:, ::-1].copy()
        self._tap_offsets = np.arange(self.taps)
        self.reset()

    def reset(self) -> None:
        self.align(0)

    def align(self, first_index: int) -> None:
        """The next sample has stream index `first_index`: emit outputs from the first grid
        point at or after it, outputs j at input position j * down / up of the stream."""
        self._buf: np.ndarray | None = None  # input from stream index self._buf_start on
        self._buf_start = first_index - (self.taps - 1)  # zeros before the stream starts
        self._next = -(-first_index * self.up // self.down)  # next output index

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float64)
        if self._buf is None:
            self._buf = np.zeros((self.taps - 1, *block.shape[1:]))
        buf = np.concatenate([self._buf, block])
        end = self._buf_start + len(buf)  # one past the newest input index
        # Outputs whose newest input sample has arrived: (j * down + delay) // up < end.
        stop = (end * self.up - 1 - self.delay) // self.down + 1
        j = np.arange(self._next, max(stop, self._next))
        pos = j * self.down + self.delay
        out = np.empty((len(j), *block.shape[1:]))
        for i in range(0, len(j), _CHUNK):  # bounded memory on whole recordings
            p = pos[i : i + _CHUNK]
            oldest = p // self.up - self._buf_start - (self.taps - 1)
            under = buf[oldest[:, None] + self._tap_offsets]  # (outputs, taps, *axes)
            out[i : i + _CHUNK] = np.einsum("jt...,jt->j...", under, self._phases[p % self.up])
        self._next += len(j)
        # Keep what the next output needs: taps - 1 samples before its newest sample.
        keep_from = (self._next * self.down + self.delay) // self.up - (self.taps - 1)
        drop = min(max(keep_from - self._buf_start, 0), len(buf))
        self._buf, self._buf_start = buf[drop:], self._buf_start + drop
        return out


class Conditioner:
    """One channel: band-pass at the sensor rate, then bring it to the model rate.

    An integer ratio keeps every factor-th sample (the band-pass is the anti-alias filter);
    any other ratio, including a sensor slower than the model (upsampling), goes through a
    polyphase Resampler. Either way model-rate output j is the signal at sensor index
    j * down / up, so channels that start at different times, or run at different rates,
    share one grid on the device clock (see `align`).

    `min_sensor_rate`: the slowest sensor the model takes (its manifest's
    `min_sensor_rate_hz`); None: the model rate (no upsampling). Never below
    MIN_SENSOR_RATE_HZ, and the model's band must fit below the sensor's Nyquist frequency.
    """

    def __init__(self, sensor_rate: float, model_rate: float, band_hz: tuple[float, float],
                 order: int = 4, min_sensor_rate: float | None = None) -> None:
        check_sensor_rate(sensor_rate, model_rate, band_hz, min_sensor_rate)
        self.filter = StreamingFilter(bandpass_sos(sensor_rate, band_hz, order))
        ratio = rate_ratio(model_rate, sensor_rate)
        if ratio.numerator == 1:  # integer factor (64 Hz for 32 Hz): no interpolation needed
            self.resampler: Decimator | Resampler = Decimator(ratio.denominator)
        else:
            self.resampler = Resampler(ratio.numerator, ratio.denominator)

    def reset(self) -> None:
        self.filter.reset()
        self.resampler.reset()

    def align(self, first_index: int) -> int:
        """Put the output on the model-rate grid of a stream whose next sample has sensor
        index `first_index` (counted from the device's boot); returns the model-rate index of
        the first output."""
        self.resampler.align(first_index)
        return -(-first_index * self.resampler.up // self.resampler.down)

    def ready(self, next_index: int) -> int:
        """Model-rate index one past the newest output that input up to (not including)
        sensor index `next_index` yields."""
        r = self.resampler
        return (next_index * r.up - 1 - r.delay) // r.down + 1

    def source(self, index: np.ndarray) -> np.ndarray:
        """Sensor index of the input sample at or just before each model-rate index."""
        return index * self.resampler.down // self.resampler.up

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.resampler.process(self.filter.process(block))


def check_sensor_rate(sensor_rate: float, model_rate: float, band_hz: tuple[float, ...],
                      min_sensor_rate: float | None = None) -> None:
    """ValueError saying why a sensor at `sensor_rate` cannot feed a model (see Conditioner),
    checked before any filter is built."""
    # Compared as the 6-digit decimals rate_ratio reads (float noise is not a lower rate).
    rate = float(f"{sensor_rate:.6g}")
    floor = model_rate if min_sensor_rate is None else min_sensor_rate
    if not model_rate > 0:
        raise ValueError(f"model rate {model_rate:g} Hz must be positive")
    if rate < MIN_SENSOR_RATE_HZ:
        raise ValueError(f"sensor rate {sensor_rate:g} Hz is below {MIN_SENSOR_RATE_HZ:g} Hz, "
                         "the slowest any model takes; record at "
                         f"{max(MIN_SENSOR_RATE_HZ, floor):g} Hz or faster")
    if rate < floor:
        raise ValueError(f"sensor rate {sensor_rate:g} Hz is below the {floor:g} Hz this "
                         f"model takes; record at {floor:g} Hz or faster")
    if band_hz and not band_hz[-1] < rate / 2:
        raise ValueError(f"sensor rate {sensor_rate:g} Hz cannot carry the model's "
                         f"{band_hz[0]:g}-{band_hz[-1]:g} Hz band (up to {rate / 2:g} Hz); "
                         f"record at more than {2 * band_hz[-1]:g} Hz")


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
