"""Alarm engine: estimates and operator commands in, alarm events out.

One active alarm per (device, condition) with a life of events, so a vital hovering at a limit
does not cause an alarm storm:

    raised -> [reminder ...] [silenced] [acknowledged] -> cleared

A condition must persist for its alarm-condition delay before it is raised, and the vital must
come back past the limit by the hysteresis for the clear delay before it clears. An
unacknowledged high-priority alarm is re-announced ("reminder") every `realert_s` while its
condition holds, unless it is silenced. A latching alarm stays active after its condition
ends until someone acknowledges it. Time is the device's clock, so a replay raises exactly
the alarms the live run raised.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.config import (
    AlarmsConfig,
    StaleDataAlarmConfig,
    TechnicalAlarmConfig,
    ThresholdAlarmConfig,
)
from edge.errors import CommandError
from edge.estimate import (
    GOOD,
    MOTION,
    MOTION_UNKNOWN,
    SENSOR,
    URGENT_LOW_RISK,
    Estimate,
    MotionArtefactGate,
)

EVENTS = ("raised", "reminder", "silenced", "acknowledged", "cleared")
MOVING_HOLD_S = 300.0  # a rule's moving limit applies this long after the wearer stops


@dataclass(frozen=True)
class AlarmEvent:
    alarm_id: str  # the same for every event of one alarm
    device: str
    condition: str  # e.g. "hr_high"
    event: str  # one of EVENTS
    priority: str
    kind: str  # "physiological" | "technical"
    value: float | None  # the vital when the event fired (None for technical alarms)
    limit: float | None
    unit: str
    message: str
    device_time_s: float
    onset_s: float  # device time the condition started (before the delay)
    operator: str = ""  # who acknowledged or silenced it


@dataclass(frozen=True)
class Observation:
    """A technical fact about a device, not a vital: the age of its data (DATA_AGE, CGM_AGE)
    or the runtime's health (RUNTIME, FAULTS). Technical rules watch these; they are never
    published as vitals."""

    device: str
    kind: str  # one of OBSERVATIONS
    value: float
    quality: str  # GOOD, or the state that is the condition (e.g. FAULT)
    device_time_s: float  # on the device's session timeline
    unit: str = "s"

    @property
    def vital(self) -> str:  # what a rule matches on, as for an Estimate
        return self.kind

    @property
    def motion_g(self) -> None:
        return None

    @property
    def details(self) -> Mapping[str, float | None]:
        return {}


@dataclass(frozen=True)
class _Rule:
    """One alarm condition. A threshold rule compares a field of an estimate with its limit;
    a quality rule (technical) fires on the estimate's quality being one of `bad`."""

    condition: str
    vital: str
    label: str
    config: ThresholdAlarmConfig | TechnicalAlarmConfig
    kind: str = "physiological"
    above: bool = True  # threshold rules: alarm above (True) or below (False) the limit
    field: str = ""  # threshold rules: "" for the estimate's value, else a key of its details
    bad: frozenset[str] = frozenset()  # quality rules: the qualities that are the condition

    def reading(self, e: Estimate | Observation) -> float | None:
        return e.details.get(self.field) if self.field else e.value

    def unit(self, e: Estimate | Observation) -> str:
        if self.field == URGENT_LOW_RISK:
            return "probability"
        return "mg/dL/min" if self.field.startswith("trend") else e.unit

    def limit(self, moving: bool = False) -> float:
        c = self.config
        return c.moving_threshold if moving and c.moving_threshold else c.threshold

    def crossed(self, e: Estimate | Observation, moving: bool = False) -> bool:
        if self.bad:
            return e.quality in self.bad
        limit, v = self.limit(moving), self.reading(e)
        return v is not None and (v > limit if self.above else v <= limit)

    def recovered(self, e: Estimate | Observation, moving: bool = False) -> bool:
        if self.bad:  # any other quality (an uncalibrated BP, a PPG under motion) but a
            # sensor fault, which says nothing about motion either
            return e.quality not in self.bad and e.quality != SENSOR
        limit, v, h = self.limit(moving), self.reading(e), self.config.hysteresis
        return v is not None and (v <= limit - h if self.above else v >= limit + h)

    def describe(self, e: Estimate | Observation, moving: bool = False) -> str:
        if self.bad:
            return self.label
        v = self.reading(e)
        if v is None:  # e.g. no forecast on this reading (a gap in the history): say so
            what = "forecast" if self.field == URGENT_LOW_RISK else (
                "trend" if self.field.startswith("trend") else "value")
            return f"{self.label}: no {what} on this reading (limit {self.limit(moving):g})"
        if self.kind == "technical":  # a stale-data rule: the reading is an age in seconds
            return f"{self.label}: nothing for {v / 60:.0f} min" if v >= 120 else (
                f"{self.label}: nothing for {v:.0f} s")
        side = "above" if self.above else "at or below"
        if self.field == URGENT_LOW_RISK:
            return (f"{self.label}: {v:.0%} risk of a reading <= 55 mg/dL within 30 min "
                    f"({side} limit {self.limit(moving):.0%})")
        return f"{self.label}: {v:.1f} {self.unit(e)} ({side} limit {self.limit(moving):g})"


