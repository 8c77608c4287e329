"""Simulated ECG + PPG subjects with moving blood pressure -> labelled windows, split by subject.

Every subject is one `device_sim` recording with its own seed, sensor rates, noise level and
body: arterial path length and stiffness (`device_sim.physiology.Arteries`, which set how far
the pulse arrival time moves per mmHg) and a pulse-arrival-time offset (pre-ejection period).
Random subjects follow random BP and HR trajectories, drawn independently so the model cannot
read BP off the heart rate; activity subjects walk and run with BP mostly held (HR and motion
change without pressure); validation and test add the simulator's built-in scenarios with new
seeds. Windows come from `training.windows.extract_channel_windows`, i.e. the runtime's own
conditioning (`edge.signal.Conditioner` + `SlidingWindow`) and feature function.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from edge.bundle import Preprocessing
from edge.estimate import BloodPressureRunner
from edge.features import bp_amplitude_reference, bp_relative_amplitude
from training.data import SPLITS
from training.errors import TrainingError
from training.windows import RecordingWindows, extract_channel_windows

ECG_RATES_HZ = (128.0, 250.0, 500.0)
PPG_RATES_HZ = (64.0, 100.0, 128.0, 256.0)
PATH_M = (0.65, 0.85)  # heart-to-wrist arterial path (reference 0.75 m)
STIFFNESS = (0.8, 1.25)  # wave speed relative to the reference subject
PAT_OFFSET_MS = (-40.0, 40.0)  # pre-ejection period and other per-subject offsets
MAX_WORKERS = 2
MOVING_LEVEL = 0.1  # mean truth motion (0 rest .. 1 run) from which a window is "motion"
CALIBRATION_SPAN_S = BloodPressureRunner.CALIBRATION_SPAN_S  # windows before a cuff reading


@dataclass(frozen=True)
class BpSubject:
    """Everything that determines one simulated recording."""

    split: str
    index: int
    seed: int
    scenario: str  # "random", "activity" or a built-in scenario name
    duration_s: float | None  # None: the built-in scenario's own length
    ecg_rate: float
    ppg_rate: float
    noise: float
    path_m: float
    stiffness: float
    pat_offset_ms: float

    @property
    def id(self) -> int:
        """Unique over all splits, so no subject can be in two of them."""
        return SPLITS[self.split] * 1_000_000 + self.index


@dataclass(frozen=True)
class BpWindows:
    """Labelled windows of many subjects, one row each."""

    x: np.ndarray  # (n, *input shape) float32
    sbp: np.ndarray  # (n,) true systolic, mean over the window, mmHg
    dbp: np.ndarray  # (n,) true diastolic
    hr: np.ndarray  # (n,) true heart rate, bpm
    motion: np.ndarray  # (n,) mean truth motion 0..1
    end_s: np.ndarray  # (n,) window end, s from the recording start
    subject: np.ndarray  # (n,) BpSubject.id
    cal_time: np.ndarray  # (n,) the subject's first cuff reading: time (s), NaN if none
    cal_sbp: np.ndarray  # (n,) its systolic, mmHg (device_sim cuff: truth + cuff error)
    cal_dbp: np.ndarray  # (n,)

    FIELDS = ("x", "sbp", "dbp", "hr", "motion", "end_s", "subject", "cal_time", "cal_sbp",
              "cal_dbp")

    def __len__(self) -> int:
        return len(self.sbp)

    @property
    def y(self) -> np.ndarray:
        return np.stack([self.sbp, self.dbp], axis=1)

    @property
    def cal(self) -> np.ndarray:
        return np.stack([self.cal_sbp, self.cal_dbp], axis=1)

    @property
    def moving(self) -> np.ndarray:
        return self.motion >= MOVING_LEVEL

    @property
    def n_subjects(self) -> int:
        return len(np.unique(self.subject))

    def select(self, mask: np.ndarray) -> BpWindows:
        return BpWindows(*(getattr(self, f)[mask] for f in self.FIELDS))

    @staticmethod
    def concat(parts: Sequence[BpWindows]) -> BpWindows:
        return BpWindows(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in BpWindows.FIELDS))


def plan_subjects(split: str, n: int, seed: int, *, duration_s: float | None,
                  scenarios: Sequence[str] = ("random",),
                  noise_range: tuple[float, float] = (0.3, 2.0),
                  first_index: int = 0) -> list[BpSubject]:
    """`n` subjects of one split numbered from `first_index`, each with its own seed, sensor
    set-up and body drawn from a stream private to (seed, split, first_index)."""
    rng = np.random.default_rng([seed, SPLITS[split], first_index, 7])
    return [BpSubject(
        split=split, index=i, seed=int(rng.integers(2**31)),
        scenario=scenarios[(i - first_index) % len(scenarios)], duration_s=duration_s,
        ecg_rate=float(rng.choice(ECG_RATES_HZ)), ppg_rate=float(rng.choice(PPG_RATES_HZ)),
        noise=float(rng.uniform(*noise_range)), path_m=float(rng.uniform(*PATH_M)),
        stiffness=float(rng.uniform(*STIFFNESS)),
        pat_offset_ms=float(rng.uniform(*PAT_OFFSET_MS)),
    ) for i in range(first_index, first_index + n)]


def _pressures(rng: np.random.Generator, sbp: float, share: float) -> tuple[float, float]:
    """A segment's (SBP, DBP): SBP within 75-210 mmHg, DBP the person's diastolic share of it
    jittered by +-0.03, within 40-130 mmHg and at least 20 below SBP."""
    sbp = float(np.clip(sbp, 75.0, 210.0))
    dbp = float(np.clip(sbp * (share + rng.uniform(-0.03, 0.03)), 40.0, 130.0))
    return sbp, min(dbp, sbp - 20.0)


def random_bp_scenario(rng: np.random.Generator, duration_s: float):
    """Random segments of 30-120 s: BP around a personal baseline (SBP 100-150 mmHg) with
    excursions of SD 25 mmHg (75-210 systolic, 40-130 diastolic, pulse pressure >= 20); the
    diastolic is a personal share (0.58-0.69) of the systolic, jittered by +-0.03 per segment
    (within a person the two move together). HR 45-160 bpm, drawn independently of BP; mostly
    at rest (70%), some walking (25%) and running (5%); ramps of 10-90 s."""
    from device_sim.scenarios import CADENCE_RANGE_SPM, Scenario, Segment

    sbp0 = rng.uniform(100.0, 150.0)
    share = rng.uniform(0.58, 0.69)
    hr0 = rng.uniform(55.0, 90.0)
    segments, left = [], float(duration_s)
    while left > 0:
        length = min(left, rng.uniform(30.0, 120.0))
        if not segments or rng.uniform() < 0.3:
            sbp = sbp0 + rng.normal(0.0, 5.0)
        else:
            sbp = sbp0 + rng.normal(0.0, 25.0)
        sbp, dbp = _pressures(rng, sbp, share)
        hr = float(np.clip(hr0 + rng.normal(0.0, 20.0), 45.0, 160.0))
        activity = str(rng.choice(["rest", "walk", "run"], p=[0.7, 0.25, 0.05]))
        segments.append(Segment(length, hr, activity, rng.uniform(10.0, 90.0),
                                rng.uniform(*CADENCE_RANGE_SPM[activity]), sbp_mmhg=sbp,
                                dbp_mmhg=dbp))
        left -= length
    return Scenario("random-bp", f"random BP, {duration_s:g} s", tuple(segments))


def activity_bp_scenario(rng: np.random.Generator, duration_s: float):
    """Random segments of 30-120 s of rest (35%), walking (40%) and running (25%), with HR
    rising with the activity (+25 / +60 bpm on a personal resting rate, SD 15 bpm) while BP
    mostly stays near a personal baseline (70% of segments within SD 3 mmHg; the rest move
    with SD 20 mmHg): heart rate and motion change without BP, the within-person change the
    model must not read as pressure. Same baseline, diastolic share and limits as
    `random_bp_scenario`."""
    from device_sim.scenarios import CADENCE_RANGE_SPM, Scenario, Segment

    sbp0 = rng.uniform(100.0, 150.0)
    share = rng.uniform(0.58, 0.69)
    hr0 = rng.uniform(55.0, 90.0)
    segments, left = [], float(duration_s)
    while left > 0:
        length = min(left, rng.uniform(30.0, 120.0))
        activity = str(rng.choice(["rest", "walk", "run"], p=[0.35, 0.4, 0.25]))
        sbp = sbp0 + rng.normal(0.0, 3.0 if rng.uniform() < 0.7 else 20.0)
        sbp, dbp = _pressures(rng, sbp, share)
        bump = {"rest": 0.0, "walk": 25.0, "run": 60.0}[activity]
        hr = float(np.clip(hr0 + bump + rng.normal(0.0, 15.0), 45.0, 180.0))
        segments.append(Segment(length, hr, activity, rng.uniform(0.0, 60.0),
                                rng.uniform(*CADENCE_RANGE_SPM[activity]), sbp_mmhg=sbp,
                                dbp_mmhg=dbp))
        left -= length
    return Scenario("activity-bp", f"activity, BP mostly held, {duration_s:g} s",
                    tuple(segments))


def simulate_subject(subject: BpSubject):
    """The subject's recording with ECG, PPG and cuff readings (device_sim.Recording)."""
    from device_sim import get_scenario, simulate
    from device_sim.physiology import Arteries

    rng = np.random.default_rng(subject.seed)
    if subject.scenario == "random":
        scenario = random_bp_scenario(rng, subject.duration_s or 300.0)
    elif subject.scenario == "activity":
        scenario = activity_bp_scenario(rng, subject.duration_s or 300.0)
    else:
        scenario = get_scenario(subject.scenario)
        if subject.duration_s is not None:
            scenario = scenario.with_duration(subject.duration_s)
    scenario = replace(scenario, pat_offset_ms=subject.pat_offset_ms)
    return simulate(scenario, seed=subject.seed, ppg_rate=subject.ppg_rate,
                    ecg_rate=subject.ecg_rate, noise=subject.noise,
                    channels=("ppg", "acc", "ecg", "bp"),
                    arteries=Arteries(subject.path_m, subject.stiffness))


