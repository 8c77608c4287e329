"""Scenarios: what the simulated wearer's heart and body do over time.

A scenario is a list of segments. Each segment says how long it lasts, which heart rate the body
heads for and what the wearer is doing. Heart rate moves to each new target along a smooth
(cosine) ramp that takes `ramp_s` seconds at the start of the segment; motion follows its
activity within `MOTION_RAMP_S`. `Scenario.trajectory()` turns this into per-second arrays,
which is all the physiology needs, so other sources of trajectories (TOML files, recorded
data) only have to produce a `Trajectory`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from device_sim.errors import ScenarioError
from device_sim.faults import DETACH_MODES, FAULT_KINDS, Fault

# Motion level per activity: 0 = at rest, ~0.5 = walking, 1 = running.
ACTIVITIES: dict[str, float] = {"rest": 0.0, "walk": 0.5, "run": 1.0}
# Step cadence (steps per minute) drawn for a segment that does not fix one.
CADENCE_RANGE_SPM: dict[str, tuple[float, float]] = {
    "rest": (100.0, 120.0),  # unused while at rest; keeps the arm-swing phase continuous
    "walk": (95.0, 125.0),
    "run": (150.0, 180.0),
}
HR_LIMITS_BPM = (20.0, 250.0)
SBP_LIMITS_MMHG = (50.0, 300.0)
DBP_LIMITS_MMHG = (20.0, 200.0)
RHYTHMS = ("sinus", "af")  # af: atrial fibrillation, an irregularly irregular rhythm
CHANNELS = ("ppg", "acc", "ecg", "bp", "cgm")
DEFAULT_CHANNELS = ("ppg", "acc")
DEFAULT_BP_MMHG = (120.0, 80.0)
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
    # Blood pressure targets (ramped like HR) and rhythm (switches at once); None = carry on
    # with the previous segment's (120/80 mmHg, sinus at the start).
    sbp_mmhg: float | None = None
    dbp_mmhg: float | None = None
    rhythm: str | None = None

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
        for value, (lo, hi), what in ((self.sbp_mmhg, SBP_LIMITS_MMHG, "systolic"),
                                      (self.dbp_mmhg, DBP_LIMITS_MMHG, "diastolic")):
            if value is not None and not (lo <= value <= hi):
                raise ScenarioError(
                    f"{what} pressure {value} mmHg is outside {lo:g}-{hi:g}; pick one in range"
                )
        if (self.sbp_mmhg is not None and self.dbp_mmhg is not None
                and self.dbp_mmhg >= self.sbp_mmhg):
            raise ScenarioError(
                f"diastolic {self.dbp_mmhg} mmHg must be below systolic {self.sbp_mmhg} mmHg"
            )
        if self.rhythm is not None and self.rhythm not in RHYTHMS:
            raise ScenarioError(f"unknown rhythm {self.rhythm!r}; use one of: {', '.join(RHYTHMS)}")

    @property
    def motion(self) -> float:
        return ACTIVITIES[self.activity]


@dataclass(frozen=True)
class Event:
    """Something that happens at one instant: a meal (grams of carbohydrate), an insulin
    bolus (units), or both (a meal with its bolus)."""

    at_s: float
    meal_g: float = 0.0
    bolus_u: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.at_s) and self.at_s >= 0):
            raise ScenarioError(f"event time {self.at_s} s must be zero or positive")
        if not (0 <= self.meal_g <= 500):
            raise ScenarioError(f"meal of {self.meal_g} g carbohydrate is outside 0-500 g")
        if not (0 <= self.bolus_u <= 100):
            raise ScenarioError(f"bolus of {self.bolus_u} U insulin is outside 0-100 U")


@dataclass(frozen=True)
class Trajectory:
    """Per-second targets that drive the physiology; index s covers [s, s+1) seconds.

    Only HR, motion and cadence are required, so any source of HR (a recording) can drive
    the engine; the rest default to a calm sinus rhythm at 120/80 mmHg with no meals.
    """

    hr_bpm: np.ndarray
    motion: np.ndarray  # 0..1
    cadence_spm: np.ndarray  # step cadence, meaningful where motion > 0
    sbp_mmhg: np.ndarray | None = None
    dbp_mmhg: np.ndarray | None = None
    af: np.ndarray | None = None  # bool: atrial fibrillation during that second
    meal_g: np.ndarray | None = None  # carbohydrate eaten at the start of that second
    bolus_u: np.ndarray | None = None  # insulin bolus given at the start of that second
    basal_glucose_mg_dl: float = 110.0  # where the basal insulin holds fasting glucose
    pat_offset_s: float = 0.0  # this subject's pulse arrival time minus the population's

    def __post_init__(self) -> None:
        n = len(self.hr_bpm)
        defaults = {"sbp_mmhg": DEFAULT_BP_MMHG[0], "dbp_mmhg": DEFAULT_BP_MMHG[1],
                    "af": False, "meal_g": 0.0, "bolus_u": 0.0}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.full(n, value))

    @property
    def duration_s(self) -> int:
        return len(self.hr_bpm)


@dataclass(frozen=True)
class Scenario:
    """A named, described sequence of segments."""

    name: str
    description: str
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    events: tuple[Event, ...] = ()
    faults: tuple[Fault, ...] = ()
    channels: tuple[str, ...] = DEFAULT_CHANNELS  # what the device streams
    basal_glucose_mg_dl: float = 110.0
    # The subject's own pulse arrival time offset (PEP, arm length): what a cuff calibrates.
    pat_offset_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.segments:
            raise ScenarioError(f"scenario {self.name!r} has no segments; give it at least one")
        object.__setattr__(self, "segments", tuple(self.segments))
        object.__setattr__(self, "events", tuple(self.events))
        object.__setattr__(self, "faults", tuple(self.faults))
        object.__setattr__(self, "channels", tuple(self.channels))
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ScenarioError(
                f"unknown channel {unknown[0]!r}; use some of: {', '.join(CHANNELS)}"
            )
        if not (40 <= self.basal_glucose_mg_dl <= 400):
            raise ScenarioError(
                f"basal glucose {self.basal_glucose_mg_dl} mg/dL is outside 40-400 mg/dL"
            )
        if not (-150 <= self.pat_offset_ms <= 150):
            raise ScenarioError(f"PAT offset {self.pat_offset_ms} ms is outside +-150 ms")

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
        return replace(
            self,
            segments=tuple(kept),
            events=tuple(e for e in self.events if e.at_s < duration_s),
            faults=tuple(f for f in self.faults if f.start_s < duration_s),
        )

    def trajectory(self, rng: np.random.Generator | None = None) -> Trajectory:
        """Per-second HR, motion and cadence, with smooth ramps between segments.

        `rng` draws the cadence of segments that do not fix one (a fixed default otherwise).
        """
        n = self.duration_s
        t = np.arange(n) + 0.5  # the middle of each second
        hr = np.empty(n)
        motion = np.empty(n)
        cadence = np.empty(n)
        sbp, dbp = np.empty(n), np.empty(n)
        af = np.zeros(n, dtype=bool)
        start = 0.0
        hr_from = self.segments[0].hr_bpm
        motion_from = self.segments[0].motion
        sbp_to, dbp_to = DEFAULT_BP_MMHG
        sbp_from = self.segments[0].sbp_mmhg or sbp_to
        dbp_from = self.segments[0].dbp_mmhg or dbp_to
        rhythm = "sinus"
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
            sbp_to = seg.sbp_mmhg if seg.sbp_mmhg is not None else sbp_to
            dbp_to = seg.dbp_mmhg if seg.dbp_mmhg is not None else dbp_to
            rhythm = seg.rhythm or rhythm
            sbp_ramp = _Ramp(start, sbp_from, sbp_to, seg.ramp_s)
            dbp_ramp = _Ramp(start, dbp_from, dbp_to, seg.ramp_s)
            sbp[here] = sbp_ramp(t[here])
            dbp[here] = dbp_ramp(t[here])
            af[here] = rhythm == "af"
            start += seg.duration_s
            hr_from = float(hr_ramp(np.array(start)))
            motion_from = float(motion_ramp(np.array(start)))
            sbp_from = float(sbp_ramp(np.array(start)))
            dbp_from = float(dbp_ramp(np.array(start)))
        meal, bolus = np.zeros(n), np.zeros(n)
        for event in self.events:
            if event.at_s < n:
                meal[int(event.at_s)] += event.meal_g
                bolus[int(event.at_s)] += event.bolus_u
        return Trajectory(hr, motion, cadence, sbp, dbp, af, meal, bolus,
                          self.basal_glucose_mg_dl, self.pat_offset_ms / 1000.0)


# Scenario files: [[segment]], [[event]] and [[fault]] tables; see docs/simulator.md.
SCENARIO_DIR = Path(__file__).with_name("scenario_files")
_NUMBER = (int, float)
# key -> (types, lowest, highest, hint); a range bound of None means "no bound".
_TOP_KEYS: dict[str, tuple[tuple[type, ...], float | None, float | None, str]] = {
    "name": ((str,), None, None, 'a name, e.g. name = "my-scenario"'),
    "description": ((str,), None, None, "one line of text"),
    "channels": ((list,), None, None, f"a list from {list(CHANNELS)}"),
    "basal_glucose_mg_dl": (_NUMBER, 40, 400, "fasting glucose in mg/dL, e.g. 110"),
    "pat_offset_ms": (_NUMBER, -150, 150, "the subject's pulse arrival time offset in ms"),
    "segment": ((list,), None, None, "[[segment]] tables"),
    "event": ((list,), None, None, "[[event]] tables"),
    "fault": ((list,), None, None, "[[fault]] tables"),
}
_TABLE_KEYS: dict[str, dict[str, tuple[tuple[type, ...], float | None, float | None, str]]] = {
    "segment": {
        "duration_s": (_NUMBER, 0, 7 * 86400, "seconds, > 0"),
        "hr_bpm": (_NUMBER, *HR_LIMITS_BPM, "beats per minute"),
        "activity": ((str,), None, None, f"one of {', '.join(ACTIVITIES)}"),
        "ramp_s": (_NUMBER, 0, 86400, "seconds to reach the new targets, >= 0"),
        "cadence_spm": (_NUMBER, 30, 250, "steps per minute"),
        "sbp_mmhg": (_NUMBER, *SBP_LIMITS_MMHG, "systolic pressure, mmHg"),
        "dbp_mmhg": (_NUMBER, *DBP_LIMITS_MMHG, "diastolic pressure, mmHg"),
        "rhythm": ((str,), None, None, f"one of {', '.join(RHYTHMS)}"),
    },
    "event": {
        "at_s": (_NUMBER, 0, None, "seconds from the start"),
        "meal_g": (_NUMBER, 0, 500, "grams of carbohydrate"),
        "bolus_u": (_NUMBER, 0, 100, "units of rapid-acting insulin"),
    },
    "fault": {
        "kind": ((str,), None, None, f"one of {', '.join(FAULT_KINDS)}"),
        "at_s": (_NUMBER, 0, None, "seconds from the start"),
        "duration_s": (_NUMBER, 0, None, "seconds, > 0"),
        "mode": ((str,), None, None, "flat or saturated (detach)"),
        "ppm": (_NUMBER, -100_000, 100_000, "clock drift in parts per million (drift)"),
        "level": (_NUMBER, 0, 16, "g (motion)"),
    },
}
_CHOICES = {"activity": tuple(ACTIVITIES), "rhythm": RHYTHMS, "kind": tuple(FAULT_KINDS),
            "mode": DETACH_MODES}
_REQUIRED = {"segment": ("duration_s", "hr_bpm"), "event": ("at_s",), "fault": ("kind", "at_s")}


def _line_of(text: str, table: str | None, index: int, key: str | None) -> int | None:
    """1-based line of `key` in the `index`-th [[table]] (or at the top level), if found."""
    lines = text.splitlines()
    start, seen = 0, -1
    if table is not None:
        for i, line in enumerate(lines):
            if line.split("#")[0].strip().replace(" ", "") == f"[[{table}]]":
                seen += 1
                if seen == index:
                    start = i
                    break
        else:
            return None
    if key is None:
        return start + 1
    for i in range(start + (table is not None), len(lines)):
        stripped = lines[i].split("#")[0].strip()
        if stripped.startswith("["):
            break
        if stripped.split("=", 1)[0].strip().strip('"') == key:
            return i + 1
    return start + 1 if table is not None else None


def _check_value(where: str, key: str, value: object,
                 spec: tuple[tuple[type, ...], float | None, float | None, str]) -> None:
    types, lo, hi, hint = spec
    if isinstance(value, bool) or not isinstance(value, types):
        raise ScenarioError(f"{where}{key} = {value!r} has the wrong type; expected {hint}")
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        raise ScenarioError(f"{where}{key} = {value!r} is not known; use one of: "
                            f"{', '.join(choices)}")
    low = lo is not None and (value < lo or (value == lo and key.startswith("duration")))
    if low or (hi is not None and value > hi):
        span = f"above {lo:g}" if hi is None else f"from {lo:g} to {hi:g}"
        raise ScenarioError(f"{where}{key} = {value!r} is out of range; use {hint}, {span}")


def load_scenario(path: str | os.PathLike) -> Scenario:
    """A scenario from a TOML file. Any mistake raises ScenarioError naming the file, the
    line, the key and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"cannot read scenario file {str(path)!r} ({err.strerror}); "
                            "check the path") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{path}: not valid TOML ({err}); fix the syntax") from None

    def where(table: str | None, index: int, key: str | None) -> str:
        line = _line_of(text, table, index, key)
        place = f"{path}:{line}: " if line else f"{path}: "
        return place + (f"[[{table}]] #{index + 1}: " if table else "")

    for key, value in data.items():
        if key not in _TOP_KEYS:
            raise ScenarioError(f"{where(None, 0, key)}unknown key {key!r}; use one of: "
                                f"{', '.join(_TOP_KEYS)}")
        _check_value(where(None, 0, key), key, value, _TOP_KEYS[key])
    built: dict[str, list] = {"segment": [], "event": [], "fault": []}
    for table, keys in _TABLE_KEYS.items():
        for i, entry in enumerate(data.get(table, [])):
            if not isinstance(entry, dict):
                raise ScenarioError(f"{where(None, 0, table)}{table} must be [[{table}]] "
                                    "tables")
            for key, value in entry.items():
                if key not in keys:
                    raise ScenarioError(f"{where(table, i, key)}unknown key {key!r}; use one "
                                        f"of: {', '.join(keys)}")
                _check_value(where(table, i, key), key, value, keys[key])
            for key in _REQUIRED[table]:
                if key not in entry:
                    raise ScenarioError(f"{where(table, i, None)}missing {key!r}; add "
                                        f"{key} = ... ({keys[key][3]})")
            try:
                if table == "fault":
                    args = dict(entry)
                    args["start_s"] = float(args.pop("at_s"))
                    built[table].append(Fault(**args))
                elif table == "event":
                    built[table].append(Event(**entry))
                else:
                    built[table].append(Segment(**entry))
            except ScenarioError as err:
                raise ScenarioError(f"{where(table, i, None)}{err}") from None
    if not built["segment"]:
        raise ScenarioError(f"{path}: no [[segment]] tables; add at least one with "
                            "duration_s and hr_bpm")
    try:
        scenario = Scenario(
            data.get("name", path.stem),
            data.get("description", ""),
            tuple(built["segment"]),
            tuple(built["event"]),
            tuple(built["fault"]),
            tuple(data.get("channels", DEFAULT_CHANNELS)),
            float(data.get("basal_glucose_mg_dl", 110.0)),
            float(data.get("pat_offset_ms", 0.0)),
        )
    except ScenarioError as err:
        raise ScenarioError(f"{where(None, 0, 'channels')}{err}") from None
    late = [e.at_s for e in scenario.events if e.at_s >= scenario.duration_s]
    if late:
        raise ScenarioError(f"{path}: an event at {late[0]:g} s falls after the end "
                            f"({scenario.duration_s} s); move it or lengthen the segments")
    return scenario


def _builtin() -> dict[str, Scenario]:
    """The shipped scenario files, in the order of their `order` prefix (01-normal.toml)."""
    found = {}
    for file in sorted(SCENARIO_DIR.glob("*.toml")):
        scenario = load_scenario(file)
        found[scenario.name] = scenario
    return found


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