def _stale(config: StaleDataAlarmConfig) -> ThresholdAlarmConfig:
    """A stale-data alarm as a threshold on the data's age: raised the moment the age passes
    the limit, cleared by the next reading."""
    return ThresholdAlarmConfig(config.after_s, config.priority, hysteresis=0.0, delay_s=0.0,
                                clear_delay_s=0.0, enabled=config.enabled)


def _rules(c: AlarmsConfig) -> list[_Rule]:
    trend = "trend_mg_dl_per_min"
    technical = "technical"
    rules = [
        _Rule("hr_high", "heart_rate", "Heart rate high", c.hr_high),
        _Rule("hr_low", "heart_rate", "Heart rate low", c.hr_low, above=False),
        _Rule("sbp_high", "systolic_bp", "Systolic blood pressure high", c.sbp_high),
        _Rule("sbp_low", "systolic_bp", "Systolic blood pressure low", c.sbp_low, above=False),
        _Rule("dbp_high", "diastolic_bp", "Diastolic blood pressure high", c.dbp_high),
        _Rule("glucose_urgent_low", "glucose", "Urgent low glucose", c.glucose_urgent_low,
              above=False),
        _Rule("glucose_low", "glucose", "Low glucose", c.glucose_low, above=False),
        _Rule("glucose_high", "glucose", "High glucose", c.glucose_high),
        _Rule("glucose_rising", "glucose", "Glucose rising fast", c.glucose_rising,
              field=trend),
        # Falling: the trend at or below minus the limit.
        _Rule("glucose_falling", "glucose", "Glucose falling fast",
              dataclasses.replace(c.glucose_falling, threshold=-c.glucose_falling.threshold),
              above=False, field=trend),
        _Rule("glucose_urgent_low_soon", "glucose", "Urgent low glucose soon",
              c.glucose_urgent_low_soon, field=URGENT_LOW_RISK),
        _Rule("ppg_sensor", "heart_rate", "PPG sensor problem: no usable signal (off the "
              "skin, gap, clipping or flat line)", c.sensor, technical, bad=frozenset({SENSOR})),
        _Rule("bp_sensor", "systolic_bp", "Blood-pressure signals unusable (ECG lead-off, PPG "
              "off the skin, gap or flat line)", c.bp_sensor, technical,
              bad=frozenset({SENSOR})),
        _Rule("motion", "heart_rate", "Heart rate unreliable: sustained motion artefact",
              c.motion, technical, bad=frozenset({MOTION, MOTION_UNKNOWN})),
        _Rule("cgm_stale", CGM_AGE, "No CGM reading", _stale(c.cgm_stale), technical),
        _Rule("cgm_lost", CGM_AGE, "CGM signal lost", _stale(c.cgm_lost), technical),
        _Rule("no_data", DATA_AGE, "No data from the wearable", _stale(c.no_data), technical),
        _Rule("model_error", RUNTIME, "Model reload failed: the previous model keeps running",
              TechnicalAlarmConfig(delay_s=0.0, clear_delay_s=0.0), technical,
              bad=frozenset({RELOAD_FAILED})),
        # A bug or a bad value on the device's path: that frame (or window) was skipped and
        # monitoring goes on; the log has the traceback. Clears after a minute without one.
        _Rule("runtime_error", FAULTS, "Runtime fault on this device: data was skipped (the "
              "log has the details); monitoring goes on",
              TechnicalAlarmConfig("high", delay_s=0.0, clear_delay_s=RUNTIME_CLEAR_S),
              technical, bad=frozenset({FAULT})),
    ]
    return [rule for rule in rules if rule.config.enabled]


