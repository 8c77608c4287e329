"""A domain-randomised PPG + accelerometer simulator for the heart-rate model.

The device simulator draws one family of smooth wrist pulses around typical rates; a model
trained only on it read sharp real pulses at their 2nd or 3rd harmonic and fell back to the
training mean. Here every recording draws its own pulse shape from smooth to sharp (a
systolic wave of 40-160 ms, an optional dicrotic wave and notch, upright or inverted: finger
and wrist, transmissive and reflective), its own heart-rate course over a flat prior on
35-210 bpm with beat-to-beat variability, respiration (baseline and amplitude), baseline
wander, white noise and spikes, a sensor rate from 32 to 500 Hz, and, for a share of
recordings, arm swing with impacts seen by the accelerometer and leaking into the PPG with
its harmonics. The heart rate and the motion cadence are drawn independently, so the model
cannot learn one from the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HR_RANGE_BPM = (35.0, 210.0)
PPG_RATES_HZ = (32.0, 50.0, 64.0, 100.0, 125.0, 128.0, 200.0, 256.0, 500.0)
ACC_RATES_HZ = (32.0, 50.0, 64.0, 100.0, 125.0)
# Share of recordings with a sharp finger-clip pulse and a strong dicrotic wave: at 50-90 bpm
# its 2nd-4th harmonic outweighs the fundamental (the case 2.0.0 read at a harmonic; drawn
# from the general ranges alone it was ~3 % of recordings).
SHARP_SHARE = 0.2


@dataclass(frozen=True)
class SimRecording:
    ppg: np.ndarray  # (n,) arbitrary units
    ppg_rate: float
    acc: np.ndarray | None  # (m, 3) g, or None (no accelerometer)
    acc_rate: float
    hr_bpm: np.ndarray  # heart rate per second of the recording (index s: second s..s+1)
    motion: np.ndarray  # motion level per second, 0 (still) .. 1 (running)


def _hr_course(rng: np.random.Generator, seconds: int) -> np.ndarray:
    """Heart rate per second: a start drawn flat over HR_RANGE_BPM, a bounded random walk
    and, sometimes, a step (a sudden tachycardia or a drop)."""
    lo, hi = HR_RANGE_BPM
    hr = np.empty(seconds)
    level = rng.uniform(lo, hi)
    drift = rng.uniform(0.0, 1.5)  # bpm per second of random walk
    step_at = rng.integers(seconds) if rng.uniform() < 0.15 else -1
    for s in range(seconds):
        if s == step_at:
            level = rng.uniform(lo, hi)
        level = float(np.clip(level + rng.normal(0, drift), lo, hi))
        hr[s] = level
    return hr


def _pulse_train(rng: np.random.Generator, t: np.ndarray, hr_per_s: np.ndarray) -> np.ndarray:
    """Beats at the heart-rate course (with beat-to-beat jitter), each a systolic Gaussian
    plus an optional dicrotic one, widths in absolute time (a slow heart has a sharp pulse
    relative to its period: strong harmonics)."""
    duration = len(hr_per_s)
    beats = []
    b = rng.uniform(0, 0.5)
    jitter = rng.uniform(0.0, 0.05)
    while b < duration + 1:
        beats.append(b)
        rr = 60.0 / hr_per_s[min(int(b), duration - 1)]
        b += rr * (1 + rng.normal(0, jitter))
    beats_arr = np.array(beats)
    sys_w = rng.uniform(0.025, 0.16)  # s, systolic wave width (sharp finger .. smooth wrist)
    sys_at = rng.uniform(0.08, 0.25)
    dic_a = rng.uniform(0.0, 0.9) if rng.uniform() < 0.7 else 0.0
    dic_w = rng.uniform(0.025, 0.12)
    if rng.uniform() < SHARP_SHARE:  # a finger clip: sharp systole, strong narrow dicrotic
        sys_w, dic_a, dic_w = rng.uniform(0.025, 0.05), rng.uniform(0.3, 0.9), rng.uniform(
            0.025, 0.06)
    dic_at = sys_at + rng.uniform(0.15, 0.35)
    skew = rng.uniform(0.0, 1.5) if rng.uniform() < 0.7 else 0.0  # slower decay than rise
    x = np.zeros_like(t)
    for k, b in enumerate(beats_arr):
        rr = beats_arr[k + 1] - b if k + 1 < len(beats_arr) else 60.0 / hr_per_s[-1]
        scale = min(1.0, rr / 0.75) ** 0.5  # pulse waves shorten a little at high rates
        i0, i1 = np.searchsorted(t, [b - 0.1, b + 1.5])
        u = t[i0:i1] - b
        d = u - sys_at * scale
        w = sys_w * scale * np.where(d > 0, 1 + skew, 1.0)
        x[i0:i1] += np.exp(-0.5 * (d / w) ** 2)
        if dic_a:
            x[i0:i1] += dic_a * np.exp(-0.5 * ((u - dic_at * scale) / (dic_w * scale)) ** 2)
    return x


def _motion(rng: np.random.Generator, t_acc: np.ndarray, t_ppg: np.ndarray, seconds: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(acc (m, 3) in g, artefact on the PPG time base (unit scale), motion per second).

    Arm swing at a cadence of 0.6-1.7 Hz with harmonics (steps at twice the swing rate),
    impacts at each step, the cadence drifting; some stretches of rest in between."""
    level = np.zeros(seconds)
    kind = rng.choice(["rest", "walk", "run", "mixed"], p=[0.25, 0.25, 0.3, 0.2])
    if kind == "rest":
        moving = np.zeros(seconds, bool)
    elif kind == "mixed":
        cut = np.sort(rng.integers(0, seconds, 2))
        moving = np.zeros(seconds, bool)
        moving[cut[0]:cut[1]] = True
    else:
        moving = np.ones(seconds, bool)
    strength = {"rest": 0.0, "walk": rng.uniform(0.15, 0.5), "run": rng.uniform(0.4, 1.5),
                "mixed": rng.uniform(0.2, 1.2)}[str(kind)]
    level[moving] = min(strength / 1.2, 1.0)
    cadence0 = rng.uniform(0.6, 1.0) if kind == "walk" else rng.uniform(0.7, 1.7)
    cad = np.clip(cadence0 + np.cumsum(rng.normal(0, 0.01, seconds)), 0.5, 1.8)

    def phase(t: np.ndarray) -> np.ndarray:
        per_s = np.interp(t, np.arange(seconds) + 0.5, cad)
        return 2 * np.pi * np.cumsum(per_s) * (t[1] - t[0])

    def envelope(t: np.ndarray) -> np.ndarray:
        m = np.interp(t, np.arange(seconds) + 0.5, moving.astype(float))
        return np.clip(m, 0, 1)

    harm = rng.uniform(0, 1, 3) * np.array([1.0, 0.7, 0.4])
    phases = rng.uniform(0, 2 * np.pi, (3, 3))
    gravity = rng.normal(0, 1, 3)
    gravity /= np.linalg.norm(gravity)

    def swing(t: np.ndarray, axis_gain: np.ndarray) -> np.ndarray:
        ph = phase(t)
        out = np.zeros((len(t), 3))
        for h in range(3):
            for a in range(3):
                out[:, a] += axis_gain[a] * harm[h] * np.sin((h + 1) * ph + phases[h, a])
        steps = np.maximum(np.sin(2 * ph), 0) ** 12  # impacts, one per step
        out += steps[:, None] * rng.uniform(0, 1.5) * axis_gain
        return out * envelope(t)[:, None]

    gains = rng.uniform(0.2, 1.0, 3) * strength
    acc = gravity + swing(t_acc, gains) + rng.normal(0, 0.005, (len(t_acc), 3))
    # The PPG sees the same movement through the tissue: a random mix of the axes, and its
    # own nonlinearity (sensor pressure), at a random strength up to several pulses.
    art3 = swing(t_ppg, gains)
    mix = rng.normal(0, 1, 3)
    art = art3 @ mix
    art = art + rng.uniform(0, 0.5) * art**2
    art *= rng.uniform(0.5, 6.0) / (np.abs(mix).sum() * max(strength, 1e-3) + 1e-9)
    return acc, art * (strength > 0), level


