"""MQTT publishing through paho-mqtt 2.x with a durable outbox for alarms.

Alarms are written to an SQLite (WAL) outbox before they are handed to paho and deleted only
when the broker acknowledges them (PUBACK), so a broker outage or a crash loses none: the
outbox is re-sent on every (re)connect. Vitals are QoS 0 (the next one supersedes a lost one).
Status is retained, and a last will marks the node offline if the connection drops.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.errors import BrokerError
from edge.messages import Message, Topics, status_payload

log = logging.getLogger(__name__)


class Outbox:
    """Messages not yet acknowledged by the broker, on disk."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the ingest threads and paho's thread, behind a lock.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
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


class Publisher:
    """One MQTT connection for the whole node."""

    def __init__(self, config: MqttConfig, topics: Topics, outbox: Outbox,
                 status: Callable[[str], dict[str, Any]]) -> None:
        """`status(state)` builds the status payload, e.g. status("online")."""
        self.config, self.topics, self.outbox, self.status = config, topics, outbox, status
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id or f"wearable-edge-{topics.node}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv311,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password or None)
        will = status_payload(topics.node, "offline", reason="connection lost")
        self.client.will_set(topics.status, json.dumps(will), qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        # Durable sends register their mid under _lock while calling paho; paho's thread only
        # queues acks (never takes _lock), so the two threads cannot deadlock.
        self._lock = threading.Lock()
        self._inflight: dict[int, str] = {}  # paho mid -> outbox id
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._resend = threading.Event()
        self._refused: str | None = None
        # Hooks (edge/homeassistant.py): `observers` see every published message and return
        # more to publish (retained present state); `on_connect` ones give messages to
        # publish after every (re)connect (retained state, discovery configs).
        self.observers: list[Callable[[Message], Iterable[Message]]] = []
        self.on_connect: list[Callable[[], Iterable[Message]]] = []

    # -- lifecycle ---------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and start the network thread; BrokerError if that fails in time."""
        c = self.config
        try:
            self.client.connect(c.host, c.port, keepalive=c.keepalive_s)
        except OSError as err:
            raise BrokerError(
                f"MQTT broker {c.host}:{c.port} is not reachable ({err.strerror or err}); "
                "start mosquitto or fix [mqtt] host/port in the config"
            ) from None
        self.client.loop_start()
        if not self._connected.wait(c.connect_timeout_s) or self._refused:
            self.client.loop_stop()
            reason = self._refused or f"no answer within {c.connect_timeout_s:g} s"
            raise BrokerError(f"MQTT broker {c.host}:{c.port} refused the connection "
                              f"({reason}); check [mqtt] username/password and the broker")

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
            self._refused = str(reason_code)
            self._connected.set()
            return
        log.info("connected to MQTT broker %s:%s", self.config.host, self.config.port)
        self._connected.set()
        self._resend.set()
        client.subscribe(self.topics.commands, qos=1)
        self.publish_status(self.status("online"))
        for hook in self.on_connect:
            for message in hook():
                self._publish(message)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if reason_code != 0:
            log.warning("lost the MQTT broker (%s); reconnecting, alarms kept in the outbox",
                        reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put(mid)

    def _on_message(self, client, userdata, message) -> None:
        self.commands.put((message.topic, message.payload))  # handled on the main thread
