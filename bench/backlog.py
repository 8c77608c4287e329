"""Backlog delivery after the broker returns (issue #12): how long alarms queued in the outbox
during an outage take to reach a subscriber once the broker is back.

    python -m bench.backlog [--trials 5] [--outage 8]

Per trial: the runtime (`python -m edge run`, no devices) is connected; the broker stops;
after `--outage` s, `--alarms` alarm messages are written into the runtime's outbox, as its
pipelines do during an outage; the broker starts again (persistence on, so the subscriber's
session misses nothing) and the clock runs from the moment it accepts connections to the
arrival of the last queued alarm. The peer, in the same run: the old reconnect cap of 30 s.
Prints p50/p95 per cap as JSON.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from deploy.broker import PrivateBroker

ROOT = Path(__file__).resolve().parents[1]


def trial_set(cap: int, trials: int, outage: float, alarms: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-backlog-"))
    broker = PrivateBroker()
    broker.extra_config = f"persistence true\npersistence_location {broker.workdir}/\n"
    config = folder / "edge.toml"
    outbox = folder / "state" / "outbox.sqlite"
    config.write_text(f'node = "bench"\nmodels_dir = "{ROOT / "models"}"\nmodels = []\n'
                      f"[mqtt]\nport = {broker.port}\noutbox = '{outbox}'\n"
                      f"reconnect_max_s = {cap}\n")
    arrived: dict[str, float] = {}
    online = threading.Event()

    def on_message(_c, _u, msg) -> None:
        if msg.topic.endswith("/alarms"):
            arrived.setdefault(json.loads(msg.payload)["id"], time.monotonic())
        elif msg.topic.endswith("/status") and json.loads(msg.payload)["state"] == "online":
            online.set()

    delays = []
    with broker:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=False,
                             client_id=f"bench-{uuid.uuid4().hex[:8]}")
        client.reconnect_delay_set(1, 1)
        client.on_connect = lambda c, *_: c.subscribe("wearable/#", qos=1)
        client.on_message = on_message
        client.connect(broker.host, broker.port)
        client.loop_start()
        runtime = subprocess.Popen([sys.executable, "-m", "edge", "run", "--log-level",
                                    "error", "--config", str(config)], cwd=ROOT)
        try:
            for _ in range(trials):
                assert online.wait(60), "the runtime did not come online"
                broker.stop()
                online.clear()
                time.sleep(outage)  # the outage itself: the runtime's backoff grows
                ids = [uuid.uuid4().hex for _ in range(alarms)]
                with sqlite3.connect(outbox) as db:
                    db.executemany("INSERT INTO outbox (id, topic, payload, qos) VALUES "
                                   "(?, ?, ?, 1)", [(i, "wearable/bench/d/alarms",
                                                     json.dumps({"id": i})) for i in ids])
                broker.start()
                back = time.monotonic()
                deadline = back + 120
                while not all(i in arrived for i in ids):
                    assert time.monotonic() < deadline, "backlog not delivered in 120 s"
                    time.sleep(0.05)
                delays.append(max(arrived[i] for i in ids) - back)
        finally:
            runtime.terminate()
            runtime.wait(10)
            client.loop_stop()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--outage", type=float, default=8.0)
    parser.add_argument("--alarms", type=int, default=20)
    args = parser.parse_args()
    result = {}
    for cap in (2, 30):
        delays = sorted(trial_set(cap, args.trials, args.outage, args.alarms))
        result[f"reconnect_max_s={cap}"] = {
            "trials": len(delays), "p50_s": round(statistics.median(delays), 2),
            "p95_s": round(delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))], 2),
            "all_s": [round(d, 2) for d in delays]}
        print(f"cap {cap} s: {result[f'reconnect_max_s={cap}']}", file=sys.stderr)
    print(json.dumps({"backlog_after_broker_returns": result, "outage_s": args.outage,
                      "alarms": args.alarms}))


if __name__ == "__main__":
    main()
