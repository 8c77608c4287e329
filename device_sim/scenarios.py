"""Scenarios: what the simulated wearer's heart and body do over time.

A scenario is a list of segments. Each segment says how long it lasts, which heart rate the body
heads for and what the wearer is doing. Heart rate moves to each new target along a smooth
(cosine) ramp that takes `ramp_s` seconds at the start of the segment; motion follows its
activity within `MOTION_RAMP_S`. `Scenario.trajectory()` turns this into per-second arrays,
which is all the physiology needs, so other sources of trajectories (TOML files, recorded
data) only have to produce a `Trajectory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from device_sim.errors import ScenarioError

# Motion level per activity: 0 = at rest, ~0.5 = walking, 1 = running.
ACTIVITIES: dict[str, float] = {"rest": 0.0, "walk": 0.5, "run": 1.0}
# Step cadence (steps per minute) drawn for a segment that does not fix one.
CADENCE_RANGE_SPM: dict[str, tuple[float, float]] = {
    "rest": (100.0, 120.0),  # unused while at rest; keeps the arm-swing phase continuous
    "walk": (95.0, 125.0),
    "run": (150.0, 180.0),
}
HR_LIMITS_BPM = (20.0, 250.0)
MOTION_RAMP_S = 2.0  # starting or stopping to walk takes a couple of seconds


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope at both ends, so a ramp has no kinks."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * x)


@dataclass(frozen=True)
class _Ramp:
    start_s: float
    begin: float
    end: float
    duration_s: float

    def __call__(self, t: np.ndarray) -> np.ndarray:
        if self.duration_s <= 0:
            return np.full(np.shape(t), self.end)
        x = (t - self.start_s) / self.duration_s
        return self.begin + (self.end - self.begin) * _smoothstep(x)


@dataclass(frozen=True)
class Segment:
    """A stretch of time with one heart-rate target and one activity."""

    duration_s: float
    hr_bpm: float
    activity: str = "rest"
    ramp_s: float = 5.0  # time to get from the previous target to this one
    cadence_spm: float | None = None  # steps per minute; None = drawn from the activity's range

    def __post_init__(self) -> None:
        if not (np.isfinite(self.duration_s) and self.duration_s > 0):
            raise ScenarioError(f"segment duration {self.duration_s} s must be a positive number")
        lo, hi = HR_LIMITS_BPM
        if not (lo <= self.hr_bpm <= hi):
            raise ScenarioError(
                f"segment HR {self.hr_bpm} bpm is outside {lo:g}-{hi:g} bpm; use a rate in range"
            )
        if self.activity not in ACTIVITIES:
            raise ScenarioError(
                f"unknown activity {self.activity!r}; use one of: {', '.join(ACTIVITIES)}"
            )
        if not (np.isfinite(self.ramp_s) and self.ramp_s >= 0):
            raise ScenarioError(f"segment ramp {self.ramp_s} s must be zero or positive")
        if self.cadence_spm is not None and not (30.0 <= self.cadence_spm <= 250.0):
            raise ScenarioError(
                f"cadence {self.cadence_spm} steps/min is outside 30-250; pick one in range"
            )

    @property
    def motion(self) -> float:
        return ACTIVITIES[self.activity]


@dataclass(frozen=True)
class Trajectory:
    """Per-second targets that drive the physiology; index s covers [s, s+1) seconds."""

    hr_bpm: np.ndarray
    motion: np.ndarray  # 0..1
    cadence_spm: np.ndarray  # step cadence, meaningful where motion > 0

    @property
    def duration_s(self) -> int:
        return len(self.hr_bpm)


@dataclass(frozen=True)
class Scenario:
    """A named, described sequence of segments."""

    name: str
    description: str
    segments: tuple[Segment, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.segments:
            raise ScenarioError(f"scenario {self.name!r} has no segments; give it at least one")
        object.__setattr__(self, "segments", tuple(self.segments))

    @classmethod
    def custom(
        cls,
        segments: Iterable[Segment | Sequence],
        name: str = "custom",
        description: str = "",
    ) -> Scenario:
        """Build a scenario from Segments or (duration_s, hr_bpm[, activity[, ramp_s]]) tuples."""
        built = tuple(s if isinstance(s, Segment) else Segment(*s) for s in segments)
        return cls(name, description, built)

    @classmethod
    def constant(cls, hr_bpm: float, duration_s: float, activity: str = "rest") -> Scenario:
        """One steady segment: handy for tests and calibration."""
        return cls.custom(
            [Segment(duration_s, hr_bpm, activity)],
            name=f"constant-{hr_bpm:g}",
            description=f"{hr_bpm:g} bpm, {activity}, {duration_s:g} s",
        )

    @property
    def duration_s(self) -> int:
        """Length in whole seconds (the recording and its truth are per second)."""
        return max(1, round(sum(s.duration_s for s in self.segments)))

    def with_duration(self, duration_s: float) -> Scenario:
        """Cut the scenario short, or extend its last segment, to last `duration_s` seconds."""
        if not (np.isfinite(duration_s) and duration_s >= 1):
            raise ScenarioError(f"duration {duration_s} s must be at least 1 s")
        kept: list[Segment] = []
        left = float(duration_s)
        for seg in self.segments:
            if left <= 0:
                break
            kept.append(replace(seg, duration_s=min(seg.duration_s, left)))
            left -= seg.duration_s
        if left > 0:
            kept[-1] = replace(kept[-1], duration_s=kept[-1].duration_s + left)
        return replace(self, segments=tuple(kept))

    def trajectory(self, rng: np.random.Generator | None = None) -> Trajectory:
        """Per-second HR, motion and cadence, with smooth ramps between segments.

        `rng` draws the cadence of segments that do not fix one (a fixed default otherwise).
        """
        n = self.duration_s
        t = np.arange(n) + 0.5  # the middle of each second
        hr = np.empty(n)
        motion = np.empty(n)
        cadence = np.empty(n)
        start = 0.0
        hr_from = self.segments[0].hr_bpm
        motion_from = self.segments[0].motion
        for seg in self.segments:
            spm = seg.cadence_spm
            if spm is None:
                lo, hi = CADENCE_RANGE_SPM[seg.activity]
                spm = rng.uniform(lo, hi) if rng is not None else (lo + hi) / 2
            here = t >= start  # later segments overwrite their own part
            cadence[here] = spm
            # Ramp from wherever the previous segment got to, even if its ramp was cut short.
            hr_ramp = _Ramp(start, hr_from, seg.hr_bpm, seg.ramp_s)
            motion_ramp = _Ramp(start, motion_from, seg.motion, min(seg.ramp_s, MOTION_RAMP_S))
            hr[here] = hr_ramp(t[here])
            motion[here] = motion_ramp(t[here])
            start += seg.duration_s
            hr_from = float(hr_ramp(np.array(start)))
            motion_from = float(motion_ramp(np.array(start)))
        return Trajectory(hr, motion, cadence)


def _builtin() -> dict[str, Scenario]:
    s = Segment
    return {
        scen.name: scen
        for scen in (
            Scenario(
                "normal",
                "Resting adult, a two-minute walk, rest again; HR 60-90 bpm (6 min).",
                (s(90, 68), s(20, 80, "walk", ramp_s=10), s(100, 88, "walk", ramp_s=15),
                 s(150, 66, "rest", ramp_s=40)),
            ),
            Scenario(
                "tachycardia",
                "At rest: 15 s at 75 bpm, up to 145 bpm held 25 s, back to 75 bpm (70 s).",
                (s(15, 75), s(30, 145, ramp_s=5), s(25, 75, ramp_s=5)),
            ),
            Scenario(
                "bradycardia",
                "At rest: 15 s at 70 bpm, down to 38 bpm held 25 s, back to 70 bpm (70 s).",
                (s(15, 70), s(30, 38, ramp_s=5), s(25, 70, ramp_s=5)),
            ),
            Scenario(
                "exercise",
                "Walk, run (cadence near HR: hard motion artefact), cool down; HR 100-160 (5 min).",
                (s(40, 100, "walk", ramp_s=0, cadence_spm=110),
                 s(60, 130, "run", ramp_s=20, cadence_spm=165),
                 s(80, 158, "run", ramp_s=30, cadence_spm=160),
                 s(60, 135, "walk", ramp_s=30, cadence_spm=115),
                 s(60, 105, "walk", ramp_s=40, cadence_spm=105)),
            ),
            Scenario(
                "rest",
                "Sitting still at 65 bpm for 5 minutes: a clean baseline.",
                (s(300, 65),),
            ),
        )
    }


SCENARIOS: dict[str, Scenario] = _builtin()


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """A built-in scenario by name; an unknown name is rejected with the valid ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(
            f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}"
        ) from None


