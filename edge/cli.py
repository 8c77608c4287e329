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
        private_dir(config.path(value).parent, key)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = {"run": _cmd_run, "check": _cmd_check, "replay": _cmd_replay}[args.command]
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
