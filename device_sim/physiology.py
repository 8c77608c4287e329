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
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

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
    """
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    rng = np.random.default_rng(seed)
    trajectory = scenario.trajectory(rng)
    return synthesize(trajectory, rng, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=noise,
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
    """Signals for any per-second trajectory (the engine behind `simulate`).

    Only PPG and accelerometer draw from `rng` before the PPG noise, so adding channels or
    faults never changes those two signals; everything else draws from generators seeded
    after them.
    """
    ppg_rate = check_rate("ppg_rate", ppg_rate)
    acc_rate = check_rate("acc_rate", acc_rate)
    ecg_rate = check_rate("ecg_rate", ecg_rate)
    channels = tuple(channels)
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise SimulatorError(f"unknown channel {unknown[0]!r}; use some of: {', '.join(CHANNELS)}")
    faults = tuple(faults)
    try:
        level = float(noise)
    except (TypeError, ValueError):
        level = float("nan")
    if not (0 <= level < float("inf")):
        raise SimulatorError(f"noise {noise!r} must be zero or a positive number (1 = typical)")
    noise = level
    n_sec = trajectory.duration_s
    latent = _Latent.draw(trajectory, rng, arteries or Arteries())
    body = _Body.draw(latent, rng)
    heart = _Heart.draw(latent, rng)
    ppg_gain = _PpgCoupling.draw(latent, rng)

    t_acc = np.arange(round(n_sec * acc_rate)) / acc_rate
    acc = _in_blocks(lambda t: body.acceleration(t, acc_rate), t_acc)
    acc += rng.normal(0.0, 0.004 * noise, acc.shape)  # MEMS noise density at ~30 Hz bandwidth

    t_ppg = np.arange(round(n_sec * ppg_rate)) / ppg_rate

    def ppg_block(t: np.ndarray) -> np.ndarray:
        y = heart.ppg(t) + ppg_gain.baseline(t, noise)
        if noise > 0:
            y += ppg_gain.artefact(t, body, ppg_rate, noise)
        return y

    ppg = _in_blocks(ppg_block, t_ppg)
    if noise > 0:
        ppg += rng.normal(0.0, 0.02 * PPG_AC * noise, ppg.shape)

    # Independent generators for what came later, so one never shifts another.
    ecg_rng, cuff_rng, cgm_rng, fault_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(
            int(rng.integers(2**63))).spawn(4))
    ecg = None
    if "ecg" in channels:
        t_ecg = np.arange(round(n_sec * ecg_rate)) / ecg_rate
        ecg_model = _Ecg.draw(latent, heart, ecg_rng)
        ecg = _in_blocks(lambda t: ecg_model.ecg(t, ecg_rate, noise), t_ecg)
    seconds = np.arange(n_sec, dtype=float)
    glucose_min = glucose.plasma_glucose(n_sec, trajectory.meal_g, trajectory.bolus_u,
                                         trajectory.basal_glucose_mg_dl)
    cgm = glucose.cgm_readings(glucose_min, n_sec, cgm_rng, noise) if "cgm" in channels else None
    cuff = _cuff_readings(trajectory, cuff_rng, noise) if "bp" in channels else None
    truth = Truth(
        t=seconds,
        hr_bpm=heart.mean_hr(seconds),
        motion=trajectory.motion.astype(float).copy(),
        resp_rate_bpm=latent.mean_resp_rate(seconds),
        beat_times=heart.beats[(heart.beats >= 0) & (heart.beats < n_sec)],
        sbp_mmhg=trajectory.sbp_mmhg.astype(float).copy(),
        dbp_mmhg=trajectory.dbp_mmhg.astype(float).copy(),
        glucose_mg_dl=glucose.per_second(glucose_min, n_sec),
        pat_ms=1000.0 * np.interp(seconds + 0.5, heart.beats, heart.onset - heart.beats),
        rhythm=np.where(trajectory.af, "af", "sinus"),
        faults=active_kinds(faults, n_sec),
    )
    rec = Recording(ppg, ppg_rate, acc, acc_rate, truth, ecg, ecg_rate, cgm, cuff,
                    faults=faults, channels=channels)
    return _apply_signal_faults(rec, faults, body, fault_rng)


def _cuff_readings(traj: Trajectory, rng: np.random.Generator,
                   noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Oscillometric cuff readings: the pressure at the end of a ~30 s measurement, with the
    +-5 mmHg error the validation protocols allow (ISO 81060-2), whole mmHg."""
    times = np.arange(CUFF_FIRST_S, traj.duration_s, CUFF_INTERVAL_S)
    idx = times.astype(int)
    values = np.stack([traj.sbp_mmhg[idx], traj.dbp_mmhg[idx]], axis=1)
    values += rng.normal(0.0, 4.0 * min(noise, 1.0), values.shape)
    return times, np.round(values)