# Observations that are not vitals: the age of a data source, the runtime's own health.
CGM_AGE, DATA_AGE, RUNTIME = "cgm_age_s", "data_age_s", "runtime"
FAULTS = "faults"  # a fault caught at the device boundary (FAULT), or a clean frame (GOOD)
OBSERVATIONS = (CGM_AGE, DATA_AGE, RUNTIME, FAULTS)
RELOAD_FAILED, FAULT = "reload_failed", "fault"
RUNTIME_CLEAR_S = 60.0
CONDITIONS = tuple(rule.condition for rule in _rules(AlarmsConfig()))


class Alarm:
    """State machine for one rule on one device."""

    def __init__(self, device: str, rule: _Rule, realert_s: float) -> None:
        self.device, self.rule, self.realert_s = device, rule, realert_s
        self.active_id: str | None = None
        self.onset_s: float | None = None  # when the crossing began (inactive) ...
        self.recovery_s: float | None = None  # ... or when the vital came back (active)
        self.condition_over = False  # active only because it latches
        self.acknowledged = False
        self.silenced_until = -1.0
        self.last_alert_s = 0.0
        self.last: Estimate | Observation | None = None  # the newest estimate seen
        self.last_moving_s = -math.inf  # device time the wearer was last seen moving
        self.moving = False

    def update(self, estimate: Estimate | Observation) -> AlarmEvent | None:
        t, c = estimate.device_time_s, self.rule.config
        self.last = estimate
        if estimate.motion_g is not None and estimate.motion_g >= MotionArtefactGate.MOTION_G:
            self.last_moving_s = t
        # The moving limit holds while the wearer moves and while the heart rate recovers.
        self.moving = moving = t - self.last_moving_s <= MOVING_HOLD_S
        if self.active_id is None:
            if self.onset_s is None and not self.rule.crossed(estimate, moving):
                return None
            # A pending crossing survives a noisy estimate just inside the limit: only a
            # clear recovery (past the hysteresis) restarts the condition delay.
            if self.onset_s is not None and self.rule.recovered(estimate, moving):
                self.onset_s = None
                return None
            if self.onset_s is None:
                self.onset_s = t
            # Raised only on an estimate that itself crosses the limit: the condition must
            # still hold when its delay ends (an alarm on a reading just inside the limit
            # read "Heart rate high: 116.9 bpm (above limit 120)").
            if t - self.onset_s < c.delay_s or not self.rule.crossed(estimate, moving):
                return None
            self.active_id = uuid.uuid4().hex
            self.recovery_s, self.condition_over, self.acknowledged = None, False, False
            self.last_alert_s = t
            return self._event("raised", estimate)
        if self.condition_over:
            return None  # latched: waits for an acknowledgement
        if not self.rule.recovered(estimate, moving):
            self.recovery_s = None
            return self._reminder(estimate)
        if self.recovery_s is None:
            self.recovery_s = t
        if t - self.recovery_s < c.clear_delay_s:
            # Back past the limit, waiting out the clear delay: nothing to re-announce (a
            # reminder would read "forecast 85 mg/dL (at or below limit 60)").
            return None
        if c.latching and not self.acknowledged:
            self.condition_over = True
            return None
        v = self.rule.reading(estimate)
        ended = f"{self.rule.label} ended"
        if self.rule.kind == "physiological" and v is not None:
            ended += (f": risk {v:.0%}" if self.rule.field == URGENT_LOW_RISK
                      else f": {round(v, 1):g} {self.rule.unit(estimate)}")
        return self.end("cleared", ended)

    def record(self) -> dict[str, Any]:
        value = self.rule.reading(self.last) if self.last is not None else None
        return {"alarm_id": self.active_id, "condition": self.rule.condition,
                "priority": self.rule.config.priority, "kind": self.rule.kind,
                "value": value if value is None or math.isfinite(value) else None,
                "unit": self.rule.unit(self.last) if self.last is not None else "",
                "acknowledged": self.acknowledged, "latched": self.condition_over}

    def _reminder(self, estimate: Estimate | Observation) -> AlarmEvent | None:
        t = estimate.device_time_s
        if (self.rule.config.priority != "high" or self.acknowledged or self.realert_s <= 0
                or t < self.silenced_until or t - self.last_alert_s < self.realert_s):
            return None
        self.last_alert_s = t
        return self._event("reminder", estimate)

    def acknowledge(self, operator: str) -> list[AlarmEvent]:
        self.acknowledged = True
        events = [self._event("acknowledged", self.last,
                              f"{self.rule.label} acknowledged by {operator}", operator)]
        if self.condition_over:  # a latched alarm whose condition is over: now it can end
            events.append(self.end("cleared", f"{self.rule.label} ended (acknowledged)"))
        return events

    def silence(self, operator: str, seconds: float) -> AlarmEvent:
        now = self.last.device_time_s if self.last else 0.0
        self.silenced_until = now + seconds
        return self._event("silenced", self.last,
                           f"{self.rule.label} silenced for {seconds / 60:g} min by {operator}",
                           operator)

    def end(self, kind: str, message: str) -> AlarmEvent:
        """The alarm's last event: its condition ended, or its rule was disabled."""
        event = self._event(kind, self.last, message)
        self.active_id, self.onset_s, self.condition_over = None, None, False
        self.silenced_until = -1.0
        return event

    def _event(self, kind: str, estimate: Estimate | Observation, message: str = "",
               operator: str = "") -> AlarmEvent:
        rule, c = self.rule, self.rule.config
        measured = not rule.bad
        return AlarmEvent(
            self.active_id or "", self.device, rule.condition, kind, c.priority, rule.kind,
            rule.reading(estimate) if measured else None,
            rule.limit(self.moving) if measured else None, rule.unit(estimate),
            message or rule.describe(estimate, self.moving), estimate.device_time_s,
            self.onset_s if self.onset_s is not None else estimate.device_time_s, operator)


