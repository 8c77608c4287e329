"""Runtime configuration: one TOML file, validated at start.

Every option has a default here (documented in docs/configuration.md); an unknown key, a
wrong type or an out-of-range value raises ConfigError naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from edge.errors import ConfigError

PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = "wearable"
    client_id: str = ""  # empty: "wearable-edge-<node>"
    username: str = ""
    password: str = ""
    keepalive_s: int = 30
    connect_timeout_s: float = 5.0
    status_interval_s: float = 30.0
    # Alarms are written here before they are published and removed when the broker acks.
    # Relative: inside `state_dir`.
    outbox: str = "outbox.sqlite"
    # While the broker is away, reconnect attempts back off from 1 s up to this: a short cap
    # delivers the queued alarms within seconds of the broker's return.
    reconnect_max_s: int = 2
    # TLS (port 8883 by convention). ca_file: the CA that signed the broker's certificate
    # (empty: the system's CAs); cert_file + key_file: this node's client certificate (mutual
    # TLS). tls_check_hostname = false accepts ANY certificate the CA signed, for any name:
    # dangerous, for a broker reached by an address its certificate does not name.
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_check_hostname: bool = True

    def check(self, key: str) -> None:
        _require(1 <= self.port <= 65535, f"{key}.port", "must be a TCP port, 1-65535")
        _require(bool(self.topic_prefix) and not set("#+") & set(self.topic_prefix),
                 f"{key}.topic_prefix", "must be a non-empty topic without wildcards")
        _require(self.keepalive_s >= 5, f"{key}.keepalive_s", "must be at least 5 seconds")
        _require(self.connect_timeout_s > 0, f"{key}.connect_timeout_s", "must be positive")
        _require(self.status_interval_s > 0, f"{key}.status_interval_s", "must be positive")
        _require(1 <= self.reconnect_max_s <= 60, f"{key}.reconnect_max_s",
                 "must be between 1 and 60 seconds")
        for name in ("ca_file", "cert_file", "key_file"):
            _require(self.tls or not getattr(self, name), f"{key}.{name}",
                     f"is set but TLS is off: add `tls = true` to [{key}] (and use the "
                     "broker's TLS port, usually 8883)")
        _require(bool(self.cert_file) == bool(self.key_file),
                 f"{key}.{'key_file' if self.cert_file else 'cert_file'}",
                 "is required with the other: mutual TLS needs both the client certificate "
                 "(cert_file) and its private key (key_file)")


@dataclass(frozen=True)
class DeviceConfig:
    name: str  # appears in topics: <prefix>/<node>/<name>/...
    port: str  # a device path (/dev/ttyUSB0) or a pyserial URL (socket://, loop://)
    baudrate: int = 115200

    def check(self, key: str) -> None:
        _require(_is_topic_level(self.name), f"{key}.name",
                 "must be a non-empty name without '/', '#' or '+'")
        _require(bool(self.port), f"{key}.port", "must name a serial port or pyserial URL")
        _require(self.baudrate > 0, f"{key}.baudrate", "must be positive")


@dataclass(frozen=True)
class ThresholdAlarmConfig:
    threshold: float
    priority: str = "medium"
    hysteresis: float = 5.0  # the vital must come back this far past the limit to clear
    # Alarm-condition delay: the crossing must last this long. The HR estimate itself lags a
    # step change by ~4 s (half its window), so 2 s keeps HR alarms within IEC 60601-2-27's
    # 10 s (measured: python -m bench.alarms).
    delay_s: float = 2.0
    clear_delay_s: float = 4.0
    latching: bool = False  # stays active after the condition ends, until acknowledged
    enabled: bool = True
    # The limit while the wearer moves (accelerometer), for heart rate: exercise is not a
    # tachycardia. 0: the same as `threshold`.
    moving_threshold: float = 0.0

    def check(self, key: str, max_delay_s: float = 600.0) -> None:
        _require(self.priority in PRIORITIES, f"{key}.priority",
                 f"must be one of {', '.join(PRIORITIES)}")
        _require(self.hysteresis >= 0, f"{key}.hysteresis", "must be >= 0")
        _require(0 <= self.delay_s <= max_delay_s, f"{key}.delay_s",
                 f"must be between 0 and {max_delay_s:g} seconds")
        _require(self.clear_delay_s >= 0, f"{key}.clear_delay_s", "must be >= 0")
        _require(self.moving_threshold == 0 or self.moving_threshold >= self.threshold,
                 f"{key}.moving_threshold", "must be 0 (off) or at least the threshold")


@dataclass(frozen=True)
class TechnicalAlarmConfig:
    """An alarm about the equipment, not the patient (e.g. the PPG sensor is off the skin)."""

    priority: str = "medium"
    delay_s: float = 10.0  # a short glitch is not worth an alarm
    clear_delay_s: float = 4.0
    latching: bool = False
    enabled: bool = True

    def check(self, key: str) -> None:
        _require(self.priority in PRIORITIES, f"{key}.priority",
                 f"must be one of {', '.join(PRIORITIES)}")
        _require(0 <= self.delay_s <= 120, f"{key}.delay_s", "must be between 0 and 120 s")
        _require(self.clear_delay_s >= 0, f"{key}.clear_delay_s", "must be >= 0")


@dataclass(frozen=True)
class StaleDataAlarmConfig:
    """A technical alarm when a data source has been silent this long."""

    after_s: float
    priority: str = "medium"
    enabled: bool = True

    def check(self, key: str) -> None:
        _require(self.priority in PRIORITIES, f"{key}.priority",
                 f"must be one of {', '.join(PRIORITIES)}")
        _require(self.after_s >= 5, f"{key}.after_s", "must be at least 5 seconds")


# Glucose readings come every 5 min: each one is a fresh measurement, so an alarm is raised
# on the first reading past the limit; it clears after 10 min (three readings) back inside,
# so a low that bounces once above the limit stays one alarm.
_GLUCOSE = {"delay_s": 0.0, "clear_delay_s": 600.0}
_Limit = ThresholdAlarmConfig
URGENT_LOW_MG_DL = 55.0  # Dexcom G7 / xDrip+ urgent low: fixed, cannot be turned off
# glucose@2.0.0's urgent-low risk (probability of a reading <= 55 within 30 min): its limit
# tuned on real validation people (its manifest's output_params.urgent_low_soon). The alarm
# clears once the risk is below half the limit (hysteresis: half of it).
URGENT_LOW_SOON_RISK = 0.25
URGENT_LOW_SOON_HYSTERESIS = URGENT_LOW_SOON_RISK / 2


@dataclass(frozen=True)
class AlarmsConfig:
    """Alarm limits; a table given in the file overrides only the keys it sets."""

    # Above 120 bpm at rest; while the wearer moves (walking, a run) above 170 bpm, so a
    # normal day's exercise raises no alarm (like the high-HR notifications of consumer
    # watches); set moving_threshold = 0 for a patient who should not exercise.
    # An HR alarm clears once the rate has been back for a whole analysis window (8 s), not
    # two of its 2 s hops: in atrial fibrillation a few windows read low (short beats eject
    # too little to show in the PPG) and cleared a tachycardia alarm that came back 4 s later.
    hr_high: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 120.0, moving_threshold=170.0, clear_delay_s=8.0))
    hr_low: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 45.0, "high", clear_delay_s=8.0))
    # Blood pressure (cuffless, after calibration), mmHg: the high limits of bedside monitors
    # (160 systolic; 100 diastolic, stage-2 hypertension), as the cuffless estimate
    # under-reads large rises (docs/models.md). BP moves slowly and its estimate is noisier
    # than HR: a 10-s condition delay.
    sbp_high: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 160.0, "high", delay_s=10.0))
    sbp_low: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 90.0, "high", delay_s=10.0))
    dbp_high: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 100.0, "medium", delay_s=10.0))
    # Glucose, mg/dL, and its rate of change, mg/dL/min (Dexcom offers 2 or 3 mg/dL/min): a
    # fast fall heads for a low (2); a rise of 2 follows many meals, so it alarms at 3.
    glucose_urgent_low: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, URGENT_LOW_MG_DL, "high", **_GLUCOSE))
    glucose_low: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 70.0, "medium", **_GLUCOSE))
    glucose_high: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 250.0, "medium", **_GLUCOSE))
    glucose_rising: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 3.0, "low", hysteresis=1.0, **_GLUCOSE))
    glucose_falling: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, 2.0, "medium", hysteresis=1.0, **_GLUCOSE))
    # "Urgent low soon": the glucose model's risk of a reading <= 55 mg/dL within 30 min above
    # this probability. Chosen on real validation people to anticipate >= 90 % of
    # urgent lows with the fewest false alerts (models/glucose_report.md: the trade-off).
    glucose_urgent_low_soon: ThresholdAlarmConfig = field(
        default_factory=partial(_Limit, URGENT_LOW_SOON_RISK, "high",
                                hysteresis=URGENT_LOW_SOON_HYSTERESIS, **_GLUCOSE))
    # Technical alarms.
    sensor: TechnicalAlarmConfig = field(default_factory=TechnicalAlarmConfig)  # PPG
    bp_sensor: TechnicalAlarmConfig = field(default_factory=TechnicalAlarmConfig)  # ECG/PPG
    motion: TechnicalAlarmConfig = field(
        default_factory=lambda: TechnicalAlarmConfig(priority="low", delay_s=30.0,
                                                     clear_delay_s=30.0))
    cgm_stale: StaleDataAlarmConfig = field(
        default_factory=lambda: StaleDataAlarmConfig(15 * 60.0, "medium"))
    cgm_lost: StaleDataAlarmConfig = field(
        default_factory=lambda: StaleDataAlarmConfig(30 * 60.0, "high"))
    no_data: StaleDataAlarmConfig = field(
        default_factory=lambda: StaleDataAlarmConfig(30.0, "high"))
    # An unacknowledged, unsilenced high-priority alarm is announced again this often.
    realert_s: float = 60.0

    def check(self, key: str) -> None:
        _require(self.realert_s == 0 or self.realert_s >= 10, f"{key}.realert_s",
                 "must be 0 (off) or at least 10 seconds")
        for name, config in vars(self).items():
            if name == "realert_s":
                continue
            # IEC 60601-2-27: heart-rate alarms must sound within 10 s of the condition.
            if name.startswith("hr_"):
                config.check(f"{key}.{name}", max_delay_s=10.0)
            else:
                config.check(f"{key}.{name}")
        for low, high in (("hr_low", "hr_high"), ("sbp_low", "sbp_high"),
                          ("glucose_low", "glucose_high")):
            _require(getattr(self, low).threshold < getattr(self, high).threshold,
                     f"{key}.{low}.threshold", f"must be below {key}.{high}.threshold")
        urgent = self.glucose_urgent_low
        _require(urgent.enabled, f"{key}.glucose_urgent_low.enabled",
                 "cannot be false: the urgent low glucose alarm is always on")
        _require(URGENT_LOW_MG_DL <= urgent.threshold <= self.glucose_low.threshold,
                 f"{key}.glucose_urgent_low.threshold",
                 f"must be between {URGENT_LOW_MG_DL:g} and alarms.glucose_low.threshold "
                 "(it can be raised, never lowered)")
        soon = self.glucose_urgent_low_soon
        _require(0 < soon.threshold < 1, f"{key}.glucose_urgent_low_soon.threshold",
                 "is a probability since glucose 2.0.0 (of a reading <= 55 mg/dL within 30 "
                 f"min), between 0 and 1, e.g. {URGENT_LOW_SOON_RISK:g}; no longer a forecast "
                 "in mg/dL")
        _require(soon.hysteresis < soon.threshold, f"{key}.glucose_urgent_low_soon.hysteresis",
                 f"must be below its threshold (a probability), e.g. "
                 f"{URGENT_LOW_SOON_HYSTERESIS:g}")
        _require(self.cgm_stale.after_s < self.cgm_lost.after_s, f"{key}.cgm_stale.after_s",
                 f"must be shorter than {key}.cgm_lost.after_s")


@dataclass(frozen=True)
class CommandsConfig:
    """Operator commands over MQTT (acknowledge, silence, calibrate). Each operator signs its
    commands with its secret (HMAC-SHA256, edge/commands.py); with no operators, commands are
    refused."""

    operators: dict[str, str] = field(default_factory=dict)  # name -> signing secret
    max_silence_min: float = 10.0
    # A command signed further than this from the node's clock is refused as expired.
    max_clock_skew_s: float = 60.0
    # Ids of received commands (a replay is answered `duplicate`), kept across restarts.
    id_file: str = "command-ids.json"

    def check(self, key: str) -> None:
        for name, secret in self.operators.items():
            _require(len(secret) >= 12, f"{key}.operators.{name}",
                     "must be a signing secret of at least 12 characters (e.g. openssl rand "
                     "-hex 16)")
        _require(0 < self.max_silence_min <= 60, f"{key}.max_silence_min",
                 "must be between 0 and 60 minutes")
        _require(5 <= self.max_clock_skew_s <= 600, f"{key}.max_clock_skew_s",
                 "must be between 5 and 600 seconds")
        _require(bool(self.id_file), f"{key}.id_file", "must name a file")


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (docs/mqtt.md): sensors and alarm binary sensors per
    device appear in Home Assistant by themselves. Off unless enabled."""

    enabled: bool = False
    discovery_prefix: str = "homeassistant"  # Home Assistant's default

    def check(self, key: str) -> None:
        _require(bool(self.discovery_prefix) and not set("#+") & set(self.discovery_prefix),
                 f"{key}.discovery_prefix", "must be a non-empty topic without wildcards "
                 "(Home Assistant's default: homeassistant)")