def recording_windows(rec, pre: Preprocessing) -> RecordingWindows:
    """Model inputs of one recording (a device_sim.Recording with ECG), or TrainingError
    naming what is wrong: no ECG, a sensor slower than the model rate, too short."""
    if rec.ecg is None:
        raise TrainingError("the recording has no ECG channel; the BP model needs ECG and "
                            "PPG (simulate with channels including 'ecg')")
    for name, rate in (("ECG", rec.ecg_rate), ("PPG", rec.ppg_rate)):
        if rate < pre.sample_rate_hz:
            raise TrainingError(f"{name} at {rate:g} Hz is below the model rate "
                                f"{pre.sample_rate_hz:g} Hz; record it at "
                                f"{pre.sample_rate_hz:g} Hz or faster")
    duration = min(len(rec.ecg) / rec.ecg_rate, len(rec.ppg) / rec.ppg_rate)
    if duration < pre.window_s:
        raise TrainingError(f"the recording lasts {duration:.1f} s, shorter than one "
                            f"{pre.window_s:g} s window")
    return extract_channel_windows(pre, [(rec.ecg, rec.ecg_rate), (rec.ppg, rec.ppg_rate)])


def relative_to_calibration(features: np.ndarray, end_s: np.ndarray, cal_time: float,
                            shape_points: int) -> np.ndarray:
    """One subject's `ecg_ppg_pat` windows as the model takes them after a cuff reading at
    `cal_time`: the pulse amplitude relative to the median of the windows ending in the
    CALIBRATION_SPAN_S before it, the reference the runtime fixes at a calibration (0 when
    there is no reading or no valid window there, as the runtime before a calibration)."""
    span = (end_s <= cal_time) & (end_s >= cal_time - CALIBRATION_SPAN_S)
    reference = bp_amplitude_reference(features[span], shape_points) if span.any() else None
    return bp_relative_amplitude(features, reference, shape_points)


