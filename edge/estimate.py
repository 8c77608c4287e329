"""Per-device estimation: wire frames in, vital-sign estimates out (no I/O here).

Waveform models (heart rate, blood pressure): every channel a model consumes is placed on the
device's own clock (frame timestamps), gaps are held and marked bad, conditioned by
edge.signal, cut into the model's windows, checked for quality, turned into features by
edge.features and run on the model. Glucose: each CGM reading is an estimate of its own, with
its trend and, when the glucose model is loaded and the history is complete, its forecasts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edge.bundle import rule_output
from edge.errors import CommandError, ModelError, StreamError
from edge.features import (
    BP_AMPLITUDE_RATIOS,
    CGM_MAX_GAP_S,
    bp_amplitude_reference,
    bp_feature_name,
    bp_hr_bpm,
    bp_log_amplitude,
    bp_relative_amplitude,
    cgm_on_grid,
    get_feature,
    motion_rms_g,
)
from edge.infer import Model
from edge.signal import Conditioner
from wire import Channel, Flag, Frame

GOOD = "good"
SENSOR = "sensor"  # gap, lead-off, clipping or a flat line in the window
_BAD_FLAGS = Flag.LEAD_OFF | Flag.SATURATED
# Per-frame flag tests on plain ints: an IntFlag `&` builds an enum member (~1 us) each time.
_BAD_BITS, _BOOT_BITS = int(_BAD_FLAGS), int(Flag.BOOT)
MOTION = "motion"  # a jump under motion: the model most likely locked onto the arm swing
MOTION_UNKNOWN = "motion_unknown"  # the accelerometer data for the window was damaged
UNCALIBRATED = "uncalibrated"  # cuffless BP before a cuff calibration: a trend, not a value
# The model's own belief is too spread (or implausible) to act on: published, drives no alarm.
UNCERTAIN = "uncertain"
QUALITIES = (GOOD, SENSOR, MOTION, MOTION_UNKNOWN, UNCALIBRATED, UNCERTAIN)
CHANNEL_ABSENT_S = 5.0  # no frame of a channel for this long: window without it (or skipped)


@dataclass(frozen=True)
class Estimate:
    device: str
    vital: str  # e.g. "heart_rate", "systolic_bp", "glucose"
    value: float
    unit: str
    quality: str  # one of QUALITIES: "good", or why the value is not trustworthy
    motion_g: float | None  # None: the device has no accelerometer (motion unknown)
    device_time_s: float  # device clock at the end of the window (or of the reading)
    model: str  # name@version
    details: Mapping[str, float | None] = field(default_factory=dict)  # e.g. forecasts


# A timestamp up to this far ahead of the samples received, with no frame missing in between,
# is the device clock drifting (a crystal off by 200 ppm gains a 64 Hz sample every 78 s):
# the track holds a sample to stay on the device clock, and the window stays good.
CLOCK_JITTER_S = 0.02
_SEQ_MOD = 1 << 32  # the wire's seq is a u32
# A timestamp further ahead of the samples received than this, or behind them by more than
# CLOCK_BACK_S, is the device clock restarting (a glitch, a reboot without BOOT): the track
# starts afresh instead of holding a value over the gap (2^63 us ahead would ask for
# petabytes). Windows across such a gap would be bad anyway.
MAX_HOLD_S = 120.0
CLOCK_BACK_S = 5.0
_ABSENT_CHECK_FRAMES = 64  # frames a secondary channel buffers before _bound looks at it


# A flat line is this many identical samples in a row (one 64 Hz frame, as before slower
# sensors were taken): at 20 Hz a frame holds 5 samples, and a coarse accelerometer (8-bit,
# 16 mg steps) at rest repeats 5 samples on all axes often enough to mark a quarter of the
# windows `motion_unknown` (no HR alarm) if one such frame counted.
FLAT_MIN_SAMPLES = 16


def _first_outside(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> int | None:
    """Index of the first value outside [low, high], or None."""
    out = (values < low) | (values > high)
    return int(np.argmax(out)) if out.any() else None


def _flat(samples: np.ndarray) -> bool:
    """Every sample (all axes) equal to the first: a flat line. Compared as the raw bytes,
    one C call instead of per-axis reductions (run for every frame)."""
    return samples.tobytes() == samples[:1].tobytes() * len(samples)


class ChannelTrack:
    """One channel of one device on the model's time grid.

    Samples are indexed from the device's boot at the model rate; `bad` marks samples that came
    from gap filling or a frame flagged lead-off / saturated / flat (a resampled sample takes
    the flag of the sensor sample at or just before it). Frames are conditioned lazily, in
    one filter call when a window needs them: scipy's per-call overhead dominates at
    frame-sized blocks.
    """

    def __init__(self, label: str, channel: Channel, model_rate: float,
                 band_hz: tuple[float, float], order: int,
                 min_sensor_rate: float | None = None) -> None:
        self.label, self.channel = label, channel
        self.model_rate, self.band_hz, self.order = model_rate, band_hz, order
        self.min_sensor_rate = min_sensor_rate  # the manifest's min_sensor_rate_hz
        self.sensor_rate = 0.0
        self.reset()

    def reset(self) -> None:
        self.epochs = getattr(self, "epochs", -1) + 1  # restarts so far (the runner realigns)
        self.conditioner: Conditioner | None = None
        self.next_k = 0  # next expected sample index at the sensor rate
        self.start = 0  # model-rate index of values[0]
        self.values = np.zeros((0, 1))
        self.bad = np.zeros(0, dtype=bool)
        self._raw: list[np.ndarray] = []  # received, not yet conditioned
        self._raw_bad: list[bool] = []  # one flag per block of _raw
        self._held_bad = np.zeros(0, dtype=bool)  # flags of raw samples outputs still need
        self._held_start = 0  # sensor index of _held_bad[0]
        self._last_raw: np.ndarray | None = None
        self._next_seq: int | None = None  # seq of the frame that follows the last one
        self.last_time_s = -math.inf
        self._flat_run, self._flat_value = 0, b""  # identical samples in a row, and their bytes

    @property
    def end(self) -> int:
        """Model-rate index one past the newest sample the received input yields (a resampled
        channel lags by its filter's half length, 10 periods of the slower rate)."""
        return 0 if self.conditioner is None else self.conditioner.ready(self.next_k)

    def add(self, frame: Frame) -> None:
        raw = frame.values
        rate = frame.sample_rate_hz
        k = round(frame.timestamp_us * rate / 1e6)
        if (self.conditioner is None or rate != self.sensor_rate
                or raw.shape[1] != self.values.shape[1]):
            self.reset()
            self.sensor_rate = rate
            try:
                self.conditioner = Conditioner(rate, self.model_rate, self.band_hz, self.order,
                                               self.min_sensor_rate)
            except ValueError as err:
                self.reset()
                raise StreamError(
                    f"{self.channel.name} at {rate:g} Hz cannot feed model {self.label} "
                    f"({self.model_rate:g} Hz): {err}") from None
            self.start = self.conditioner.align(k)
            self.next_k = self._held_start = k
            self.values = np.zeros((0, raw.shape[1]))
        elif not -CLOCK_BACK_S * rate <= k - self.next_k <= MAX_HOLD_S * rate:
            self.reset()  # the clock jumped: a new epoch for this channel
            return self.add(frame)
        bad = bool(int(frame.flags) & _BAD_BITS) or self._flat_for_long(frame.samples)
        if k > self.next_k:  # samples missing before this frame: hold the last value
            hold = self._last_raw if self._last_raw is not None else raw[:1]
            lost = (frame.seq != self._next_seq
                    or k - self.next_k > max(1, int(CLOCK_JITTER_S * rate)))
            self._push(np.repeat(hold, k - self.next_k, axis=0), lost)  # bad unless drift
        elif k < self.next_k:  # overlap (clock jitter): drop what we already have
            raw = raw[self.next_k - k :]
        if len(raw):
            self._push(raw, bad)
        self._next_seq = (frame.seq + 1) % _SEQ_MOD
        self.last_time_s = self.next_k / rate

    def _flat_for_long(self, samples: np.ndarray) -> bool:
        """This frame is flat and, with the flat frames of the same value before it, makes at
        least FLAT_MIN_SAMPLES identical samples in a row."""
        if not _flat(samples):
            self._flat_run = 0
            return False
        first = samples[:1].tobytes()
        self._flat_run = (self._flat_run if first == self._flat_value else 0) + len(samples)
        self._flat_value = first
        return self._flat_run >= FLAT_MIN_SAMPLES

    def _push(self, raw: np.ndarray, bad: bool) -> None:
        self._raw.append(raw)
        self._raw_bad.append(bad)  # expanded per sample once, in _condition
        self._last_raw = raw[-1:]
        self.next_k += len(raw)

    def _condition(self) -> None:
        if not self._raw:
            return
        raw = np.concatenate(self._raw)
        fresh_bad = np.repeat(self._raw_bad, [len(r) for r in self._raw])
        held = np.concatenate([self._held_bad, fresh_bad])
        self._raw, self._raw_bad = [], []
        out = self.conditioner.process(raw)
        first = self.start + len(self.values)  # model-rate index of out[0]
        source = self.conditioner.source(np.arange(first, first + len(out) + 1))
        self.values = np.concatenate([self.values, out])
        self.bad = np.concatenate([self.bad, held[source[:-1] - self._held_start]])
        drop = min(source[-1] - self._held_start, len(held))  # keep what the next output needs
        self._held_bad, self._held_start = held[drop:], self._held_start + drop

    def window(self, start: int, end: int) -> tuple[np.ndarray, bool] | None:
        if start < self.start or end > self.end:
            return None
        self._condition()
        i, j = start - self.start, end - self.start
        return self.values[i:j], bool(self.bad[i:j].any())

    def discard_before(self, index: int) -> None:
        drop = min(max(index - self.start, 0), len(self.bad))
        if drop:
            self.values, self.bad = self.values[drop:], self.bad[drop:]
            self.start += drop


class ModelRunner:
    """Windows one device's waveform channels as one model's manifest says and runs the
    model. The first channel paces the windows; the others must cover the same span, except
    the accelerometer, which is optional (a PPG-only wearable: motion unknown). Subclasses
    turn the model's outputs into estimates."""

    def __init__(self, device: str, model: Model) -> None:
        m = model.manifest
        self.device, self.model = device, model
        self.size, self.hop = m.preprocessing.window_samples, m.preprocessing.hop_samples
        self.rate = m.sample_rate_hz
        self.feature = get_feature(m.features)
        self.params = dict(m.feature_params, fs=m.sample_rate_hz)
        self.label = f"{m.name}@{m.version}"
        self.channels = [Channel[c] for c in m.channels]
        self.primary = self.channels[0]
        self.tracks = {c: ChannelTrack(self.label, c, m.sample_rate_hz, tuple(m.bandpass_hz),
                                       m.filter_order, m.min_sensor_rate_hz)
                       for c in self.channels}
        self.next_end = self.size
        self.fault: Exception | None = None  # a window that raised (skipped), for add's caller

    def add(self, frame: Frame) -> list[Estimate]:
        track = self.tracks.get(frame.channel)
        if track is None:
            return []
        epochs = track.epochs
        if int(frame.flags) & _BOOT_BITS:  # the device restarted: its clock starts again at 0
            track.reset()
        track.add(frame)
        if track.epochs != epochs and frame.channel == self.primary:
            self.next_end = self.size  # a new epoch of the pacing channel: windows restart
        elif frame.channel != self.primary and len(track._raw) >= _ABSENT_CHECK_FRAMES:
            self._bound(track)
        return self._ready_windows()

    def _bound(self, track: ChannelTrack) -> None:
        """Without the pacing channel (a BP model on a wearable with no ECG) no window
        comes to discard the other channels' data: keep only their last window's worth, or
        memory grows with every frame (4.3 MB per device-hour for a PPG-only wearable)."""
        if self.tracks[self.primary].last_time_s < track.last_time_s - CHANNEL_ABSENT_S:
            track._condition()
            track.discard_before(track.end - self.size)

    def reset(self) -> None:
        """Drop every buffer (after a fault part-way through a frame): a fresh start."""
        for track in self.tracks.values():
            track.reset()
        self.next_end = self.size

    def _ready_windows(self) -> list[Estimate]:
        primary = self.tracks[self.primary]
        estimates = []
        if self.next_end < primary.start + self.size:  # stream started late: align to it
            self.next_end = primary.start + self.size + (-(primary.start) % self.hop)
        if self.next_end > primary.end:
            return estimates  # most frames complete no window: nothing to do
        while self.next_end <= primary.end:
            start, end = self.next_end - self.size, self.next_end
            end_s = end / self.rate
            windows = {}
            for channel, track in self.tracks.items():
                windows[channel] = track.window(start, end)
                if windows[channel] is None and track.last_time_s > end_s - CHANNEL_ABSENT_S:
                    return self._discard(estimates)  # its data is still on the way
            if all(w is not None for c, w in windows.items() if c != Channel.ACCEL):
                try:
                    estimates += self._estimate(windows, end_s)
                except Exception as err:  # a bug must not stall the windows
                    self.fault = self.fault or err  # DeviceEstimator reports it
            self.next_end += self.hop
        return self._discard(estimates)

    def _discard(self, estimates: list[Estimate]) -> list[Estimate]:
        for track in self.tracks.values():
            track.discard_before(self.next_end - self.size)
        return estimates

    def _estimate(self, windows: dict[Channel, tuple[np.ndarray, bool] | None],
                  end_s: float) -> list[Estimate]:
        quality = GOOD
        signals = []
        for channel, window in windows.items():
            if window is None:  # only the optional accelerometer can be missing
                signals.append(None)
                continue
            values, bad = window
            if channel == Channel.ACCEL:
                quality = MOTION_UNKNOWN if bad and quality == GOOD else quality
            elif bad or values.max() == values.min():  # a flat window
                quality = SENSOR
            # A one-axis channel is a 1-D signal to the feature function.
            signals.append(values[:, 0] if values.shape[1] == 1 else values)
        acc = windows.get(Channel.ACCEL)
        motion_g = None if acc is None else motion_rms_g(acc[0])
        outputs = self.outputs(self.feature(*signals, **self.params))
        return self.interpret(outputs, quality, motion_g, end_s)

    def outputs(self, features: np.ndarray) -> np.ndarray:
        """The model's outputs for one window, as `interpret` takes them."""
        return self.model.estimates(features)

    def interpret(self, outputs: np.ndarray, quality: str, motion_g: float | None,
                  end_s: float) -> list[Estimate]:
        m = self.model.manifest
        return [Estimate(self.device, m.task, float(outputs[0]), m.unit, quality, motion_g,
                         end_s, self.label)]


class HeartRateRunner(ModelRunner):
    """Heart rate as a belief over the model's HR bins, tracked across windows.

    Each window the model gives a probability per HR bin. An online forward filter (as in
    BeliefPPG) carries the belief from one window to the next through a transition prior (a
    Laplace kernel of TRANSITION_BPM per hop, plus a small uniform share so a real sudden
    change wins within a few windows) and multiplies in the window's own distribution
    (tempered: to the power TEMPER, so one confident window cannot overturn it alone). The
    published value is the most probable rate (the belief's mode, refined between bins by
    its neighbours), never the mean of a split belief; details carry its central
    CI_MASS credible interval. A belief whose interval is wider than MAX_CI_WIDTH_BPM is
    published as "uncertain" (drives no alarm), at rest as under motion. While the wearer is
    still, `harmonic_check` moves a window's mode that is a pulse's 3rd or 4th harmonic to the
    heart before it enters the belief; running, a window's probability at twice a rate the
    belief holds also counts for that rate (see `track`: 2x windows no longer carry the
    belief to the 2nd harmonic). The belief restarts after a reboot (device time
    goes back) or a gap of RESET_GAP_S. Under motion the MotionArtefactGate still flags jumps.
    """

    TRANSITION_BPM = 3.0  # Laplace scale of the heart-rate change per 2-s hop
    UNIFORM_SHARE = 0.02  # of the predicted belief spread flat over every bin
    TEMPER = 0.75  # power of the window's distribution in the update (1: taken as it is)
    LIKELIHOOD_FLOOR = 1e-4  # of a bin's probability (an int8 output cannot tell 0 from it)
    RESET_GAP_S = 30.0
    CI_MASS = 0.9
    # Harmonic check (still wearer, see `harmonic_check`): the candidate heart's spectral
    # peaks, each at least SPECTRUM_MIN of the highest; the PPG's autocorrelation at its beat
    # interval at least ACF_PERIODIC and ACF_MARGIN above the one at the mode's interval.
    SPECTRUM_MIN = 0.3
    ACF_PERIODIC = 0.8
    ACF_MARGIN = 0.3
    HARMONICS = (3, 4)
    # Running (see `track`): the share of the evidence for a rate the belief holds that the
    # window's probability at twice that rate gives, from OCTAVE_MOTION_G of motion on. From
    # 0.05 g (walking too) it cost 0.18 bpm on the SP Cup leave-subject-out folds (walking
    # onsets held at half the rate); from 0.8 g 0.04 (one window of a real running onset).
    OCTAVE_SHARE = 0.5
    OCTAVE_MOTION_G = 0.8
    # The mode is refined by the belief's mean over this many bins either side (2 and 3 were
    # tried: no steadier between two samplings of the same pulse, and 3 broke the pulse grid).
    MODE_HALF_WIDTH = 1
    # Chosen before any real data was seen; measured since (docs/models.md, Quality): on
    # held-out randomised simulations 90 % intervals of 5-10 bpm are > 5 bpm off in 7 % of
    # windows, 10-15 in 23 %, 15-25 in 25-38 % (few windows); on the SP Cup LOSO folds 15 or
    # 20 cost 5.6 or 2.6 points of "good" for 0.12 / 0.08 bpm less MAE on good windows.
    MAX_CI_WIDTH_BPM = 25.0

    def __init__(self, device: str, model: Model) -> None:
        super().__init__(device, model)
        self.gate = MotionArtefactGate()
        self.bins = np.asarray(model.manifest.output_params.get("values", []), np.float64)
        if self.bins.size < 2 or model.manifest.output_kind != "expectation":
            raise ModelError(f"model {self.label}: a heart-rate model must output a "
                             "distribution over HR bins (output_kind 'expectation' with "
                             "output_params.values)")
        scale = self.TRANSITION_BPM * model.manifest.hop_s / 2.0  # bpm per hop
        kernel = np.exp(-np.abs(self.bins[:, None] - self.bins[None, :]) / scale)
        self._kernel = kernel / kernel.sum(axis=0, keepdims=True)  # column j: from bin j
        self._belief: np.ndarray | None = None
        self._last_end_s = -math.inf
        self._features: np.ndarray | None = None  # the last window's, for harmonic_check

    def outputs(self, features: np.ndarray) -> np.ndarray:
        p = np.clip(self.model.raw(features).reshape(-1), 0.0, None)
        self._features = features
        return p / max(float(p.sum()), 1e-12)

    def harmonic_check(self, p: np.ndarray, features: np.ndarray) -> np.ndarray:
        """`p` with a harmonic's probability moved to the heart, when the window shows one.

        A sharp pulse (finger clip, slow heart, strong dicrotic wave) can put its 3rd or 4th
        harmonic above the fundamental, and the model may read 50 or 60 bpm as 200 or 180.
        The mode is taken as the k-th harmonic (k in HARMONICS) of f = mode / k only when the
        window shows one pulse train at f: spectral peaks at f and at every harmonic up to the
        mode (a pulse's comb; wander or respiration at f with a heart at 3f has nothing at
        2f), and the PPG repeating clearly at 1 / f and clearly less at the mode's interval
        (features: `ppg_acc_spectrum_acf` columns 0 and 2). k = 2 is left to the model: a
        dicrotic wave half a beat late repeats at half the interval too, so the autocorrelation
        cannot tell 90 from 180 (tried: on the held-out simulations every k = 2 move was wrong).
        """
        spec, acf = features[:, 0], features[:, 2]
        bins, n = self.bins, len(p)
        step = float(bins[1] - bins[0])
        m = int(np.argmax(p))
        for k in self.HARMONICS:
            j = round((bins[m] / k - bins[0]) / step)
            if j < 1:
                break
            j = j - 1 + int(np.argmax(spec[j - 1:j + 2]))  # the peak near mode / k
            comb = np.interp(bins[j] * np.arange(1, k), bins, spec)
            if (spec[j] >= spec[max(j - 1, 0)] and spec[j] >= spec[min(j + 1, n - 1)]
                    and comb.min() >= self.SPECTRUM_MIN and acf[j] >= self.ACF_PERIODIC
                    and acf[j] - acf[m] >= self.ACF_MARGIN):
                moved = p.copy()
                near = np.arange(max(m - 4, 0), min(m + 5, n))  # the harmonic's peak
                moved[near] = 0.0
                np.add.at(moved, np.clip(j + np.rint((near - m) / k).astype(int), 0, n - 1),
                          p[near])
                return moved
        return p

    def reset(self) -> None:
        """Forget the belief (a reboot, a long gap, a new wearer)."""
        self._belief = None

    def track(self, p: np.ndarray | None, end_s: float, running: bool = False) -> np.ndarray:
        """One filter step: the belief after the window ending at end_s whose model
        distribution is `p` (None: a window without usable signal, prediction only).

        `running` (motion from OCTAVE_MOTION_G on): the model reads some windows at the 2nd
        harmonic and others at the heart (normal-day seed 1 with 1-h noise blocks: a 75-90
        bpm heart read 158-176, `good`, for 40 s at a running onset), and a few 2x windows in
        a row carried the belief there. So a rate the belief already holds also takes
        OCTAVE_SHARE of the window's probability at twice it: a 2x window supports the
        heart, a window at the heart does not support 2x, and only a run of 2x windows with
        nothing at the heart moves the belief. Weighted by the prior, so no new hypothesis
        at half a window's rate is made (tried unweighted: on the SP Cup recordings it read
        a 90-100 bpm walk at 48-58 and left more windows uncertain). Cost: a real doubling
        while running, with nothing left at the old rate, takes over in 7 windows, not 2.
        """
        if end_s <= self._last_end_s or end_s - self._last_end_s > self.RESET_GAP_S:
            self._belief = None
        self._last_end_s = end_s
        n = len(self.bins)
        if self._belief is None:
            prior = np.full(n, 1.0 / n)
        else:
            prior = (1 - self.UNIFORM_SHARE) * (self._kernel @ self._belief) + (
                self.UNIFORM_SHARE / n)
        if p is not None and running and self._belief is not None:
            held = prior / prior.max()
            p = p + self.OCTAVE_SHARE * held * np.interp(2.0 * self.bins, self.bins, p,
                                                          right=0.0)
        # The window's distribution enters tempered (power TEMPER, floored): one confident
        # window cannot overturn a settled belief, a few agreeing ones do. 0.75, not 0.5: at
        # 0.5 the atrial-fibrillation onset alarmed 11 s after the crossing (IEC 60601-2-27
        # allows 10); 1.0 costs 0.6 bpm on the SP Cup leave-subject-out folds.
        post = prior if p is None else prior * (p + self.LIKELIHOOD_FLOOR) ** self.TEMPER
        post = post / post.sum()
        self._belief = post
        return post

    def summary(self, belief: np.ndarray) -> tuple[float, float, float]:
        """(MAP refined by the belief around it, CI low, CI high) of a belief.

        The mode is the bin whose neighbourhood (MODE_HALF_WIDTH bins either side) holds the
        most belief, not the single highest bin: hr 2.1.1's distribution can alternate
        between bins (65 bpm read as 0.24 at 63.8, 0.19 at 65.6, 0.24 at 67.5), and an int8
        tie between the two outer bins then moved the published rate by 3.4 bpm between two
        samplings of the same pulse (tests/test_edge_replay_recordings.py, jittery CSV).
        """
        k = self.MODE_HALF_WIDTH
        i = int(np.argmax(np.convolve(belief, np.ones(2 * k + 1), mode="same")))
        lo, hi = max(i - self.MODE_HALF_WIDTH, 0), min(i + self.MODE_HALF_WIDTH + 1, len(belief))
        w = belief[lo:hi]
        value = float(w @ self.bins[lo:hi] / w.sum())
        cdf = np.cumsum(belief)
        tail = (1 - self.CI_MASS) / 2
        a = int(np.searchsorted(cdf, tail))
        b = min(int(np.searchsorted(cdf, 1 - tail)), len(self.bins) - 1)
        # The refined mode can sit a little past a one-bin interval's centre: widen to it.
        return value, min(float(self.bins[a]), value), max(float(self.bins[b]), value)

    def interpret(self, outputs: np.ndarray, quality: str, motion_g: float | None,
                  end_s: float) -> list[Estimate]:
        features, self._features = self._features, None
        still = motion_g is None or motion_g < MotionArtefactGate.MOTION_G
        if still and features is not None and features.shape == (len(self.bins), 3):
            # Not under motion: an arm swing repeats at multiples of the heart's interval too.
            outputs = self.harmonic_check(outputs, features)
        running = motion_g is not None and motion_g >= self.OCTAVE_MOTION_G
        belief = self.track(None if quality == SENSOR else outputs, end_s, running=running)
        value, low, high = self.summary(belief)
        if quality == GOOD:
            if high - low > self.MAX_CI_WIDTH_BPM:
                quality = UNCERTAIN
            elif not self.gate.accepts(value, motion_g):
                quality = MOTION
        m = self.model.manifest
        return [Estimate(self.device, m.task, value, m.unit, quality, motion_g, end_s,
                         self.label, {"hr_ci_low": low, "hr_ci_high": high})]


@dataclass(frozen=True)
class Calibration:
    """A cuff reading and the offsets it gave the BP model's outputs (cuff - model)."""

    systolic_mmhg: float
    diastolic_mmhg: float
    systolic_offset: float
    diastolic_offset: float
    model_sha256: str  # offsets belong to one model: a new model needs a new calibration
    device_time_s: float
    operator: str
    time: str  # UTC, ISO 8601
    # ln of the PPG pulse amplitude (sensor units) at the calibration: the model sees each
    # window's amplitude relative to it. None: a calibration stored before bp 3.1.0.
    ppg_log_amplitude: float | None = None


class BloodPressureRunner(ModelRunner):
    """Cuffless SBP/DBP from ECG + PPG. The model's outputs track changes; a cuff reading
    anchors them: offset = cuff - median of the model's usable estimates in the last
    CALIBRATION_SPAN_S. Until then estimates are published as "uncalibrated" and drive no
    alarm.

    Plausibility: an estimate is published as "uncertain" (no alarm, never calibrated
    against) when its window's features lie outside what the model was trained on (the
    manifest's `plausibility` bounds), when an output sits at the int8 model's range limit
    or outside the trained range, or when systolic jumps more than MAX_STEP_MMHG in one hop
    while the heart rate stays steady (a heart does not do that; a misread beat does). Three
    jumps in a row that agree with each other are a new level and are accepted. A model
    marked experimental in its manifest adds details {"experimental": true} to every
    estimate.

    Pulse amplitude: the model sees each window's PPG pulse amplitude relative to the one a
    calibration fixed (the median over the windows it was made against), so the sensor's
    gain cancels; before a calibration the ratio is 1. A calibration re-estimates those
    windows against the reference it fixes, as training does. A ratio beyond what the
    model takes (BP_AMPLITUDE_RATIOS: a sensor's gain or position changed) is uncertain."""

    CALIBRATION_SPAN_S = 30.0
    VITALS = ("systolic_bp", "diastolic_bp")
    MAX_STEP_MMHG = 20.0  # systolic change in one hop that a steady heart does not make
    STEADY_HR_BPM = 10.0  # a heart-rate change below this counts as steady
    NEW_LEVEL = 3  # consecutive jumps agreeing within MAX_STEP_MMHG: the pressure is there
    STEP_MEMORY_S = 30.0  # an accepted estimate older than this is no reference for a step

    def __init__(self, device: str, model: Model) -> None:
        super().__init__(device, model)
        self.calibration: Calibration | None = None
        # (end_s, the feature function's own output) of the usable recent windows
        self._recent: deque[tuple[float, np.ndarray]] = deque()
        self._doubts: deque[tuple[float, str]] = deque()  # (end_s, why) of uncertain windows
        self._measured: np.ndarray | None = None  # the window's features, amplitude in units
        self._features: np.ndarray | None = None  # ... as the model took them
        self._last: tuple[float, np.ndarray, float] | None = None  # accepted: t, outputs, hr
        self._jumps: list[np.ndarray] = []
        self._shape_points = int(self.params.get("shape_points", 32))
        feature = self.feature

        def relative(*signals: np.ndarray, **params: object) -> np.ndarray:
            self._measured = feature(*signals, **params)
            reference = self.calibration.ppg_log_amplitude if self.calibration else None
            self._features = bp_relative_amplitude(self._measured, reference,
                                                   self._shape_points)
            return self._features

        self.feature = relative

    def _range_limits(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(lowest, highest, half a step) of each output an int8 affine model can give."""
        m = self.model.manifest
        spec = m.output
        if spec.dtype != "int8" or m.output_kind != "affine":
            return None
        scale = np.asarray(m.output_params["scale"], np.float64)
        offset = np.asarray(m.output_params["offset"], np.float64)
        raw = (np.array([-128.0, 127.0]) - spec.zero_point) * spec.scale
        return (offset + scale * raw[0], offset + scale * raw[1],
                np.abs(scale) * spec.scale / 2)

    def doubt(self, outputs: np.ndarray, end_s: float) -> str | None:
        """Why the model's outputs for this window are not to be trusted, or None."""
        m = self.model.manifest
        bounds = m.plausibility
        names = m.output_params.get("names") or list(self.VITALS)
        limits = self._range_limits()
        if limits is not None:
            low, high, half = limits
            at = (outputs <= low + half) | (outputs >= high - half)
            if at.any():
                i = int(np.argmax(at))
                return f"{names[i]} at the model's range limit ({outputs[i]:.1f} {m.unit})"
        if "output_low" in bounds:
            low, high = np.asarray(bounds["output_low"]), np.asarray(bounds["output_high"])
            o = _first_outside(outputs, low, high)
            if o is not None:
                return (f"{names[o]} {outputs[o]:.1f} {m.unit} outside the trained range "
                        f"{low[o]:g}-{high[o]:g}")
        why = self._amplitude_doubt()
        if why is not None:
            return why
        x = self._features
        if x is not None and "input_low" in bounds:
            lo, hi = np.asarray(bounds["input_low"]), np.asarray(bounds["input_high"])
            f = _first_outside(x, lo, hi)
            if f is not None:
                return (f"feature {bp_feature_name(f, self._shape_points)} "
                        f"= {x[f]:.3g} outside its training range {lo[f]:g}..{hi[f]:g}")
        return self._step(outputs, end_s)

    def _amplitude_doubt(self) -> str | None:
        """The PPG pulse beyond the amplitude ratios the model takes (its input is clipped):
        a sensor whose gain or position changed since the calibration, most likely."""
        cal, measured = self.calibration, self._measured
        if cal is None or cal.ppg_log_amplitude is None or measured is None or measured[-1] < 0.5:
            return None
        ratio = float(np.exp(bp_log_amplitude(measured, self._shape_points)
                             - cal.ppg_log_amplitude))
        low, high = BP_AMPLITUDE_RATIOS
        if low <= ratio <= high:
            return None
        return (f"PPG pulse amplitude x{ratio:.3g} of the calibration's, outside the "
                f"{low:.2f}-{high:.2f} the model takes (sensor gain or position changed?): "
                "calibrate again")

    def _step(self, outputs: np.ndarray, end_s: float) -> str | None:
        """A jump of systolic pressure at a steady heart rate (see the class docstring)."""
        x = self._features
        hr = float(bp_hr_bpm(x, self._shape_points)) if x is not None else 0.0
        last = self._last
        if last is not None and end_s - last[0] <= self.STEP_MEMORY_S:
            step = abs(float(outputs[0] - last[1][0]))
            if step > self.MAX_STEP_MMHG and abs(hr - last[2]) < self.STEADY_HR_BPM:
                self._jumps = [*self._jumps, outputs][-self.NEW_LEVEL :]
                sbp = [float(j[0]) for j in self._jumps]
                if len(sbp) < self.NEW_LEVEL or np.ptp(sbp) > self.MAX_STEP_MMHG:
                    return (f"systolic jumped {step:.0f} mmHg in {self.hop / self.rate:g} s "
                            f"at a steady heart rate ({hr:.0f} bpm)")
        self._jumps = []
        self._last = (end_s, outputs, hr)
        return None

    def interpret(self, outputs: np.ndarray, quality: str, motion_g: float | None,
                  end_s: float) -> list[Estimate]:
        m = self.model.manifest
        if quality == GOOD:
            why = self.doubt(outputs, end_s)
            if why is None:
                if self._measured is not None:  # what the feature function just measured
                    self._recent.append((end_s, self._measured))
            else:
                quality = UNCERTAIN
                self._doubts.append((end_s, why))
        for recent in (self._recent, self._doubts):
            while recent and recent[0][0] < end_s - self.CALIBRATION_SPAN_S:
                recent.popleft()
        cal = self.calibration
        if cal is None:
            values, quality = outputs, UNCALIBRATED if quality == GOOD else quality
        else:
            values = outputs + np.array([cal.systolic_offset, cal.diastolic_offset])
        details = {"experimental": True} if m.experimental else {}
        return [Estimate(self.device, vital, float(v), m.unit, quality, motion_g, end_s,
                         self.label, details)
                for vital, v in zip(self.VITALS, values, strict=True)]

    def calibrate(self, systolic: float, diastolic: float, operator: str,
                  time: str) -> Calibration:
        if not self._recent:
            if self._doubts:
                whys = list(dict.fromkeys(why for _, why in self._doubts))
                raise CommandError(
                    f"the {len(self._doubts)} blood-pressure estimates of the last "
                    f"{self.CALIBRATION_SPAN_S:g} s are all implausible ({whys[-1]}"
                    + (f"; and {len(whys) - 1} other reason(s)" if len(whys) > 1 else "")
                    + "): a calibration against them would be wrong; check the ECG "
                    "electrodes and the PPG sensor, keep the wearer still, then send it again")
            raise CommandError(f"no good blood-pressure estimate in the last "
                               f"{self.CALIBRATION_SPAN_S:g} s to calibrate against; check "
                               "the ECG electrodes and the PPG sensor, then send it again")
        measured = np.stack([m for _, m in self._recent])
        reference = bp_amplitude_reference(measured, self._shape_points)
        x = bp_relative_amplitude(measured, reference, self._shape_points)
        median = np.median([self.model.estimates(row) for row in x], axis=0)
        self.calibration = Calibration(
            systolic, diastolic, round(systolic - float(median[0]), 2),
            round(diastolic - float(median[1]), 2), self.model.manifest.sha256,
            self._recent[-1][0], operator, time, reference)
        return self.calibration


URGENT_LOW_RISK = rule_output("glucose_forecast", "urgent_low_risk")


class GlucoseRunner:
    """CGM readings -> glucose estimates: the reading itself (alarms on it need no model),
    its trend and, with the glucose model, its forecasts (e.g. `glucose_20min`).

    CGMs read every 1, 5 or 15 minutes, some irregularly, and miss readings. Trend and model
    both work on the model's own grid (GRID_S, 5 min, anchored at the newest reading): the
    readings are interpolated linearly onto it within a short gap (CGM_MAX_GAP_S: a 15-min CGM, or
    two missed 5-min readings) and never across a longer one. A grid that a gap breaks
    gives no forecast (details say so, `forecast_available` false), never a guess.
    """

    GRID_S = 300.0  # the trend's grid; a glucose model brings its own (1 / its rate)
    TREND_SPAN_S = 15 * 60.0  # least-squares slope over the grid points of the last 15 min ...
    TREND_MIN_SPAN_S = 10 * 60.0  # ... or at least of the last 10 min (three 5-min readings)

    def __init__(self, device: str, model: Model | None) -> None:
        self.device, self.model = device, model
        self.label = "cgm"
        self.grid_s = self.GRID_S
        self.span_s = self.TREND_SPAN_S
        if model is not None:
            m = model.manifest
            self.feature = get_feature(m.features)
            self.params = dict(m.feature_params, fs=m.sample_rate_hz)
            self.model_grid_s = 1.0 / m.sample_rate_hz
            self.model_points = m.preprocessing.window_samples
            self.span_s = max(self.span_s, (self.model_points - 1) * self.model_grid_s)
            self.names = m.output_params.get("names") or [m.task]
            self.label = f"{m.name}@{m.version}"
        # (device time s, mg/dL, bad) of the readings the grids may still need, oldest first
        self.readings: deque[tuple[float, float, bool]] = deque()
        self.last_reading_s: float | None = None

    def add(self, frame: Frame) -> list[Estimate]:
        if frame.channel != Channel.CGM:
            return []
        if frame.flags & Flag.BOOT or (
                self.readings and frame.timestamp_us / 1e6 < self.readings[-1][0] - CLOCK_BACK_S):
            self.readings.clear()  # the device restarted (BOOT, or its clock went back): anew
        # A LEAD_OFF reading is a signal-loss placeholder; SATURATED is the sensor's "LOW" or
        # "HIGH" at its range limit: a real, alarming reading.
        bad = bool(frame.flags & Flag.LEAD_OFF)
        estimates = []
        values = frame.values[:, 0]
        newest = frame.timestamp_us / 1e6 + (len(values) - 1) / frame.sample_rate_hz
        for i, value in enumerate(values):
            t = frame.timestamp_us / 1e6 + i / frame.sample_rate_hz
            if self.readings and t <= self.readings[-1][0]:
                continue  # a repeated reading (or one from before the newest: not history)
            interval = t - self.readings[-1][0] if self.readings else None
            self.readings.append((t, float(value), bad))
            while self.readings[0][0] < t - self.span_s - CGM_MAX_GAP_S:
                self.readings.popleft()
            self.last_reading_s = t
            details = self._details(bad)
            details["reading_age_s"] = round(max(newest - t, 0.0), 1)
            details["interval_s"] = None if interval is None else round(interval, 1)
            estimates.append(Estimate(self.device, "glucose", float(value), "mg/dL",
                                      SENSOR if bad else GOOD, None, t, self.label, details))
        return estimates

    def grid(self, step_s: float, points: int) -> np.ndarray:
        """The glucose at the newest reading and the `points - 1` grid points before it,
        `step_s` apart, oldest first; NaN where a gap longer than CGM_MAX_GAP_S (a bad
        reading leaves one) or the start of the history lies, all NaN if the newest reading
        is bad."""
        if not self.readings or self.readings[-1][2]:
            return np.full(points, np.nan)
        ts = np.fromiter((t for t, _, bad in self.readings if not bad), float)
        gs = np.fromiter((g for _, g, bad in self.readings if not bad), float)
        return cgm_on_grid(ts, gs, ts[-1] - step_s * np.arange(points - 1, -1, -1))

    @staticmethod
    def _slope_per_min(values: np.ndarray, step_s: float) -> float:
        x = np.arange(len(values)) - (len(values) - 1) / 2.0
        return float(x @ values / (x @ x)) * 60.0 / step_s  # least-squares line, closed form

    def _details(self, bad: bool) -> dict[str, float | None]:
        details: dict[str, float | None] = {"trend_mg_dl_per_min": None}
        n_trend = round(self.TREND_SPAN_S / self.grid_s) + 1
        n_min = round(self.TREND_MIN_SPAN_S / self.grid_s) + 1
        same_grid = self.model is not None and self.model_grid_s == self.grid_s
        points = max(n_trend, self.model_points) if same_grid else n_trend
        values = self.grid(self.grid_s, points)  # one grid serves trend and model
        if not bad:
            for n in (n_trend, n_min):
                if not np.isnan(values[-n:]).any():
                    slope = self._slope_per_min(values[-n:], self.grid_s)
                    details["trend_mg_dl_per_min"] = round(slope, 2)
                    break
        if self.model is None:
            details["forecast_available"] = False
            return details
        window = (values[-self.model_points:] if same_grid
                  else self.grid(self.model_grid_s, self.model_points))
        available = not bad and not np.isnan(window).any()
        forecasts: list[float | None] = [None] * len(self.names)
        if available:
            # mg/dL to 0.1; a probability (the urgent-low risk) to 0.001
            forecasts = [round(float(v), 3 if name == URGENT_LOW_RISK else 1) for name, v in
                         zip(self.names, self.model.estimates(
                             self.feature(window[:, None], **self.params)), strict=True)]
        details["forecast_available"] = available
        return details | dict(zip(self.names, forecasts, strict=True))


class MotionArtefactGate:
    """Flags an estimate that jumps away from the recent ones while the wearer moves.

    Under motion the PPG model sometimes locks onto the arm-swing cadence for a window or two
    (isolated 120-190 bpm readings in a 95 bpm walk: bench/alarms.py). A heart does not jump
    tens of beats per minute in a few seconds while walking, so such an estimate is published
    with quality "motion" and does not drive alarms. At rest nothing is gated: a real sudden
    tachycardia must alarm within 10 s.
    """

    MOTION_G = 0.05  # RMS band-passed acceleration above which the wearer counts as moving
    JUMP_BPM = 20.0  # further than this from the median of the recent estimates: a jump
    HISTORY = 5  # estimates (10 s at a 2 s hop)
    # A real new level reads steady; a lock onto the arm swing wanders by more than this.
    AGREE_BPM = 8.0

    def __init__(self) -> None:
        self._accepted: list[float] = []
        self._rejected: list[float] = []

    def accepts(self, value: float, motion_g: float | None) -> bool:
        ok = (motion_g is None or motion_g < self.MOTION_G or len(self._accepted) < 3
              or abs(value - float(np.median(self._accepted))) <= self.JUMP_BPM)
        if ok:
            self._accepted = [*self._accepted, value][-self.HISTORY :]
            self._rejected = []
            return True
        self._rejected = [*self._rejected, value][-3:]
        if len(self._rejected) == 3 and np.ptp(self._rejected) <= self.AGREE_BPM:
            # Three readings that agree with each other: the heart really is there now.
            self._accepted, self._rejected = self._rejected, []
            return True
        return False


class DeviceEstimator:
    """All models for one device. CGM readings are always turned into glucose estimates (the
    urgent low alarm must not depend on a model); the glucose model adds forecasts."""

    def __init__(self, device: str, models: list[Model]) -> None:
        self.device = device
        self.runners: list[ModelRunner] = []
        self.glucose = GlucoseRunner(device, None)
        self.replace_models(models)

    def replace_models(self, models: list[Model]) -> None:
        """Swap in new models. A model whose preprocessing is unchanged takes over its
        predecessor's buffers (and a BP model with the same hash its calibration), so no
        window is lost; others start filling afresh."""
        old, runners = list(self.runners), []
        glucose = None
        for model in models:
            task = model.manifest.task
            if task == "glucose_forecast":
                glucose = model
                continue
            if task not in RUNNERS:
                raise ModelError(f"model {model.manifest.name}: unknown task {task!r}; this "
                                 f"runtime knows {', '.join([*RUNNERS, 'glucose_forecast'])}")
            runner = next((r for r in old if type(r) is RUNNERS[task] and
                           r.model.manifest.preprocessing == model.manifest.preprocessing),
                          None)
            if runner is None:
                runner = RUNNERS[task](self.device, model)
            else:
                old.remove(runner)
                if (isinstance(runner, BloodPressureRunner) and runner.calibration
                        and runner.calibration.model_sha256 != model.manifest.sha256):
                    runner.calibration = None
                runner.model = model
                runner.label = f"{model.manifest.name}@{model.manifest.version}"
            runners.append(runner)
        self.runners = runners
        readings = self.glucose.readings
        self.glucose = GlucoseRunner(self.device, glucose)
        self.glucose.readings.extend(readings)  # trimmed to the new span on the next reading
        self.glucose.last_reading_s = readings[-1][0] if readings else None

    @property
    def blood_pressure(self) -> BloodPressureRunner | None:
        return next((r for r in self.runners if isinstance(r, BloodPressureRunner)), None)

    def add(self, frame: Frame) -> tuple[list[Estimate], list[Exception]]:
        """The estimates a frame completes, and why a model could not take it: a StreamError
        (a PPG too slow for the BP model), or any other exception, a fault (a bug, a bad
        value), after which that model starts afresh. One model's problem never costs another
        model the frame."""
        # NaN/inf would poison filter state for good. Integer samples times a finite scale are
        # finite, so only the scale and float samples need looking at (every frame passes here).
        if not math.isfinite(frame.scale) or (frame.samples.dtype.kind == "f"
                                              and not np.isfinite(frame.samples).all()):
            return [], [StreamError(f"{frame.channel.name} frame with a sample or scale that is "
                                    "not a finite number: dropped (a gap for the models)")]
        if frame.channel == Channel.CGM:
            try:
                return self.glucose.add(frame), []
            except Exception as err:  # reported as a fault by the pipeline
                # The reading alone still alarms (urgent low needs no model): publish it
                # without trend or forecast rather than lose it.
                return GlucoseRunner(self.device, None).add(frame), [err]
        estimates: list[Estimate] = []
        problems: list[Exception] = []
        for runner in self.runners:
            try:
                estimates += runner.add(frame)
            except StreamError as err:
                problems.append(err)
            except Exception as err:  # reported as a fault by the pipeline
                runner.reset()
                problems.append(err)
            if runner.fault is not None:
                problems.append(runner.fault)
                runner.fault = None
        return estimates, problems


RUNNERS: dict[str, type[ModelRunner]] = {
    "heart_rate": HeartRateRunner,
    "blood_pressure": BloodPressureRunner,
}
