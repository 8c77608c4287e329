"""One device's data path, bytes to messages: decode -> estimate -> alarm -> message.

`run` feeds it bytes from a serial port and `replay` bytes from a file: one code path, so a
replay produces exactly the messages the live runtime published for the same stream. Time is
the device's clock; `tick` adds what only the passing of time shows (a wearable or a CGM
gone silent), extrapolating the device clock from the wall clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

from edge.alarm import CGM_AGE, DATA_AGE, RELOAD_FAILED, RUNTIME, AlarmEngine, AlarmEvent
from edge.calibration import CalibrationStore
from edge.commands import DIASTOLIC_RANGE, MIN_PULSE_PRESSURE, SYSTOLIC_RANGE, Command
from edge.config import AlarmsConfig
from edge.errors import CommandError
from edge.estimate import GOOD, DeviceEstimator, Estimate
from edge.infer import Model
from edge.messages import Message, Topics, utc_now
from wire import Channel, Decoder, Flag, Frame

log = logging.getLogger(__name__)
AGE_CHECK_S = 1.0  # how often (device time) the age of the CGM data is looked at
# A cuff measurement takes ~30 s: readings closer than this to the last one used are a device
# fault (or a flood), not new measurements, and are not used (nor written to disk).
CUFF_MIN_INTERVAL_S = 60.0


class DevicePipeline:
    """`strict`: a frame that cannot feed a model raises StreamError (replay); otherwise that
    model does without it, counted in `rejected_frames` and logged once per distinct problem
    (run; `quiet`: only kept in `problems`, which replay prints as notes), and the other
    models carry on. `cuff_calibration`: the device's own cuff readings (BP_CUFF frames)
    calibrate its blood pressure, as an operator's command would; what they did is logged
    and listed in `cuff_events`."""

    def __init__(self, device: str, models: list[Model], alarms: AlarmsConfig,
                 topics: Topics, *, strict: bool = False, quiet: bool = False,
                 calibrations: CalibrationStore | None = None,
                 cuff_calibration: bool = False) -> None:
        self.device, self.strict, self.quiet = device, strict, quiet
        self.cuff_calibration = cuff_calibration
        self.cuff_events: deque[str] = deque(maxlen=100)  # the latest, for replay and logs
        self._last_cuff_s: float | None = None
        self.rejected_frames = 0
        self.problems: set[str] = set()
        self.decoder = Decoder()
        self.estimator = DeviceEstimator(device, models)
        self.alarms = AlarmEngine(alarms)
        self.topics = topics
        self.calibrations = calibrations
        self._restore_calibration()
        self.last_device_time_s = 0.0
        self._last_frame_wall: float | None = None  # monotonic time of the newest frame
        self._next_age_check_s = -math.inf
        self._lock = threading.Lock()  # feed() on the reader thread, the rest on main

    def _restore_calibration(self) -> None:
        bp = self.estimator.blood_pressure
        if bp is not None and self.calibrations is not None and bp.calibration is None:
            bp.calibration = self.calibrations.get(self.device, bp.model.manifest.sha256)

    def reconfigure(self, models: list[Model], alarms: AlarmsConfig) -> list[Message]:
        """New models and alarm limits, applied between two feeds (SIGHUP reload)."""
        with self._lock:
            self.estimator.replace_models(models)
            self._restore_calibration()
            events = self.alarms.reconfigure(alarms)
            events += self._observe(RUNTIME, 0.0, GOOD)  # a reload worked: model_error ends
            return [self.topics.message(e) for e in events]

    def reload_failed(self) -> list[Message]:
        """A reload could not load a model or config: the previous ones keep running and a
        technical alarm says so until a reload succeeds."""
        with self._lock:
            return [self.topics.message(e)
                    for e in self._observe(RUNTIME, 1.0, RELOAD_FAILED)]

    def command(self, command: Command) -> tuple[list[Message], str]:
        """Apply an operator command; returns its messages and what was done, or raises
        CommandError saying why it cannot be."""
        with self._lock:
            if command.command == "calibrate":
                return [], self._calibrate(command)
            if command.command == "acknowledge":
                events = self.alarms.acknowledge(self.device, command.condition,
                                                 command.operator)
            else:
                events = self.alarms.silence(self.device, command.condition, command.operator,
                                             command.minutes * 60)
            return ([self.topics.message(e) for e in events],
                    f"{command.command} {command.condition}: done")

    def _calibrate(self, command: Command) -> str:
        bp = self.estimator.blood_pressure
        if bp is None:
            raise CommandError("no blood-pressure model is loaded on this node; add \"bp\" to "
                               "models in the config", command.id)
        try:
            cal = bp.calibrate(command.systolic, command.diastolic, command.operator,
                               utc_now())
        except CommandError as err:
            raise CommandError(str(err), command.id) from None
        if self.calibrations is not None:
            self.calibrations.put(self.device, cal)
        return (f"calibrated to {cal.systolic_mmhg:g}/{cal.diastolic_mmhg:g} mmHg (offsets "
                f"{cal.systolic_offset:+.1f}/{cal.diastolic_offset:+.1f} mmHg)")

    def _cuff(self, frame: Frame) -> None:
        """Calibrate on each reading of a BP_CUFF frame (checked first: it is outside input)."""
        bp = self.estimator.blood_pressure
        for i, (sbp, dbp) in enumerate(frame.values.reshape(len(frame.values), -1)[:, :2]):
            t = frame.timestamp_us / 1e6 + i / frame.sample_rate_hz
            what = f"cuff reading {sbp:g}/{dbp:g} mmHg at device time {t:.0f} s"
            if bp is None:
                why = "no blood-pressure model is loaded"
            elif int(frame.flags) & int(Flag.LEAD_OFF):
                why = "the device flagged it lead-off (no valid reading)"
            elif (self._last_cuff_s is not None
                  and 0 <= t - self._last_cuff_s < CUFF_MIN_INTERVAL_S):
                why = (f"{t - self._last_cuff_s:.0f} s after the last one used (a cuff "
                       f"measurement takes ~30 s; at most one per {CUFF_MIN_INTERVAL_S:g} s)")
            elif not (SYSTOLIC_RANGE[0] <= sbp <= SYSTOLIC_RANGE[1]
                      and DIASTOLIC_RANGE[0] <= dbp <= DIASTOLIC_RANGE[1]
                      and sbp - dbp >= MIN_PULSE_PRESSURE):
                # The operator's command accepts the same readings (edge.commands).
                why = (f"not a cuff reading (systolic {SYSTOLIC_RANGE[0]:g}-"
                       f"{SYSTOLIC_RANGE[1]:g}, diastolic {DIASTOLIC_RANGE[0]:g}-"
                       f"{DIASTOLIC_RANGE[1]:g} mmHg, {MIN_PULSE_PRESSURE:g} apart)")
            else:
                try:
                    cal = bp.calibrate(float(sbp), float(dbp), "cuff", utc_now())
                except CommandError as err:
                    why = str(err)
                else:
                    self._last_cuff_s = t
                    if self.calibrations is not None:
                        self.calibrations.put(self.device, cal)
                    event = (f"{what}: calibrated (offsets {cal.systolic_offset:+.1f}/"
                             f"{cal.diastolic_offset:+.1f} mmHg)")
                    self.cuff_events.append(event)
                    log.info("device %s: %s", self.device, event)
                    continue
            self.cuff_events.append(f"{what} not used: {why}")
            log.warning("device %s: %s not used: %s", self.device, what, why)

    def feed(self, data: bytes) -> list[Message]:
        with self._lock:
            return self._feed(data)

    def tick(self, now: float | None = None) -> list[Message]:
        """Wall-clock housekeeping (run only, about once a second): no-data and CGM ages."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._last_frame_wall is None:
                return []
            silent_s = now - self._last_frame_wall
            device_now = self.last_device_time_s + silent_s
            events = self._observe(DATA_AGE, silent_s, GOOD, device_now)
            events += self._cgm_age(device_now, force=True)
            return [self.topics.message(e) for e in events]

    def _observe(self, vital: str, value: float, quality: str,
                 device_time_s: float | None = None) -> list[AlarmEvent]:
        """Feed the alarm engine an observation that is not a vital (an age, a health flag)."""
        t = self.last_device_time_s if device_time_s is None else device_time_s
        return self.alarms.update(Estimate(self.device, vital, value, "s", quality, None, t, ""))

    def _cgm_age(self, device_now: float, force: bool = False) -> list[AlarmEvent]:
        last = self.estimator.glucose.last_reading_s
        if last is None or (not force and device_now < self._next_age_check_s):
            return []
        self._next_age_check_s = device_now + AGE_CHECK_S
        return self._observe(CGM_AGE, max(device_now - last, 0.0), GOOD, device_now)

    def _feed(self, data: bytes) -> list[Message]:
        messages = []
        for frame in self.decoder.feed(data):
            self._last_frame_wall = time.monotonic()
            frame_time_s = frame.timestamp_us / 1e6
            estimates, problems = self.estimator.add(frame)
            if frame.channel == Channel.BP_CUFF and self.cuff_calibration:
                self._cuff(frame)
            for err in problems:
                if self.strict:
                    raise err
                self.rejected_frames += 1
                if str(err) not in self.problems:
                    self.problems.add(str(err))
                    if not self.quiet:
                        log.error("device %s: %s; that model gets none of its frames",
                                  self.device, err)
            events = []
            for estimate in estimates:
                self.last_device_time_s = estimate.device_time_s
                messages.append(self.topics.message(estimate))
                events += self.alarms.update(estimate)
            events += self._observe(DATA_AGE, 0.0, GOOD, frame_time_s) if estimates else []
            events += self._cgm_age(frame_time_s)
            messages += [self.topics.message(e) for e in events]
        return messages
