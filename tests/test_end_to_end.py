"""The whole chain for real: simulator on a pseudo-terminal -> `wearable-edge run` -> mosquitto
-> a paho subscriber. Nothing mocked: real pty, real interpreter, real broker."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from e2e import ROOT, edge_config, validate

from edge.commands import signed_command


def test_tachycardia_alarm_end_to_end_and_last_will(broker, mqtt_subscriber, processes,
                                                     tmp_path):
    sub = mqtt_subscriber("wearable/#", broker=broker)
    _sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "3", "--speed", "6")
    runtime = processes.start("-m", "edge", "run", "--config",
                              str(edge_config(tmp_path, pty, broker.port)))

    online = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                          and m.json()["state"] == "online", timeout=30).json()
    validate("status", online)
    assert online["interpreter"] == "ai_edge_litert"
    assert online["models"][0]["name"] == "hr"

    raised = sub.wait_for(lambda m: m.topic == "wearable/ward-7/wrist-1/alarms"
                          and m.json()["event"] == "raised", timeout=60).json()
    validate("alarm", raised)
    assert (raised["condition"], raised["priority"]) == ("hr_high", "medium")
    assert raised["value"] > 120
    cleared = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                           and m.json()["event"] == "cleared", timeout=60).json()
    validate("alarm", cleared)
    assert cleared["alarm_id"] == raised["alarm_id"] and cleared["id"] != raised["id"]

    vitals = [m.json() for m in sub.matching("wearable/ward-7/wrist-1/vitals")]
    assert len(vitals) >= 5
    for payload in vitals:
        validate("vitals", payload)
    assert max(v["value"] for v in vitals) > 130 and min(v["value"] for v in vitals) < 90
    # The NEWS2 pulse sub-score rides along with every good estimate.
    assert {v["news2"] for v in vitals if round(v["value"]) >= 131} == {3}
    assert {v["news2"] for v in vitals if 51 <= round(v["value"]) <= 90} == {0}
    # Exactly one alarm for the one tachycardia episode: no storm.
    alarms = [m.json() for m in sub.matching("wearable/ward-7/wrist-1/alarms")]
    assert [a["event"] for a in alarms] == ["raised", "cleared"]

    status = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                          and m.json().get("devices", {}).get("wrist-1", {})
                          .get("frames", {}).get("frames_ok", 0) > 0, timeout=10).json()
    validate("status", status)
    assert status["devices"]["wrist-1"]["frames"]["crc_errors"] == 0

    # Replaying the same stream (same seed: byte-identical) yields the same messages.
    recording = tmp_path / "tachycardia.bin"
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario", "tachycardia",
                    "--seed", "3", "--out", str(recording)], check=True, cwd=ROOT)
    replayed = subprocess.run(
        [sys.executable, "-m", "edge", "replay", str(recording), "--device", "wrist-1",
         "--config", str(tmp_path / "edge.toml"), "--out", "-"],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout.splitlines()
    expected_vitals = sum('/vitals"' in line for line in replayed)
    sub.wait_for_n("wearable/ward-7/wrist-1/vitals", expected_vitals, timeout=60)
    time.sleep(0.5)  # nothing more may arrive
    # The stream, not the retained present state derived from it (latest/..., active_alarms).
    published = [(m.topic, m.json()) for m in sub.messages if not m.topic.endswith("/status")
                 and "/latest/" not in m.topic and not m.topic.endswith("/active_alarms")]

    def comparable(topic, payload):
        return topic, {k: v for k, v in payload.items() if k not in ("time", "id", "alarm_id")}

    assert [comparable(r["topic"], r["payload"]) for r in map(json.loads, replayed)] == [
        comparable(t, p) for t, p in published]

    # Killed without a goodbye: the broker publishes the last will, retained.
    sub.clear()
    runtime.send_signal(signal.SIGKILL)
    will = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                        and m.json()["state"] == "offline", timeout=30).json()
    validate("status", will)
    assert will["reason"] == "connection lost"
    late = mqtt_subscriber("wearable/ward-7/status", broker=broker)
    retained = late.wait_for(lambda m: m.retain, timeout=5).json()
    assert retained["state"] == "offline"


def test_sigterm_publishes_a_clean_offline_status(broker, mqtt_subscriber, processes,
                                                   tmp_path):
    sub = mqtt_subscriber("wearable/#", broker=broker)
    _sim, pty = processes.simulator("--scenario", "normal", "--seed", "1", "--speed", "4")
    runtime = processes.start("-m", "edge", "run", "--config",
                              str(edge_config(tmp_path, pty, broker.port)))
    sub.wait_for("wearable/ward-7/wrist-1/vitals", timeout=60)
    runtime.send_signal(signal.SIGTERM)
    assert runtime.wait(timeout=15) == 0
    offline = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                           and m.json()["state"] == "offline", timeout=10).json()
    validate("status", offline)
    assert offline["reason"] == "shutdown"


def test_alarms_raised_while_the_broker_is_down_are_delivered_after_it_returns(
        mosquitto_path, processes, tmp_path):
    """The outbox: alarms survive a broker outage and arrive once it is back."""
    from deploy.broker import PrivateBroker

    persist = tmp_path / "mosquitto-db"
    persist.mkdir()
    with PrivateBroker(extra_config=f"persistence true\npersistence_location {persist}/\n"
                       "autosave_interval 1\n") as broker:
        # A persistent session: the broker keeps QoS 1 messages for it across its restart.
        received: list[dict] = []
        online = threading.Event()

        def on_message(client, userdata, msg):
            payload = json.loads(msg.payload)
            if msg.topic.endswith("/alarms"):
                received.append(payload)
            elif payload["state"] == "online":
                online.set()

        viewer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outbox-viewer",
                             clean_session=False)
        viewer.on_message = on_message
        viewer.on_connect = lambda c, *_: c.subscribe(
            [("wearable/+/+/alarms", 1), ("wearable/+/status", 1)])
        viewer.reconnect_delay_set(1, 2)
        viewer.connect(broker.host, broker.port)
        viewer.loop_start()
        try:
            time.sleep(0.5)
            sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "5",
                                           "--speed", "10")
            config = edge_config(tmp_path, pty, broker.port)
            processes.start("-m", "edge", "run", "--config", str(config),
                            stderr=subprocess.DEVNULL)
            assert online.wait(30)  # connected (and streaming) before the outage
            broker.stop()
            assert sim.wait(timeout=60) == 0  # the whole scenario played while it was down
            time.sleep(2)
            with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
                waiting = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            assert waiting == 2  # raised and cleared, kept on disk
            assert received == []
            broker.start()
            deadline = time.monotonic() + 60
            while len({a["id"] for a in received}) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            # At least once (QoS 1 across a reconnect may repeat a message): de-duplicated by
            # id, exactly the two alarms that waited in the outbox, in order.
            unique = list({a["id"]: a for a in received}.values())
            assert [a["event"] for a in unique] == ["raised", "cleared"]
            for payload in received:
                validate("alarm", payload)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
                    if db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0:
                        break
                time.sleep(0.2)
            else:
                pytest.fail("acknowledged alarms were not removed from the outbox")
        finally:
            viewer.loop_stop()
            viewer.disconnect()


def test_sighup_reloads_limits_and_survives_a_bad_model(broker, mqtt_subscriber, processes,
                                                        tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    config = edge_config(tmp_path, "PTY", broker.port)
    sub = mqtt_subscriber("wearable/#", broker=broker)
    _sim, pty = processes.simulator("--scenario", "normal", "--seed", "2", "--speed", "4")
    text = config.read_text().replace(str(ROOT / "models"), str(models)).replace("PTY", pty)
    config.write_text(text)
    runtime = processes.start("-m", "edge", "run", "--config", str(config))
    first = sub.wait_for("wearable/ward-7/wrist-1/vitals", timeout=60).json()

    # A tampered model at reload: refused, the old one keeps running, status says why and a
    # technical alarm is raised.
    good = (models / "hr.tflite").read_bytes()
    (models / "hr.tflite").write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    runtime.send_signal(signal.SIGHUP)
    status = sub.wait_for(lambda m: m.topic.endswith("/status")
                          and m.json().get("reload_error"), timeout=10).json()
    validate("status", status)
    assert "does not match its manifest" in status["reload_error"]
    failed = sub.wait_for(lambda m: m.topic.endswith("/alarms"), timeout=10).json()
    validate("alarm", failed)
    assert (failed["condition"], failed["event"], failed["kind"]) == (
        "model_error", "raised", "technical")
    sub.wait_for(lambda m: m.topic.endswith("/vitals")
                 and m.json()["device_time_s"] > first["device_time_s"] + 4, timeout=30)

    # Fixed model and a new limit below the patient's rate: applied without a restart.
    (models / "hr.tflite").write_bytes(good)
    config.write_text(text + "[alarms.hr_high]\nthreshold = 50\n")
    runtime.send_signal(signal.SIGHUP)
    raised = sub.wait_for(lambda m: m.topic.endswith("/alarms") and m.json()["event"] == "raised"
                          and m.json()["condition"] == "hr_high", timeout=60).json()
    assert raised["limit"] == 50
    # The reload that worked ended the model_error alarm.
    sub.wait_for(lambda m: m.topic.endswith("/alarms") and m.json()["event"] == "cleared"
                 and m.json()["alarm_id"] == failed["alarm_id"], timeout=10)
    assert runtime.poll() is None
    ok = sub.wait_for(lambda m: m.topic.endswith("/status") and m.json()["state"] == "online"
                      and m.json().get("reload_error", "x") is None, timeout=10).json()
    validate("status", ok)
    # Neither reload cost a window: estimates kept coming every hop.
    times = [m.json()["device_time_s"] for m in sub.matching("wearable/ward-7/wrist-1/vitals")]
    assert len(times) >= 5 and set(np.diff(times)) == {2.0}


def test_acknowledge_over_mqtt_and_refusals(broker, mqtt_subscriber, mqtt_publish, processes,
                                            tmp_path):
    token = "nurse-token-0123456"
    _sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "3", "--speed", "2")
    config = edge_config(tmp_path, pty, broker.port)
    config.write_text(config.read_text() + "[alarms.hr_high]\npriority = 'high'\n"
                      f"[commands.operators]\nnurse = '{token}'\n")
    sub = mqtt_subscriber("wearable/#", broker=broker)
    processes.start("-m", "edge", "run", "--config", str(config))
    raised = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                          and m.json()["event"] == "raised", timeout=60).json()
    cmd_topic = "wearable/ward-7/wrist-1/cmd"

    def reply(command_id):
        return sub.wait_for(lambda m: m.topic == "wearable/ward-7/wrist-1/reply"
                            and m.json()["id"] == command_id, timeout=10).json()

    mqtt_publish(cmd_topic, json.dumps(signed_command(
        "nurse", "guess-guess-guess-guess", "wrist-1", "acknowledge", {"condition": "hr_high"},
        command_id="bad-secret")), broker=broker)
    refused = reply("bad-secret")
    validate("reply", refused)
    assert refused["ok"] is False and "not authorised" in refused["reason"]
    mqtt_publish(cmd_topic, "{oops", broker=broker)
    broken = sub.wait_for(lambda m: m.topic.endswith("/reply") and m.json()["id"] is None,
                          timeout=10).json()
    validate("reply", broken)
    assert "invalid JSON" in broken["reason"]
    mqtt_publish(cmd_topic, json.dumps(signed_command(
        "nurse", token, "wrist-1", "calibrate", {"systolic": 400, "diastolic": 80},
        command_id="cal-400")), broker=broker)
    implausible = reply("cal-400")
    validate("reply", implausible)
    assert implausible["ok"] is False and "'systolic' must be a cuff reading" in (
        implausible["reason"])

    mqtt_publish(cmd_topic, json.dumps(signed_command(
        "nurse", token, "wrist-1", "acknowledge", {"condition": "hr_high"},
        command_id="ack-1")), broker=broker)
    assert reply("ack-1")["ok"] is True
    ack = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                       and m.json()["event"] == "acknowledged", timeout=10).json()
    validate("alarm", ack)
    assert ack["alarm_id"] == raised["alarm_id"] and ack["operator"] == "nurse"
    # The refused commands cost nothing: the alarm still ends normally, nothing is lost.
    cleared = sub.wait_for(lambda m: m.topic.endswith("/alarms")
                           and m.json()["event"] == "cleared", timeout=60).json()
    assert cleared["alarm_id"] == raised["alarm_id"]
    events = [m.json()["event"] for m in sub.matching("wearable/ward-7/wrist-1/alarms")]
    assert events == ["raised", "acknowledged", "cleared"]
