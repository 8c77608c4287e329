"""`make demo`: the whole product on one machine, in about a minute.

A simulated wearable on a pseudo-terminal -> `wearable-edge run` -> a private mosquitto -> this
script's subscriber, which prints vitals and alarms as they arrive, then a summary.

    python -m deploy.demo [--scenario tachycardia] [--speed 1]
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
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from deploy.broker import PrivateBroker
from wire.errors import WearableError

ROOT = Path(__file__).resolve().parents[1]
BOLD, RED, GREEN, DIM, RESET = (
    ("\033[1m", "\033[31m", "\033[32m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)


def start_simulator(scenario: str, speed: float, seed: int) -> tuple[subprocess.Popen, str]:
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_sim",
            "run",
            "--scenario",
            scenario,
            "--seed",
            str(seed),
            "--speed",
            str(speed),
            "--pty",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = sim.stdout.readline().strip() if sim.stdout else ""
    if not line.startswith("PTY "):
        sim.kill()
        raise WearableError(f"the simulator did not report its pseudo-terminal (got {line!r})")
    return sim, line.split(" ", 1)[1]


def write_config(folder: Path, pty: str, port: int) -> Path:
    config = folder / "edge.toml"
    config.write_text(
        f'node = "demo"\nmodels_dir = "{ROOT / "models"}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\noutbox = "{folder / "outbox.sqlite"}"\n'
        f"status_interval_s = 10\n\n"
        f'[[devices]]\nname = "wrist-1"\nport = "{pty}"\n'
    )
    return config


def subscribe(broker: PrivateBroker) -> tuple[mqtt.Client, queue.Queue]:
    inbox: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wearable-demo-viewer")
    client.on_connect = lambda c, *_: c.subscribe("wearable/#", qos=1)
    client.on_message = lambda c, u, msg: inbox.put((msg.topic, json.loads(msg.payload)))
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client, inbox


def show(topic: str, p: dict, summary: dict) -> None:
    kind = topic.rsplit("/", 1)[-1]
    if kind == "status":
        state = p["state"] + (f" ({p['reason']})" if "reason" in p else "")
        extra = f", interpreter {p.get('interpreter')}" if p["state"] == "online" else ""
        print(f"{DIM}        status   node {p['node']}: {state}{extra}{RESET}")
    elif kind == "vitals":
        summary["vitals"].append(p["value"])
        motion = "n/a" if p["motion_g"] is None else f"{p['motion_g']:.3f} g"
        print(
            f"[{p['device_time_s']:5.0f} s] vitals   {p['device']}  HR {p['value']:5.1f} "
            f"{p['unit']}  quality {p['quality']}, motion {motion}"
        )
    elif kind == "alarms":
        summary["alarms"].append(p)
        colour = RED if p["event"] == "raised" else GREEN
        print(
            f"{BOLD}{colour}[{p['device_time_s']:5.0f} s] ALARM {p['event'].upper():7s} "
            f"{p['condition']} ({p['priority']} priority): {p['message']}{RESET}"
        )


def pump(inbox: queue.Queue, summary: dict, keep_going: Callable[[], bool]) -> None:
    while keep_going():
        try:
            item = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        show(*item, summary)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="tachycardia")
    parser.add_argument("--speed", type=float, default=1.0, help="1 = real time")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    summary: dict = {"vitals": [], "alarms": []}
    try:
        with PrivateBroker() as broker, tempfile.TemporaryDirectory() as tmp:
            print(
                f"{BOLD}wearable-edge demo{RESET}: scenario '{args.scenario}', private "
                f"mosquitto on {broker.host}:{broker.port}"
            )
            viewer, inbox = subscribe(broker)
            sim, pty = start_simulator(args.scenario, args.speed, args.seed)
            print(f"simulated wearable streaming on {pty}")
            log = open(Path(tmp) / "edge.log", "w")  # noqa: SIM115 - closed below
            edge = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "edge",
                    "run",
                    "--config",
                    str(write_config(Path(tmp), pty, broker.port)),
                ],
                stderr=log,
                cwd=ROOT,
            )
            try:
                pump(inbox, summary, lambda: sim.poll() is None and edge.poll() is None)
                deadline = time.monotonic() + 3  # the last windows still in flight
                pump(inbox, summary, lambda: time.monotonic() < deadline)
            finally:
                edge.send_signal(signal.SIGTERM)
                edge_rc = edge.wait(timeout=10)
                sim.terminate()
                sim.wait(timeout=5)
                log.close()
            time.sleep(0.5)
            while not inbox.empty():
                show(*inbox.get(), summary)
            viewer.loop_stop()
            viewer.disconnect()
            if edge_rc != 0:
                print((Path(tmp) / "edge.log").read_text(), file=sys.stderr)
                raise WearableError(f"wearable-edge exited with code {edge_rc}")
    except WearableError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    hr = summary["vitals"]
    raised = [a for a in summary["alarms"] if a["event"] == "raised"]
    cleared = [a for a in summary["alarms"] if a["event"] == "cleared"]
    print(
        f"\n{BOLD}summary{RESET}: {len(hr)} heart-rate estimates"
        + (f" ({min(hr):.0f}-{max(hr):.0f} bpm)" if hr else "")
        + f", {len(raised)} alarm(s) raised, {len(cleared)} cleared"
    )
    for a in summary["alarms"]:
        print(f"  {a['device_time_s']:5.0f} s  {a['condition']} {a['event']}: {a['message']}")
    return 0 if hr else 1


if __name__ == "__main__":
    sys.exit(main())
