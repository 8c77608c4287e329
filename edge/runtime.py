"""The on-device runtime: configured devices -> pipelines -> MQTT, until SIGTERM."""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from edge.alarm import cleared_on_restart
from edge.alarmstate import AlarmStateStore
from edge.calibration import CalibrationStore
from edge.commands import CommandLog, parse_command, reply_payload
from edge.config import Config, load_config
from edge.errors import CommandError, ConfigError, WearableError
from edge.homeassistant import PresentState, discovery_messages
from edge.infer import Model, load_model
from edge.ingest import PortReader
from edge.messages import Message, Topics, status_payload, utc_now
from edge.pipeline import AGE_CHECK_S, DevicePipeline
from edge.publish import Outbox, Publisher
from edge.state import private_dir

log = logging.getLogger(__name__)
TICK_S = 0.1
COMMANDS_PER_TICK = 20
ACTIVE_ALARMS_FILE = "active-alarms.json"


def package_version() -> str:
    try:
        return version("wearable-edge")
    except PackageNotFoundError:
        return "unknown"


def load_models(config: Config) -> list[Model]:
    backend = config.interpreter or None
    return [load_model(config.path(config.models_dir) / f"{name}.json", backend)
            for name in config.models]


class Runtime:
    """Owns the models, the serial readers and the MQTT connection for one node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.models = load_models(config)
        self.topics = Topics(config.mqtt.topic_prefix, config.node)
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.reload_error: str | None = None
        self.outbox = Outbox(config.state_path(config.mqtt.outbox))
        self.publisher = Publisher(config.mqtt, self.topics, self.outbox, self.status,
                                   resolve=config.path)
        self.present = PresentState(self.topics, [d.name for d in config.devices])
        self.publisher.observers.append(self.present.observe)
        self.publisher.on_connect.append(self._retained_on_connect)
        calibration_file = config.state_path(config.calibration_file)
        private_dir(calibration_file.parent, "calibration_file")
        self.calibrations = CalibrationStore(calibration_file)
        id_file = config.state_path(config.commands.id_file)
        private_dir(id_file.parent, "commands.id_file")
        self.command_log = CommandLog(id_file)
        self.alarm_store = AlarmStateStore(config.state_path(ACTIVE_ALARMS_FILE))
        self.readers = [
            PortReader(device, DevicePipeline(device.name, self.models, config.alarms,
                                              self.topics, calibrations=self.calibrations,
                                              alarm_store=self.alarm_store,
                                              cuff_calibration=config.bp_cuff_calibration),
                       self.publisher.publish, self.stop_event)
            for device in config.devices
        ]

    def _retained_on_connect(self) -> list[Message]:
        """After every (re)connect: Home Assistant's discovery configs (if enabled) and the
        present state, replacing whatever an earlier run left retained."""
        ha = self.config.homeassistant
        discovery = discovery_messages(self.topics, [d.name for d in self.config.devices], ha,
                                       package_version()) if ha.enabled else []
        return discovery + self.present.snapshot()

    def status(self, state: str) -> dict[str, Any]:
        devices = {}
        for reader in self.readers:
            pipeline = reader.pipeline
            devices[reader.device.name] = {
                "port": reader.device.port,
                "connected": reader.connected,
                "reconnects": reader.reconnects,
                "last_data_age_s": round(time.monotonic() - reader.last_data, 1),
                "frames": pipeline.decoder.stats.as_dict() | {
                    "rejected": pipeline.rejected_frames},
                "problems": sorted(pipeline.problems),
                "faults": pipeline.faults,
                "clock_epochs": pipeline.timeline.epochs,
                "active_alarms": [c for _, c in pipeline.alarms.active()],
                "bp_calibrated": None if pipeline.estimator.blood_pressure is None
                else pipeline.estimator.blood_pressure.calibration is not None,
            }
        return status_payload(
            self.config.node, state,
            version=package_version(),
            uptime_s=round(time.monotonic() - self.started, 1),
            interpreter=self.models[0].backend if self.models else None,
            models=[{"name": m.manifest.name, "version": m.manifest.version,
                     "sha256": m.manifest.sha256} for m in self.models],
            devices=devices,
            outbox_depth=self.outbox.depth(),
            reload_error=self.reload_error,
        )

    def reload(self) -> None:
        """SIGHUP: re-read the config file, reload models and alarm limits without dropping a
        sample. If the new config or a model is bad, everything keeps running as it was and
        the failure is logged and shown on the status topic."""
        try:
            if self.config.source is None:  # built in code (tests, embedding): no file
                raise ConfigError("this runtime's configuration was not read from a file: "
                                  "nothing to reload; restart it with --config FILE")
            config = load_config(self.config.source)
            models = load_models(config)
        except WearableError as err:
            self.reload_error = str(err)
            log.error("reload failed, still running the previous configuration: %s", err)
            for reader in self.readers:
                for message in reader.pipeline.reload_failed():
                    self.publisher.publish(message)
            self.publisher.publish_status(self.status("online"))
            return
        for key in ("node", "devices", "mqtt", "interpreter"):
            if getattr(config, key) != getattr(self.config, key):
                log.warning("'%s' changed: it takes effect at the next restart", key)
        for reader in self.readers:
            for message in reader.pipeline.reconfigure(models, config.alarms):
                self.publisher.publish(message)
        self.models, self.reload_error = models, None
        self.config = dataclasses.replace(self.config, alarms=config.alarms,
                                          commands=config.commands, models=config.models,
                                          models_dir=config.models_dir)
        log.info("reloaded %s: models %s", config.source, ", ".join(
            f"{m.manifest.name}@{m.manifest.version}" for m in models))
        self.publisher.publish_status(self.status("online"))

    def handle_command(self, topic: str, payload: bytes) -> None:
        """An operator command from MQTT: apply it, answer on the device's reply topic.
        Nothing in a command message may stop the node: whatever goes wrong is logged and
        answered as a refusal."""
        device = self.topics.device_of_command(topic)
        if not device.isprintable() or len(device) > 64:
            # Not a device name any config allows: answer nothing, log nothing it could forge.
            log.warning("command on an invalid topic %r ignored", topic[:100])
            return
        command_id = None
        try:
            command = parse_command(payload, self.config.commands, device,
                                    node=self.config.node)
            command_id = command.id
            previous = self.command_log.seen(command.id)
            if previous is not None:
                raise CommandError(f"duplicate: command {command.id!r} was already received "
                                   f"({'applied' if previous else 'refused'}); not applied "
                                   "again", command.id)
            reader = next((r for r in self.readers if r.device.name == device), None)
            try:
                if reader is None:
                    raise CommandError(f"unknown device {device!r}", command_id)
                messages, reason = reader.pipeline.command(command)
            except CommandError:
                self.command_log.remember(command.id, False)
                raise
            self.command_log.remember(command.id, True)
            for message in messages:
                self.publisher.publish(message)
            ok = True
            log.info("device %s: %s by %s", device, reason, command.operator)
        except CommandError as err:
            ok, reason = False, str(err)
            command_id = err.command_id or command_id
            log.warning("device %s: command refused: %s", device, reason)
        except Exception as err:  # the boundary: a command never stops the node
            ok, reason = False, f"internal error, command not applied: {type(err).__name__}"
            log.exception("device %s: command %s failed", device, command_id)
        reply = reply_payload(self.config.node, device, command_id, ok, reason, utc_now())
        try:
            self.publisher.publish(Message(self.topics.reply(device), reply, qos=1))
        except Exception:
            log.exception("device %s: the reply to command %s could not be sent", device,
                          command_id)

    def _restored_alarms(self) -> None:
        """Publish how the alarms active before this start go on or end (edge.alarmstate)."""
        configured = {reader.device.name for reader in self.readers}
        for device in self.alarm_store.devices():
            if device not in configured:
                for rec in self.alarm_store.get(device):
                    self.publisher.publish(self.topics.message(cleared_on_restart(
                        device, rec, "the device is no longer in the configuration", 0.0)))
                self.alarm_store.put(device, [])
        for reader in self.readers:
            for message in reader.pipeline.restored:
                self.publisher.publish(message)
            carried = reader.pipeline.alarms.snapshot(reader.device.name)
            if carried:
                self.publisher.publish(self.present.restore(reader.device.name, carried))
                log.warning("device %s: %d alarm(s) active before the restart carried on: %s",
                            reader.device.name, len(carried),
                            ", ".join(r["condition"] for r in carried))

    def run(self) -> None:
        """Connect, read until stop() or SIGTERM/SIGINT, then shut down cleanly."""
        self.publisher.connect()
        self._restored_alarms()
        for reader in self.readers:
            reader.start()
        log.info("ready in %.2f s: %d device(s), models %s on %s, broker %s:%s (%s)",
                 time.monotonic() - self.started, len(self.readers),
                 ", ".join(m.manifest.name for m in self.models),
                 self.models[0].backend if self.models else "-",
                 self.config.mqtt.host, self.config.mqtt.port, self.publisher.state)
        next_status = time.monotonic() + self.config.mqtt.status_interval_s
        next_age_check = time.monotonic()
        while not self.stop_event.wait(TICK_S):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            self.publisher.tick()
            if time.monotonic() >= next_age_check:
                next_age_check += AGE_CHECK_S
                for reader in self.readers:
                    self._tick(reader)
            # A bounded batch per tick: a command flood cannot starve alarms and status.
            for _ in range(COMMANDS_PER_TICK):
                try:
                    self.handle_command(*self.publisher.commands.get_nowait())
                except queue.Empty:
                    break
            if time.monotonic() >= next_status:
                self.publisher.publish_status(self.status("online"))
                next_status += self.config.mqtt.status_interval_s
        self._shutdown()

    def _tick(self, reader: PortReader) -> None:
        try:
            for message in reader.pipeline.tick():
                self.publisher.publish(message)
        except Exception:  # one device's fault must not stop the others' housekeeping
            log.exception("device %s: fault in its wall-clock checks", reader.device.name)

    def stop(self) -> None:
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        # The handler only sets a flag: the main loop reloads, outside signal context.
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())

    def _shutdown(self) -> None:
        for reader in self.readers:
            reader.join(timeout=2.0)
        self.publisher.close(self.status("offline") | {"reason": "shutdown"})
        pending = self.outbox.depth()
        if pending:
            log.warning("%d alarm message(s) not yet acknowledged stay in the outbox %s and "
                        "are sent at the next start", pending,
                        self.config.state_path(self.config.mqtt.outbox))
        self.outbox.close()
        log.info("stopped")
