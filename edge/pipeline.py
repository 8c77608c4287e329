"""One device's data path, bytes to messages: decode -> estimate -> alarm -> message.

`run` feeds it bytes from a serial port and `replay` bytes from a file: one code path, so a
replay produces exactly the messages the live runtime published for the same stream. Time is
the device's clock; `tick` adds what only the passing of time shows (a wearable or a CGM
gone silent), extrapolating the device clock from the wall clock.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque

from edge.alarm import (
    CGM_AGE,
    DATA_AGE,
    FAULT,
    FAULTS,
    RELOAD_FAILED,
    RUNTIME,
    AlarmEngine,
    AlarmEvent,
    Observation,
)
from edge.alarmstate import AlarmStateStore
from edge.calibration import CalibrationStore
from edge.commands import DIASTOLIC_RANGE, MIN_PULSE_PRESSURE, SYSTOLIC_RANGE, Command
from edge.config import AlarmsConfig
from edge.errors import CommandError, StreamError
from edge.estimate import GOOD, DeviceEstimator
from edge.infer import Model
from edge.messages import Message, Topics, utc_now
from wire import Channel, Decoder, Flag, Frame

log = logging.getLogger(__name__)
AGE_CHECK_S = 1.0  # how often (device time) the age of the CGM data is looked at
# A cuff measurement takes ~30 s: readings closer than this to the last one used are a device
# fault (or a flood), not new measurements, and are not used (nor written to disk).
CUFF_MIN_INTERVAL_S = 60.0
MAX_FAULT_KINDS = 32  # distinct faults logged with a traceback; later ones only counted


class DeviceTimeline:
    """One monotonic session time per device, from the device clock's epochs.

    The device clock restarts at a reboot (BOOT flag) and may glitch (a valid frame stamped
    2^63 us). Each channel's frames are on the clock of their epoch; a new epoch starts at a
    BOOT flag or a jump past what a real gap explains (forward more than MAX_GAP_S, back more
    than BACK_S), and continues the session from its newest time (plus the wall-clock
    silence, in `run`). Alarm delays, data ages and alarm times are on this timeline, so a
    reboot neither freezes an alarm nor hides stale data. Until the first restart session
    time is the device clock."""

    MAX_GAP_S = 3600.0  # a wearable out of range for up to an hour keeps its clock
    BACK_S = 5.0

    def __init__(self) -> None:
        self.now = 0.0  # the newest session time seen
        self.epochs = 0  # restarts seen
        self._offset: dict[Channel, float] = {}  # session time - device time, per channel
        self._last: dict[Channel, float] = {}  # newest device time per channel
        self._latest_offset = 0.0  # a channel first seen takes the newest epoch

    def frame(self, frame: Frame, silent_s: float = 0.0) -> float:
        """Place a frame; returns the session time of its first sample."""
        t, c = frame.timestamp_us / 1e6, frame.channel
        last = self._last.get(c)
        restart = bool(int(frame.flags) & int(Flag.BOOT)) and last is not None
        if last is not None and not -self.BACK_S <= t - last <= self.MAX_GAP_S:
            restart = True
        if restart:
            self.epochs += 1
            self._latest_offset = self.now + max(silent_s, 0.0) - t
            self._offset[c] = self._latest_offset
        elif c not in self._offset:
            self._offset[c] = self._latest_offset
        self._last[c] = max(t, last) if last is not None and not restart else t
        return self.at(c, t)

    def at(self, channel: Channel, device_time_s: float) -> float:
        """Session time of a device time on `channel`'s current epoch (never going back)."""
        session = device_time_s + self._offset.get(channel, self._latest_offset)
        self.now = max(self.now, session)
        return self.now if session < self.now - self.BACK_S else session

    def extrapolate(self, silent_s: float) -> float:
        return self.now + silent_s


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
                 alarm_store: AlarmStateStore | None = None,
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
        self.timeline = DeviceTimeline()
        self.last_device_time_s = 0.0  # session time of the newest estimate
        self.faults = 0  # faults caught at this device's boundary (status, replay summary)
        self._fault_kinds: set[str] = set()
        self._faulted = False  # a runtime_error alarm may be pending or active
        self._last_cgm_s: float | None = None  # session time of the newest CGM reading
        self._last_frame_wall: float | None = None  # monotonic time of the newest frame
        self._created_wall = time.monotonic()
        self.alarm_store = alarm_store
        # Alarms active before a restart: carried on, or cleared with the reason (published
        # by the runtime at start).
        self.restored: list[Message] = []
        if alarm_store is not None:
            self.restored = self._messages(self.alarms.restore(device,
                                                               alarm_store.get(device)))
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
            return self._messages(events)

    def reload_failed(self) -> list[Message]:
        """A reload could not load a model or config: the previous ones keep running and a
        technical alarm says so until a reload succeeds."""
        with self._lock:
            return self._messages(self._observe(RUNTIME, 1.0, RELOAD_FAILED))

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
            return (self._messages(events),
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
        """Wall-clock housekeeping (run only, about once a second): no-data and CGM ages,
        the session time extrapolated by the wall-clock silence since the newest frame."""
        now = time.monotonic() if now is None else now
        with self._lock:
            # Never a frame yet (a wearable not plugged in): silent since the pipeline began.
            silent_s = now - (self._last_frame_wall or self._created_wall)
            session_now = self.timeline.extrapolate(silent_s)
            events = self._observe(DATA_AGE, silent_s, GOOD, session_now)
            events += self._cgm_age(session_now, force=True)
            return self._messages(events)

    def _observe(self, kind: str, value: float, quality: str,
                 session_time_s: float | None = None) -> list[AlarmEvent]:
        """Feed the alarm engine an observation that is not a vital (an age, a health flag)."""
        t = self.timeline.now if session_time_s is None else session_time_s
        return self.alarms.update(Observation(self.device, kind, value, quality, t))

    def _cgm_age(self, session_now: float, force: bool = False) -> list[AlarmEvent]:
        last = self._last_cgm_s
        if last is None or (not force and session_now < self._next_age_check_s):
            return []
        self._next_age_check_s = session_now + AGE_CHECK_S
        return self._observe(CGM_AGE, max(session_now - last, 0.0), GOOD, session_now)

    def _feed(self, data: bytes) -> list[Message]:
        messages: list[Message] = []
        try:
            frames = self.decoder.feed(data)
        except Exception as err:  # the decoder must never stop a device
            self.decoder = Decoder(stats=self.decoder.stats)
            return self._fault(err, messages)
        for frame in frames:
            try:
                self._frame(frame, messages)
            except StreamError:
                raise  # strict (replay): the recording cannot feed a model
            except Exception as err:  # a fault stays inside this frame
                self._fault(err, messages)
        return messages

    def _frame(self, frame: Frame, messages: list[Message]) -> None:
        wall = time.monotonic()
        silent_s = 0.0 if self._last_frame_wall is None else wall - self._last_frame_wall
        self._last_frame_wall = wall
        frame_time_s = self.timeline.frame(frame, silent_s)
        estimates, problems = self.estimator.add(frame)
        if frame.channel == Channel.BP_CUFF and self.cuff_calibration:
            self._cuff(frame)
        for err in problems:
            if not isinstance(err, StreamError):
                self._fault(err, messages)
                continue
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
            messages.append(self.topics.message(estimate))
            # Alarms run on the session timeline: across a reboot delays go on counting.
            session = self.timeline.at(frame.channel, estimate.device_time_s)
            if session != estimate.device_time_s:
                estimate = dataclasses.replace(estimate, device_time_s=session)
            self.last_device_time_s = session
            if estimate.vital == "glucose":
                self._last_cgm_s = session
            events += self.alarms.update(estimate)
        events += self._observe(DATA_AGE, 0.0, GOOD, frame_time_s) if estimates else []
        if self._faulted and all(isinstance(e, StreamError) for e in problems):
            events += self._observe(FAULTS, 0.0, GOOD, frame_time_s)
            self._faulted = self.alarms.is_active(self.device, "runtime_error")
        events += self._cgm_age(frame_time_s)
        messages += self._messages(events)

    def _messages(self, events: list[AlarmEvent]) -> list[Message]:
        """Alarm events as messages; the active set is saved when it may have changed."""
        if self.alarm_store is not None and any(e.event != "reminder" for e in events):
            self.alarm_store.put(self.device, self.alarms.snapshot(self.device))
        return [self.topics.message(e) for e in events]

    def _fault(self, err: Exception, messages: list[Message]) -> list[Message]:
        """A fault on this device's path: logged (with the traceback the first time it is
        seen), counted, raised as the `runtime_error` technical alarm; the device goes on."""
        self.faults += 1
        kind = f"{type(err).__name__}: {err}"[:200]
        if kind not in self._fault_kinds and len(self._fault_kinds) < MAX_FAULT_KINDS:
            self._fault_kinds.add(kind)
            # replay (quiet) reports faults in its summary: no traceback among its output
            log.error("device %s: runtime fault, skipped (%s); monitoring goes on", self.device,
                      kind, exc_info=None if self.strict or self.quiet else err)
        else:
            log.debug("device %s: runtime fault again: %s", self.device, kind)
        self._faulted = True
        try:
            events = self._observe(FAULTS, 1.0, FAULT)
            messages += self._messages(events)
        except Exception:  # the alarm path itself is broken: the log says it
            log.exception("device %s: the runtime_error alarm could not be raised", self.device)
        return messages