def simulate(seed: int, duration_s: float = 120.0) -> SimRecording:
    """One randomised recording (same seed, same recording)."""
    rng = np.random.default_rng(seed)
    seconds = int(duration_s)
    ppg_rate = float(rng.choice(PPG_RATES_HZ))
    acc_rate = float(rng.choice(ACC_RATES_HZ))
    t = np.arange(int(seconds * ppg_rate)) / ppg_rate
    t_acc = np.arange(int(seconds * acc_rate)) / acc_rate
    hr = _hr_course(rng, seconds)
    pulse = _pulse_train(rng, t, hr)
    pulse = (pulse - pulse.mean()) / (pulse.std() + 1e-9)
    # Respiration 8-30 breaths/min: amplitude and baseline modulation.
    resp_f = rng.uniform(0.13, 0.5)
    resp = np.sin(2 * np.pi * resp_f * t + rng.uniform(0, 2 * np.pi))
    x = pulse * (1 + rng.uniform(0, 0.3) * resp) + rng.uniform(0, 1.0) * resp
    # Baseline wander, some of it up to 0.8 Hz (inside the HR band).
    for _ in range(2):
        x += rng.uniform(0, 1.5) * np.sin(2 * np.pi * rng.uniform(0.02, 0.8) * t +
                                          rng.uniform(0, 2 * np.pi))
    acc, art, motion = _motion(rng, t_acc, t, seconds)
    x = x + art + rng.normal(0, rng.uniform(0.02, 0.5), len(t))
    if rng.uniform() < 0.2:  # spikes: a knock on the sensor
        idx = rng.integers(0, len(t), rng.integers(1, 6))
        for i in idx:
            x[i:i + int(0.2 * ppg_rate)] += rng.normal(0, 5)
    if rng.uniform() < 0.5:  # absorbance vs. blood volume: the sensor's sign is arbitrary
        x = -x
    ppg = 10 ** rng.uniform(1, 4) * x + rng.uniform(0, 1e5)
    has_acc = rng.uniform() >= 0.1
    return SimRecording(ppg, ppg_rate, acc if has_acc else None, acc_rate, hr, motion)


