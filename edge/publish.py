"""MQTT publishing through paho-mqtt 2.x with a durable outbox for alarms.

Alarms are written to an SQLite (WAL) outbox before they are handed to paho and deleted only
when the broker acknowledges them (PUBACK), so a broker outage or a crash loses none: the
outbox is re-sent on every (re)connect. Vitals are QoS 0 (the next one supersedes a lost one).
Status is retained, and a last will marks the node offline if the connection drops.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.errors import BrokerError, ConfigError
from edge.messages import Message, Topics, status_payload
from edge.state import private_dir

log = logging.getLogger(__name__)
WAL_LIMIT_BYTES = 256 * 1024
# Commands waiting for the main thread; beyond this a flood is dropped, not buffered.
MAX_PENDING_COMMANDS = 100


class Outbox:
    """Messages not yet acknowledged by the broker, on disk."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent, "mqtt.outbox")
        # Health data: 0600 before SQLite opens it (its -wal/-shm files copy the mode).
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(path, 0o600)
            # One connection shared by the ingest threads and paho's thread, behind a lock.
            self._db = sqlite3.connect(str(path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"'mqtt.outbox': {path} cannot be opened ({err}); fix its "
                              "permissions or point mqtt.outbox elsewhere") from None
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
        # After a checkpoint the WAL file is cut back to this, so a drained backlog leaves
        # no 4 MB file behind.
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self._dirty = False
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL)"
        )
        self._lock = threading.Lock()

    def add(self, msg_id: str, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO outbox (id, topic, payload, qos) "
                             "VALUES (?, ?, ?, ?)", (msg_id, topic, payload, qos))

    def remove(self, msg_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (msg_id,))
            self._dirty = True

    def checkpoint_if_drained(self) -> None:
        """Once the outbox is empty, fold the WAL back into the database and truncate it."""
        with self._lock:
            if not self._dirty or self._db.execute(
                    "SELECT COUNT(*) FROM outbox").fetchone()[0]:
                return
            self._dirty = False
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def pending(self) -> list[tuple[str, str, bytes, int]]:
        with self._lock:
            return self._db.execute(
                "SELECT id, topic, payload, qos FROM outbox ORDER BY rowid").fetchall()

    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def tls_context(config: MqttConfig, resolve: Callable[[str], Path]) -> ssl.SSLContext:
    """The client TLS context for [mqtt]; ConfigError naming the key if a file is unusable."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if config.ca_file:
            context.load_verify_locations(cafile=str(resolve(config.ca_file)))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"'mqtt.ca_file' {resolve(config.ca_file)} is not a usable CA "
                          f"certificate ({err}); give the PEM file of the CA that signed the "
                          "broker's certificate") from None
    try:
        if config.cert_file:
            context.load_cert_chain(str(resolve(config.cert_file)),
                                    str(resolve(config.key_file)))
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"'mqtt.cert_file'/'mqtt.key_file' cannot be loaded ({err}); give "
                          "this node's PEM client certificate and its matching, unencrypted "
                          "private key") from None
    # Off only on request (documented as dangerous): then any certificate the CA signed is
    # accepted, whatever name it was issued for.
    context.check_hostname = config.tls_check_hostname
    return context


class Publisher:
    """One MQTT connection for the whole node."""

    def __init__(self, config: MqttConfig, topics: Topics, outbox: Outbox,
                 status: Callable[[str], dict[str, Any]],
                 resolve: Callable[[str], Path] = Path) -> None:
        """`status(state)` builds the status payload, e.g. status("online"); `resolve` turns a
        path option into a path (relative to the config file)."""
        self.config, self.topics, self.outbox, self.status = config, topics, outbox, status
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"wearable-edge-{topics.node}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
        )
        if config.tls:
            self.client.tls_set_context(tls_context(config, resolve))
        if config.username:
            self.client.username_pw_set(config.username, config.password or None)
        will = status_payload(topics.node, "offline", reason="connection lost")
        self.client.will_set(topics.status, json.dumps(will), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=config.reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue(MAX_PENDING_COMMANDS)
        self.dropped_commands = 0
        # Durable sends register their mid under _lock while calling paho; paho's thread only
        # queues acks (never takes _lock), so the two threads cannot deadlock.
        self._lock = threading.Lock()
        self._inflight: dict[int, str] = {}  # paho mid -> outbox id
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._answered = threading.Event()  # the first CONNACK, accepted or not
        self._resend = threading.Event()
        self._refused: str | None = None
        self._closed_early: str | None = None  # the link dropped before any CONNACK
        self.state = "connecting"  # or connected, unreachable, refused (status, logs)
        # Hooks (edge/homeassistant.py): `observers` see every published message and return
        # more to publish (retained present state); `on_connect` ones give messages to
        # publish after every (re)connect (retained state, discovery configs).
        self.observers: list[Callable[[Message], Iterable[Message]]] = []
        self.on_connect: list[Callable[[], Iterable[Message]]] = []

    # -- lifecycle ---------------------------------------------------------------------

    def connect(self) -> None:
        """Start the connection and the network thread. A broker that is not there (yet) is
        no reason to stop monitoring: the client keeps retrying and alarms wait in the outbox.
        A broker that is there but refuses us (credentials, TLS) is a configuration error:
        BrokerError, at start, naming what to fix."""
        c = self.config
        where = f"{c.host}:{c.port}"
        try:
            self.client.connect(c.host, c.port, keepalive=c.keepalive_s)
        except ssl.SSLError as err:
            raise BrokerError(
                f"TLS handshake with the MQTT broker {where} failed "
                f"({getattr(err, 'verify_message', None) or err.reason or err}); check [mqtt] "
                "ca_file (the CA that signed the broker's certificate), cert_file/key_file, "
                "and that host is a name in the broker's certificate") from None
        except OSError as err:
            self.state = "unreachable"
            log.warning("MQTT broker %s is not reachable (%s); monitoring goes on, alarms are "
                        "kept in the outbox and sent when it comes; retrying every %g s at most",
                        where, err.strerror or err, c.reconnect_max_s)
            self.client.loop_start()  # paho retries the first connection by itself
            return
        self.client.loop_start()
        if not self._answered.wait(c.connect_timeout_s):
            log.warning("no MQTT answer from %s within %g s%s; monitoring goes on, retrying",
                        where, c.connect_timeout_s,
                        "" if c.tls else " (a TLS listener? then set mqtt.tls = true)")
            return
        if self._refused:
            self.client.loop_stop()
            raise BrokerError(f"MQTT broker {where} refused the connection ({self._refused}); "
                              "check [mqtt] username/password and the broker's password file")
        if self._closed_early and c.tls:
            # After a TLS handshake, a broker that hangs up before answering rejected the
            # client certificate (missing, expired, or signed by a CA it does not trust).
            self.client.loop_stop()
            raise BrokerError(f"TLS: the MQTT broker {where} closed the connection before "
                              f"answering ({self._closed_early}); it most likely requires a "
                              "client certificate it accepts: check [mqtt] cert_file/key_file")
        if self._closed_early:
            log.warning("the MQTT broker %s closed the connection before answering (%s); a TLS "
                        "listener? then set mqtt.tls = true. Monitoring goes on, retrying",
                        where, self._closed_early)

    def close(self, final_status: dict[str, Any]) -> None:
        """Publish the final status, wait briefly for acks, disconnect cleanly."""
        if self._connected.is_set():
            info = self.client.publish(self.topics.status, json.dumps(final_status), qos=1,
                                       retain=True)
            info.wait_for_publish(timeout=2.0)
        self.tick()
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- publishing --------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        self._publish(message)
        for observe in self.observers:
            for extra in observe(message):
                self._publish(extra)

    def _publish(self, message: Message) -> None:
        payload = json.dumps(message.payload, separators=(",", ":")).encode()
        if not message.durable:
            if self._connected.is_set():
                self.client.publish(message.topic, payload, qos=message.qos,
                                    retain=message.retain)
            return
        msg_id = message.payload.get("id") or uuid.uuid4().hex
        self.outbox.add(msg_id, message.topic, payload, message.qos)
        if self._connected.is_set():  # otherwise the next connect sends it from the outbox
            self._send_durable(msg_id, message.topic, payload, message.qos)

    def publish_status(self, payload: dict[str, Any]) -> None:
        if self._connected.is_set():
            self.client.publish(self.topics.status, json.dumps(payload), qos=1, retain=True)

    def _send_durable(self, msg_id: str, topic: str, payload: bytes, qos: int) -> None:
        with self._lock:
            info = self.client.publish(topic, payload, qos=qos)
            # NO_CONN: the link died under us and paho keeps the message queued to send on
            # reconnect; tracking its mid stops the outbox re-send from duplicating it.
            # Anything else (queue full): it stays in the outbox for the next re-send.
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._inflight[info.mid] = msg_id

    def tick(self) -> None:
        """Housekeeping from the runtime's main thread: forget acknowledged alarms and
        re-send the outbox after a (re)connect."""
        acked = []
        with self._lock:
            while True:
                try:
                    mid = self._acks.get_nowait()
                except queue.Empty:
                    break
                msg_id = self._inflight.pop(mid, None)  # None: a QoS 0 message's mid
                if msg_id is not None:
                    acked.append(msg_id)
            inflight = set(self._inflight.values())
        for msg_id in acked:
            self.outbox.remove(msg_id)
        if acked:
            self.outbox.checkpoint_if_drained()
        if self._resend.is_set() and self._connected.is_set():
            self._resend.clear()
            pending = [row for row in self.outbox.pending() if row[0] not in inflight]
            if pending:
                log.info("re-sending %d alarm message(s) from the outbox", len(pending))
            for msg_id, topic, payload, qos in pending:
                self._send_durable(msg_id, topic, payload, qos)

    @property
    def unacknowledged(self) -> int:
        return self.outbox.depth()

    # -- paho callbacks (network thread) -----------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if self._answered.is_set() and self._refused is None:  # else connect() says it
                log.error("MQTT broker %s:%s refused the connection (%s); retrying",
                          self.config.host, self.config.port, reason_code)
            self._refused, self.state = str(reason_code), "refused"
            self._answered.set()
            return
        log.info("connected to MQTT broker %s:%s; %d alarm message(s) waiting in the outbox",
                 self.config.host, self.config.port, self.outbox.depth())
        self._refused, self.state = None, "connected"
        self._connected.set()
        self._answered.set()
        self._resend.set()
        client.subscribe(self.topics.commands, qos=1)
        self.publish_status(self.status("online"))
        for hook in self.on_connect:
            for message in hook():
                self._publish(message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if not self._answered.is_set():
            self._closed_early = str(reason_code)
            self._answered.set()
        if was_connected and reason_code != 0:
            self.state = "unreachable"
            log.warning("lost the MQTT broker (%s); reconnecting every %g s at most, alarms "
                        "kept in the outbox", reason_code, self.config.reconnect_max_s)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put(mid)

    def _on_message(self, client, userdata, message) -> None:
        try:  # handled on the main thread; a flood is dropped here, not buffered
            self.commands.put_nowait((message.topic, message.payload))
        except queue.Full:
            self.dropped_commands += 1
            if self.dropped_commands in (1, 10, 100) or self.dropped_commands % 1000 == 0:
                log.warning("command flood: %d command message(s) dropped unread",
                            self.dropped_commands)