def cleared_on_restart(device: str, rec: dict[str, Any], why: str,
                       time_s: float) -> AlarmEvent:
    """The last event of an alarm that was active when the runtime stopped and does not go on
    after the restart, with the reason."""
    return AlarmEvent(rec["alarm_id"], device, rec["condition"], "cleared", rec["priority"],
                      rec["kind"], None, None, rec["unit"],
                      f"{rec['condition']} cleared: {why}", time_s, time_s)


def replay_rule(config: AlarmsConfig, condition: str,
                estimates: Iterable[Estimate | Observation]) -> list[tuple[bool, bool]]:
    """One rule's alarm over one device's estimates, through the runtime's own state machine:
    per estimate, (raised on it, active after it). The model card scores the urgent-low-soon
    alarm with this, so its figures are what the runtime raises (delay, hysteresis, clear
    delay and all)."""
    return _replay(next(r for r in _rules(config) if r.condition == condition), estimates)


def replay_threshold(config: ThresholdAlarmConfig, field: str, above: bool,
                     estimates: Iterable[Estimate]) -> list[tuple[bool, bool]]:
    """`replay_rule` for a threshold on any detail of the estimates (`field`), alarming above
    or at-or-below its limit: how a rule the runtime does not have would behave (the model
    card's peers of the urgent-low-soon alarm)."""
    return _replay(_Rule("replay", "", "", config, above=above, field=field), estimates)


def _replay(rule: _Rule, estimates: Iterable[Estimate | Observation]) -> list[tuple[bool, bool]]:
    alarm = Alarm("replay", rule, realert_s=0.0)
    out = []
    for estimate in estimates:
        event = alarm.update(estimate) if rule.bad or estimate.quality == GOOD else None
        out.append((event is not None and event.event == "raised", alarm.active_id is not None))
    return out


