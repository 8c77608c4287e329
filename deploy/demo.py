"""`make demo`: the whole product on one machine, in about 70-90 seconds.

Three simulated wearables, each a `wearable-sim run --pty` process playing its own scenario
at its own speed, feed ONE `wearable-edge run` (hr, bp and glucose models), which publishes
to a private mosquitto. This script subscribes like a nurse station: it prints vitals
(throttled), every alarm event and status change, calibrates the chest device's blood
pressure with a cuff reading over MQTT, acknowledges the first alarm that re-alerts, and
ends with a summary per device.

    wrist-1  tachycardia          x1    (70 s)      heart-rate alarm raised and cleared
    chest-1  hypertensive-crisis  x10   (10 min)    BP calibrated at 40 s, then BP alarms
    cgm-1    hypoglycaemia        x270  (4.5 h)     predictive urgent low, then urgent low

    python -m deploy.demo                              # the three-device show
    python -m deploy.demo --scenario hypotension       # one device, a scenario of your choice
    python -m deploy.demo --scenario normal --scenario exercise --speed 5 --seed 2
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import paho.mqtt.client as mqtt

from deploy.broker import PrivateBroker
from device_sim import get_scenario, scenario_names
from edge.commands import signed_command
from wire.errors import WearableError

ROOT = Path(__file__).resolve().parents[1]
BOLD, RED, GREEN, YELLOW, DIM, RESET = (
    ("\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[2m", "\033[0m")
    if sys.stdout.isatty()
    else ("",) * 6
)
SHOW = ("tachycardia", "hypertensive-crisis", "hypoglycaemia")
TARGET_WALL_S = 60.0  # default speed: a scenario plays in about this long (never slower than 1x)
NODE = "demo"
OPERATOR = "nurse-station"
CALIBRATE_AT_S = 40.0  # device time of the cuff reading: 30 s of BP estimates at rest
VITALS_EVERY_S = 10.0  # at most one vitals line per device per 10 s of device time...
VITALS_EVERY_WALL_S = 3.0  # ...and per 3 s of wall time (a device played at 270x)
STALL_S = 60.0  # no message at all for this long: something is wrong
STARTED = [time.monotonic()]  # reset by run()


class DemoError(WearableError):
    """The demo cannot go on; its message is the one line printed."""


@dataclass
class Device:
    name: str
    scenario: str
    speed: float
    duration_s: int
    cuff: tuple[int, int] | None  # the cuff reading at rest, if the device measures BP
    sim: subprocess.Popen | None = None
    sim_log: Path | None = None
    sim_rc: int | None = None
    pty: str = ""
    # What the viewer saw.
    latest: dict[str, dict] = field(default_factory=dict)  # vital -> last payload
    next_line_s: float = 0.0
    last_t: float = -1.0
    ranges: dict[str, list[float]] = field(default_factory=dict)  # vital -> [min, max], good
    uncalibrated: int = 0
    calibration: str = ""  # the runtime's reply once it accepted the cuff reading
    calibration_tries: int = 0
    next_calibration_s: float = CALIBRATE_AT_S
    alarms: dict[str, list[dict]] = field(default_factory=dict)  # alarm_id -> events
    reminders: Counter = field(default_factory=Counter)  # alarm_id -> count


def plan(scenarios: list[str], speed: float | None) -> list[Device]:
    devices: list[Device] = []
    kinds: Counter = Counter()
    for name in scenarios:
        scenario = get_scenario(name)  # an unknown name: ScenarioError listing valid ones
        channels = set(scenario.channels)
        kind = "chest" if "ecg" in channels else "cgm" if "cgm" in channels else "wrist"
        kinds[kind] += 1
        cuff = None
        if {"ecg", "ppg"} <= channels:  # the BP model needs both
            trajectory = scenario.trajectory()
            window = slice(10, int(CALIBRATE_AT_S))  # the pressure while the nurse measures
            cuff = (round(float(trajectory.sbp_mmhg[window].mean())),
                    round(float(trajectory.dbp_mmhg[window].mean())))
        duration = scenario.duration_s
        devices.append(Device(f"{kind}-{kinds[kind]}", name,
                              speed or max(1.0, round(duration / TARGET_WALL_S)), duration, cuff))
    return devices


def say(text: str, device_time_s: float | None = None, device: str = "",
        colour: str = "") -> None:
    """One line: wall time since the start, device time, device, what happened."""
    when = "" if device_time_s is None else hms(device_time_s)
    print(f"{DIM}{time.monotonic() - STARTED[0]:3.0f} s{RESET} {when:>7s}  {device:8s} "
          f"{colour}{text}{RESET}", flush=True)


def hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def start_simulators(devices: list[Device], seed: int, folder: Path) -> None:
    """Start every simulator first (the long scenarios take seconds to compute), then read
    the pseudo-terminal each one reports."""
    long = any(d.duration_s > 3600 for d in devices)
    say(f"starting {len(devices)} simulator(s)"
        + ("; computing hours of signals takes 10-20 s" if long else ""), colour=DIM)
    for device in devices:
        device.sim_log = folder / f"sim-{device.name}.log"
        with open(device.sim_log, "w") as log:
            device.sim = subprocess.Popen(
                [sys.executable, "-m", "device_sim", "run", "--scenario", device.scenario,
                 "--seed", str(seed), "--speed", f"{device.speed:g}", "--pty"],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                cwd=ROOT)
    for device in devices:
        assert device.sim is not None and device.sim.stdout is not None
        line = device.sim.stdout.readline().strip()
        if not line.startswith("PTY "):
            raise DemoError(f"the simulator of {device.name} ({device.scenario}) did not report "
                            f"its pseudo-terminal (got {line!r}): "
                            f"{_tail(device.sim_log) or 'no output'}")
        device.pty = line.split(" ", 1)[1]
    say("simulators ready: " + ", ".join(f"{d.name} on {d.pty}" for d in devices), colour=DIM)


def write_config(folder: Path, devices: list[Device], port: int, token: str) -> Path:
    config = folder / "edge.toml"
    text = (
        f'node = "{NODE}"\nmodels_dir = "{ROOT / "models"}"\n'
        'models = ["hr", "bp", "glucose"]\n'
        f'calibration_file = "{folder / "calibration.json"}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\noutbox = "{folder / "outbox.sqlite"}"\n'
        "status_interval_s = 10\n\n"
        f'[commands.operators]\n{OPERATOR} = "{token}"\n'
    )
    for device in devices:
        text += f'\n[[devices]]\nname = "{device.name}"\nport = "{device.pty}"\n'
    config.write_text(text)
    return config


def _tail(path: Path | None, lines: int = 3) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


class Viewer:
    """The nurse station: an MQTT client that watches everything and sends commands."""

    def __init__(self, broker: PrivateBroker, devices: list[Device], token: str) -> None:
        self.devices = {d.name: d for d in devices}
        self.token = token
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.seen: set[str] = set()  # QoS 1 is at-least-once: de-duplicate alarms by id
        self.state = ""
        self.acknowledged = False
        self.last_message = time.monotonic()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wearable-demo-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe("wearable/#", qos=1)
        self.client.on_message = lambda c, u, msg: self.inbox.put((msg.topic, msg.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def pump(self, seconds: float) -> None:
        """Show what arrives during `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                topic, raw = self.inbox.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            self.last_message = time.monotonic()
            try:
                payload = json.loads(raw)
            except ValueError:
                continue
            self.show(topic, payload)

    def send(self, device: Device, command: str, **fields: Any) -> None:
        # Signed with the operator's secret, which itself never travels (docs/alarms.md).
        body = signed_command(OPERATOR, self.token, device.name, command, fields, node=NODE,
                              command_id=f"{command[:3]}-{uuid.uuid4().hex[:6]}")
        self.client.publish(f"wearable/{NODE}/{device.name}/cmd", json.dumps(body), qos=1)
        detail = " ".join(f"{k}={v}" for k, v in fields.items())
        say(f"nurse -> {command} {detail}", device.last_t, device.name, YELLOW)

    def show(self, topic: str, p: dict) -> None:
        kind = topic.rsplit("/", 1)[-1]
        if kind == "status":
            self.show_status(p)
            return
        device = self.devices.get(p.get("device", ""))
        if device is None:
            return
        if kind == "vitals":
            self.show_vitals(device, p)
        elif kind == "alarms" and p["id"] not in self.seen:
            self.seen.add(p["id"])
            self.show_alarm(device, p)
        elif kind == "reply":
            ok = p["ok"]
            colour = GREEN if ok else RED
            command_id = p.get("id") or "?"
            say(f"reply {command_id}: {'ok' if ok else 'REFUSED'}, {p['reason']}",
                device.last_t, device.name, colour)
            if command_id.startswith("cal-"):  # send() names a command by its first letters
                device.calibration = p["reason"] if ok else ""

    def show_status(self, p: dict) -> None:
        if p["state"] == self.state:
            return
        self.state = p["state"]
        if p["state"] == "online":
            models = ", ".join(f"{m['name']}@{m['version']}" for m in p.get("models", []))
            extra = f": {len(p.get('devices', {}))} device(s), models {models} on " \
                    f"{p.get('interpreter')}"
        else:
            extra = f" ({p['reason']})" if p.get("reason") else ""
        say(f"status: node {p['node']} {p['state']}{extra}", colour=DIM)

    def show_vitals(self, device: Device, p: dict) -> None:
        t, vital = p["device_time_s"], p["vital"]
        device.last_t = max(device.last_t, t)
        device.latest[vital] = p
        if p["quality"] == "good":
            low, high = device.ranges.setdefault(vital, [p["value"], p["value"]])
            device.ranges[vital] = [min(low, p["value"]), max(high, p["value"])]
        elif p["quality"] == "uncalibrated" and vital == "systolic_bp":
            device.uncalibrated += 1
        if vital == "systolic_bp" and device.cuff and not device.calibration \
                and t >= device.next_calibration_s and device.calibration_tries < 3:
            # The nurse takes a cuff reading at rest and sends it (retried if refused).
            device.calibration_tries += 1
            device.next_calibration_s = t + 20
            self.send(device, "calibrate", systolic=device.cuff[0], diastolic=device.cuff[1])
        if t >= device.next_line_s:
            every = max(VITALS_EVERY_S, VITALS_EVERY_WALL_S * device.speed)
            device.next_line_s = (t // every + 1) * every
            say(self.vitals_line(device), t, device.name)

    @staticmethod
    def vitals_line(device: Device) -> str:
        def mark(p: dict) -> str:
            return "" if p["quality"] == "good" else f" ({p['quality']})"

        parts = []
        if hr := device.latest.get("heart_rate"):
            parts.append(f"HR {hr['value']:3.0f} bpm{mark(hr)}")
        sbp, dbp = device.latest.get("systolic_bp"), device.latest.get("diastolic_bp")
        if sbp and dbp:
            parts.append(f"BP {sbp['value']:3.0f}/{dbp['value']:3.0f} mmHg{mark(sbp)}")
        if glucose := device.latest.get("glucose"):
            text = f"glucose {glucose['value']:3.0f} mg/dL{mark(glucose)}"
            details = glucose.get("details") or {}
            if details.get("trend_mg_dl_per_min") is not None:
                text += f", trend {details['trend_mg_dl_per_min']:+.1f}/min"
            if details.get("glucose_20min") is not None:
                text += f", in 20 min {details['glucose_20min']:.0f}"
            if details.get("urgent_low_risk") is not None:
                text += f", urgent-low risk {details['urgent_low_risk']:.0%}"
            parts.append(text)
        return "   ".join(parts) or "(no estimate yet)"

    def show_alarm(self, device: Device, p: dict) -> None:
        events = device.alarms.setdefault(p["alarm_id"], [])
        events.append(p)
        event = p["event"]
        if event == "reminder":
            device.reminders[p["alarm_id"]] += 1
            bedside = [d for d in self.devices.values() if d.cuff] or [device]
            if not self.acknowledged and device is bedside[0]:
                # The nurse at the bedside answers the first alarm announced again there.
                self.acknowledged = True
                self.send(device, "acknowledge", condition=p["condition"])
            return  # counted, not printed: shown in the summary
        colour = {"raised": RED + BOLD, "cleared": GREEN, "acknowledged": YELLOW,
                  "silenced": YELLOW}.get(event, "")
        who = f" by {p['operator']}" if p.get("operator") else ""
        say(f"ALARM {event.upper():12s} {p['condition']} ({p['priority']}){who}: "
            f"{p['message']}", p["device_time_s"], device.name, colour)


def summary(devices: list[Device], wall_s: float) -> None:
    print(f"\n{BOLD}summary{RESET} ({wall_s:.0f} s wall time)")
    units = {"heart_rate": ("HR", "bpm"), "glucose": ("glucose", "mg/dL")}
    for d in devices:
        print(f"  {BOLD}{d.name}{RESET}  {d.scenario} x{d.speed:g}, "
              f"{hms(d.last_t)} of {hms(d.duration_s)} device time")
        ranges = [f"{units[v][0]} {lo:.0f}-{hi:.0f} {units[v][1]}"
                  for v, (lo, hi) in d.ranges.items() if v in units]
        if "systolic_bp" in d.ranges and "diastolic_bp" in d.ranges:
            (slo, shi), (dlo, dhi) = d.ranges["systolic_bp"], d.ranges["diastolic_bp"]
            ranges.append(f"BP {slo:.0f}-{shi:.0f} / {dlo:.0f}-{dhi:.0f} mmHg")
        print(f"    vitals (good quality): {', '.join(ranges) or 'none'}")
        if d.cuff:
            state = d.calibration or "not calibrated"
            print(f"    BP: {d.uncalibrated} uncalibrated estimate(s), then {state}")
        if not d.alarms:
            print("    alarms: none")
        for alarm_id, events in d.alarms.items():
            steps = [f"{e['event']} {hms(e['device_time_s'])}" for e in events
                     if e["event"] != "reminder"]
            if d.reminders[alarm_id]:
                steps.append(f"{d.reminders[alarm_id]} reminder(s)")
            if events[-1]["event"] != "cleared":
                steps.append("still active")
            print(f"    alarm {events[0]['condition']} ({events[0]['priority']}): "
                  f"{', '.join(steps)}")


def _stop(proc: subprocess.Popen | None, sig: int, timeout: float) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    devices = plan(args.scenario or list(SHOW), args.speed)
    token = uuid.uuid4().hex  # this run's operator signing secret, in the runtime's config
    STARTED[0] = started = time.monotonic()
    with ExitStack() as stack:
        broker = stack.enter_context(PrivateBroker())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wearable-demo-")))
        print(f"{BOLD}wearable-edge demo{RESET}: private mosquitto on {broker.host}:"
              f"{broker.port}, one runtime, {len(devices)} simulated device(s)")
        for d in devices:
            cuff = f"; the nurse calibrates BP at {CALIBRATE_AT_S:g} s with a cuff reading " \
                   f"of {d.cuff[0]}/{d.cuff[1]} mmHg" if d.cuff else ""
            print(f"  {d.name:8s} {d.scenario} ({hms(d.duration_s)}) at x{d.speed:g}{cuff}")
        viewer = Viewer(broker, devices, token)
        stack.callback(viewer.close)
        stack.callback(lambda: [_stop(d.sim, signal.SIGTERM, 5) for d in devices])
        start_simulators(devices, args.seed, folder)
        log_path = folder / "edge.log"
        log = stack.enter_context(open(log_path, "w"))
        edge = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", "--config",
             str(write_config(folder, devices, broker.port, token))],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        stack.callback(_stop, edge, signal.SIGTERM, 15)

        def check_processes() -> None:
            if edge.poll() is not None:
                print(log_path.read_text(errors="replace"), file=sys.stderr)
                raise DemoError(f"wearable-edge exited early with code {edge.returncode} "
                                "(its log is above)")
            for d in devices:
                if d.sim_rc is None and d.sim is not None and d.sim.poll() is not None:
                    d.sim_rc = d.sim.returncode
                    if d.sim_rc != 0:
                        raise DemoError(f"the simulator of {d.name} exited with code "
                                        f"{d.sim_rc}: {_tail(d.sim_log) or 'no output'}")
            if time.monotonic() - viewer.last_message > STALL_S:
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise DemoError(f"nothing was published for {STALL_S:g} s (the runtime's log "
                                "is above)")

        # Until every simulator has played its scenario...
        while any(d.sim_rc is None for d in devices):
            viewer.pump(0.5)
            check_processes()
        # ...and the runtime has published the last windows still in flight.
        settle = time.monotonic() + 15
        while time.monotonic() < settle and any(d.last_t < d.duration_s - 4 for d in devices):
            viewer.pump(0.5)
            check_processes()
        rc = _stop(edge, signal.SIGTERM, 15)
        viewer.pump(1.0)  # the runtime's "offline" status
        if rc != 0:
            print(log_path.read_text(errors="replace"), file=sys.stderr)
            raise DemoError(f"wearable-edge exited with code {rc} at shutdown (its log is "
                            "above)")
    summary(devices, time.monotonic() - started)
    silent = [d.name for d in devices if not d.latest]
    if silent:
        raise DemoError(f"no vitals from {', '.join(silent)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.demo", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=scenario_names(), metavar="NAME",
                        help="play this scenario on its own device (repeatable; default: "
                        f"{', '.join(SHOW)}); names: 'wearable-sim list'")
    parser.add_argument("--speed", type=float, default=None,
                        help="playback speed of every device, 1 = real time (default: per "
                        f"scenario, about {TARGET_WALL_S:g} s each, never below 1)")
    parser.add_argument("--seed", type=int, default=1,
                        help="simulator seed: same seed, same patients (default: 1)")
    args = parser.parse_args(argv)
    if args.speed is not None and not args.speed > 0:
        parser.error("--speed must be positive")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up as on Ctrl-C
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ndemo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except WearableError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
