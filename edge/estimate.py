"""Per-device estimation: wire frames in, vital-sign estimates out (no I/O here).

For each model: every channel it consumes is placed on the device's own clock (frame
timestamps), gaps are held and marked bad, conditioned by edge.signal, cut into the model's
windows, checked for quality, turned into features by edge.features and run on the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.errors import StreamError
from edge.features import get_feature, motion_rms_g
from edge.infer import Model
from edge.signal import Conditioner
from wire import Channel, Flag, Frame

GOOD = "good"
SENSOR = "sensor"  # gap, lead-off, clipping or a flat line in the window
_BAD_FLAGS = Flag.LEAD_OFF | Flag.SATURATED
MOTION = "motion"  # a jump under motion: the model most likely locked onto the arm swing
ACC_ABSENT_S = 5.0  # no accelerometer frame for this long: estimate from the PPG alone


@dataclass(frozen=True)
class Estimate:
    device: str
    vital: str  # the model's task, e.g. "heart_rate"
    value: float
    unit: str
    quality: str  # "good", or why the window is not trustworthy
    motion_g: float | None  # None: the device has no accelerometer (motion unknown)
    device_time_s: float  # device clock at the end of the window
    model: str  # name@version


class ChannelTrack:
    """One channel of one device on the model's time grid.

    Samples are indexed from the device's boot at the model rate; `bad` marks samples that came
    from gap filling or a frame flagged lead-off / saturated / flat (a resampled sample takes
    the flag of the sensor sample at or just before it). Frames are conditioned lazily, in
    one filter call when a window needs them: scipy's per-call overhead dominates at
    frame-sized blocks.
    """

    def __init__(self, label: str, channel: Channel, model_rate: float,
                 band_hz: tuple[float, float], order: int) -> None:
        self.label, self.channel = label, channel
        self.model_rate, self.band_hz, self.order = model_rate, band_hz, order
        self.sensor_rate = 0.0
        self.reset()

    def reset(self) -> None:
        self.conditioner: Conditioner | None = None
        self.next_k = 0  # next expected sample index at the sensor rate
        self.start = 0  # model-rate index of values[0]
        self.values = np.zeros((0, 1))
        self.bad = np.zeros(0, dtype=bool)
        self._raw: list[np.ndarray] = []  # received, not yet conditioned
        self._raw_bad: list[np.ndarray] = []
        self._held_bad = np.zeros(0, dtype=bool)  # flags of raw samples outputs still need
        self._held_start = 0  # sensor index of _held_bad[0]
        self._last_raw: np.ndarray | None = None
        self.last_time_s = -math.inf

    @property
    def end(self) -> int:
        """Model-rate index one past the newest sample the received input yields (a resampled
        channel lags by its filter's half length, 10 model periods)."""
        return 0 if self.conditioner is None else self.conditioner.ready(self.next_k)

    def add(self, frame: Frame) -> None:
        raw = frame.values
        rate = frame.sample_rate_hz
        k = round(frame.timestamp_us * rate / 1e6)
        if self.conditioner is None or rate != self.sensor_rate:
            self.reset()
            self.sensor_rate = rate
            try:
                self.conditioner = Conditioner(rate, self.model_rate, self.band_hz, self.order)
            except ValueError as err:
                self.reset()
                raise StreamError(
                    f"{self.channel.name} at {rate:g} Hz cannot feed model {self.label} "
                    f"({self.model_rate:g} Hz): {err}") from None
            self.start = self.conditioner.align(k)
            self.next_k = self._held_start = k
            self.values = np.zeros((0, raw.shape[1]))
        bad = bool(frame.flags & _BAD_FLAGS) or bool(np.ptp(raw, axis=0).max() == 0)
        if k > self.next_k:  # lost frames: hold the last value, mark it bad
            hold = self._last_raw if self._last_raw is not None else raw[:1]
            self._push(np.repeat(hold, k - self.next_k, axis=0), True)
        elif k < self.next_k:  # overlap (clock jitter): drop what we already have
            raw = raw[self.next_k - k :]
        if len(raw):
            self._push(raw, bad)
        self.last_time_s = self.next_k / rate

    def _push(self, raw: np.ndarray, bad: bool) -> None:
        self._raw.append(raw)
        self._raw_bad.append(np.full(len(raw), bad))
        self._last_raw = raw[-1:]
        self.next_k += len(raw)

    def _condition(self) -> None:
        if not self._raw:
            return
        raw = np.concatenate(self._raw)
        held = np.concatenate([self._held_bad, *self._raw_bad])
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
    """Windows one device's channels as one model's manifest says and runs the model."""

    def __init__(self, device: str, model: Model) -> None:
        m = model.manifest
        self.device, self.model = device, model
        self.size, self.hop = m.preprocessing.window_samples, m.preprocessing.hop_samples
        self.rate = m.sample_rate_hz
        self.feature = get_feature(m.features)
        self.params = dict(m.feature_params, fs=m.sample_rate_hz)
        self.label = f"{m.name}@{m.version}"
        band = (m.bandpass_hz[0], m.bandpass_hz[1])
        self.tracks = {Channel[c]: ChannelTrack(self.label, Channel[c], m.sample_rate_hz, band,
                                                m.filter_order)
                       for c in m.channels}
        self.next_end = self.size
        self.gate = MotionArtefactGate()

    def add(self, frame: Frame) -> list[Estimate]:
        track = self.tracks.get(frame.channel)
        if track is None:
            return []
        if frame.flags & Flag.BOOT:  # the device restarted: its clock starts again at 0
            track.reset()
            if frame.channel == Channel.PPG:
                self.next_end = self.size
        track.add(frame)
        return self._ready_windows()

    def _ready_windows(self) -> list[Estimate]:
        ppg = self.tracks[Channel.PPG]
        acc = self.tracks.get(Channel.ACCEL)
        estimates = []
        if self.next_end < ppg.start + self.size:  # stream started late: align to it
            self.next_end = ppg.start + self.size + (-(ppg.start) % self.hop)
        while self.next_end <= ppg.end:
            start, end = self.next_end - self.size, self.next_end
            end_s = end / self.rate
            acc_window = acc.window(start, end) if acc is not None else None
            if acc is not None and acc_window is None and acc.last_time_s > end_s - ACC_ABSENT_S:
                break  # accelerometer data for this window is still on its way
            estimates.append(self._estimate(ppg.window(start, end), acc_window, end_s))
            self.next_end += self.hop
        for track in self.tracks.values():
            track.discard_before(self.next_end - self.size)
        return estimates

    def _estimate(self, ppg_window: tuple[np.ndarray, bool],
                  acc_window: tuple[np.ndarray, bool] | None, end_s: float) -> Estimate:
        ppg, ppg_bad = ppg_window
        ppg = ppg[:, 0]
        acc = acc_window[0] if acc_window is not None else None
        quality = GOOD
        if ppg_bad or float(np.std(ppg)) == 0.0:
            quality = SENSOR
        elif acc_window is not None and acc_window[1]:
            quality = "motion_unknown"
        value = self.model.predict(self.feature(ppg, acc, **self.params))
        motion_g = None if acc is None else motion_rms_g(acc)
        if not self.gate.accepts(value, motion_g) and quality == GOOD:
            quality = MOTION
        m = self.model.manifest
        return Estimate(self.device, m.task, value, m.unit, quality, motion_g, end_s,
                        self.label)


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
    """All models for one device."""

    def __init__(self, device: str, models: list[Model]) -> None:
        self.device = device
        self.runners = [ModelRunner(device, model) for model in models]

    def replace_models(self, models: list[Model]) -> None:
        """Swap in new models. A model whose preprocessing is unchanged takes over its
        predecessor's buffers, so no window is lost; others start filling afresh."""
        old, runners = list(self.runners), []
        for model in models:
            runner = next((r for r in old if r.model.manifest.preprocessing
                           == model.manifest.preprocessing), None)
            if runner is None:
                runner = ModelRunner(self.device, model)
            else:
                old.remove(runner)
                runner.model = model
                runner.label = f"{model.manifest.name}@{model.manifest.version}"
            runners.append(runner)
        self.runners = runners

    def add(self, frame: Frame) -> list[Estimate]:
        return [e for runner in self.runners for e in runner.add(frame)]
