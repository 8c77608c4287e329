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
  Breathing modulates pulse amplitude (RIAV) and the baseline (RIIV).
- Wrist motion: arm swing locked to the step cadence (one swing per two steps) rotates the
  gravity vector and adds tangential and centripetal acceleration; each step adds a foot-strike
  jolt with harmonics; small fidgeting at rest.
- Motion artefact: the PPG picks up the hydrostatic effect of arm swing (wrist height) and
  sensor-skin movement (inertial acceleration and its square), with random per-recording
  coupling. At running cadence the step frequency can sit right on the heart rate.
- Sensor: slow drift of the DC level, white noise, accelerometer noise.

Everything random comes from one numpy Generator, so a seed reproduces a recording exactly.
Latent, slow signals are computed on a 50 Hz control grid and evaluated at the exact sample
times of each sensor, so the PPG and accelerometer rates are independent parameters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from device_sim.errors import SimulatorError
from device_sim.scenarios import Scenario, Trajectory, get_scenario

CONTROL_RATE = 50.0  # Hz, grid for slow latent signals (HR, respiration, cadence)
MARGIN_S = 4.0  # simulated before t=0 and after the end, so pulses at the edges overlap fully
MIN_RATE_HZ, MAX_RATE_HZ = 10.0, 10_000.0

PPG_DC = 100_000.0  # a.u.; raw photodiode level (green LED, wrist)
PPG_AC = 1_000.0  # a.u.; typical pulse amplitude, ~1 % perfusion index
GRAVITY = 9.81  # m/s^2


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

    def to_jsonl(self, path: str | os.PathLike) -> None:
        """One JSON object per second: t, hr_bpm, motion, resp_rate_bpm."""
        columns = {"hr_bpm": self.hr_bpm, "motion": self.motion}
        if len(self.resp_rate_bpm):
            columns["resp_rate_bpm"] = self.resp_rate_bpm
        with open(path, "w", encoding="utf-8") as out:
            for i, t in enumerate(self.t):
                row = {"t": int(t)} | {k: round(float(v[i]), 3) for k, v in columns.items()}
                out.write(json.dumps(row) + "\n")


@dataclass(frozen=True)
class Recording:
    """What the wearable measured, plus what was really going on."""

    ppg: np.ndarray  # float64 (n,), arbitrary units, raw (DC + pulse + wander + noise + artefact)
    ppg_rate: float
    acc: np.ndarray  # float64 (m, 3), in g, includes gravity
    acc_rate: float
    truth: Truth

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
) -> Recording:
    """Simulate a wrist wearable running through `scenario` (an object or a built-in name).

    `noise` scales everything in the PPG that is not the cardiac pulse or breathing (sensor
    noise, drift, motion artefact) and the accelerometer noise: 0 = clean, 1 = a typical wrist
    device, 2-3 = poor skin contact. The same seed gives the same recording; with the same
    seed, changing only a sample rate keeps the same beats, breathing and movement.
    """
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    rng = np.random.default_rng(seed)
    trajectory = scenario.trajectory(rng)
    return synthesize(trajectory, rng, ppg_rate=ppg_rate, acc_rate=acc_rate, noise=noise)


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
) -> Recording:
    """Signals for any per-second trajectory (the engine behind `simulate`)."""
    ppg_rate = check_rate("ppg_rate", ppg_rate)
    acc_rate = check_rate("acc_rate", acc_rate)
    try:
        level = float(noise)
    except (TypeError, ValueError):
        level = float("nan")
    if not (0 <= level < float("inf")):
        raise SimulatorError(f"noise {noise!r} must be zero or a positive number (1 = typical)")
    noise = level
    n_sec = trajectory.duration_s
    latent = _Latent.draw(trajectory, rng)
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

    seconds = np.arange(n_sec, dtype=float)
    truth = Truth(
        t=seconds,
        hr_bpm=heart.mean_hr(seconds),
        motion=trajectory.motion.astype(float).copy(),
        resp_rate_bpm=latent.mean_resp_rate(seconds),
        beat_times=heart.beats[(heart.beats >= 0) & (heart.beats < n_sec)],
    )
    return Recording(ppg, ppg_rate, acc, acc_rate, truth)


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

    @classmethod
    def draw(cls, traj: Trajectory, rng: np.random.Generator) -> _Latent:
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
        return cls(tc, hr, motion, step_hz, resp_phase, resp_hz)

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