@dataclass(frozen=True)
class Config:
    node: str = "edge-1"  # this gateway's name in topics
    models_dir: str = "models"
    # Bundle names in models_dir; a model whose channels a device does not send idles.
    models: list[str] = field(default_factory=lambda: ["hr", "bp", "glucose"])
    log_level: str = "info"
    log_format: str = "text"  # "json": one JSON object per line, for journald / log shippers
    interpreter: str = ""  # empty: first available (ai_edge_litert, tflite_runtime, tensorflow)
    devices: list[DeviceConfig] = field(default_factory=list)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    # Where the runtime keeps what it writes (outbox, calibrations); relative to the config
    # file's folder. A board uses /var/lib/wearable-edge (the unit's only writable place).
    state_dir: str = "state"
    # Per-device BP calibrations (cuff readings sent over MQTT), kept across restarts.
    # Relative: inside `state_dir`.
    calibration_file: str = "calibration.json"
    # A wearable's own cuff readings (BP_CUFF frames) calibrate its blood pressure like an
    # operator's calibrate command. Off: only operators calibrate (a cuff on the wearable may
    # be misplaced or read during motion, and nobody checks it).
    bp_cuff_calibration: bool = False
    source: Path | None = None  # the file this came from; relative paths resolve against it

    def check(self, key: str = "") -> None:
        _require(_is_topic_level(self.node), "node",
                 "must be a non-empty name without '/', '#' or '+'")
        _require(self.log_level in ("debug", "info", "warning", "error"), "log_level",
                 "must be one of debug, info, warning, error")
        _require(self.log_format in ("text", "json"), "log_format", "must be text or json")
        _require(bool(self.state_dir), "state_dir",
                 "must name a folder (e.g. /var/lib/wearable-edge)")
        _require(self.interpreter in ("", "ai_edge_litert", "tflite_runtime", "tensorflow"),
                 "interpreter", "must be empty, ai_edge_litert, tflite_runtime or tensorflow")
        names = [d.name for d in self.devices]
        _require(len(set(names)) == len(names), "devices", "device names must be unique")
        for i, device in enumerate(self.devices):
            device.check(f"devices[{i}]")
        self.mqtt.check("mqtt")
        self.alarms.check("alarms")
        self.commands.check("commands")
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self.mqtt, name)
            _require(not value or self.path(value).is_file(), f"mqtt.{name}",
                     f"file {value and self.path(value)} does not exist; give the path of the "
                     f"PEM file ({_TLS_FILES[name]})")
        self.homeassistant.check("homeassistant")

    def path(self, value: str) -> Path:
        """A path option, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or self.source is None else self.source.parent / p

    def state_path(self, value: str) -> Path:
        """A runtime state file (outbox, calibrations), relative to `state_dir`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.path(self.state_dir) / p


