"""`wearable-edge`: run the on-device runtime, replay a recording, or check a config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from edge.config import Config, load_config
from edge.errors import ConfigError, WearableError
from wire.recordings import RecordingError

EPILOG = """examples:
  wearable-edge run --config /etc/wearable-edge/edge.toml
  wearable-edge check --config edge.toml
  wearable-edge replay recording.bin --models models --out events.jsonl
  wearable-edge replay walk.csv --out -        (or a PhysioNet WFDB record: rec01.hea)
  wearable-edge watch --config /etc/wearable-edge/edge.toml
  wearable-edge watch --host broker.ward3 --port 1883 --username nurse --password ...
docs: docs/configuration.md, docs/mqtt.md, docs/replay.md"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-edge", epilog=EPILOG, formatter_class=argparse.RawTextHelpFormatter,
        description="Edge runtime for wearable health monitors: serial frames in, int8 TFLite "
                    "vitals and alarms out over MQTT.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="read the configured serial ports and publish to MQTT")
    run.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     help="override log_level from the config")
    check = sub.add_parser("check", help="validate a config and its models, then exit")
    check.add_argument("--config", required=True, type=Path)
    rep = sub.add_parser("replay", help="run the pipeline over a recording file, fast")
    rep.add_argument("recording", type=Path,
                     help="wire-protocol recording (wearable-sim run --out), CSV file "
                          "(docs/recording-csv.md) or WFDB record (name.hea or name)")
    rep.add_argument("--config", type=Path, help="TOML config (alarm limits, models_dir)")
    rep.add_argument("--models", type=Path, help="model bundle folder (overrides models_dir)")
    rep.add_argument("--device", default="replay", help="device name in topics/payloads")
    rep.add_argument("--cuff-calibration", action="store_true",
                     help="calibrate blood pressure on the recording's cuff readings (sbp/dbp "
                     "columns, BP_CUFF frames), as bp_cuff_calibration = true in the config "
                     "does; the summary lists what each reading did")
    rep.add_argument("--out", default="-", help="JSON Lines output file, '-' for stdout "
                                                "(default), or 'none'")
    wat = sub.add_parser("watch", help="live terminal view of a node's devices, vitals and "
                         "alarms; acknowledge / silence keys")
    wat.add_argument("--config", type=Path, help="TOML config: broker, node and operators")
    wat.add_argument("--host", help="broker host (default: the config's, else 127.0.0.1)")
    wat.add_argument("--port", type=int, help="broker port (default: the config's, else 1883)")
    wat.add_argument("--username", help="broker login (default: the config's)")
    wat.add_argument("--password", help="broker password (default: the config's)")
    wat.add_argument("--node", help="the node to watch (default: the config's; without a "
                                    "config every node on the broker)")
    wat.add_argument("--operator", help="send commands as this operator (default: the first "
                                        "in the config's [commands.operators])")
    wat.add_argument("--secret", help="that operator's secret (default: from the config)")
    wat.add_argument("--silence-min", type=float, default=5.0,
                     help="minutes the s key silences an alarm for (default: 5)")
    wat.add_argument("--plain", action="store_true",
                     help="plain lines, one per event (the default when stdout is not a "
                          "terminal)")
    return parser


class JsonFormatter(logging.Formatter):
    """One JSON object per record: what log shippers and `journalctl -o cat | jq` want."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{record.msecs:03.0f}",
                 "level": record.levelname.lower(), "logger": record.name,
                 "thread": record.threadName, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.runtime import Runtime  # paho and the interpreter only when needed

    config = load_config(args.config)
    _setup_logging(args.log_level or config.log_level, config.log_format)
    runtime = Runtime(config)
    runtime.install_signal_handlers()
    runtime.run()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from edge.runtime import load_models

    config = load_config(args.config)
    models = load_models(config)
    check_state_and_tls(config)
    print(f"config {args.config}: ok ({len(config.devices)} device(s), broker "
          f"{config.mqtt.host}:{config.mqtt.port})")
    for model in models:
        m = model.manifest
        print(f"model {m.name} {m.version}: ok (sha256 {m.sha256[:12]}…, {model.backend})")
    return 0


def check_state_and_tls(config: Config) -> None:
    """What `run` would trip over after the config parsed: state directories it cannot
    create or write, TLS files that do not load."""
    from edge.publish import tls_context
    from edge.state import private_dir

    for key, value in (("mqtt.outbox", config.mqtt.outbox),
                       ("calibration_file", config.calibration_file),
                       ("commands.id_file", config.commands.id_file)):
        private_dir(config.state_path(value).parent, key)
    if config.mqtt.tls:
        tls_context(config.mqtt, config.path)


def _cmd_replay(args: argparse.Namespace) -> int:
    from edge.replay import replay
    from edge.runtime import load_models

    config = load_config(args.config) if args.config else Config()
    if args.models:
        config = dataclasses.replace(config, models_dir=str(args.models.resolve()))
    if args.cuff_calibration:
        config = dataclasses.replace(config, bp_cuff_calibration=True)
    _setup_logging("warning")
    models = load_models(config)
    if args.out == "none":
        summary = replay(config, models, args.recording, None, args.device)
    elif args.out == "-":
        summary = replay(config, models, args.recording, sys.stdout, args.device)
    else:
        # Written beside the output and renamed once the replay succeeded: a recording that
        # turns out bad half-way leaves nothing partial behind (nor an old output clobbered).
        target = Path(args.out)
        special = target.exists() and not target.is_file()  # /dev/null, a FIFO: write there
        partial = target if special else target.with_name(f".{target.name}.partial")
        try:
            out = open(partial, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as err:
            raise WearableError(f"output {args.out} cannot be written: {err.strerror}; check "
                                "the directory, or use --out - for stdout") from None
        try:
            with out:
                summary = replay(config, models, args.recording, out, args.device)
            if not special:
                os.replace(partial, target)
        finally:
            if not special:
                partial.unlink(missing_ok=True)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(summary.messages.items())) or "no messages"
    f = summary.frames
    notes = "".join(f"; {note}" for note in summary.notes)
    print(f"replayed {summary.device_seconds:.0f} s of device time ({summary.kind}) in "
          f"{summary.wall_seconds:.2f} s ({summary.speed:.0f}x real time): {counts}; "
          f"{f['frames_ok']} frames, {f['crc_errors']} CRC errors, {f['frames_lost']} lost{notes}",
          file=sys.stderr)
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from edge.watch import watch

    config = load_config(args.config) if args.config else None
    if args.port is not None and not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} must be a TCP port, 1-65535")
    if not 0 < args.silence_min <= 60:
        raise ConfigError(f"--silence-min {args.silence_min:g} must be in (0, 60] minutes")
    plain = args.plain or not sys.stdout.isatty()
    return watch(config, args.host, args.port, args.username, args.password, args.operator,
                 args.secret, args.node, args.silence_min, plain)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _cmd_run, "check": _cmd_check, "replay": _cmd_replay,
               "watch": _cmd_watch}[args.command]
    try:
        return command(args)
    except ConfigError as err:
        print(f"wearable-edge: config error: {err}", file=sys.stderr)
        return 2
    except RecordingError as err:  # the input is at fault: a usage error
        print(f"wearable-edge: error: {err}", file=sys.stderr)
        return 2
    except WearableError as err:
        print(f"wearable-edge: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
