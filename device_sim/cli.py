"""`wearable-sim`: stream a simulated wearable (or a real recording) to a pty, a serial port
or a file.

    wearable-sim list
    wearable-sim run --scenario tachycardia --seed 1 --pty
    wearable-sim run --scenario exercise --port socket://localhost:7000 --speed 10
    wearable-sim run --scenario normal --out normal.bin --truth normal.jsonl
    wearable-sim run --scenario-file mine.toml --channels all --fault detach@30:10 --pty
    wearable-sim run --scenario normal --devices 8 --pty
    wearable-sim replay recording.csv --pty --speed 10

Exit status: 0 done (or stopped by SIGINT/SIGTERM), 1 the output failed while streaming,
2 a usage error (unknown scenario, bad file, bad rate, port that cannot be opened).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

from device_sim.errors import ScenarioError, SimulatorError
from device_sim.faults import Fault, parse_fault, windows
from device_sim.physiology import MAX_RATE_HZ, MIN_RATE_HZ, Recording, Simulation, simulation
from device_sim.progress import Progress
from device_sim.recordings import as_recording
from device_sim.scenarios import CHANNELS, SCENARIOS, get_scenario, load_scenario
from device_sim.stream import stream
from device_sim.writers import FileWriter, PtyWriter, SerialWriter, Writer
from wire.errors import WearableError
from wire.recordings import load_recording as load_signals

PROG = "wearable-sim"
log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (problem + where to look), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (MIN_RATE_HZ <= value <= MAX_RATE_HZ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate between {MIN_RATE_HZ:g} and {MAX_RATE_HZ:g} Hz (e.g. 64)"
        )
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
    return value


def _duration(text: str) -> float:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is shorter than 1 s")
    return value


def _device_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer from 0 to 65535")
    return value


def _fault(text: str) -> Fault:
    try:
        return parse_fault(text)
    except ScenarioError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _channels(text: str) -> tuple[str, ...]:
    names = CHANNELS if text == "all" else tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in CHANNELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of {', '.join(CHANNELS)} (or 'all')"
        )
    return names


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of devices from 1 to 256")
    return value


def _output_options() -> argparse.ArgumentParser:
    """Where the bytes go and how fast: shared by run and replay."""
    common = argparse.ArgumentParser(add_help=False)
    out = common.add_mutually_exclusive_group(required=True)
    out.add_argument("--pty", action="store_true",
                     help="create a pseudo-terminal and print 'PTY <path>' on stdout")
    out.add_argument("--port", metavar="URL",
                     help="serial port or pyserial URL: /dev/ttyUSB0, loop://, socket://h:p")
    out.add_argument("--out", metavar="FILE",
                     help="write raw wire bytes to FILE ('-' = stdout), the recording format")
    common.add_argument("--speed", type=_non_negative, default=None,
                        help="1 = real time, 10 = 10x faster, 0 = as fast as possible "
                        "(default: 1 for --pty/--port, 0 for --out)")
    common.add_argument("--device-id", type=_device_id, default=1, metavar="N",
                        help="device id in every frame, 0-65535 (default: 1)")
    common.add_argument("--link", metavar="PATH",
                        help="with --pty, keep a symlink PATH pointing at the current pty "
                        "(it changes after a disconnect fault)")
    common.add_argument("--wait-for-reader", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="with --pty, send nothing until a reader has opened the pty, and "
                        "pause while it is gone (default: wait)")
    common.add_argument("--baudrate", type=int, default=115200,
                        help="with --port (default: 115200)")
    common.add_argument("--progress", type=_non_negative, default=10.0, metavar="S",
                        help="a progress line on stderr every S seconds: device time sent, "
                        "speed, a pty still waiting for its reader (default: 10; 0: none)")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="also log each device's start, end and pty events to stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Simulated wearable (PPG, accelerometer, ECG, BP cuff, CGM) speaking wire "
        "protocol v1.",
        epilog="Docs: docs/simulator.md. Exit status: 0 ok or stopped by a signal, "
        "1 output failed while streaming, 2 usage error.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="list the built-in scenarios")
    outputs = _output_options()

    run = commands.add_parser(
        "run",
        parents=[outputs],
        help="simulate a scenario and stream it",
        description="Simulate a scenario and stream its frames to exactly one output. "
        "With --pty, stdout gets exactly one line per device, 'PTY /dev/pts/N', before "
        "streaming.",
    )
    which = run.add_mutually_exclusive_group()
    which.add_argument("--scenario", default="normal",
                       help="built-in scenario, see 'wearable-sim list' (default: normal)")
    which.add_argument("--scenario-file", metavar="FILE",
                       help="your own scenario, a TOML file (format: docs/simulator.md)")
    run.add_argument("--seed", type=int, default=0,
                     help="random seed: same seed, same bytes (default: 0)")
    run.add_argument("--truth", metavar="FILE",
                     help="also write per-second ground truth as JSON lines (with --devices, "
                     "one file per device: FILE-1, FILE-2, ...)")
    run.add_argument("--duration", type=_duration, metavar="S",
                     help="seconds to stream: cuts the scenario or extends its last segment")
    run.add_argument("--devices", type=_count, default=1, metavar="N",
                     help="with --pty, N wearables on N pseudo-terminals (ids from --device-id "
                     "up, seeds from --seed up)")
    run.add_argument("--ppg-rate", type=_rate, default=64.0, metavar="HZ",
                     help="PPG sample rate (default: 64)")
    run.add_argument("--acc-rate", type=_rate, default=32.0, metavar="HZ",
                     help="accelerometer sample rate (default: 32)")
    run.add_argument("--ecg-rate", type=_rate, default=250.0, metavar="HZ",
                     help="ECG sample rate (default: 250)")
    run.add_argument("--channels", type=_channels, metavar="LIST",
                     help="what the device streams: comma-separated from ppg, acc, ecg, bp, "
                     "cgm, or 'all' (default: the scenario's, ppg,acc for most)")
    run.add_argument("--fault", type=_fault, action="append", default=[],
                     metavar="KIND@START[:DUR]",
                     help="inject a fault, repeatable: detach@30:10[,mode=saturated], "
                     "lead_off, motion[,level=G], drop, corrupt, reboot, drift[,ppm=N], "
                     "disconnect, cgm_gap (docs/simulator.md)")
    run.add_argument("--noise", type=_non_negative, default=1.0,
                     help="scales sensor noise, drift and motion artefact: 0 clean, 1 typical "
                     "(default), 3 poor contact")

    replay = commands.add_parser(
        "replay",
        parents=[outputs],
        help="stream a real recording (CSV or PhysioNet WFDB) like a device",
        description="Stream a recording over the same path as a simulated device: a CSV file "
        "(docs/recording-csv.md) or a WFDB record (name.hea; needs the 'wfdb' package).",
    )
    replay.add_argument("file", metavar="FILE", help="recording.csv or a WFDB record (.hea)")
    return parser


def _length(seconds: int) -> str:
    if seconds < 600:
        return f"{seconds} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.3g} h"


def _list() -> int:
    width = max(len(name) for name in SCENARIOS)
    for name, scenario in SCENARIOS.items():
        print(f"{name:<{width}}  {_length(scenario.duration_s):>7}  {scenario.description}")
    return 0


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (KeyboardInterrupt), so outputs close cleanly either way."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can handle signals; nothing to install
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _open_writer(args: argparse.Namespace, link: str | None = None) -> Writer:
    if args.pty:
        # The one line other programs parse; again after each simulated disconnect.
        return PtyWriter(wait_for_reader=args.wait_for_reader, link=link,
                         on_open=lambda path: print(f"PTY {path}", flush=True))
    if args.port:
        return SerialWriter(args.port, baudrate=args.baudrate)
    return FileWriter(args.out)


def _recordings(args: argparse.Namespace) -> list[Recording | Simulation]:
    """What each device streams: a recording read from a file, or simulations, which compute
    their signals chunk by chunk while they stream (memory does not grow with duration)."""
    if args.command == "replay":
        signals = load_signals(args.file)
        for note in signals.notes:  # e.g. an irregular time_s resampled: say so
            print(f"wearable-sim: {args.file}: {note}", file=sys.stderr)
        return [as_recording(signals)]
    if args.scenario_file:
        scenario = load_scenario(args.scenario_file)
    else:
        scenario = get_scenario(args.scenario)
    if args.duration is not None:
        scenario = scenario.with_duration(args.duration)
    if args.progress > 0 and scenario.duration_s >= 3600:  # a long run takes a while
        print(f"{PROG}: simulating {scenario.duration_s / 3600:.3g} h of {scenario.name!r} "
              f"for {args.devices} device(s)", file=sys.stderr, flush=True)
    # Device i gets seed + i: the same people every run, but different from one another.
    recordings: list[Recording | Simulation] = [
        simulation(scenario, args.seed + i, ppg_rate=args.ppg_rate, acc_rate=args.acc_rate,
                   noise=args.noise, ecg_rate=args.ecg_rate, channels=args.channels,
                   faults=args.fault)
        for i in range(args.devices)]
    if args.truth:
        for i, rec in enumerate(recordings):
            path = args.truth if args.devices == 1 else _numbered(args.truth, i + 1)
            try:
                rec.truth.to_jsonl(path)
            except OSError as err:
                raise SimulatorError(
                    f"cannot write truth file {path!r} ({err.strerror}); check the directory"
                ) from None
    return recordings


def _numbered(path: str, n: int) -> str:
    """truth.jsonl -> truth-3.jsonl: one file per device."""
    root, ext = os.path.splitext(path)
    return f"{root}-{n}{ext}"


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "devices", 1) > 1 and not args.pty:
        raise SimulatorError("--devices N needs --pty (one pseudo-terminal per device)")
    recordings = _recordings(args)
    speed = args.speed if args.speed is not None else (0.0 if args.out else 1.0)
    writers: list[Writer] = []
    for i in range(len(recordings)):
        link = args.link if args.link is None or len(recordings) == 1 else _numbered(args.link,
                                                                                   i + 1)
        writers.append(_open_writer(args, link))
    stop = threading.Event()
    failures: list[str] = []
    progress = Progress(sys.stderr, PROG, args.progress)
    tracked = [progress.add(args.device_id + i, float(rec.duration_s), _waiting(writer))
               for i, (rec, writer) in enumerate(zip(recordings, writers, strict=True))]

    def play(rec: Recording | Simulation, device_id: int, writer: Writer) -> None:
        finished = False
        track = tracked[device_id - args.device_id]
        try:
            stats = writer.play(track.track(stream(rec, device_id)), speed, stop=stop,
                                hangups=windows(rec.faults, "disconnect"))
            finished = not stats.stopped
            log.info("device %d: sent %d frames, %d bytes, %.1f s of device time", device_id,
                     stats.frames, stats.bytes, stats.device_time_s)
        except WearableError as err:  # the output failed mid-stream: not a usage error
            failures.append(str(err))
        finally:
            track.done = True
            writer.close(drain=finished)

    jobs = [(rec, args.device_id + i, w)
            for i, (rec, w) in enumerate(zip(recordings, writers, strict=True))]
    with progress:
        _play_all(play, jobs, stop)
    for message in failures:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1 if failures else 0


def _waiting(writer: Writer) -> Callable[[], str | None] | None:
    if not isinstance(writer, PtyWriter):
        return None
    return lambda: f"a reader on {writer.path}" if writer.awaiting_reader() else None


def _play_all(play: Callable[[Recording | Simulation, int, Writer], None],
              jobs: list[tuple[Recording | Simulation, int, Writer]],
              stop: threading.Event) -> None:
    if len(jobs) == 1:
        play(*jobs[0])
    else:
        threads = [threading.Thread(target=play, args=job, name=f"device-{job[1]}", daemon=True)
                   for job in jobs]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
        finally:
            stop.set()  # a signal: let every device stop and close its pty
            for thread in threads:
                thread.join(5)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(message)s")
    try:
        with _stop_on_sigterm():
            return _run(args)
    except KeyboardInterrupt:  # SIGINT or SIGTERM: a normal way to stop a stream
        return 0
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, like cat does, and
        # point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except WearableError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