_TLS_FILES = {"ca_file": "the CA certificate that signed the broker's certificate",
              "cert_file": "this node's client certificate",
              "key_file": "the private key of cert_file"}


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; pass --config with an existing "
                          "file (see deploy/edge.toml for an example)") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return config_from_dict(data, source=path)


def config_from_dict(data: dict[str, Any], source: Path | None = None) -> Config:
    where = f"{source}: " if source else ""
    try:
        config = _build(Config, data, "")
        config = dataclasses.replace(config, source=source.resolve() if source else None)
        config.check()
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from None
    return config


def _require(ok: bool, key: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"'{key}' {fix}")


def _is_topic_level(name: str) -> bool:
    return bool(name) and not set("/#+") & set(name)


def _build(cls: type, data: Any, key: str, base: Any = None) -> Any:
    """Dataclass from a TOML table, rejecting unknown keys and wrong types by name.
    Keys the table leaves out keep their value in `base`, else the field's default."""
    if not isinstance(data, dict):
        raise ConfigError(f"'{key}' must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"'{key}.{unknown[0]}'" if key else f"'{unknown[0]}'"
        raise ConfigError(f"unknown key {where}; valid keys here: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        default = getattr(base, name) if base is not None else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        if name in data:
            values[name] = _convert(hints[name], data[name], sub, default)
        elif default is dataclasses.MISSING:
            raise ConfigError(f"'{sub}' is required")
        else:
            values[name] = default
    return cls(**values)


def _convert(hint: Any, value: Any, key: str, default: Any = None) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, default if dataclasses.is_dataclass(default) else None)
    origin = typing.get_origin(hint)
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a table")
        return {k: _convert(item, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list (in TOML: [[{key}]] tables)")
        return [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    expected = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(hint)
    if expected is None:
        return value
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, expected):
        raise ConfigError(f"'{key}' must be {hint.__name__}, not {type(value).__name__} "
                          f"{value!r}")
    return float(value) if hint is float else value
