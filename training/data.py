"""Simulated subjects -> labelled windows, split by subject.

Every subject is one `device_sim` recording of a random scenario with its own seed, sensor
rates and noise level. Training subjects are also augmented (see `augment`) so the model
learns pulses rather than this simulator's particular waveform. The windows themselves come
from `training.windows.extract_windows`, i.e. the runtime's own conditioning code.

Work is spread over processes; each subject depends only on its own seed, so the result is
the same whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import signal

from training.errors import TrainingError
from training.windows import Preprocessing, extract_windows

PPG_RATES_HZ = (32.0, 64.0, 128.0, 256.0)  # integer multiples of the 32 Hz model rate
ACC_RATES_HZ = (32.0, 64.0, 128.0)
MOVING_LEVEL = 0.1  # window's mean truth motion (0 rest .. 1 run) from which it is "motion"

# Split ids keep the seed streams of train, validation and test subjects disjoint.
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class Subject:
    """Everything that determines one simulated recording."""

    split: str
    index: int
    seed: int
    scenario: str  # "random" or a built-in scenario name
    duration_s: float | None  # None: the built-in scenario's own length
    ppg_rate: float
    acc_rate: float
    noise: float
    has_acc: bool
    augment: bool
    activity_p: tuple[tuple[str, float], ...] | None = None  # random scenarios; None: default

    @property
    def id(self) -> int:
        """Unique over all splits, so no subject can be in two of them."""
        return SPLITS[self.split] * 1_000_000 + self.index


@dataclass(frozen=True)
class Windows:
    """Labelled windows of many subjects, one row each."""

    x: np.ndarray  # (n, *input shape) float32
    hr_bpm: np.ndarray  # (n,) truth, Hann-weighted over the window like the spectrum
    motion: np.ndarray  # (n,) mean truth motion level 0..1
    motion_g: np.ndarray  # (n,) RMS of the conditioned acceleration
    subject: np.ndarray  # (n,) Subject.id

    def __len__(self) -> int:
        return len(self.hr_bpm)

    @property
    def moving(self) -> np.ndarray:
        return self.motion >= MOVING_LEVEL

    @property
    def n_subjects(self) -> int:
        return len(np.unique(self.subject))

    def select(self, mask: np.ndarray) -> Windows:
        return Windows(self.x[mask], self.hr_bpm[mask], self.motion[mask], self.motion_g[mask],
                       self.subject[mask])

    @staticmethod
    def concat(parts: Sequence[Windows]) -> Windows:
        return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("x", "hr_bpm", "motion", "motion_g", "subject")))


def plan_subjects(split: str, n: int, seed: int, *, duration_s: float | None, augment: bool,
                  scenarios: Sequence[str] = ("random",),
                  noise_range: tuple[float, float] = (0.3, 2.5),
                  no_acc_share: float = 0.1, first_index: int = 0,
                  activity_p: dict[str, float] | None = None) -> list[Subject]:
    """`n` subjects of one split, numbered from `first_index`, each with its own seed and
    sensor set-up drawn from a stream private to (seed, split, first_index).

    `scenarios` are used in turn; "random" draws a new random scenario per subject.
    duration_s=None keeps a built-in scenario's own length.
    """
    rng = np.random.default_rng([seed, SPLITS[split], first_index])
    subjects = []
    for i in range(first_index, first_index + n):
        subjects.append(Subject(
            split=split, index=i, seed=int(rng.integers(2**31)),
            scenario=scenarios[(i - first_index) % len(scenarios)], duration_s=duration_s,
            ppg_rate=float(rng.choice(PPG_RATES_HZ)), acc_rate=float(rng.choice(ACC_RATES_HZ)),
            noise=float(rng.uniform(*noise_range)), has_acc=bool(rng.uniform() >= no_acc_share),
            augment=augment,
            activity_p=tuple(activity_p.items()) if activity_p else None,
        ))
    return subjects


def augment(ppg: np.ndarray, ppg_rate: float, acc: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Perturb a raw recording the way real sensors differ from this simulator.

    Returns (ppg, acc, stretch): the signals run `stretch` times slower than the originals
    (a sensor clock off by a few percent), so true HR divides by it.
    - clock: both channels resampled by one factor in [0.97, 1.03];
    - morphology: a random mild polynomial bend of the pulse and a random low-pass (the
      harmonic balance of a pulse differs between skin, site and LED colour);
    - amplitude and baseline: random gain and offset, slow wander below the band;
    - noise: white noise up to ~40 % of the pulse amplitude;
    - accelerometer: random gain (mounting, strap tension).
    """
    stretch = float(rng.uniform(0.97, 1.03))
    ppg, acc = _stretch(ppg, stretch), _stretch(acc, stretch)

    # Bend and filter only the pulsatile part; the slow DC drift passes through unchanged.
    highpass = signal.butter(2, 0.3, btype="highpass", fs=ppg_rate, output="sos")
    ac = signal.sosfiltfilt(highpass, ppg)
    scale = ac.std() + 1e-9
    unit = ac / scale
    bend = unit + rng.uniform(-0.25, 0.25) * unit**2 + rng.uniform(-0.1, 0.1) * unit**3
    cutoff = rng.uniform(3.0, min(12.0, 0.45 * ppg_rate))
    bend = signal.sosfilt(signal.butter(1, cutoff, fs=ppg_rate, output="sos"), bend)
    bend = bend / (bend.std() + 1e-9) + (ppg - ac - ppg.mean()) / scale

    n = len(bend)
    t = np.arange(n) / ppg_rate
    wander = sum(rng.uniform(0, 2) * np.sin(2 * np.pi * rng.uniform(0.02, 0.3) * t +
                                            rng.uniform(0, 2 * np.pi)) for _ in range(2))
    noisy = bend + wander + rng.normal(0, rng.uniform(0, 0.4), n)
    gain = 10 ** rng.uniform(-1, 1)
    ppg = gain * 1000.0 * noisy + rng.uniform(1e3, 1e6)
    acc = acc * rng.uniform(0.7, 1.4)
    return ppg, acc, stretch


