"""Wrist PPG and 3-axis accelerometer synthesis from a per-second HR and motion trajectory.

The models, smallest first (references in docs/simulator.md):

- Respiration: a breathing phase at ~0.25 Hz at rest that speeds up with motion.
- Heart beats: integral pulse frequency modulation (IPFM): the beat rate is the target HR
  modulated by respiratory sinus arrhythmia (RSA, at the breathing rate), Mayer waves (LF,
  ~0.1 Hz) and a very slow wander; a beat falls wherever the integrated rate crosses an
  integer. Heart-rate variability shrinks as HR rises, as it does in exercise.
- PPG pulse: each beat is a sum of two Gaussians (systolic wave + diastolic/reflected wave
  behind a dicrotic notch). Their timing follows the left-ventricular ejection time, which
  shortens with HR (Weissler's regression), so pulses get narrower and the diastolic wave
  moves in and flattens as HR rises. The pulse reaches the wrist after a pulse arrival time.
  Blood pressure stiffens the arteries: the reflected wave returns earlier and larger, and the
  pulse grows with the pulse pressure (nothing changes at the reference 120/80 mmHg).
  Breathing modulates pulse amplitude (RIAV) and the baseline (RIIV).
- Wrist motion: arm swing locked to the step cadence (one swing per two steps) rotates the
  gravity vector and adds tangential and centripetal acceleration; each step adds a foot-strike
  jolt with harmonics; small fidgeting at rest.
- Motion artefact: the PPG picks up the hydrostatic effect of arm swing (wrist height) and
  sensor-skin movement (inertial acceleration and its square), with random per-recording
  coupling. At running cadence the step frequency can sit right on the heart rate.
- Sensor: slow drift of the DC level, white noise, accelerometer noise.
- AF: irregularly irregular beats (independent gamma RR) inside AF episodes.
- Blood pressure moves the pulse arrival time (Moens-Korteweg); ECG (Gaussian P-QRS-T per
  beat, f-waves in AF) shares the beat times; cuff readings; glucose (glucose.py) and CGM.
- Signal-level faults (faults.py): detached sensor, ECG lead-off, motion bursts, CGM gaps.

Everything random comes from one numpy Generator, so a seed reproduces a recording exactly.
Latent, slow signals are computed on a 50 Hz control grid and evaluated at the exact sample
times of each sensor, so the PPG and accelerometer rates are independent parameters.

A `Simulation` computes the samples chunk by chunk (the control grid walked forward with its
running sums carried, the sample noise replayed from saved generator states), so a day is
never in memory and every chunk length gives the same bytes; `simulate` joins the chunks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

import numpy as np

from device_sim import glucose
from device_sim.errors import SimulatorError
from device_sim.faults import Fault, active_kinds
from device_sim.scenarios import (
    CHANNELS,
    DEFAULT_BP_MMHG,
    DEFAULT_CHANNELS,
    Scenario,
    Trajectory,
    get_scenario,
)

CONTROL_RATE = 50.0  # Hz, grid for slow latent signals (HR, respiration, cadence)
MARGIN_S = 4.0  # simulated before t=0 and after the end, so pulses at the edges overlap fully
MIN_RATE_HZ, MAX_RATE_HZ = 10.0, 10_000.0
# Band-limited noise on the control grid is one FFT over the whole grid up to this length
# plus the fade; longer, a chain of such blocks cross-faded (see _Noise). One hour: a day's
# FFTs held whole took 527 MB, these 115 MB.
NOISE_BLOCK_S, NOISE_FADE_S = 3_600.0, 300.0

PPG_DC = 100_000.0  # a.u.; raw photodiode level (green LED, wrist)
PPG_AC = 1_000.0  # a.u.; typical pulse amplitude, ~1 % perfusion index
GRAVITY = 9.81  # m/s^2
PPG_AMBIENT = 1_500.0  # a.u.; what the photodiode sees off the skin (ambient light only)
CUFF_FIRST_S, CUFF_INTERVAL_S = 30.0, 300.0  # a reading takes ~30 s; then every 5 min
# Pulse transit to the wrist (Moens-Korteweg with Hughes' E = E0 exp(alpha P)): PWV grows as
# exp(alpha P / 2) with the pressure at the wave foot, the diastolic; see docs/simulator.md.
PWV_REF_M_S, DBP_REF_MMHG, PWV_ALPHA_PER_MMHG = 4.7, DEFAULT_BP_MMHG[1], 0.017
SBP_REF_MMHG = DEFAULT_BP_MMHG[0]
# The reflected wave travels heart -> major reflection site (aortic bifurcation, ~0.5 m
# effective reflecting distance) and back, during systole: at the mean arterial pressure.
REFLECTION_PATH_M = 0.5
MAP_REF_MMHG = DBP_REF_MMHG + (SBP_REF_MMHG - DBP_REF_MMHG) / 3
PAT_PATH_M = 0.75  # the population's heart-to-wrist path (Arteries.path_m default)


@dataclass(frozen=True)
class Arteries:
    """One subject's arterial tree, for the pressure terms of pulse arrival and pulse shape.

    `path_m`: heart-to-wrist path length (body size; the reflecting distance scales with it).
    `stiffness`: multiplies the wave speed at every pressure (PWV_0 = 4.7 m/s x stiffness;
    age and arteriosclerosis). Both change how much the pulse arrival time moves per mmHg
    (dPTT/dP = -path alpha / (2 PWV)), which is why a cuff calibration of the offset alone
    does not make cuffless BP exact. The defaults are the population reference: a subject
    with them is simulated exactly as without them (byte-identical signals).
    """

    path_m: float = PAT_PATH_M
    stiffness: float = 1.0

    def __post_init__(self) -> None:
        if not (0.3 <= self.path_m <= 1.2):
            raise SimulatorError(f"arterial path {self.path_m} m is outside 0.3-1.2 m")
        if not (0.5 <= self.stiffness <= 2.0):
            raise SimulatorError(f"arterial stiffness {self.stiffness} is outside 0.5-2.0")


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass(frozen=True)
class Truth:
    """Per-second ground truth; index s covers [s, s+1) seconds of the recording."""

    t: np.ndarray  # seconds, 0, 1, 2, ...
    hr_bpm: np.ndarray  # true instantaneous HR (60 / RR) averaged over that second
    motion: np.ndarray  # motion level 0..1 (0 rest, ~0.5 walk, 1 run)
    resp_rate_bpm: np.ndarray = field(default_factory=_empty)  # breaths per minute
    beat_times: np.ndarray = field(default_factory=_empty)  # heart beats (s), not per second
    sbp_mmhg: np.ndarray = field(default_factory=_empty)  # systolic pressure
    dbp_mmhg: np.ndarray = field(default_factory=_empty)  # diastolic pressure
    glucose_mg_dl: np.ndarray = field(default_factory=_empty)  # plasma glucose
    pat_ms: np.ndarray = field(default_factory=_empty)  # pulse arrival time, R peak -> PPG foot
    rhythm: np.ndarray = field(default_factory=_empty)  # "sinus" or "af"
    faults: list[list[str]] = field(default_factory=list)  # kinds of the faults active

    def rows(self) -> Iterator[dict]:
        """One dict per second: t, hr_bpm, motion, resp_rate_bpm, sbp_mmhg, dbp_mmhg,
        glucose_mg_dl, pat_ms, rhythm, faults (whichever this truth has)."""
        columns = {"hr_bpm": self.hr_bpm, "motion": self.motion,
                   "resp_rate_bpm": self.resp_rate_bpm, "sbp_mmhg": self.sbp_mmhg,
                   "dbp_mmhg": self.dbp_mmhg, "glucose_mg_dl": self.glucose_mg_dl,
                   "pat_ms": self.pat_ms}
        columns = {k: v for k, v in columns.items() if len(v)}
        for i, t in enumerate(self.t):
            row = {"t": int(t)} | {k: round(float(v[i]), 3) for k, v in columns.items()}
            if len(self.rhythm):
                row["rhythm"] = str(self.rhythm[i])
            if self.faults:
                row["faults"] = self.faults[i]
            yield row

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """One JSON object per second (see `rows`)."""
        with open(path, "w", encoding="utf-8") as out:
            for row in self.rows():
                out.write(json.dumps(row) + "\n")


@dataclass(frozen=True)
class Recording:
    """What the wearable measured, plus what was really going on."""

    ppg: np.ndarray  # float64 (n,), arbitrary units, raw (DC + pulse + wander + noise + artefact)
    ppg_rate: float
    acc: np.ndarray  # float64 (m, 3), in g, includes gravity
    acc_rate: float
    truth: Truth
    ecg: np.ndarray | None = None  # float64 (k,), mV, lead I-like
    ecg_rate: float = 250.0
    cgm: tuple[np.ndarray, np.ndarray] | None = None  # (times s, readings mg/dL; NaN = none)
    cuff: tuple[np.ndarray, np.ndarray] | None = None  # (times s, (k, 2) systolic/diastolic)
    lead_off: dict[str, np.ndarray] = field(default_factory=dict)  # channel -> bool per sample
    faults: tuple[Fault, ...] = ()  # frame- and writer-level faults still to apply
    channels: tuple[str, ...] = DEFAULT_CHANNELS  # what the device streams
    ppg_scale: float = 1.0  # a.u. per ADC count on the wire (real recordings may differ)

    @property
    def duration_s(self) -> int:
        return len(self.truth.t)


@dataclass(frozen=True)
class Chunk:
    """The dense signals of seconds [start_s, end_s) of a simulation (see `Simulation.chunks`):
    samples round(start_s * rate) up to round(end_s * rate) of each channel."""

    start_s: int
    end_s: int
    ppg: np.ndarray
    acc: np.ndarray
    ecg: np.ndarray | None
    lead_off: dict[str, np.ndarray]


def simulate(
    scenario: Scenario | str,
    seed: int = 0,
    *,
    ppg_rate: float = 64.0,
    acc_rate: float = 32.0,
    noise: float = 1.0,
    ecg_rate: float = 250.0,
    channels: Iterable[str] | None = None,
    faults: Iterable[Fault] = (),
    arteries: Arteries | None = None,
) -> Recording:
    """Simulate a wrist wearable running through `scenario` (an object or a built-in name).

    `channels` (default: the scenario's) picks what the device streams, from "ppg", "acc",
    "ecg", "bp" (cuff readings), "cgm"; the ground truth always has every vital. `faults`
    are added to the scenario's own.

    `noise` scales everything in the PPG that is not the cardiac pulse or breathing (sensor
    noise, drift, motion artefact) and the accelerometer noise: 0 = clean, 1 = a typical wrist
    device, 2-3 = poor skin contact. The same seed gives the same recording; with the same
    seed, changing only a sample rate keeps the same beats, breathing and movement.
    `arteries` (default: the population reference) sets the subject's arterial path and
    stiffness, which shape how pressure moves the pulse arrival time and the pulse.

    The whole recording in memory; `simulation` gives the same signals a chunk at a time.
    """
    return simulation(scenario, seed, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=noise,
                      ecg_rate=ecg_rate, channels=channels, faults=faults,
                      arteries=arteries).recording()


def simulation(
    scenario: Scenario | str,
    seed: int = 0,
    *,
    ppg_rate: float = 64.0,
    acc_rate: float = 32.0,
    noise: float = 1.0,
    ecg_rate: float = 250.0,
    channels: Iterable[str] | None = None,
    faults: Iterable[Fault] = (),
    arteries: Arteries | None = None,
) -> Simulation:
    """`simulate`'s recording as a `Simulation`: truth and sparse readings now, the dense
    signals chunk by chunk (`Simulation.chunks`), so a day never sits in memory."""
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    rng = np.random.default_rng(seed)
    trajectory = scenario.trajectory(rng)
    return Simulation(trajectory, rng, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=noise,
                      ecg_rate=ecg_rate,
                      channels=scenario.channels if channels is None else channels,
                      faults=(*scenario.faults, *faults), arteries=arteries)


def check_rate(name: str, rate: float) -> float:
    """A sample rate as float, or SimulatorError naming the valid range."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        value = float("nan")
    if not (MIN_RATE_HZ <= value <= MAX_RATE_HZ):
        raise SimulatorError(
            f"{name} {rate!r} is not a sample rate between {MIN_RATE_HZ:g} and "
            f"{MAX_RATE_HZ:g} Hz; use e.g. 64 for PPG, 32 for the accelerometer"
        )
    return value


def synthesize(
    trajectory: Trajectory,
    rng: np.random.Generator,
    *,
    ppg_rate: float = 64.0,
    acc_rate: float = 32.0,
    noise: float = 1.0,
    ecg_rate: float = 250.0,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    faults: Iterable[Fault] = (),
    arteries: Arteries | None = None,
) -> Recording:
    """Signals for any per-second trajectory (the engine behind `simulate`), in memory."""
    return Simulation(trajectory, rng, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=noise,
                      ecg_rate=ecg_rate, channels=channels, faults=faults,
                      arteries=arteries).recording()


class Simulation:
    """A recording that is computed as it is read: what a long run streams.

    Building it draws every random quantity in the order the physiology always has (so a
    seed gives the same bytes) and computes what is small: per-beat parameters, the per-second
    truth, cuff and CGM readings. `chunks()` then produces the dense signals a slice of time
    at a time: the control grid of that slice, the samples, the noise of those samples
    (replayed from the generator state where it started) and the signal faults. Memory stays
    that of one chunk plus the noise blocks (NOISE_BLOCK_S), whatever the duration.

    Only PPG and accelerometer draw from `rng` before the PPG noise, so adding channels or
    faults never changes those two signals; everything else draws from generators seeded
    after them.
    """

    def __init__(
        self,
        trajectory: Trajectory,
        rng: np.random.Generator,
        *,
        ppg_rate: float = 64.0,
        acc_rate: float = 32.0,
        noise: float = 1.0,
        ecg_rate: float = 250.0,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        faults: Iterable[Fault] = (),
        arteries: Arteries | None = None,
    ) -> None:
        self.ppg_rate = check_rate("ppg_rate", ppg_rate)
        self.acc_rate = check_rate("acc_rate", acc_rate)
        self.ecg_rate = check_rate("ecg_rate", ecg_rate)
        self.channels = tuple(channels)
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise SimulatorError(
                f"unknown channel {unknown[0]!r}; use some of: {', '.join(CHANNELS)}")
        self.faults = tuple(faults)
        try:
            level = float(noise)
        except (TypeError, ValueError):
            level = float("nan")
        if not (0 <= level < float("inf")):
            raise SimulatorError(
                f"noise {noise!r} must be zero or a positive number (1 = typical)")
        self.noise = level
        self.ppg_scale = 1.0
        n_sec = trajectory.duration_s
        self.duration_s = n_sec
        self._rates = {"ppg": self.ppg_rate, "acc": self.acc_rate, "ecg": self.ecg_rate}
        self._sizes = {name: round(n_sec * rate) for name, rate in self._rates.items()}
        lat = _Latent.draw(trajectory, rng, arteries or Arteries())
        self._body = _Body.draw(lat, rng)
        self._heart = _Heart.draw(lat, rng)
        self._coupling = _PpgCoupling.draw(lat, rng)
        self._lat = lat
        # The sample noise is drawn after everything above, accelerometer then PPG, one
        # value per sample: remember where each starts and step over it, to replay it later.
        self._acc_noise = _skip(rng, (self._sizes["acc"], 3), 0.004 * self.noise)
        self._ppg_noise = (_skip(rng, (self._sizes["ppg"],), 0.02 * PPG_AC * self.noise)
                           if self.noise > 0 else None)

        # Independent generators for what came later, so one never shifts another.
        ecg_rng, cuff_rng, cgm_rng, fault_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(
                int(rng.integers(2**63))).spawn(4))
        self._ecg = _Ecg.draw(lat, self._heart, ecg_rng) if "ecg" in self.channels else None
        seconds = np.arange(n_sec, dtype=float)
        glucose_min = glucose.plasma_glucose(n_sec, trajectory.meal_g, trajectory.bolus_u,
                                             trajectory.basal_glucose_mg_dl)
        self.cgm = (glucose.cgm_readings(glucose_min, n_sec, cgm_rng, self.noise)
                    if "cgm" in self.channels else None)
        self.cuff = (_cuff_readings(trajectory, cuff_rng, self.noise)
                     if "bp" in self.channels else None)
        heart = self._heart
        self.truth = Truth(
            t=seconds,
            hr_bpm=heart.mean_hr(seconds),
            motion=trajectory.motion.astype(float).copy(),
            resp_rate_bpm=np.diff(heart.resp_phase_at_seconds) / (2 * np.pi) * 60.0,
            beat_times=heart.beats[(heart.beats >= 0) & (heart.beats < n_sec)],
            sbp_mmhg=trajectory.sbp_mmhg.astype(float).copy(),
            dbp_mmhg=trajectory.dbp_mmhg.astype(float).copy(),
            glucose_mg_dl=glucose.per_second(glucose_min, n_sec),
            pat_ms=1000.0 * np.interp(seconds + 0.5, heart.beats, heart.onset - heart.beats),
            rhythm=np.where(trajectory.af, "af", "sinus"),
            faults=active_kinds(self.faults, n_sec),
        )
        self._effects = self._fault_effects(fault_rng)

    def _fault_effects(self, rng: np.random.Generator) -> list[_Effect]:
        """What detach, lead_off, motion and cgm_gap do to the signals, in fault order
        (each fault's own samples: they are as long as the fault)."""
        has_ecg = self._ecg is not None

        def span(channel: str, fault: Fault) -> tuple[int, int]:
            n, rate = self._sizes[channel], self._rates[channel]
            return min(n, round(fault.start_s * rate)), min(n, round(fault.end_s * rate))

        effects: list[_Effect] = []
        for fault in self.faults:
            if fault.kind == "detach":
                a, b = span("ppg", fault)
                if fault.mode == "saturated":  # bright ambient light: the ADC rails
                    effects.append(_Effect("ppg", a, b, "set", 2.0**31))
                else:  # only ambient light, no pulse; the device reports no skin contact
                    ambient = PPG_AMBIENT + rng.normal(0.0, 5.0, b - a)
                    effects.append(_Effect("ppg", a, b, "set", ambient, lead_off=True))
            elif fault.kind == "lead_off" and has_ecg:
                effects.append(_Effect("ecg", *span("ecg", fault), "set", 0.0, lead_off=True))
            elif fault.kind == "motion":
                effects += _motion_burst(fault, span, self._rates, rng, has_ecg)
            elif fault.kind == "cgm_gap" and self.cgm is not None:
                times, readings = self.cgm
                readings[(times >= fault.start_s) & (times < fault.end_s)] = np.nan
        return effects

    def chunks(self, seconds: int = 120) -> Iterator[Chunk]:
        """The dense signals, `seconds` of them at a time (the last chunk may be shorter).
        Every chunk size gives the same samples as the whole recording at once."""
        if not (isinstance(seconds, int) and seconds >= 1):
            raise SimulatorError(f"chunk length {seconds!r} must be a whole number of seconds")
        walk = _Walk(self._lat, self._body, self._heart, self._coupling, self._ecg)
        acc_noise = _replay(self._acc_noise)
        ppg_noise = _replay(self._ppg_noise) if self._ppg_noise is not None else None
        lead_channels = {e.channel for e in self._effects if e.lead_off and e.stop > e.start}
        noise = self.noise
        for start in range(0, self.duration_s, seconds):
            end = min(self.duration_s, start + seconds)
            grid = walk.window(*_control_span(start, end, self._lat.n))
            t = _sample_times(start, end, self.acc_rate)
            acc = self._body.acceleration(t, self.acc_rate, grid)
            acc += acc_noise.normal(0.0, 0.004 * noise, acc.shape)
            t = _sample_times(start, end, self.ppg_rate)
            ppg = self._heart.ppg(t, grid) + self._coupling.baseline(t, noise, grid)
            if ppg_noise is not None:  # noise > 0
                ppg += self._coupling.artefact(t, self._body, self.ppg_rate, noise, grid)
                ppg += ppg_noise.normal(0.0, 0.02 * PPG_AC * noise, ppg.shape)
            ecg = None
            if self._ecg is not None:
                t = _sample_times(start, end, self.ecg_rate)
                ecg = self._ecg.ecg(t, self.ecg_rate, noise, grid)
            signals = {"ppg": ppg, "acc": acc, "ecg": ecg}
            first = {name: round(start * rate) for name, rate in self._rates.items()}
            lead_off = {c: np.zeros(len(signals[c]), bool) for c in sorted(lead_channels)
                        if signals[c] is not None}
            for effect in self._effects:
                effect.apply(signals[effect.channel], first[effect.channel],
                             lead_off.get(effect.channel))
            yield Chunk(start, end, ppg, acc, ecg, lead_off)

    def recording(self, chunk_s: int = 600) -> Recording:
        """All of it in memory, as one Recording (joined from `chunks`)."""
        parts = list(self.chunks(chunk_s))

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p, name) for p in parts])

        ecg = joined("ecg") if self._ecg is not None else None
        lead_off = {c: np.concatenate([p.lead_off[c] for p in parts])
                    for c in (parts[0].lead_off if parts else {})}
        return Recording(joined("ppg"), self.ppg_rate, joined("acc"), self.acc_rate,
                         self.truth, ecg, self.ecg_rate, self.cgm, self.cuff,
                         lead_off=lead_off, faults=self.faults, channels=self.channels)