class AlarmEngine:
    """All alarm rules for all devices. Only good-quality estimates drive physiological
    alarms (a bad window neither raises nor clears one); the technical sensor alarm watches
    the quality itself."""

    def __init__(self, config: AlarmsConfig) -> None:
        self._rules = _rules(config)
        self._realert_s = config.realert_s
        self._alarms: dict[tuple[str, str], Alarm] = {}

    def update(self, estimate: Estimate | Observation) -> list[AlarmEvent]:
        events = []
        for rule in self._rules:
            if rule.vital != estimate.vital or (not rule.bad and estimate.quality != GOOD):
                continue
            key = (estimate.device, rule.condition)
            alarm = self._alarms.get(key)
            if alarm is None:
                alarm = self._alarms[key] = Alarm(estimate.device, rule,
                                                           self._realert_s)
            event = alarm.update(estimate)
            if event is not None:
                events.append(event)
        return events

    def _active(self, device: str, condition: str) -> Alarm:
        alarm = self._alarms.get((device, condition))
        if alarm is None or alarm.active_id is None:
            raise CommandError(f"no active {condition} alarm on {device}")
        return alarm

    def acknowledge(self, device: str, condition: str, operator: str) -> list[AlarmEvent]:
        return self._active(device, condition).acknowledge(operator)

    def silence(self, device: str, condition: str, operator: str,
                seconds: float) -> list[AlarmEvent]:
        return [self._active(device, condition).silence(operator, seconds)]

    def reconfigure(self, config: AlarmsConfig) -> list[AlarmEvent]:
        """New limits (SIGHUP). Active alarms keep running under their rule's new settings;
        an active alarm whose rule was disabled is cleared, never left hanging."""
        self._rules = _rules(config)
        self._realert_s = config.realert_s
        rules = {rule.condition: rule for rule in self._rules}
        events = []
        for key, alarm in list(self._alarms.items()):
            rule = rules.get(alarm.rule.condition)
            if rule is not None:
                alarm.rule, alarm.realert_s = rule, config.realert_s
                continue
            if alarm.active_id is not None:
                events.append(alarm.end("cleared", f"{alarm.rule.label} alarm disabled by a "
                                                   "configuration reload"))
            del self._alarms[key]
        return events

    def snapshot(self, device: str) -> list[dict[str, Any]]:
        """The device's active alarms, as edge.alarmstate keeps them across a restart."""
        return [alarm.record() for (d, _), alarm in list(self._alarms.items())
                if d == device and alarm.active_id is not None]

    def restore(self, device: str, records: list[dict[str, Any]],
                time_s: float = 0.0) -> list[AlarmEvent]:
        """Alarms that were active when the runtime stopped: carried on (the data that comes
        clears them as usual; a high-priority one is re-announced by the next estimate past
        its limit) or cleared with the reason. A technical alarm about the previous process
        (runtime_error, model_error) ends with it; one whose rule is now disabled ends."""
        rules = {rule.condition: rule for rule in self._rules}
        events = []
        for rec in records:
            rule = rules.get(rec["condition"])
            if rule is None or rule.vital in (RUNTIME, FAULTS):
                why = ("the runtime restarted" if rule is not None else
                       "its rule is disabled in the configuration the runtime restarted with")
                events.append(cleared_on_restart(device, rec, why, time_s))
                continue
            alarm = self._alarms[(device, rule.condition)] = Alarm(device, rule, self._realert_s)
            alarm.active_id, alarm.acknowledged = rec["alarm_id"], rec["acknowledged"]
            alarm.condition_over = rec["latched"]
            alarm.last_alert_s = -math.inf
            value = rec["value"]
            if rule.vital in OBSERVATIONS:
                alarm.last = Observation(device, rule.vital, value or 0.0, GOOD, time_s)
            else:  # what the alarm last said, for the text of its next event
                alarm.last = Estimate(device, rule.vital, value if not rule.field else math.nan,
                                      rec["unit"], GOOD, None, time_s, "restored",
                                      {rule.field: value} if rule.field else {})
        return events

    def is_active(self, device: str, condition: str) -> bool:
        alarm = self._alarms.get((device, condition))
        return alarm is not None and alarm.active_id is not None

    def active(self) -> list[tuple[str, str]]:
        # Called for the status topic from other threads while the reader thread may add a
        # rule's first alarm: iterate over a snapshot (list() of a dict is atomic).
        return [key for key, alarm in list(self._alarms.items()) if alarm.active_id is not None]