def recording_windows(seed: int, pre: object, subject_id: int, duration_s: float = 120.0):
    """`training.data.Windows` of one randomised recording, cut by the runtime's own
    conditioning and feature code; labels are the heart rate Hann-weighted over each window
    (the HR the window's spectrum shows)."""
    from training.data import Windows, _hann_mean
    from training.windows import extract_windows

    rec = simulate(seed, duration_s)
    win = extract_windows(pre, rec.ppg, rec.ppg_rate, rec.acc,  # type: ignore[arg-type]
                          rec.acc_rate if rec.acc is not None else None)
    window_s = pre.window_s  # type: ignore[attr-defined]
    hr = np.array([_hann_mean(rec.hr_bpm, e - window_s, e) for e in win.end_s])
    motion = np.array([rec.motion[int(e - window_s):int(np.ceil(e))].mean() for e in win.end_s])
    return Windows(win.features, hr, motion, win.motion_g,
                   np.full(len(hr), subject_id, dtype=np.int64))


def build(seeds: list[int], pre: object, first_id: int, workers: int = 2):
    """Windows of the randomised recordings `seeds` (subject ids first_id, first_id + 1 ...),
    by `workers` spawned processes (same seeds, same windows whatever the workers)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from training.data import Windows

    ids = [first_id + i for i in range(len(seeds))]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        parts = list(pool.map(recording_windows, seeds, [pre] * len(seeds), ids, chunksize=8))
    return Windows.concat(parts)