@dataclass(frozen=True)
class _Effect:
    """A signal fault on samples [start, stop) of one channel: set them to `values`, or add
    `values` to them; `lead_off` also flags them."""

    channel: str
    start: int
    stop: int
    how: str  # "set" or "add"
    values: np.ndarray | float
    lead_off: bool = False

    def apply(self, signal: np.ndarray | None, first: int,
              lead_off: np.ndarray | None) -> None:
        """On a chunk of `signal` whose first sample is sample `first` of the recording."""
        if signal is None:
            return
        a, b = max(self.start, first), min(self.stop, first + len(signal))
        if a >= b:
            return
        part = slice(a - first, b - first)
        values = self.values
        if isinstance(values, np.ndarray):
            values = values[a - self.start:b - self.start]
        if self.how == "set":
            signal[part] = values
        else:
            signal[part] += values
        if self.lead_off and lead_off is not None:
            lead_off[part] = True


def _motion_burst(fault: Fault, span: Callable[[str, Fault], tuple[int, int]],
                  rates: dict[str, float], rng: np.random.Generator,
                  has_ecg: bool) -> list[_Effect]:
    """Vigorous, irregular movement (scratching, shaking the wrist): 1-8 Hz acceleration of
    `level` g RMS per axis, coupled into the PPG (sensor-skin movement) and the ECG
    (electrode motion), with 0.5 s fade in and out."""
    def burst(channel: str, axes: int) -> tuple[int, int, np.ndarray]:
        a, b = span(channel, fault)
        m, rate = b - a, rates[channel]
        if m < 2:
            return a, b, np.zeros((max(m, 0), axes))
        env = np.clip(np.minimum(np.arange(m), m - 1 - np.arange(m)) / (0.5 * rate), 0, 1)
        shake = np.stack([_band_noise(rng, m, rate, 1.0, min(8.0, 0.45 * rate))
                          for _ in range(axes)], axis=1)
        return a, b, fault.level * env[:, None] * shake

    a, b, shake = burst("acc", 3)
    effects = [_Effect("acc", a, b, "add", shake)]
    a, b, shake = burst("ppg", 1)
    effects.append(_Effect("ppg", a, b, "add", 3.0 * PPG_AC * shake[:, 0]))
    if has_ecg:
        a, b, shake = burst("ecg", 1)
        effects.append(_Effect("ecg", a, b, "add", 0.3 * shake[:, 0]))
    return effects