def _apply_signal_faults(rec: Recording, faults: tuple[Fault, ...], body: _Body,
                         rng: np.random.Generator) -> Recording:
    """What detach, lead_off, motion and cgm_gap do to the signals a device measures."""
    def span(rate: float, n: int, fault: Fault) -> slice:
        return slice(min(n, round(fault.start_s * rate)), min(n, round(fault.end_s * rate)))

    lead_off = {"ppg": np.zeros(len(rec.ppg), bool)}
    if rec.ecg is not None:
        lead_off["ecg"] = np.zeros(len(rec.ecg), bool)
    for fault in faults:
        if fault.kind == "detach":
            part = span(rec.ppg_rate, len(rec.ppg), fault)
            if fault.mode == "saturated":  # bright ambient light: the ADC rails (SATURATED)
                rec.ppg[part] = 2.0**31
            else:  # only ambient light, no pulse; the device reports no skin contact
                rec.ppg[part] = PPG_AMBIENT + rng.normal(0.0, 5.0, len(rec.ppg[part]))
                lead_off["ppg"][part] = True
        elif fault.kind == "lead_off" and rec.ecg is not None:
            part = span(rec.ecg_rate, len(rec.ecg), fault)
            rec.ecg[part] = 0.0
            lead_off["ecg"][part] = True
        elif fault.kind == "motion":
            _motion_burst(rec, fault, rng)
        elif fault.kind == "cgm_gap" and rec.cgm is not None:
            times, readings = rec.cgm
            readings[(times >= fault.start_s) & (times < fault.end_s)] = np.nan
    rec.lead_off.update({k: v for k, v in lead_off.items() if v.any()})
    return rec


def _motion_burst(rec: Recording, fault: Fault, rng: np.random.Generator) -> None:
    """Vigorous, irregular movement (scratching, shaking the wrist): 1-8 Hz acceleration of
    `level` g RMS per axis, coupled into the PPG (sensor-skin movement) and the ECG
    (electrode motion), with 0.5 s fade in and out."""
    def burst(rate: float, n: int, axes: int) -> tuple[slice, np.ndarray]:
        part = slice(min(n, round(fault.start_s * rate)), min(n, round(fault.end_s * rate)))
        m = part.stop - part.start
        if m < 2:
            return part, np.zeros((max(m, 0), axes))
        env = np.clip(np.minimum(np.arange(m), m - 1 - np.arange(m)) / (0.5 * rate), 0, 1)
        shake = np.stack([_band_noise(rng, m, rate, 1.0, min(8.0, 0.45 * rate))
                          for _ in range(axes)], axis=1)
        return part, fault.level * env[:, None] * shake

    part, shake = burst(rec.acc_rate, len(rec.acc), 3)
    rec.acc[part] += shake
    part, shake = burst(rec.ppg_rate, len(rec.ppg), 1)
    rec.ppg[part] += 3.0 * PPG_AC * shake[:, 0]
    if rec.ecg is not None:
        part, shake = burst(rec.ecg_rate, len(rec.ecg), 1)
        rec.ecg[part] += 0.3 * shake[:, 0]