def random_scenario(
    rng: np.random.Generator,
    duration_s: float,
    *,
    hr_range_bpm: tuple[float, float] = (40.0, 200.0),
    segment_s: tuple[float, float] = (10.0, 60.0),
    activity_p: dict[str, float] | None = None,
) -> Scenario:
    """Random segments for training data: HR uniform in `hr_range_bpm`, activity drawn with
    probabilities `activity_p` (default rest 0.5, walk 0.3, run 0.2), random ramps and cadence.

    HR and activity are drawn independently on purpose, so running at 45 bpm and resting at
    180 bpm occur too: a model must not learn to read heart rate off the accelerometer.
    """
    lo, hi = hr_range_bpm
    if not (HR_LIMITS_BPM[0] <= lo <= hi <= HR_LIMITS_BPM[1]):
        raise ScenarioError(f"HR range {hr_range_bpm} must lie within {HR_LIMITS_BPM} bpm")
    if not (0 < segment_s[0] <= segment_s[1]):
        raise ScenarioError(f"segment length range {segment_s} s must be positive and ordered")
    p = activity_p or {"rest": 0.5, "walk": 0.3, "run": 0.2}
    unknown = set(p) - set(ACTIVITIES)
    if unknown:
        raise ScenarioError(f"unknown activity {sorted(unknown)}; use: {', '.join(ACTIVITIES)}")
    names = list(p)
    weights = np.array([p[a] for a in names], dtype=float)
    weights /= weights.sum()
    segments = []
    left = float(duration_s)
    while left > 0:
        length = min(left, rng.uniform(*segment_s))
        activity = names[rng.choice(len(names), p=weights)]
        cadence = rng.uniform(*CADENCE_RANGE_SPM[activity])
        segments.append(
            Segment(length, rng.uniform(lo, hi), activity, rng.uniform(2.0, 20.0), cadence)
        )
        left -= length
    return Scenario("random", f"random, {duration_s:g} s", tuple(segments))
