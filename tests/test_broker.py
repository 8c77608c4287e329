"""The private mosquitto the other tests stand on: lifecycle, restart on the same port,
pub/sub, authentication and ACLs. All against a real broker."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from deploy import broker as broker_mod
from deploy.broker import (
    BrokerUnavailable,
    PrivateBroker,
    PrivateBrokerError,
    find_mosquitto,
    free_port,
    hash_password,
    write_password_file,
)
from wire.errors import WearableError


def accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def test_find_mosquitto_returns_an_executable(mosquitto_path: str) -> None:
    assert os.access(mosquitto_path, os.X_OK)
    assert find_mosquitto() == mosquitto_path


def test_missing_mosquitto_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(broker_mod, "FALLBACK_PATHS", (str(tmp_path / "mosquitto"),))
    with pytest.raises(BrokerUnavailable) as caught:
        find_mosquitto()
    assert isinstance(caught.value, WearableError)
    assert "sudo apt-get install mosquitto" in str(caught.value)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_broker_listens_on_loopback_only(broker: PrivateBroker) -> None:
    assert broker.running
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    assert f"listener {broker.port} 127.0.0.1" in broker.config_text()
    assert accepts(broker.host, broker.port)


def test_publish_subscribe_round_trip(broker: PrivateBroker, mqtt_subscriber, mqtt_publish) -> None:
    sub = mqtt_subscriber("wearable/#")
    mqtt_publish("wearable/dev1/vitals", b'{"hr": 72}')
    mqtt_publish("other/topic", b"ignored")
    mqtt_publish("wearable/dev1/status", b'{"online": true}', retain=True)

    vitals = sub.wait_for("wearable/+/vitals")
    assert vitals.json() == {"hr": 72}
    assert vitals.retain is False
    sub.wait_for(lambda m: m.topic.endswith("/status"))
    assert [m.topic for m in sub.messages] == ["wearable/dev1/vitals", "wearable/dev1/status"]

    # A late subscriber gets the retained status, flagged as retained.
    late = mqtt_subscriber("wearable/+/status")
    assert late.wait_for("wearable/dev1/status").retain is True


def test_wait_for_reports_what_arrived(broker: PrivateBroker, mqtt_subscriber, mqtt_publish):
    sub = mqtt_subscriber("a/#")
    mqtt_publish("a/b", b"hello")
    with pytest.raises(AssertionError, match="a/b"):
        sub.wait_for("a/never", timeout=0.3)


def test_stop_and_start_on_the_same_port(
    broker: PrivateBroker, mqtt_subscriber, mqtt_publish
) -> None:
    port = broker.port
    sub = mqtt_subscriber("wearable/#")
    mqtt_publish("wearable/dev1/status", b"before", retain=True)
    sub.wait_for("wearable/dev1/status")

    broker.stop()
    assert not broker.running
    assert not accepts(broker.host, port)

    broker.start()
    assert broker.running
    assert broker.port == port
    assert accepts(broker.host, port)

    # The subscriber reconnects and re-subscribes by itself, as the runtime's client must.
    sub.wait_subscribed(timeout=10)
    sub.clear()
    mqtt_publish("wearable/dev1/alarm", b"after")
    assert sub.wait_for("wearable/dev1/alarm").payload == b"after"
    # Persistence is off: the retained message did not survive the restart.
    assert sub.matching("wearable/dev1/status") == []


def test_context_exit_stops_the_process_and_removes_its_files(mosquitto_path: str) -> None:
    with PrivateBroker() as private:
        pid = private.pid
        workdir = private.workdir
        assert pid is not None and workdir.is_dir()
        assert private.log_path.exists()
    assert not private.running
    assert not workdir.exists()
    assert not accepts(private.host, private.port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_port_in_use_fails_with_the_log_tail(broker: PrivateBroker) -> None:
    second = PrivateBroker(broker.port)
    with pytest.raises(PrivateBrokerError, match="Address already in use"):
        second.start()
    assert not second.running
    second.close()
    assert broker.running


def test_hash_matches_mosquitto_passwd_format() -> None:
    # Vector produced by `mosquitto_passwd -b pw alice secret` (mosquitto 2.0.11).
    salt = bytes.fromhex("0788bc661e88ef9d77d3846f")
    expected = (
        "$7$101$B4i8Zh6I751304Rv$04vILpe9FRl6vUanfr8lWPgkvWQSC/B/NBcc78K5kcUaZf/h4IQNTznQXbr7"
        "sOZsKwSALlgSZHFt/Yutl6mvog=="
    )
    assert hash_password("secret", salt=salt) == expected


def test_password_file_and_acl(mosquitto_path: str, tmp_path: Path, mqtt_subscriber, mqtt_publish):
    passwd = write_password_file(tmp_path / "passwd", {"edge": "e-pass", "nurse": "n-pass"})
    acl = tmp_path / "acl"
    acl.write_text(
        "user edge\n"
        "topic readwrite wearable/#\n"
        "user nurse\n"
        "topic read wearable/#\n"
        "topic write wearable/+/cmd/#\n"
    )
    with PrivateBroker(password_file=passwd, acl_file=acl) as private:
        assert "allow_anonymous false" in private.config_text()
        with pytest.raises(ConnectionError):
            mqtt_subscriber("wearable/#", broker=private)
        with pytest.raises(ConnectionError):
            mqtt_subscriber("wearable/#", broker=private, username="nurse", password="wrong")

        edge = mqtt_subscriber(
            "wearable/+/cmd/#", broker=private, username="edge", password="e-pass"
        )
        nurse = mqtt_subscriber("wearable/#", broker=private, username="nurse", password="n-pass")

        def as_nurse(topic: str, payload: bytes) -> None:
            mqtt_publish(topic, payload, broker=private, username="nurse", password="n-pass")

        mqtt_publish(
            "wearable/d1/alarm", b"real", broker=private, username="edge", password="e-pass"
        )
        assert nurse.wait_for("wearable/d1/alarm").payload == b"real"

        # The ACL silently drops the nurse's forged alarm; the command gets through.
        as_nurse("wearable/d1/alarm", b"forged")
        as_nurse("wearable/d1/cmd/ack", b"ack-1")
        assert edge.wait_for("wearable/d1/cmd/ack").payload == b"ack-1"
        nurse.wait_for("wearable/d1/cmd/ack")  # delivered in order, so the forgery is settled
        assert [m.payload for m in nurse.matching("wearable/d1/alarm")] == [b"real"]


# -- the runtime against a broker that is late, strict or gone (issue #12) --------------------


def _runtime_config(tmp_path: Path, pty: str, port: int, extra: str = "") -> Path:
    from e2e import edge_config

    config = edge_config(tmp_path, pty, port)
    config.write_text(config.read_text().replace("[mqtt]\n", f"[mqtt]\n{extra}"))
    return config


def test_runtime_starts_without_a_broker_and_delivers_the_backlog_when_it_comes(
        mosquitto_path: str, processes, tmp_path: Path) -> None:
    import json
    import sqlite3
    import threading
    import time
    import uuid

    import paho.mqtt.client as mqtt

    # Persistence, so a subscriber's session (and the messages queued for it) survives the
    # broker's absence: nothing the runtime sends after the broker returns can be missed.
    private = PrivateBroker()
    private.extra_config = f"persistence true\npersistence_location {private.workdir}/\n"
    with private:
        received: list[dict] = []
        arrived = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, clean_session=False,
                             client_id=f"test-nurse-{uuid.uuid4().hex[:8]}")
        client.reconnect_delay_set(1, 1)

        def on_message(_c, _u, msg) -> None:
            if msg.topic.endswith("/alarms"):
                received.append(json.loads(msg.payload))
                arrived.set()

        subscribed = threading.Event()
        client.on_connect = lambda c, *_: c.subscribe("wearable/#", qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = on_message
        client.connect(private.host, private.port)
        client.loop_start()
        try:
            assert subscribed.wait(10)
            private.stop()  # the broker is down before the runtime starts (a power cut)

            _sim, pty = processes.simulator("--scenario", "tachycardia", "--seed", "3",
                                            "--speed", "4")
            runtime = processes.start("-m", "edge", "run", "--config",
                                      str(_runtime_config(tmp_path, pty, private.port)))
            outbox = tmp_path / "outbox.sqlite"
            deadline = time.monotonic() + 90
            queued = 0
            while queued == 0:  # an alarm raised while the broker is away waits on disk
                assert runtime.poll() is None, "the runtime stopped without a broker"
                assert time.monotonic() < deadline, "no alarm reached the outbox"
                if outbox.exists():
                    with sqlite3.connect(outbox) as db:
                        try:
                            queued = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                        except sqlite3.OperationalError:  # created, its table not yet
                            queued = 0
                time.sleep(0.2)
            assert stat.S_IMODE(os.stat(outbox).st_mode) == 0o600

            private.start()
            assert arrived.wait(20), "the backlog did not arrive after the broker returned"
            assert received[0]["event"] == "raised" and received[0]["condition"] == "hr_high"
            assert runtime.poll() is None
        finally:
            client.disconnect()
            client.loop_stop()


def test_refused_credentials_are_a_clear_error_at_start(mosquitto_path: str, tmp_path: Path):
    import subprocess
    import sys

    from e2e import ROOT

    passwd = write_password_file(tmp_path / "passwd", {"wearable-edge": "right-password"})
    with PrivateBroker(password_file=passwd) as private:
        config = tmp_path / "edge.toml"
        config.write_text(f'models_dir = "{ROOT / "models"}"\n[mqtt]\nport = {private.port}\n'
                          f"username = 'wearable-edge'\npassword = 'wrong'\n"
                          f"outbox = '{tmp_path / 'outbox.sqlite'}'\n")
        result = subprocess.run([sys.executable, "-m", "edge", "run", "--log-level", "error",
                                 "--config", str(config)], capture_output=True, text=True,
                                timeout=60, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "refused the connection" in line and "username/password" in line


def test_the_outbox_wal_shrinks_once_drained(tmp_path: Path) -> None:
    from edge.publish import WAL_LIMIT_BYTES, Outbox

    outbox = Outbox(tmp_path / "state" / "outbox.sqlite")
    for i in range(3000):
        outbox.add(f"m{i}", "wearable/n/d/alarms", b"x" * 1500, 1)
    wal = tmp_path / "state" / "outbox.sqlite-wal"
    assert wal.stat().st_size > 4 * WAL_LIMIT_BYTES
    for i in range(3000):
        outbox.remove(f"m{i}")
    outbox.checkpoint_if_drained()
    assert outbox.depth() == 0
    assert wal.stat().st_size <= WAL_LIMIT_BYTES
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (tmp_path / "state").iterdir()} == {0o600}
    outbox.close()


class ShippedBroker(PrivateBroker):
    """mosquitto with deploy/mosquitto.conf and deploy/mosquitto.acl as shipped, adapted only
    to a free port and temp paths."""

    def __init__(self, passwd: Path) -> None:
        super().__init__()
        self.passwd = passwd

    def config_text(self) -> str:
        deploy = Path(__file__).resolve().parents[1] / "deploy"
        acl = self.workdir / "wearable.acl"
        acl.write_text((deploy / "mosquitto.acl").read_text())
        text = (deploy / "mosquitto.conf").read_text()
        for old, new in (("listener 1883 127.0.0.1", f"listener {self.port} {self.host}"),
                         ("/etc/mosquitto/wearable.passwd", str(self.passwd)),
                         ("/etc/mosquitto/wearable.acl", str(acl)),
                         ("persistence true", "persistence false")):
            assert old in text, old
            text = text.replace(old, new)
        text += f"log_dest file {self.log_path}\n"
        return text + ("user root\n" if os.geteuid() == 0 else "")


def test_the_shipped_broker_config_keeps_health_data_private(
        mosquitto_path: str, tmp_path: Path, mqtt_subscriber, mqtt_publish) -> None:
    passwd = write_password_file(tmp_path / "passwd", {"wearable-edge": "e-pass",
                                                       "operator": "o-pass"})
    with ShippedBroker(passwd) as shipped:
        assert "allow_anonymous true" not in shipped.config_text()
        with pytest.raises(ConnectionError, match="refused"):
            mqtt_subscriber("wearable/#", broker=shipped)  # anonymous: nothing at all

        runtime = mqtt_subscriber("wearable/+/+/cmd", broker=shipped, username="wearable-edge",
                                  password="e-pass")
        nurse = mqtt_subscriber("wearable/#", broker=shipped, username="operator",
                                password="o-pass")

        def send(user: str, password: str, topic: str, payload: bytes) -> None:
            mqtt_publish(topic, payload, broker=shipped, username=user, password=password)

        send("wearable-edge", "e-pass", "wearable/ward-7/wrist-1/vitals", b"hr 72")
        send("operator", "o-pass", "wearable/ward-7/wrist-1/alarms", b"forged")
        send("operator", "o-pass", "wearable/ward-7/wrist-1/cmd", b"signed command")
        assert runtime.wait_for("wearable/ward-7/wrist-1/cmd").payload == b"signed command"
        send("wearable-edge", "e-pass", "wearable/ward-7/wrist-1/reply", b"done")
        nurse.wait_for("wearable/ward-7/wrist-1/reply")  # in order: all before it has settled
        # The nurse station sees the vitals and the reply, never the command (which only the
        # runtime reads) nor its own forged alarm.
        assert [m.topic.rsplit("/", 1)[1] for m in nurse.messages] == ["vitals", "reply"]