def _skip(rng: np.random.Generator, shape: tuple[int, ...], scale: float,
          block: int = 1 << 16) -> dict:
    """Step `rng` over rng.normal(0, scale, shape), as if it had been drawn; returns the
    state it started from (`_replay`). Drawing in blocks gives the same values, in order."""
    start = rng.bit_generator.state
    for i in range(0, shape[0], block):
        rng.normal(0.0, scale, (min(block, shape[0] - i), *shape[1:]))
    return start


def _replay(state: dict) -> np.random.Generator:
    """A generator that continues from `state` (one saved by `_skip`)."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _sample_times(start_s: int, end_s: int, rate: float) -> np.ndarray:
    """Times of samples round(start_s rate) .. round(end_s rate) - 1 of a channel."""
    return np.arange(round(start_s * rate), round(end_s * rate)) / rate


def _control_span(start_s: float, end_s: float, n: int) -> tuple[int, int]:
    """Control-grid indices around [start_s, end_s], a sample to spare on each side."""
    a = int(np.floor((start_s + MARGIN_S) * CONTROL_RATE)) - 1
    b = int(np.ceil((end_s + MARGIN_S) * CONTROL_RATE)) + 2
    return max(0, a), min(n, b)

def _cuff_readings(traj: Trajectory, rng: np.random.Generator,
                   noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Oscillometric cuff readings: the pressure at the end of a ~30 s measurement, with the
    +-5 mmHg error the validation protocols allow (ISO 81060-2), whole mmHg."""
    times = np.arange(CUFF_FIRST_S, traj.duration_s, CUFF_INTERVAL_S)
    idx = times.astype(int)
    values = np.stack([traj.sbp_mmhg[idx], traj.dbp_mmhg[idx]], axis=1)
    values += rng.normal(0.0, 4.0 * min(noise, 1.0), values.shape)
    return times, np.round(values)


