"""Simulated type-1 subjects wearing a CGM -> labelled forecasting windows, split by subject.

Every subject is one run of `device_sim.glucose` (Hovorka model + CGM sensor model) driven by
its own seed: fasting (basal) glucose, insulin sensitivity, 1-3 days of meals with boluses that
are sometimes right, sometimes forgotten, too small or too large, snacks, correction boluses
for highs, rescue carbohydrate for lows (sometimes late, sometimes never), and the sensor's
noise level. The test split adds subjects built like the simulator's own scenario files
(`hypoglycaemia`, `hyperglycaemia`, `normal-day`), with new seeds.

Windows are cut by `edge.signal.SlidingWindow` and featurised by the manifest's feature
function (`edge.features.cgm_history`): the runtime's own code path.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields

import numpy as np

from edge.features import get_feature
from edge.signal import SlidingWindow
from training.errors import TrainingError
from training.windows import Preprocessing

# Split ids keep the seed streams of train, validation and test subjects disjoint.
SPLITS = {"train": 0, "val": 1, "test": 2}
SCENARIOS = ("hypoglycaemia", "hyperglycaemia", "normal-day")  # device_sim scenario files
DAY_S = 86400
CARB_RATIO_G_PER_U = 23.0  # what the simulator's scenario files use (50 g / 2 U, 70 g / 3 U)
# Forecast horizons, in CGM readings (5 min) after the window's last reading.
HORIZONS = {"glucose_20min": 4, "glucose_30min": 6}
# What the urgent-low-soon alert must say: a reading <= 55 mg/dL now or within the next 30 min
# (an alert with none there is a false alert; training.glucose_metrics scores it so).
URGENT_LOW_MG_DL, LOW_SOON_READINGS = 55.0, 6


@dataclass(frozen=True)
class CgmSubject:
    """Everything that determines one simulated CGM history."""

    split: str
    index: int
    seed: int
    kind: str  # "random" or a device_sim scenario name (SCENARIOS)
    days: float  # random subjects; scenario subjects keep the scenario's own length
    noise: float  # device_sim CGM noise level (1 = AR(1) SD 5 mg/dL, ±4 % gain, ±5 mg/dL)
    jitter: bool = False  # scenario subjects: vary meals, boluses, times, basal

    @property
    def id(self) -> int:
        """Unique over all splits, so no subject can be in two of them."""
        return SPLITS[self.split] * 1_000_000 + self.index


@dataclass(frozen=True)
class Series:
    """One subject's CGM history and what drove it."""

    times_s: np.ndarray  # (n,) reading times, s
    cgm: np.ndarray  # (n,) readings, mg/dL (40-400, whole mg/dL)
    plasma: np.ndarray  # (n,) true plasma glucose at the reading times, mg/dL
    meals: tuple[tuple[float, float], ...]  # (time s, g carbohydrate)
    boluses: tuple[tuple[float, float], ...]  # (time s, effective units)