def subject_windows(subject: BpSubject, pre: Preprocessing) -> BpWindows:
    """Simulate, condition, window and label one subject."""
    rec = simulate_subject(subject)
    win = recording_windows(rec, pre)
    n = len(win.end_s)
    starts = np.maximum(np.floor(win.end_s - pre.window_s).astype(int), 0)
    ends = np.maximum(np.ceil(win.end_s).astype(int), starts + 1)
    truth = rec.truth

    def mean(values: np.ndarray) -> np.ndarray:
        return np.array([values[a:b].mean() for a, b in zip(starts, ends, strict=True)])

    times, readings = rec.cuff if rec.cuff is not None else (np.zeros(0), np.zeros((0, 2)))
    cal = (float(times[0]), *map(float, readings[0])) if len(times) else (np.nan,) * 3
    return BpWindows(
        x=relative_to_calibration(win.features, win.end_s, cal[0],
                                  pre.feature_params["shape_points"]),
        sbp=mean(truth.sbp_mmhg), dbp=mean(truth.dbp_mmhg),
        hr=mean(truth.hr_bpm), motion=mean(truth.motion), end_s=win.end_s,
        subject=np.full(n, subject.id, dtype=np.int64),
        cal_time=np.full(n, cal[0]), cal_sbp=np.full(n, cal[1]), cal_dbp=np.full(n, cal[2]),
    )


def build_windows(subjects: Sequence[BpSubject], pre: Preprocessing, *,
                  workers: int | None = None) -> BpWindows:
    """Windows of all `subjects`, in order, by up to MAX_WORKERS processes (each subject
    depends only on its own seed: the result does not depend on the number of workers)."""
    if not subjects:
        raise TrainingError("no subjects to simulate")
    workers = workers or min(len(os.sched_getaffinity(0)), MAX_WORKERS)
    if workers == 1:
        return BpWindows.concat([subject_windows(s, pre) for s in subjects])
    ctx = multiprocessing.get_context("spawn")  # the parent may already run TensorFlow
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        parts = list(pool.map(subject_windows, subjects, [pre] * len(subjects), chunksize=2))
    return BpWindows.concat(parts)