def _stretch(x: np.ndarray, factor: float) -> np.ndarray:
    """x played `factor` times slower, same sample rate (linear interpolation)."""
    n = len(x)
    src = np.arange(int(n * factor)) / factor  # positions in the original samples
    src = src[src <= n - 1]
    if x.ndim == 1:
        return np.interp(src, np.arange(n), x)
    return np.stack([np.interp(src, np.arange(n), x[:, j]) for j in range(x.shape[1])], 1)


def _hann_mean(values_per_s: np.ndarray, start_s: float, end_s: float) -> float:
    """Mean of a per-second series over [start, end), weighted by the same Hann taper the
    spectrum uses, so the label is the HR the window's spectrum actually shows."""
    t = np.linspace(start_s, end_s, 256, endpoint=False)
    idx = np.clip(t.astype(int), 0, len(values_per_s) - 1)
    w = np.hanning(len(t))
    return float((values_per_s[idx] * w).sum() / w.sum())


def subject_windows(subject: Subject, pre: Preprocessing) -> Windows:
    """Simulate, (augment,) condition, window and label one subject."""
    from device_sim import get_scenario, random_scenario, simulate

    rng = np.random.default_rng(subject.seed)
    if subject.scenario == "random":
        scenario = random_scenario(rng, subject.duration_s or 300.0,
                                   activity_p=dict(subject.activity_p or {}) or None)
    else:
        scenario = get_scenario(subject.scenario)
        if subject.duration_s is not None:
            scenario = scenario.with_duration(subject.duration_s)
    rec = simulate(scenario, seed=subject.seed, ppg_rate=subject.ppg_rate,
                   acc_rate=subject.acc_rate, noise=subject.noise)
    ppg, acc, stretch = rec.ppg, rec.acc, 1.0
    if subject.augment:
        ppg, acc, stretch = augment(ppg, rec.ppg_rate, acc, rng)
    win = extract_windows(pre, ppg, rec.ppg_rate, acc if subject.has_acc else None,
                          rec.acc_rate if subject.has_acc else None)
    starts = (win.end_s - pre.window_s) / stretch  # window span on the truth's clock
    ends = win.end_s / stretch
    hr = np.array([_hann_mean(rec.truth.hr_bpm, a, b) for a, b in zip(starts, ends,
                                                                       strict=True)]) / stretch
    motion = np.array([rec.truth.motion[int(a):max(int(np.ceil(b)), int(a) + 1)].mean()
                       for a, b in zip(starts, ends, strict=True)])
    return Windows(win.features, hr, motion, win.motion_g,
                   np.full(len(hr), subject.id, dtype=np.int64))


def build_windows(subjects: Sequence[Subject], pre: Preprocessing, *, workers: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Windows:
    """Windows of all `subjects`, in order, computed by `workers` processes."""
    if not subjects:
        raise TrainingError("no subjects to simulate")
    try:
        import device_sim  # noqa: F401  (fail here with a clear message, not in a worker)
    except ImportError as err:
        raise TrainingError(f"the simulator cannot be imported ({err}); install the project "
                            "with 'make venv' or 'pip install -e .'") from None
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    parts: list[Windows] = []
    if workers == 1:
        for i, s in enumerate(subjects):
            parts.append(subject_windows(s, pre))
            if progress:
                progress(i + 1, len(subjects))
    else:
        # spawn, not fork: the parent may already run TensorFlow's threads.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for i, part in enumerate(pool.map(subject_windows, subjects,
                                              [pre] * len(subjects), chunksize=4)):
                parts.append(part)
                if progress:
                    progress(i + 1, len(subjects))
    return Windows.concat(parts)