@dataclass(frozen=True)
class GlucoseWindows:
    """Labelled windows of many subjects, one row each."""

    x: np.ndarray  # (n, N) float32 model inputs (cgm_history)
    y: np.ndarray  # (n, 2) CGM readings 20 and 30 min after the window's last reading
    last: np.ndarray  # (n,) the window's last reading
    history: np.ndarray  # (n, N) the raw readings of the window (for the baselines)
    subject: np.ndarray  # (n,) CgmSubject.id
    end: np.ndarray  # (n,) index of the window's last reading in its subject's series
    low_soon: np.ndarray  # (n,) bool: a reading <= URGENT_LOW_MG_DL now or in the next 30 min

    def __len__(self) -> int:
        return len(self.last)

    @property
    def n_subjects(self) -> int:
        return len(np.unique(self.subject))

    def take(self, keep: np.ndarray) -> GlucoseWindows:
        return GlucoseWindows(*(getattr(self, f)[keep] for f in FIELDS))

    def sample(self, n: int, seed: int) -> GlucoseWindows:
        """At most n windows, drawn evenly at random, in their order."""
        if len(self) <= n:
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), n,
                                                                    replace=False)))

    @staticmethod
    def concat(parts: Sequence[GlucoseWindows]) -> GlucoseWindows:
        return GlucoseWindows(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


FIELDS = tuple(f.name for f in fields(GlucoseWindows))


def plan_subjects(split: str, n: int, seed: int, *, kind: str = "random",
                  days: tuple[float, float] = (1.0, 3.0),
                  noise_range: tuple[float, float] = (0.5, 2.0), jitter: bool = False,
                  first_index: int = 0) -> list[CgmSubject]:
    """`n` subjects of one split numbered from `first_index`, drawn from a stream private to
    (seed, split, first_index): no seed or id is shared between splits."""
    rng = np.random.default_rng([seed, SPLITS[split], first_index, 7])
    return [CgmSubject(split=split, index=i, seed=int(rng.integers(2**31)), kind=kind,
                       days=float(np.round(rng.uniform(*days) * 4) / 4),
                       noise=float(rng.uniform(*noise_range)), jitter=jitter)
            for i in range(first_index, first_index + n)]


Events = list[tuple[float, float]]  # (time s, grams or units)


def _random_events(rng: np.random.Generator, n_s: int,
                   sensitivity: float) -> tuple[Events, Events]:
    """Meals and boluses of a free-living type-1 subject (before corrections and rescues)."""
    meals, boluses = [], []
    start_clock_s = rng.uniform(0, DAY_S)  # time of day at t = 0
    for day in range(-1, int(np.ceil(n_s / DAY_S)) + 1):
        plan = [(rng.uniform(6.5, 9.0), rng.uniform(25, 75)),  # breakfast
                (rng.uniform(11.5, 14.0), rng.uniform(35, 100)),  # lunch
                (rng.uniform(17.5, 20.5), rng.uniform(45, 120))]  # dinner
        if rng.uniform() < 0.6:
            plan.append((rng.uniform(9.5, 22.5), rng.uniform(10, 40)))  # snack
        for hour, grams in plan:
            at = day * DAY_S + hour * 3600 - start_clock_s
            if not 0 <= at < n_s:
                continue
            meals.append((at, float(grams)))
            snack = grams < 40
            u = rng.uniform()
            if snack and u < 0.7:
                continue  # snacks are mostly not bolused
            if u < 0.6:
                error = rng.uniform(0.8, 1.2)  # about right
            elif u < 0.72:
                continue  # forgotten bolus
            elif u < 0.86:
                error = rng.uniform(1.6, 3.5)  # over-bolus (miscounted carbs, double dose)
            else:
                error = rng.uniform(0.3, 0.7)  # under-bolus
            when = min(max(at + rng.uniform(-20, 15) * 60, 0), n_s - 1)
            boluses.append((when, grams / CARB_RATIO_G_PER_U * error * sensitivity))
    return meals, boluses


def _simulate(n_s: int, meals, boluses, basal: float) -> np.ndarray:
    from device_sim import glucose

    meal_g, bolus_u = np.zeros(n_s), np.zeros(n_s)
    for at, g in meals:
        meal_g[int(at)] += g
    for at, u in boluses:
        bolus_u[int(at)] += u
    return glucose.plasma_glucose(n_s, meal_g, bolus_u, basal)


def _reactions(per_minute: np.ndarray, rng: np.random.Generator, sensitivity: float,
               n_s: int) -> tuple[Events, Events]:
    """What the wearer does about the first-pass course: rescue carbohydrate 5-40 min after
    glucose falls below 65 mg/dL (75% of lows; the rest are left to counter-regulation), and
    a correction bolus 30-90 min into a high above 250 mg/dL (half of them)."""
    meals, boluses = [], []
    last_low = last_high = -1e9
    for m in range(len(per_minute)):
        g, t = per_minute[m], m * 60.0
        if g < 65 and t - last_low > 90 * 60:
            last_low = t
            if rng.uniform() < 0.75:
                at = t + rng.uniform(5, 40) * 60
                if at < n_s:
                    meals.append((at, float(rng.uniform(15, 30))))
        if g > 250 and t - last_high > 4 * 3600:
            last_high = t
            if rng.uniform() < 0.5:
                at = t + rng.uniform(30, 90) * 60
                if at < n_s:
                    boluses.append((at, (g - 130) / 50.0 * rng.uniform(0.7, 1.3) * sensitivity))
    return meals, boluses


def _scenario_events(subject: CgmSubject, rng: np.random.Generator):
    from device_sim.scenarios import get_scenario

    trajectory = get_scenario(subject.kind).trajectory()
    n_s = len(trajectory.hr_bpm)
    basal = trajectory.basal_glucose_mg_dl
    meals = [(float(t), float(trajectory.meal_g[t])) for t in np.flatnonzero(trajectory.meal_g)]
    boluses = [(float(t), float(trajectory.bolus_u[t]))
               for t in np.flatnonzero(trajectory.bolus_u)]
    if subject.jitter:
        shift = lambda t: float(np.clip(t + rng.uniform(-20, 20) * 60, 0, n_s - 1))  # noqa: E731
        meals = [(shift(t), g * rng.uniform(0.8, 1.25)) for t, g in meals]
        boluses = [(shift(t), u * rng.uniform(0.8, 1.25)) for t, u in boluses]
        basal *= rng.uniform(0.9, 1.1)
    return n_s, basal, meals, boluses


def simulate(subject: CgmSubject) -> Series:
    """One subject's CGM history (deterministic in the subject's seed)."""
    from device_sim import glucose

    rng = np.random.default_rng(subject.seed)
    if subject.kind == "random":
        n_s = int(subject.days * DAY_S)
        basal = rng.uniform(85, 175)
        # Insulin sensitivity: the simulator's parameters are fixed (Hovorka's 70 kg adult), so
        # a subject k times as sensitive gets k times the insulin; with the basal infusion
        # solved for the fasting level this is exactly equivalent (the model is linear in
        # insulin).
        sensitivity = float(np.clip(rng.lognormal(0.0, 0.3), 0.5, 2.0))
        meals, boluses = _random_events(rng, n_s, sensitivity)
        first = _simulate(n_s, meals, boluses, basal)
        more_meals, more_boluses = _reactions(first, rng, sensitivity, n_s)
        meals, boluses = meals + more_meals, boluses + more_boluses
    elif subject.kind in SCENARIOS:
        n_s, basal, meals, boluses = _scenario_events(subject, rng)
    else:
        raise TrainingError(f"unknown CGM subject kind {subject.kind!r}; valid: random, "
                            f"{', '.join(SCENARIOS)}")
    per_minute = _simulate(n_s, meals, boluses, basal)
    times, readings = glucose.cgm_readings(per_minute, n_s, rng, subject.noise)
    plasma = np.interp(times, np.arange(len(per_minute)) * 60.0, per_minute)
    return Series(times, readings, plasma, tuple(sorted(meals)), tuple(sorted(boluses)))


def series_windows(series: Series, pre: Preprocessing, subject_id: int) -> GlucoseWindows:
    """Every window with both forecast targets inside the series, through the runtime's
    SlidingWindow and feature function."""
    feature = get_feature(pre.features)
    n_win = pre.window_samples
    ahead = max(HORIZONS.values())
    windows = SlidingWindow(n_win, pre.hop_samples).push(series.cgm.reshape(-1, 1))
    ends = n_win - 1 + pre.hop_samples * np.arange(len(windows))
    keep = ends + ahead < len(series.cgm)
    windows, ends = [w for w, k in zip(windows, keep, strict=True) if k], ends[keep]
    if not windows:
        width = len(feature(np.full((n_win, 1), 100.0), fs=pre.sample_rate_hz,
                            **pre.feature_params))
        return GlucoseWindows(np.zeros((0, width), np.float32), np.zeros((0, 2)),
                              np.zeros(0), np.zeros((0, n_win)), np.zeros(0, int),
                              np.zeros(0, int), np.zeros(0, bool))
    x = np.stack([feature(w, fs=pre.sample_rate_hz, **pre.feature_params) for w in windows])
    y = np.stack([series.cgm[ends + h] for h in HORIZONS.values()], axis=1)
    return GlucoseWindows(x, y, series.cgm[ends], np.stack([w[:, 0] for w in windows]),
                          np.full(len(ends), subject_id), ends, low_soon(series.cgm, ends))


def low_soon(cgm: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per window end: is the reading there, or one of the next LOW_SOON_READINGS, at or below
    URGENT_LOW_MG_DL (the model card's true alert)?"""
    lows = np.concatenate([[0], np.cumsum(cgm <= URGENT_LOW_MG_DL)])
    return lows[np.minimum(ends + LOW_SOON_READINGS + 1, len(cgm))] > lows[ends]


def _subject_work(subject: CgmSubject, pre: Preprocessing) -> tuple[Series, GlucoseWindows]:
    series = simulate(subject)
    return series, series_windows(series, pre, subject.id)


def build(subjects: Sequence[CgmSubject], pre: Preprocessing, *,
          workers: int = 2) -> tuple[dict[int, Series], GlucoseWindows]:
    """Series and windows of all `subjects`, in order, by at most `workers` processes (the
    result does not depend on how many: each subject depends only on its own seed)."""
    if not subjects:
        raise TrainingError("no subjects to simulate")
    if workers <= 1 or len(subjects) < 8:
        results = [_subject_work(s, pre) for s in subjects]
    else:
        # spawn, not fork: the parent may already run TensorFlow's threads.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = list(pool.map(_subject_work, subjects, [pre] * len(subjects),
                                    chunksize=max(1, len(subjects) // (4 * workers))))
    series = {s.id: r[0] for s, r in zip(subjects, results, strict=True)}
    return series, GlucoseWindows.concat([r[1] for r in results])
