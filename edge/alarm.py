"""Alarm engine: estimates in, alarm events out.

One active alarm per (device, condition), with a start ("raised") and an end ("cleared"), so
a vital hovering at a limit does not cause an alarm storm. A condition must persist for its
alarm-condition delay before it is raised, and the vital must come back past the limit by the
hysteresis for the clear delay before it clears. Time is the device's clock, so a replay of
a recording raises exactly the alarms the live run raised.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from edge.config import AlarmsConfig, ThresholdAlarmConfig
from edge.estimate import GOOD, Estimate


@dataclass(frozen=True)
class AlarmEvent:
    alarm_id: str  # the same for the raised and cleared events of one alarm
    device: str
    condition: str  # e.g. "hr_high"
    event: str  # "raised" | "cleared"
    priority: str
    kind: str  # "physiological" | "technical"
    value: float  # the vital when the event fired
    limit: float
    unit: str
    message: str
    device_time_s: float
    onset_s: float  # device time the condition started (before the delay)


@dataclass(frozen=True)
class _Rule:
    condition: str
    vital: str
    above: bool
    label: str
    config: ThresholdAlarmConfig


def _rules(config: AlarmsConfig) -> list[_Rule]:
    rules = [
        _Rule("hr_high", "heart_rate", True, "Heart rate high", config.hr_high),
        _Rule("hr_low", "heart_rate", False, "Heart rate low", config.hr_low),
    ]
    return [rule for rule in rules if rule.config.enabled]


class ThresholdAlarm:
    """State machine for one rule on one device."""

    def __init__(self, device: str, rule: _Rule) -> None:
        self.device, self.rule = device, rule
        self.active_id: str | None = None
        self.onset_s: float | None = None  # when the crossing began (inactive) ...
        self.recovery_s: float | None = None  # ... or when the vital came back (active)
        self.last: Estimate | None = None  # the newest estimate seen

    def _crossed(self, value: float) -> bool:
        c = self.rule.config
        return value > c.threshold if self.rule.above else value < c.threshold

    def _recovered(self, value: float) -> bool:
        c = self.rule.config
        if self.rule.above:
            return value <= c.threshold - c.hysteresis
        return value >= c.threshold + c.hysteresis

    def update(self, estimate: Estimate) -> AlarmEvent | None:
        t, value, c = estimate.device_time_s, estimate.value, self.rule.config
        self.last = estimate
        if self.active_id is None:
            if not self._crossed(value):
                self.onset_s = None
                return None
            if self.onset_s is None:
                self.onset_s = t
            if t - self.onset_s < c.delay_s:
                return None
            self.active_id = uuid.uuid4().hex
            self.recovery_s = None
            return self._event("raised", estimate)
        if not self._recovered(value):
            self.recovery_s = None
            return None
        if self.recovery_s is None:
            self.recovery_s = t
        if t - self.recovery_s < c.clear_delay_s:
            return None
        event = self._event("cleared", estimate)
        self.active_id, self.onset_s = None, None
        return event

    def end(self, reason: str) -> AlarmEvent:
        """Clear an active alarm for a reason other than the vital recovering."""
        event = self._event("cleared", self.last, f"{self.rule.label} alarm {reason}")
        self.active_id, self.onset_s = None, None
        return event

    def _event(self, kind: str, estimate: Estimate, message: str = "") -> AlarmEvent:
        rule, c = self.rule, self.rule.config
        side = "above" if rule.above else "below"
        if not message:
            message = (f"{rule.label}: {estimate.value:.0f} {estimate.unit} "
                       f"({side} limit {c.threshold:g})" if kind == "raised" else
                       f"{rule.label} ended: {estimate.value:.0f} {estimate.unit}")
        return AlarmEvent(self.active_id or "", self.device, rule.condition, kind, c.priority,
                          "physiological", estimate.value, c.threshold, estimate.unit, message,
                          estimate.device_time_s, self.onset_s if self.onset_s is not None
                          else estimate.device_time_s)


class AlarmEngine:
    """All alarm rules for all devices. Only good-quality estimates drive physiological
    alarms: an estimate from a bad window neither raises nor clears one."""

    def __init__(self, config: AlarmsConfig) -> None:
        self._rules = _rules(config)
        self._alarms: dict[tuple[str, str], ThresholdAlarm] = {}

    def update(self, estimate: Estimate) -> list[AlarmEvent]:
        if estimate.quality != GOOD:
            return []
        events = []
        for rule in self._rules:
            if rule.vital != estimate.vital:
                continue
            key = (estimate.device, rule.condition)
            alarm = self._alarms.get(key)
            if alarm is None:
                alarm = self._alarms[key] = ThresholdAlarm(estimate.device, rule)
            event = alarm.update(estimate)
            if event is not None:
                events.append(event)
        return events

    def reconfigure(self, config: AlarmsConfig) -> list[AlarmEvent]:
        """New limits (SIGHUP). Active alarms keep running under their rule's new settings;
        an active alarm whose rule was disabled is cleared, never left hanging."""
        self._rules = _rules(config)
        rules = {rule.condition: rule for rule in self._rules}
        events = []
        for key, alarm in list(self._alarms.items()):
            rule = rules.get(alarm.rule.condition)
            if rule is not None:
                alarm.rule = rule
                continue
            if alarm.active_id is not None:
                events.append(alarm.end("disabled by a configuration reload"))
            del self._alarms[key]
        return events

    def active(self) -> list[tuple[str, str]]:
        return [key for key, alarm in self._alarms.items() if alarm.active_id is not None]