def _band_noise(rng: np.random.Generator, n: int, rate: float, lo: float, hi: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise band-limited to [lo, hi] Hz, by FFT shaping.

    Drawn over at least a few periods of `hi`, so a short recording still gets a slow
    wander (a piece of it) instead of an empty band.
    """
    size = max(n, int(np.ceil(4 * rate / hi)))
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    spectrum[(freqs < lo) | (freqs > hi) | (freqs == 0)] = 0.0
    x = np.fft.irfft(spectrum, size)
    return x[:n] / x.std()


_BLOCK = round(NOISE_BLOCK_S * CONTROL_RATE)
_FADE = round(NOISE_FADE_S * CONTROL_RATE)


class _Noise:
    """Band-limited noise on the control grid (`_band_noise`), read a stretch at a time.

    Up to NOISE_BLOCK_S + NOISE_FADE_S long it is one `_band_noise` of the whole grid, drawn
    from `rng` (what the simulator has always drawn). Longer, the FFT over the whole grid
    would need the whole day in memory, so it is a chain of blocks of that length, one every
    NOISE_BLOCK_S: the first drawn from `rng` (and drawn again from the saved state when it
    is read again), the others from generators seeded from it, each overlapping the next by
    NOISE_FADE_S, over which a cos/sin cross-fade keeps the variance 1. Reading forward, only
    the block being read (and the one before it, during the fade) is kept.
    """

    def __init__(self, rng: np.random.Generator, n: int, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self._state = rng.bit_generator.state
        single = n <= _BLOCK + _FADE
        if single:
            self._whole: np.ndarray | None = _band_noise(rng, n, CONTROL_RATE, lo, hi)
            self._seed = None
        else:  # draw the first block's white noise now (the order of draws); shape it later
            self._whole = None
            rng.standard_normal(_BLOCK + _FADE)
            self._seed = int(rng.integers(2**63))
        self._cache: dict[int, np.ndarray] = {}

    def _block(self, k: int) -> np.ndarray:
        if k not in self._cache:
            self._cache = {j: x for j, x in self._cache.items() if j == k - 1}
            rng = _replay(self._state) if k == 0 else np.random.default_rng([self._seed, k])
            self._cache[k] = _band_noise(rng, _BLOCK + _FADE, CONTROL_RATE, self.lo, self.hi)
        return self._cache[k]

    def __getitem__(self, part: slice) -> np.ndarray:
        a, b = part.start, part.stop
        if self._whole is not None:
            return self._whole[a:b]
        out = np.empty(max(0, b - a))
        for k in range(a // _BLOCK, (b - 1) // _BLOCK + 1):
            lo, hi = max(a, k * _BLOCK), min(b, (k + 1) * _BLOCK)
            r = np.arange(lo, hi) - k * _BLOCK
            x = self._block(k)[r]
            if k > 0 and r[0] < _FADE:
                fade = r < _FADE
                w = (r[fade] + 0.5) / _FADE * (np.pi / 2)
                x[fade] = x[fade] * np.sin(w) + self._block(k - 1)[r[fade] + _BLOCK] * np.cos(w)
            if r[-1] >= _FADE:  # past the fade: the block before is not needed again
                self._cache.pop(k - 1, None)
            out[lo - a:hi - a] = x
        return out


def _running_sum(values: np.ndarray, carry: float | None) -> np.ndarray:
    """np.cumsum continued from `carry` (the sum so far): bit for bit the cumsum of the
    whole, since the sum is sequential."""
    if carry is None:
        return np.cumsum(values)
    return np.cumsum(np.concatenate(([carry], values)))[1:]


@dataclass
class _Latent:
    """What the slow signals on the control grid are made of (HR, motion, cadence,
    breathing, pressure, rhythm); `_Walk` evaluates them over stretches of the grid."""

    traj: Trajectory
    n: int  # control-grid samples, from -MARGIN_S to duration + MARGIN_S
    centres: np.ndarray  # the middle of each second of the trajectory
    step_noise: _Noise  # cadence jitter
    resp_base_hz: float
    resp_noise: _Noise  # breathing-rate drift
    resp_phase0: float
    arteries: Arteries = field(default_factory=Arteries)

    @classmethod
    def draw(cls, traj: Trajectory, rng: np.random.Generator,
             arteries: Arteries | None = None) -> _Latent:
        n_sec = traj.duration_s
        n = round((n_sec + 2 * MARGIN_S) * CONTROL_RATE)
        # Cadence jitters by a couple of percent from stride to stride.
        step_noise = _Noise(rng, n, 0.0, 0.2)
        # Breathing: ~12-18 /min at rest, faster with exertion, drifting by ~8 %.
        resp_base = rng.uniform(0.2, 0.3)
        resp_noise = _Noise(rng, n, 0.0, 0.05)
        return cls(traj, n, np.arange(n_sec) + 0.5, step_noise, resp_base, resp_noise,
                   rng.uniform(0, 2 * np.pi), arteries or Arteries())

    @property
    def pat_offset_s(self) -> float:
        return self.traj.pat_offset_s

    def tc(self, a: int, b: int) -> np.ndarray:
        """Times of control samples a..b-1 (s)."""
        start = -MARGIN_S * CONTROL_RATE
        return np.arange(start + a, start + b) / CONTROL_RATE

    def static(self, a: int, b: int) -> tuple[np.ndarray, ...]:
        """(tc, hr, motion, dbp, sbp, af) on control samples a..b-1: the trajectory's."""
        traj, tc = self.traj, self.tc(a, b)
        af = traj.af[np.clip(np.floor(tc).astype(int), 0, traj.duration_s - 1)]
        return (tc, np.interp(tc, self.centres, traj.hr_bpm),
                np.interp(tc, self.centres, traj.motion),
                np.interp(tc, self.centres, traj.dbp_mmhg),
                np.interp(tc, self.centres, traj.sbp_mmhg), af)

    def hr_at(self, t: float) -> float:
        """The target HR at time t, as interpolated on the control grid."""
        i = int(np.floor((t + MARGIN_S) * CONTROL_RATE))
        a, b = max(0, i - 1), min(self.n, i + 3)
        tc, hr, *_ = self.static(a, b)
        return np.interp(t, tc, hr)

    def tc_at(self, i: int) -> float:
        return self.tc(i, i + 1)[0]

    def af_edges(self) -> np.ndarray:
        """Control-grid indices where AF starts and ends (alternately), from the per-second
        rhythm: each second covers CONTROL_RATE samples, the margins repeat the ends."""
        af = self.traj.af.astype(np.int8)
        values = np.concatenate(([0], af[:1], af, af[-1:], [0]))
        lead = round(MARGIN_S * CONTROL_RATE)
        starts = np.concatenate(([0], lead + round(CONTROL_RATE) * np.arange(len(af) + 1),
                                 [self.n]))
        return starts[np.flatnonzero(np.diff(values))]


@dataclass
class _Grid:
    """The control grid over a stretch: what `_Walk.window` returns. Parts not drawn yet
    (or not simulated, e.g. no ECG) are None."""

    tc: np.ndarray
    hr: np.ndarray
    motion: np.ndarray
    dbp: np.ndarray
    sbp: np.ndarray
    af: np.ndarray  # bool
    step_hz: np.ndarray
    resp_phase: np.ndarray
    arm_phase: np.ndarray | None = None  # body: one swing per two steps
    swing_var: np.ndarray | None = None
    fidget: np.ndarray | None = None  # (n, 3), g
    drift: np.ndarray | None = None  # PPG coupling: DC drift, unit variance
    strap: np.ndarray | None = None  # slow variation of the artefact coupling
    riiv: np.ndarray | None = None  # heart: breathing in the PPG baseline, units of PPG_AC
    f_wave: np.ndarray | None = None  # ECG: AF fibrillatory activity, mV
    wander: np.ndarray | None = None  # ECG: baseline wander, mV

    def rows(self, a: int, b: int | None = None) -> _Grid:
        return _Grid(**{f.name: None if (v := getattr(self, f.name)) is None else v[a:b]
                        for f in fields(self)})

    @staticmethod
    def join(parts: list[_Grid]) -> _Grid:
        if len(parts) == 1:
            return parts[0]
        return _Grid(**{f.name: None if getattr(parts[0], f.name) is None else
                        np.concatenate([getattr(p, f.name) for p in parts])
                        for f in fields(_Grid)})


class _Walk:
    """The control grid over stretches that move forward in time (each may overlap the one
    before), carrying the running sums (breathing and arm-swing phases) from one to the next
    so that every stretch is bit for bit that part of the whole grid."""

    def __init__(self, lat: _Latent, body: _Body | None = None, heart: _Heart | None = None,
                 coupling: _PpgCoupling | None = None, ecg: _Ecg | None = None) -> None:
        self.lat, self.body, self.heart, self.coupling, self.ecg = lat, body, heart, coupling, ecg
        self._grid: _Grid | None = None
        self._a = self._b = 0  # the stretch self._grid covers
        self._sums: dict[str, float] = {}

    def window(self, a: int, b: int) -> _Grid:
        """The grid on control samples a..b-1; a and b never go back."""
        if a < self._a or b < self._b:
            raise SimulatorError("control-grid windows must move forward in time")
        parts = []
        if self._grid is not None and a < self._b:
            parts.append(self._grid.rows(a - self._a))
        if b > self._b:
            new = self._compute(self._b, b)
            parts.append(new.rows(a - self._b) if a > self._b else new)
        self._grid, self._a, self._b = _Grid.join(parts), a, b
        return self._grid

    def _sum(self, name: str, values: np.ndarray) -> np.ndarray:
        total = _running_sum(values, self._sums.get(name))
        if len(total):
            self._sums[name] = total[-1]
        return total

    def _compute(self, a: int, b: int) -> _Grid:
        lat = self.lat
        tc, hr, motion, dbp, sbp, af = lat.static(a, b)
        step_hz = np.interp(tc, lat.centres, lat.traj.cadence_spm) / 60.0
        step_hz *= 1.0 + 0.02 * lat.step_noise[a:b]
        resp_hz = lat.resp_base_hz + 0.3 * motion
        resp_hz *= 1.0 + 0.08 * lat.resp_noise[a:b]
        resp_phase = lat.resp_phase0 + 2 * np.pi * self._sum("resp", resp_hz) / CONTROL_RATE
        grid = _Grid(tc, hr, motion, dbp, sbp, af, step_hz, resp_phase)
        if (body := self.body) is not None:
            grid.arm_phase = body.arm_phase0 + np.pi * self._sum("arm", step_hz) / CONTROL_RATE
            grid.swing_var = 0.1 * body.swing_noise[a:b]
            grid.fidget = 0.01 * np.stack([f[a:b] for f in body.fidget_noise], 1)
        if (coupling := self.coupling) is not None:
            grid.drift = coupling.drift_noise[a:b]
            grid.strap = 1.0 + 0.3 * coupling.strap_noise[a:b]
        if (heart := self.heart) is not None:
            grid.riiv = heart.riiv_amp * np.sin(resp_phase + heart.riiv_shift)
        if (ecg := self.ecg) is not None:
            grid.f_wave = 0.08 * af * np.sin(2 * np.pi * ecg.f_hz * tc
                                             + 2.0 * ecg.f_noise[a:b])
            grid.wander = 0.05 * np.sin(resp_phase) + 0.05 * ecg.wander_noise[a:b]
        return grid


def _slabs(n: int, size: int = 30_000) -> Iterator[tuple[int, int]]:
    """The whole control grid in stretches, each overlapping the one before by a sample (so
    any time between two stretches has both its neighbours in one)."""
    for start in range(0, n, size):
        yield max(0, start - 1), min(n, start + size)


def _upto(times: np.ndarray, end: float, last: bool) -> int:
    """Index after the (sorted) times <= end; all of them in the last stretch."""
    return len(times) if last else int(np.searchsorted(times, end, side="right"))


@dataclass
class _Heart:
    """Beat times (IPFM) and the per-beat PPG pulse parameters."""

    beats: np.ndarray  # cardiac cycle starts, s
    onset: np.ndarray  # PPG pulse foot at the wrist, s
    amp: np.ndarray
    mu1: np.ndarray
    s1: np.ndarray
    a2: np.ndarray
    mu2: np.ndarray
    s2: np.ndarray
    riiv_amp: float  # breathing in the baseline (RIIV), units of PPG_AC
    riiv_shift: float
    resp_at_beat: np.ndarray  # sin(breathing phase) at each beat
    in_af: np.ndarray  # bool per beat
    resp_phase_at_seconds: np.ndarray  # breathing phase at 0, 1, ..., duration s

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _Heart:
        n = lat.n
        # HRV is vagal: large at rest, nearly gone at high HR. Scaled per person.
        hrv_scale = rng.uniform(0.6, 1.4)
        mayer = _Noise(rng, n, 0.04, 0.15)
        vlf = _Noise(rng, n, 0.0, 0.04)
        cycle0 = rng.uniform()
        beats, af_at = _ipfm_beats(lat, hrv_scale, mayer, vlf, cycle0)
        if lat.traj.af.any():
            beats = _af_beats(beats, af_at, lat, rng)

        ibi = np.diff(beats, append=2 * beats[-1] - beats[-2])
        hr = 60.0 / ibi
        m = len(beats)
        jitter = rng.normal(0.0, 1.0, (4, m))
        # Left-ventricular ejection time shortens with HR (Weissler 1968: 413 - 1.7 HR ms).
        # The systolic wave peaks halfway through ejection; the diastolic (reflected) wave
        # follows the dicrotic notch at the end of ejection and fades as HR rises.
        lvet = np.clip(0.413 - 0.0017 * hr, 0.2, 0.36)
        mu1 = 0.5 * lvet * (1.0 + 0.03 * jitter[0])
        s1 = mu1 / 2.6
        mu2 = lvet + 0.1
        s2 = 0.12 + 0.4 * (lvet - 0.2)
        a2 = np.clip(0.5 - 0.002 * (hr - 60.0), 0.25, 0.55) * (1.0 + 0.05 * jitter[1])
        # Pulse arrival time: pre-ejection period + transit to the wrist, shorter at high HR.
        pat = np.clip(0.26 - 0.0008 * (hr - 60.0), 0.15, 0.3)
        # Pulse amplitude: perfusion per person, breathing (RIAV), vasomotion, beat noise.
        vaso_noise = _Noise(rng, n, 0.0, 0.1)
        at = _at_beats(lat, beats, vaso_noise)
        resp_at_beat, vaso = at["resp"], at["vaso"]
        amp = rng.uniform(0.6, 1.4) * (1.0 + 0.08 * resp_at_beat + 0.05 * vaso + 0.03 * jitter[2])
        in_af = at["af"] > 0.5
        if lat.traj.af.any():
            # Frank-Starling: after a short RR the ventricle fills less and ejects less.
            prev = np.diff(beats, prepend=beats[0] - ibi[0])
            amp = np.where(in_af, amp * np.clip(prev / np.median(prev), 0.4, 1.3) ** 0.8, amp)
        # Transit to the wrist gets shorter as diastolic pressure stiffens the arteries;
        # zero at the reference 80 mmHg, so the HR-only model above is the calibration point.
        dbp = at["dbp"]
        art = lat.arteries
        pat = pat + _transit_delta(dbp, art.path_m, art.stiffness) + lat.pat_offset_s
        # Pressure shapes the pulse too (exactly nothing at the reference 120/80 mmHg, so a
        # seed's PPG there is unchanged): stiffer arteries return the reflected wave earlier
        # and larger; a wider pulse pressure makes a larger volume pulse.
        sbp = at["sbp"]
        shift, gain = _reflection(sbp, dbp, art)
        mu2 = np.maximum(mu2 + shift, 0.75 * lvet)  # never before the systolic peak
        a2 = np.minimum(a2 * gain, 1.0)
        amp = amp * (np.maximum(sbp - dbp, 10.0) / (SBP_REF_MMHG - DBP_REF_MMHG))
        riiv_amp = rng.uniform(0.1, 0.3)
        riiv_shift = rng.uniform(-0.5, 0.5)
        return cls(beats, beats + pat, amp, mu1, s1, a2, mu2, s2, riiv_amp, riiv_shift,
                   resp_at_beat, in_af, at["seconds"])

    def __post_init__(self) -> None:
        # How many earlier pulses can still reach a sample: the same for every chunk.
        extent = float(np.max(self.mu2 + 4 * self.s2))
        self._lookback = int(np.ceil(extent / np.min(np.diff(self.onset)))) + 1

    def mean_hr(self, seconds: np.ndarray) -> np.ndarray:
        """60/RR as a step function, averaged over each second = 60 x beats counted in it."""
        edges = np.append(seconds, seconds[-1] + 1)
        count = np.interp(edges, self.beats, np.arange(len(self.beats)))
        return 60.0 * np.diff(count)

    def pulses(self, t: np.ndarray) -> np.ndarray:
        """Sum of every pulse overlapping t (overlap-add, vectorised over samples)."""
        onset = self.onset
        idx = np.searchsorted(onset, t, side="right") - 1
        y = np.zeros_like(t)
        for j in range(-1, self._lookback):  # -1: the next pulse's leading tail
            k = idx - j
            ok = (k >= 0) & (k < len(onset))
            k = np.where(ok, k, 0)
            tau = t - onset[k]
            g = np.exp(-0.5 * ((tau - self.mu1[k]) / self.s1[k]) ** 2)
            g += self.a2[k] * np.exp(-0.5 * ((tau - self.mu2[k]) / self.s2[k]) ** 2)
            y += np.where(ok, self.amp[k] * g, 0.0)
        return y

    def ppg(self, t: np.ndarray, grid: _Grid) -> np.ndarray:
        return PPG_DC + PPG_AC * (self.pulses(t) + np.interp(t, grid.tc, grid.riiv))


def _ipfm_beats(lat: _Latent, hrv_scale: float, mayer: _Noise, vlf: _Noise,
                cycle0: float) -> tuple[np.ndarray, np.ndarray]:
    """IPFM: the beat rate is the target HR modulated by RSA, Mayer waves and VLF wander;
    a beat falls wherever its integral crosses an integer. Returns the beat times and, per
    beat, whether it falls inside an AF episode."""
    walk = _Walk(lat)
    beats, af_at = [], []
    carry: float | None = None  # the running sum of the beat rate so far
    previous = 0.0  # the integrator at the sample the next stretch overlaps
    next_k: float | None = None
    for a, b in _slabs(lat.n):
        grid = walk.window(a, b)
        new = slice(0 if carry is None else 1, None)  # the overlapped sample is summed
        hrv = np.clip((140.0 - grid.hr[new]) / 80.0, 0.15, 1.0) * hrv_scale
        rsa = 0.04 * np.sin(grid.resp_phase[new])  # HR rises on inspiration
        beat_hz = grid.hr[new] / 60.0 * (1.0 + hrv * (rsa + 0.02 * mayer[a:b][new]
                                                       + 0.01 * vlf[a:b][new]))
        total = _running_sum(beat_hz, carry)
        cycles = cycle0 + total / CONTROL_RATE  # IPFM integrator
        if carry is not None:
            cycles = np.concatenate(([previous], cycles))
        carry, previous = total[-1], cycles[-1]
        if next_k is None:
            next_k = np.ceil(cycles[0])
        k = np.arange(next_k, np.floor(cycles[-1]) + 1)
        next_k = next_k + len(k)
        at = np.interp(k, cycles, grid.tc)
        beats.append(at)
        af_at.append(np.interp(at, grid.tc, grid.af.astype(float)) > 0.5)
    return np.concatenate(beats), np.concatenate(af_at)


def _at_beats(lat: _Latent, beats: np.ndarray, vaso: _Noise) -> dict[str, np.ndarray]:
    """Latent values at the beats (sin of the breathing phase, vasomotion, AF, pressures),
    and the breathing phase at each whole second 0..duration (for the truth)."""
    walk = _Walk(lat)
    seconds = np.arange(lat.traj.duration_s + 1, dtype=float)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("resp", "vaso", "af", "dbp", "sbp",
                                                        "seconds")}
    p = q = 0
    for a, b in _slabs(lat.n):
        grid = walk.window(a, b)
        last = b == lat.n
        p_end, q_end = _upto(beats, grid.tc[-1], last), _upto(seconds, grid.tc[-1], last)
        at, tc = beats[p:p_end], grid.tc
        out["resp"].append(np.sin(np.interp(at, tc, grid.resp_phase)))
        out["vaso"].append(np.interp(at, tc, vaso[a:b]))
        out["af"].append(np.interp(at, tc, grid.af.astype(float)))
        out["dbp"].append(np.interp(at, tc, grid.dbp))
        out["sbp"].append(np.interp(at, tc, grid.sbp))
        out["seconds"].append(np.interp(seconds[q:q_end], tc, grid.resp_phase))
        p, q = p_end, q_end
    return {k: np.concatenate(v) for k, v in out.items()}


