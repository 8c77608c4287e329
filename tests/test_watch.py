"""`wearable-edge watch` against a real broker: in a real terminal (tmux) it shows the node's
present state at once and its a / s keys send commands the runtime's own parser accepts; with
stdout a pipe it prints plain lines. The node's messages are published by the test (valid
against their schemas), retained where the runtime retains them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from e2e import ROOT, validate

from edge.commands import parse_command
from edge.config import CommandsConfig
from edge.homeassistant import PresentState
from edge.messages import ALARM_SCHEMA, STATUS_SCHEMA, VITALS_SCHEMA, Message, Topics, utc_now
from edge.watch import Board, sparkline

SECRET = "s3cret-for-the-nurse-station"


def vitals(vital: str, value: float, quality: str = "good", unit: str = "bpm") -> dict:
    payload = {"schema": VITALS_SCHEMA, "node": "ward-7", "device": "wrist-1",
               "time": utc_now(), "device_time_s": 42.0, "vital": vital, "value": value,
               "unit": unit, "quality": quality, "motion_g": 0.01, "model": "hr@1.0.0",
               "details": {}, "news2": 3 if quality == "good" else None}
    validate("vitals", payload)
    return payload


def alarm(event: str = "raised") -> dict:
    payload = {"schema": ALARM_SCHEMA, "id": uuid.uuid4().hex, "alarm_id": "b8" * 16,
               "node": "ward-7", "device": "wrist-1", "time": utc_now(), "device_time_s": 46.0,
               "onset_device_time_s": 42.0, "condition": "hr_high", "event": event,
               "priority": "medium", "kind": "physiological", "value": 143.2, "limit": 120,
               "unit": "bpm", "message": "Heart rate high: 143 bpm (above limit 120)",
               "operator": None}
    validate("alarm", payload)
    return payload


def publish_node(mqtt_publish, broker) -> None:
    """What a runtime in alarm leaves retained on the broker."""
    status = {"schema": STATUS_SCHEMA, "node": "ward-7", "state": "online", "time": utc_now(),
              "unix_time": time.time()}
    mqtt_publish("wearable/ward-7/status", json.dumps(status), broker=broker, retain=True)
    mqtt_publish("wearable/ward-7/wrist-1/latest/heart_rate",
                 json.dumps(vitals("heart_rate", 143)), broker=broker, retain=True)
    (active,) = PresentState(Topics("wearable", "ward-7"), ["wrist-1"]).observe(
        Message("wearable/ward-7/wrist-1/alarms", alarm(), qos=1))
    mqtt_publish(active.topic, json.dumps(active.payload), broker=broker, retain=True)


def write_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'node = "ward-7"\n[mqtt]\nport = {port}\n'
                    f'[commands.operators]\nnurse-station = "{SECRET}"\n')
    return path


def test_plain_lines_when_stdout_is_not_a_terminal(broker, mqtt_publish, tmp_path):
    publish_node(mqtt_publish, broker)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "watch", "--config", str(write_config(tmp_path,
                                                                             broker.port))],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "watching wearable/ward-7/status" in lines[0]
        # The retained present state, at once, whatever order the broker sends it in.
        assert any("node ward-7 online" in line for line in lines), lines
        assert any("ward-7/wrist-1 heart_rate 143 bpm good" in line for line in lines), lines
        assert any("active alarms: hr_high (medium, raised)" in line for line in lines), lines
        # Then live events.
        mqtt_publish("wearable/ward-7/wrist-1/alarms", json.dumps(alarm("cleared")),
                     broker=broker)
        line = proc.stdout.readline()
        assert "ALARM cleared hr_high (medium)" in line, line
        assert "\x1b[" not in "".join(lines) + line  # no escape codes in a pipe
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_a_broker_that_is_not_there_is_one_line(tmp_path):
    from deploy.broker import free_port

    result = subprocess.run([sys.executable, "-m", "edge", "watch", "--port",
                             str(free_port())], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not reachable" in result.stderr


needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("CI"),
    reason="tmux is not installed (sudo apt-get install tmux): the terminal test needs it")


def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                          text=True, check=True).stdout


def wait_screen(session: str, *needles: str, timeout: float = 30.0) -> str:
    """Poll the terminal until it shows every needle: the view redraws at least 5 times a s."""
    deadline = time.monotonic() + timeout
    while True:
        text = screen(session)
        if all(n in text for n in needles):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"the screen never showed {needles}:\n{text}")
        time.sleep(0.1)


@needs_tmux
def test_in_a_real_terminal_keys_acknowledge_and_silence(broker, mqtt_publish,
                                                         mqtt_subscriber, tmp_path):
    publish_node(mqtt_publish, broker)
    commands = mqtt_subscriber("wearable/ward-7/+/cmd", broker=broker)
    session = f"watch-{uuid.uuid4().hex[:8]}"
    command = (f"cd {ROOT} && {sys.executable} -m edge watch --config "
               f"{write_config(tmp_path, broker.port)} --silence-min 3")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "110", "-y", "24",
                    "env", "TERM=xterm-256color", "sh", "-c", command], check=True)
    try:
        text = wait_screen(session, "ward-7/wrist-1", "HR", "143", "MEDIUM", "hr_high")
        assert "nodes: ward-7 online" in text
        # Live vitals extend the trend of the good readings (the retained 143 first).
        for value in (88, 96, 118, 131, 143):
            mqtt_publish("wearable/ward-7/wrist-1/vitals",
                         json.dumps(vitals("heart_rate", value)), broker=broker)
        wait_screen(session, sparkline([143, 88, 96, 118, 131, 143]))
        subprocess.run(["tmux", "send-keys", "-t", session, "a"], check=True)
        ack = commands.wait_for("wearable/ward-7/wrist-1/cmd", timeout=20)
        parsed = parse_command(ack.payload, CommandsConfig({"nurse-station": SECRET}), "wrist-1")
        assert (parsed.command, parsed.condition, parsed.operator) == (
            "acknowledge", "hr_high", "nurse-station")
        wait_screen(session, "sent acknowledge hr_high on wrist-1 as nurse-station")
        subprocess.run(["tmux", "send-keys", "-t", session, "s"], check=True)
        (_, silence) = commands.wait_for_n("wearable/ward-7/wrist-1/cmd", 2, timeout=20)
        parsed = parse_command(silence.payload, CommandsConfig({"nurse-station": SECRET}),
                               "wrist-1")
        assert (parsed.command, parsed.minutes) == ("silence", 3.0)
        # The runtime's answer shows up on the screen.
        reply = {"schema": "wearable-edge/reply/1", "node": "ward-7", "device": "wrist-1",
                 "id": parsed.id, "ok": True, "reason": "hr_high silenced for 3 min",
                 "time": utc_now()}
        validate("reply", reply)
        mqtt_publish("wearable/ward-7/wrist-1/reply", json.dumps(reply), broker=broker)
        final = wait_screen(session, "ok, hr_high silenced for 3 min")
        if os.environ.get("WATCH_CAPTURE"):  # docs: WATCH_CAPTURE=file pytest -k terminal
            Path(os.environ["WATCH_CAPTURE"]).write_text(final)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 20
        while subprocess.run(["tmux", "has-session", "-t", session],
                             capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "q did not end the view"
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_the_board_ignores_what_is_not_its_own():
    board = Board("wearable")
    assert board.apply("other/ward-7/status", {"state": "online"}) is None
    assert board.apply("wearable/ward-7/wrist-1/vitals", {"no": "vital"}) is None
    # Anyone allowed to publish could send these: none may reach the screen or break it.
    hostile = vitals("heart_rate", 80) | {"value": "80; rm -rf"}
    assert board.apply("wearable/ward-7/wrist-1/vitals", hostile) is None
    assert board.apply("wearable/ward-7/wrist-1/active_alarms", {"alarms": [{"x": 1}]}) is None
    assert board.apply("wearable/ward-7/wrist-1/alarms", {"event": "raised"}) is None
    assert board.devices[("ward-7", "wrist-1")].vitals == {}
    assert all("rm -rf" not in text for text, _ in board.lines(100))
    line = board.apply("wearable/ward-7/wrist-1/vitals", vitals("heart_rate", 60, "motion"))
    assert line is not None and line.endswith("60 bpm motion")
    rows = [text for text, _ in board.lines(100)]
    assert any("(60)?" in text for text in rows)  # not good: shown as doubtful