def _in_blocks(fn: Callable[[np.ndarray], np.ndarray], t: np.ndarray,
               block: int = 1 << 18) -> np.ndarray:
    """fn over t in blocks: same result, but hours of samples need no huge temporaries."""
    if len(t) <= block:
        return fn(t)
    return np.concatenate([fn(t[i:i + block]) for i in range(0, len(t), block)])


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


@dataclass
class _Latent:
    """Slow signals on the control grid, shared by the heart, the body and the PPG coupling."""

    tc: np.ndarray  # control-grid times, from -MARGIN_S to duration + MARGIN_S
    hr: np.ndarray  # target HR, bpm
    motion: np.ndarray  # 0..1
    step_hz: np.ndarray  # step frequency
    resp_phase: np.ndarray  # breathing phase, rad
    resp_hz: np.ndarray
    dbp: np.ndarray  # diastolic pressure, mmHg
    sbp: np.ndarray  # systolic pressure, mmHg
    af: np.ndarray  # bool, atrial fibrillation
    pat_offset_s: float = 0.0
    arteries: Arteries = field(default_factory=Arteries)

    @classmethod
    def draw(cls, traj: Trajectory, rng: np.random.Generator,
             arteries: Arteries | None = None) -> _Latent:
        n_sec = traj.duration_s
        tc = np.arange(-MARGIN_S * CONTROL_RATE, (n_sec + MARGIN_S) * CONTROL_RATE) / CONTROL_RATE
        centres = np.arange(n_sec) + 0.5
        hr = np.interp(tc, centres, traj.hr_bpm)
        motion = np.interp(tc, centres, traj.motion)
        # Cadence jitters by a couple of percent from stride to stride.
        step_hz = np.interp(tc, centres, traj.cadence_spm) / 60.0
        step_hz *= 1.0 + 0.02 * _band_noise(rng, len(tc), CONTROL_RATE, 0.0, 0.2)
        # Breathing: ~12-18 /min at rest, faster with exertion, drifting by ~8 %.
        resp_hz = rng.uniform(0.2, 0.3) + 0.3 * motion
        resp_hz *= 1.0 + 0.08 * _band_noise(rng, len(tc), CONTROL_RATE, 0.0, 0.05)
        resp_phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(resp_hz) / CONTROL_RATE
        dbp = np.interp(tc, centres, traj.dbp_mmhg)
        sbp = np.interp(tc, centres, traj.sbp_mmhg)
        af = traj.af[np.clip(np.floor(tc).astype(int), 0, n_sec - 1)]
        return cls(tc, hr, motion, step_hz, resp_phase, resp_hz, dbp, sbp, af,
                   traj.pat_offset_s, arteries or Arteries())

    def at(self, t: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.interp(t, self.tc, values)

    def mean_resp_rate(self, seconds: np.ndarray) -> np.ndarray:
        phase = self.at(np.append(seconds, seconds[-1] + 1), self.resp_phase)
        return np.diff(phase) / (2 * np.pi) * 60.0


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
    resp_baseline: tuple[np.ndarray, np.ndarray]  # (times, RIIV in units of PPG_AC)

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _Heart:
        n = len(lat.tc)
        # HRV is vagal: large at rest, nearly gone at high HR. Scaled per person.
        hrv = np.clip((140.0 - lat.hr) / 80.0, 0.15, 1.0) * rng.uniform(0.6, 1.4)
        rsa = 0.04 * np.sin(lat.resp_phase)  # HR rises on inspiration
        mayer = 0.02 * _band_noise(rng, n, CONTROL_RATE, 0.04, 0.15)
        vlf = 0.01 * _band_noise(rng, n, CONTROL_RATE, 0.0, 0.04)
        beat_hz = lat.hr / 60.0 * (1.0 + hrv * (rsa + mayer + vlf))
        cycles = rng.uniform() + np.cumsum(beat_hz) / CONTROL_RATE  # IPFM integrator
        k = np.arange(np.ceil(cycles[0]), np.floor(cycles[-1]) + 1)
        beats = np.interp(k, cycles, lat.tc)
        if lat.af.any():
            beats = _af_beats(beats, lat, rng)

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
        resp_at_beat = np.sin(np.interp(beats, lat.tc, lat.resp_phase))
        vaso = np.interp(beats, lat.tc, _band_noise(rng, n, CONTROL_RATE, 0.0, 0.1))
        amp = rng.uniform(0.6, 1.4) * (1.0 + 0.08 * resp_at_beat + 0.05 * vaso + 0.03 * jitter[2])
        if lat.af.any():
            # Frank-Starling: after a short RR the ventricle fills less and ejects less.
            prev = np.diff(beats, prepend=beats[0] - ibi[0])
            in_af = np.interp(beats, lat.tc, lat.af.astype(float)) > 0.5
            amp = np.where(in_af, amp * np.clip(prev / np.median(prev), 0.4, 1.3) ** 0.8, amp)
        # Transit to the wrist gets shorter as diastolic pressure stiffens the arteries;
        # zero at the reference 80 mmHg, so the HR-only model above is the calibration point.
        dbp = np.interp(beats, lat.tc, lat.dbp)
        art = lat.arteries
        pat = pat + _transit_delta(dbp, art.path_m, art.stiffness) + lat.pat_offset_s
        # Pressure shapes the pulse too (exactly nothing at the reference 120/80 mmHg, so a
        # seed's PPG there is unchanged): stiffer arteries return the reflected wave earlier
        # and larger; a wider pulse pressure makes a larger volume pulse.
        sbp = np.interp(beats, lat.tc, lat.sbp)
        shift, gain = _reflection(sbp, dbp, art)
        mu2 = np.maximum(mu2 + shift, 0.75 * lvet)  # never before the systolic peak
        a2 = np.minimum(a2 * gain, 1.0)
        amp = amp * (np.maximum(sbp - dbp, 10.0) / (SBP_REF_MMHG - DBP_REF_MMHG))
        riiv = rng.uniform(0.1, 0.3) * np.sin(lat.resp_phase + rng.uniform(-0.5, 0.5))
        return cls(beats, beats + pat, amp, mu1, s1, a2, mu2, s2, (lat.tc, riiv))

    def mean_hr(self, seconds: np.ndarray) -> np.ndarray:
        """60/RR as a step function, averaged over each second = 60 x beats counted in it."""
        edges = np.append(seconds, seconds[-1] + 1)
        count = np.interp(edges, self.beats, np.arange(len(self.beats)))
        return 60.0 * np.diff(count)

    def pulses(self, t: np.ndarray) -> np.ndarray:
        """Sum of every pulse overlapping t (overlap-add, vectorised over samples)."""
        onset = self.onset
        idx = np.searchsorted(onset, t, side="right") - 1
        extent = float(np.max(self.mu2 + 4 * self.s2))
        lookback = int(np.ceil(extent / np.min(np.diff(onset)))) + 1
        y = np.zeros_like(t)
        for j in range(-1, lookback):  # -1: the next pulse's leading tail
            k = idx - j
            ok = (k >= 0) & (k < len(onset))
            k = np.where(ok, k, 0)
            tau = t - onset[k]
            g = np.exp(-0.5 * ((tau - self.mu1[k]) / self.s1[k]) ** 2)
            g += self.a2[k] * np.exp(-0.5 * ((tau - self.mu2[k]) / self.s2[k]) ** 2)
            y += np.where(ok, self.amp[k] * g, 0.0)
        return y

    def ppg(self, t: np.ndarray) -> np.ndarray:
        times, riiv = self.resp_baseline
        return PPG_DC + PPG_AC * (self.pulses(t) + np.interp(t, times, riiv))


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


def _af_beats(sinus: np.ndarray, lat: _Latent, rng: np.random.Generator) -> np.ndarray:
    """Replace the beats inside AF episodes by an irregularly irregular sequence: RR drawn
    independently (no autocorrelation) from a gamma distribution with a CV of 0.25 around
    the target rate, never shorter than the AV node's ~280 ms refractory period."""
    af_at = np.interp(sinus, lat.tc, lat.af.astype(float)) > 0.5
    edges = np.flatnonzero(np.diff(np.concatenate([[0], lat.af.astype(np.int8), [0]])))
    new = [sinus[~af_at]]
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        t, stop = lat.tc[a], lat.tc[min(b, len(lat.tc) - 1)]
        run = []
        while True:
            mean_rr = 60.0 / np.interp(t, lat.tc, lat.hr)
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
    lat: _Latent
    f_wave: np.ndarray  # AF fibrillatory activity on the control grid (mV, 0 outside AF)
    wander: np.ndarray  # baseline wander, control grid, mV
    # (centre at RR = 1 s, width, relative amplitude, scales with sqrt(RR)?)
    WAVES = ((-0.16, 0.025, 0.15, False), (-0.03, 0.010, -0.12, False),
             (0.0, 0.011, 1.0, False), (0.03, 0.011, -0.25, False), (0.28, 0.06, 0.30, True))

    @classmethod
    def draw(cls, lat: _Latent, heart: _Heart, rng: np.random.Generator) -> _Ecg:
        beats = heart.beats
        rr = np.diff(beats, append=2 * beats[-1] - beats[-2])
        resp = np.sin(np.interp(beats, lat.tc, lat.resp_phase))
        amp = rng.uniform(0.8, 1.5) * (1.0 + 0.05 * resp + 0.02 * rng.normal(0, 1, len(beats)))
        in_af = np.interp(beats, lat.tc, lat.af.astype(float)) > 0.5
        p_amp = np.where(in_af, 0.0, 1.0)
        n = len(lat.tc)
        f_hz = rng.uniform(4.0, 9.0)
        f_wave = 0.08 * lat.af * np.sin(2 * np.pi * f_hz * lat.tc
                                        + 2.0 * _band_noise(rng, n, CONTROL_RATE, 0.0, 1.0))
        wander = 0.05 * np.sin(lat.resp_phase) + 0.05 * _band_noise(rng, n, CONTROL_RATE,
                                                                      0.0, 0.3)
        return cls(beats, rr, amp, p_amp, lat, f_wave, wander)

    def ecg(self, t: np.ndarray, rate: float, noise: float) -> np.ndarray:
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
        y += np.interp(t, self.lat.tc, self.f_wave) + np.interp(t, self.lat.tc, self.wander)
        if noise > 0:
            y += 0.01 * noise * np.sin(2 * np.pi * 50.0 * t) * (rate > 100)
        return y


@dataclass
class _Body:
    """Wrist kinematics: posture, arm swing and foot strikes -> accelerometer reading."""

    lat: _Latent
    arm_phase: np.ndarray  # rad on the control grid; one swing per two steps
    swing_var: np.ndarray  # stride-to-stride amplitude variation, control grid
    posture_rest: np.ndarray  # gravity direction in the device frame, at rest
    posture_walk: np.ndarray
    posture_run: np.ndarray
    harmonics: np.ndarray  # foot-strike harmonic amplitudes
    harmonic_phase: np.ndarray
    fidget: np.ndarray  # (n_control, 3), g

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _Body:
        n = len(lat.tc)
        arm_phase = rng.uniform(0, 2 * np.pi) + np.pi * np.cumsum(lat.step_hz) / CONTROL_RATE
        swing_var = 0.1 * _band_noise(rng, n, CONTROL_RATE, 0.0, 0.3)

        def unit(v: np.ndarray) -> np.ndarray:
            return v / np.linalg.norm(v)

        # Device axes: x along the forearm towards the hand, y across the wrist, z out of the
        # face. Resting on a lap the face is up; walking the arm hangs; running it is bent.
        rest = unit(np.array([0.05, -0.15, 0.98]) + rng.normal(0, 0.15, 3))
        walk = unit(np.array([-0.92, 0.1, 0.35]) + rng.normal(0, 0.08, 3))
        run = unit(np.array([-0.45, 0.15, 0.88]) + rng.normal(0, 0.08, 3))
        harmonics = np.array([1.0, 0.6, 0.35, 0.2]) * rng.uniform(0.8, 1.2, 4)
        fidget = np.stack([_band_noise(rng, n, CONTROL_RATE, 0.1, 2.0) for _ in range(3)], 1)
        return cls(lat, arm_phase, swing_var, rest, walk, run, harmonics,
                   rng.uniform(0, 2 * np.pi, 4), 0.01 * fidget)

    def kinematics(self, t: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(swing angle rad, gravity (n,3) g, inertial acceleration (n,3) g) at times t."""
        lat = self.lat
        m = lat.at(t, lat.motion)
        psi = lat.at(t, self.arm_phase)
        omega = np.pi * lat.at(t, lat.step_hz)  # arm swing, rad/s
        amp = 0.5 * m * (1.0 + lat.at(t, self.swing_var))  # ~14 deg walking, ~29 deg running
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
        step_hz = lat.at(t, lat.step_hz)
        for h, (a, ph) in enumerate(zip(self.harmonics, self.harmonic_phase, strict=True), 1):
            strike += np.where(h * step_hz < 0.45 * rate, a * np.cos(h * step_phase + ph), 0.0)
        strike *= (0.1 * m + 0.4 * m**2) / self.harmonics.sum() * 2
        inertial += strike[:, None] * gravity
        inertial += (1 - m)[:, None] * np.stack([lat.at(t, f) for f in self.fidget.T], axis=1)
        return theta, gravity, inertial

    def acceleration(self, t: np.ndarray, rate: float) -> np.ndarray:
        _, gravity, inertial = self.kinematics(t, rate)
        return gravity + inertial


@dataclass
class _PpgCoupling:
    """How motion and the sensor corrupt the PPG: drift, and motion artefact."""

    lat: _Latent
    drift: np.ndarray  # control grid, unit variance
    coupling: np.ndarray  # (hydrostatic, inertial, inertial^2) weights
    direction: np.ndarray  # which acceleration direction moves the sensor on the skin
    strap: np.ndarray  # slow variation of the coupling (strap shifts)

    @classmethod
    def draw(cls, lat: _Latent, rng: np.random.Generator) -> _PpgCoupling:
        n = len(lat.tc)
        drift = _band_noise(rng, n, CONTROL_RATE, 0.0, 0.03)
        direction = rng.normal(0, 1, 3)
        direction /= np.linalg.norm(direction)
        hydro = rng.uniform(0.3, 0.8) * rng.choice([-1, 1])
        coupling = rng.uniform(0.5, 1.5) * np.array(
            [hydro, rng.uniform(0.5, 1.0), rng.uniform(0.0, 0.4)]
        )
        strap = 1.0 + 0.3 * _band_noise(rng, n, CONTROL_RATE, 0.0, 0.02)
        return cls(lat, drift, coupling, direction, strap)

    def baseline(self, t: np.ndarray, noise: float) -> np.ndarray:
        """Slow drift of the DC level (skin temperature, contact pressure): ~2 % of DC."""
        return 0.02 * noise * PPG_DC * self.lat.at(t, self.drift)

    def artefact(self, t: np.ndarray, body: _Body, rate: float, noise: float) -> np.ndarray:
        theta, _, inertial = body.kinematics(t, rate)
        along = inertial @ self.direction
        hydro, inert, square = self.coupling
        # The square term shifts the DC with motion (contact pressure), as real sensors do.
        art = hydro * theta / 0.25 + inert * along / 0.5 + square * (along / 0.5) ** 2
        return PPG_AC * noise * self.lat.at(t, self.strap) * art