def _transit_delta(dbp: np.ndarray, path_m: float = PAT_PATH_M,
                   stiffness: float = 1.0) -> np.ndarray:
    """PTT(dbp) - the population's PTT at 80 mmHg, for a heart-to-wrist path of `path_m` and
    arteries `stiffness` times the reference's: Moens-Korteweg (PWV = sqrt(E h / 2 r rho))
    with E = E0 exp(alpha P) gives PWV = PWV_ref exp(alpha (P - P_ref) / 2): about
    -1.1 ms/mmHg near 80 mmHg for the reference subject (0.75 m, stiffness 1)."""
    pwv = PWV_REF_M_S * stiffness * np.exp(PWV_ALPHA_PER_MMHG * (dbp - DBP_REF_MMHG) / 2)
    return path_m / pwv - PAT_PATH_M / PWV_REF_M_S


def _reflection(sbp: np.ndarray, dbp: np.ndarray,
                arteries: Arteries | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(delay change s, amplitude gain) of the reflected wave against the reference 120/80
    mmHg. It returns after 2 L / PWV, L the effective reflecting distance, PWV at the mean
    arterial pressure (Moens-Korteweg with Hughes' E, as for the transit time); its size
    relative to the systolic wave scales with PWV (augmentation: stiffer arteries reflect
    more, and sooner, onto systole). Exactly (0, 1) at the reference, for the reference
    `arteries`; a subject's reflecting distance scales with its path, its PWV with its
    stiffness."""
    art = arteries or Arteries()
    reflect_m = REFLECTION_PATH_M * (art.path_m / PAT_PATH_M)
    mean = dbp + (sbp - dbp) / 3
    pwv = PWV_REF_M_S * art.stiffness * np.exp(PWV_ALPHA_PER_MMHG * (mean - MAP_REF_MMHG) / 2)
    shift = (2 * reflect_m * (1 / pwv - 1 / PWV_REF_M_S)
             + 2 * (reflect_m - REFLECTION_PATH_M) / PWV_REF_M_S)
    return shift, pwv / PWV_REF_M_S


def _af_beats(sinus: np.ndarray, af_at: np.ndarray, lat: _Latent,
              rng: np.random.Generator) -> np.ndarray:
    """Replace the beats inside AF episodes (`af_at`: per sinus beat) by an irregularly
    irregular sequence: RR drawn independently (no autocorrelation) from a gamma
    distribution with a CV of 0.25 around the target rate, never shorter than the AV node's
    ~280 ms refractory period."""
    edges = lat.af_edges()
    new = [sinus[~af_at]]
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        t, stop = lat.tc_at(a), lat.tc_at(min(b, lat.n - 1))
        run = []
        while True:
            mean_rr = 60.0 / lat.hr_at(t)
            t += max(0.28, mean_rr * rng.gamma(16.0, 1.0 / 16.0))
            if t >= stop:
                break
            run.append(t)
        new.append(np.array(run))
    return np.sort(np.concatenate(new))


@dataclass
class _Ecg:
    """A single-lead ECG built from the beat times: per beat, P, Q, R, S and T waves as
    Gaussians (the morphology of McSharry's ECGSYN, laid out in time). QT follows Bazett
    (QT = 0.4 sqrt(RR)); PR stays ~160 ms. In AF the P wave is replaced by fibrillatory
    f-waves (4-9 Hz, ~0.08 mV). Breathing modulates QRS amplitude and the baseline; muscle
    noise and mains hum scale with `noise`."""

    beats: np.ndarray  # R peaks, s
    rr: np.ndarray  # interval to the next beat, s
    amp: np.ndarray  # per-beat R amplitude, mV
    p_amp: np.ndarray  # 0 in AF
    f_hz: float  # AF fibrillatory frequency
    f_noise: _Noise  # its phase wander
    wander_noise: _Noise  # baseline wander
    # (centre at RR = 1 s, width, relative amplitude, scales with sqrt(RR)?)
    WAVES = ((-0.16, 0.025, 0.15, False), (-0.03, 0.010, -0.12, False),
             (0.0, 0.011, 1.0, False), (0.03, 0.011, -0.25, False), (0.28, 0.06, 0.30, True))

    @classmethod
    def draw(cls, lat: _Latent, heart: _Heart, rng: np.random.Generator) -> _Ecg:
        beats = heart.beats
        rr = np.diff(beats, append=2 * beats[-1] - beats[-2])
        resp = heart.resp_at_beat
        amp = rng.uniform(0.8, 1.5) * (1.0 + 0.05 * resp + 0.02 * rng.normal(0, 1, len(beats)))
        p_amp = np.where(heart.in_af, 0.0, 1.0)
        f_hz = rng.uniform(4.0, 9.0)
        f_noise = _Noise(rng, lat.n, 0.0, 1.0)
        return cls(beats, rr, amp, p_amp, f_hz, f_noise, _Noise(rng, lat.n, 0.0, 0.3))

    def ecg(self, t: np.ndarray, rate: float, noise: float, grid: _Grid) -> np.ndarray:
        idx = np.searchsorted(self.beats, t)  # the next R peak
        y = np.zeros_like(t)
        # The previous beat's S and T waves, the next beat's P and Q: T ends well inside
        # the shortest RR (280 ms in AF), so no other beat reaches a sample.
        for j in (-1, 0):
            k = np.clip(idx + j, 0, len(self.beats) - 1)
            tau = t - self.beats[k]
            stretch = np.sqrt(np.clip(self.rr[k], 0.25, 2.0))
            for centre, width, a, scales in self.WAVES:
                c, w = (centre * stretch, width * stretch) if scales else (centre, width)
                gain = a * (self.p_amp[k] if centre < -0.1 else 1.0)
                y += self.amp[k] * gain * np.exp(-0.5 * ((tau - c) / w) ** 2)
        y += np.interp(t, grid.tc, grid.f_wave) + np.interp(t, grid.tc, grid.wander)
        if noise > 0:
            y += 0.01 * noise * np.sin(2 * np.pi * 50.0 * t) * (rate > 100)
        return y


@dataclass
class _Body:
    """Wrist kinematics: posture, arm swing and foot strikes -> accelerometer reading."""

    arm_phase0: float  # rad; the arm swings once per two steps from there
    swing_noise: _Noise  # stride-to-stride amplitude variation
    posture_rest: np.ndarray  # gravity direction in the device frame, at rest
    posture_walk: np.ndarray
    posture_run: np.ndarray
    harmonics: np.ndarray  # foot-strike harmonic amplitudes
    harmonic_phase: np.ndarray
    fidget_noise: list[_Noise]  # per axis

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _Body:
        n = lat.n
        arm_phase0 = rng.uniform(0, 2 * np.pi)
        swing_noise = _Noise(rng, n, 0.0, 0.3)

        def unit(v: np.ndarray) -> np.ndarray:
            return v / np.linalg.norm(v)

        # Device axes: x along the forearm towards the hand, y across the wrist, z out of the
        # face. Resting on a lap the face is up; walking the arm hangs; running it is bent.
        rest = unit(np.array([0.05, -0.15, 0.98]) + rng.normal(0, 0.15, 3))
        walk = unit(np.array([-0.92, 0.1, 0.35]) + rng.normal(0, 0.08, 3))
        run = unit(np.array([-0.45, 0.15, 0.88]) + rng.normal(0, 0.08, 3))
        harmonics = np.array([1.0, 0.6, 0.35, 0.2]) * rng.uniform(0.8, 1.2, 4)
        fidget = [_Noise(rng, n, 0.1, 2.0) for _ in range(3)]
        return cls(arm_phase0, swing_noise, rest, walk, run, harmonics,
                   rng.uniform(0, 2 * np.pi, 4), fidget)

    def kinematics(self, t: np.ndarray, rate: float,
                   grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(swing angle rad, gravity (n,3) g, inertial acceleration (n,3) g) at times t."""
        def at(values: np.ndarray) -> np.ndarray:
            return np.interp(t, grid.tc, values)

        m = at(grid.motion)
        psi = at(grid.arm_phase)
        omega = np.pi * at(grid.step_hz)  # arm swing, rad/s
        amp = 0.5 * m * (1.0 + at(grid.swing_var))  # ~14 deg walking, ~29 deg running
        theta = amp * np.sin(psi)
        arm_m = 0.65 - 0.25 * m  # pivot-to-wrist length; the elbow bends when running

        w_walk = np.clip(2 * m, 0, 1)[:, None]
        w_run = np.clip(2 * m - 1, 0, 1)[:, None]
        posture = (1 - w_walk) * self.posture_rest + w_walk * (
            (1 - w_run) * self.posture_walk + w_run * self.posture_run
        )
        posture /= np.linalg.norm(posture, axis=1, keepdims=True)
        # Swinging the forearm rotates the device about its y axis.
        c, s = np.cos(theta), np.sin(theta)
        gx, gy, gz = posture.T
        gravity = np.stack([c * gx + s * gz, gy, -s * gx + c * gz], axis=1)

        tangential = -arm_m * amp * omega**2 * np.sin(psi) / GRAVITY
        centripetal = -arm_m * (amp * omega * np.cos(psi)) ** 2 / GRAVITY
        inertial = np.stack([centripetal, 0.2 * tangential, tangential], axis=1)
        # Foot strikes: a jolt per step along the vertical, with harmonics below Nyquist.
        strike = np.zeros_like(t)
        step_phase = 2 * psi
        step_hz = at(grid.step_hz)
        for h, (a, ph) in enumerate(zip(self.harmonics, self.harmonic_phase, strict=True), 1):
            strike += np.where(h * step_hz < 0.45 * rate, a * np.cos(h * step_phase + ph), 0.0)
        strike *= (0.1 * m + 0.4 * m**2) / self.harmonics.sum() * 2
        inertial += strike[:, None] * gravity
        inertial += (1 - m)[:, None] * np.stack([at(f) for f in grid.fidget.T], axis=1)
        return theta, gravity, inertial

    def acceleration(self, t: np.ndarray, rate: float, grid: _Grid) -> np.ndarray:
        _, gravity, inertial = self.kinematics(t, rate, grid)
        return gravity + inertial


@dataclass
class _PpgCoupling:
    """How motion and the sensor corrupt the PPG: drift, and motion artefact."""

    drift_noise: _Noise  # DC drift, unit variance
    coupling: np.ndarray  # (hydrostatic, inertial, inertial^2) weights
    direction: np.ndarray  # which acceleration direction moves the sensor on the skin
    strap_noise: _Noise  # slow variation of the coupling (strap shifts)

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _PpgCoupling:
        n = lat.n
        drift = _Noise(rng, n, 0.0, 0.03)
        direction = rng.normal(0, 1, 3)
        direction /= np.linalg.norm(direction)
        hydro = rng.uniform(0.3, 0.8) * rng.choice([-1, 1])
        coupling = rng.uniform(0.5, 1.5) * np.array(
            [hydro, rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.4)]
        )
        return cls(drift, coupling, direction, _Noise(rng, n, 0.0, 0.02))

    def baseline(self, t: np.ndarray, noise: float, grid: _Grid) -> np.ndarray:
        """Slow drift of the DC level (skin temperature, contact pressure): ~2 % of DC."""
        return 0.02 * noise * PPG_DC * np.interp(t, grid.tc, grid.drift)

    def artefact(self, t: np.ndarray, body: _Body, rate: float, noise: float,
                 grid: _Grid) -> np.ndarray:
        theta, _, inertial = body.kinematics(t, rate, grid)
        along = inertial @ self.direction
        hydro, inert, square = self.coupling
        # The square term shifts the DC with motion (contact pressure), as real sensors do.
        art = hydro * theta / 0.25 + inert * along / 0.5 + square * (along / 0.5) ** 2
        return PPG_AC * noise * np.interp(t, grid.tc, grid.strap) * art
