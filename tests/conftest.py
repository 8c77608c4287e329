"""Shared fixtures: a real private mosquitto (per test or per session) and an MQTT subscriber
that records what arrives. No mocked broker ever stands in for a passing test."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import paho.mqtt.client as mqtt
import pytest
from e2e import Processes

from deploy.broker import BrokerUnavailable, PrivateBroker, find_mosquitto


class Message(NamedTuple):
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


# A callable over Message, or an MQTT topic filter such as "wearable/+/alarm/#".
Predicate = Callable[[Message], bool] | str


def _as_callable(predicate: Predicate) -> Callable[[Message], bool]:
    if isinstance(predicate, str):
        topic_filter = predicate
        return lambda msg: mqtt.topic_matches_sub(topic_filter, msg.topic)
    return predicate


class Subscriber:
    """A paho-mqtt 2.x client subscribed to `topics`, collecting every message it receives.

    Messages arrive on paho's network thread into a thread-safe queue; the test thread drains
    them into a history that `wait_for` searches. The subscription is renewed on every
    (re)connect, so a subscriber survives `PrivateBroker.stop()`/`start()`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str],
        *,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.topics = list(topics)
        self.qos = qos
        self._inbox: queue.Queue[Message] = queue.Queue()
        self._history: list[Message] = []
        self._subscribed = threading.Event()
        self._refused: str | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:12]}"
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        # Short back-off: tests restart the broker and want the subscriber back quickly.
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect(host, port)
        self.client.loop_start()
        try:
            self.wait_subscribed(timeout)
        except BaseException:
            self.close()
            raise

    # paho callbacks (network thread)

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            self._refused = f"broker refused the connection: {reason}"
            self._subscribed.set()  # wake the waiter so it can report the refusal
            return
        self._refused = None
        client.subscribe([(topic, self.qos) for topic in self.topics])

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, _reason: Any, _props: Any
    ) -> None:
        self._subscribed.clear()

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[Any], _props: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            self._refused = f"broker refused the subscription to {self.topics}: {failed}"
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put(Message(msg.topic, msg.payload, bool(msg.retain)))

    # test-thread API

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Block until the broker has acknowledged the subscription (again, after a restart)."""
        acked = self._subscribed.wait(timeout)
        # Checked first: a refused client may already have been disconnected again.
        if self._refused:
            raise ConnectionError(self._refused)
        if not acked:
            raise TimeoutError(f"no SUBACK for {self.topics} within {timeout:g} s")

    def _drain(self, block_for: float | None = None) -> None:
        try:
            if block_for is not None:
                self._history.append(self._inbox.get(timeout=max(block_for, 0.0)))
            while True:
                self._history.append(self._inbox.get_nowait())
        except queue.Empty:
            pass

    @property
    def messages(self) -> list[Message]:
        """Every message received so far (since the last clear()), oldest first."""
        self._drain()
        return list(self._history)

    def matching(self, predicate: Predicate) -> list[Message]:
        test = _as_callable(predicate)
        return [msg for msg in self.messages if test(msg)]

    def wait_for_n(self, predicate: Predicate, n: int, timeout: float = 5.0) -> list[Message]:
        """The first `n` matching messages, waiting up to `timeout` s for them to arrive.

        Searches everything received since subscription (or clear()), not only new messages,
        so a message that arrived before the call still counts.
        """
        test = _as_callable(predicate)
        deadline = time.monotonic() + timeout
        found: list[Message] = []
        scanned = 0  # each message is tested once: long scenarios publish 100k+ messages
        while True:
            self._drain()
            found += [msg for msg in self._history[scanned:] if test(msg)]
            scanned = len(self._history)
            if len(found) >= n:
                return found[:n]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = (
                    "\n  ".join(
                        f"{m.topic} retain={m.retain} {m.payload[:120]!r}"
                        for m in self._history[-20:]
                    )
                    or "(nothing)"
                )
                raise AssertionError(
                    f"{len(found)}/{n} messages matching {predicate!r} within {timeout:g} s; "
                    f"last received:\n  {seen}"
                )
            self._drain(block_for=min(remaining, 0.1))

    def wait_for(self, predicate: Predicate, timeout: float = 5.0) -> Message:
        """The first matching message (see wait_for_n); AssertionError listing what came."""
        return self.wait_for_n(predicate, 1, timeout)[0]

    def clear(self) -> None:
        """Forget everything received so far."""
        self._drain()
        self._history.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(
    host: str,
    port: int,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    username: str | None = None,
    password: str | None = None,
    timeout: float = 5.0,
) -> None:
    """Publish one message and return once the broker has acknowledged it (QoS >= 1)."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:12]}"
    )
    if username is not None:
        client.username_pw_set(username, password)
    connack = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connack.set()

    client.on_connect = on_connect
    client.connect(host, port)
    client.loop_start()
    try:
        if not connack.wait(timeout):
            raise TimeoutError(f"no CONNACK from {host}:{port} within {timeout:g} s")
        if refused:
            raise ConnectionError(f"broker refused the connection: {refused[0]}")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"publish to {topic!r} not acknowledged within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()


class SubscriberFactory(Protocol):
    def __call__(
        self,
        *topics: str,
        broker: PrivateBroker | None = None,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
    ) -> Subscriber: ...


class Publisher(Protocol):
    def __call__(
        self,
        topic: str,
        payload: bytes | str,
        *,
        broker: PrivateBroker | None = None,
        qos: int = 1,
        retain: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None: ...


@pytest.fixture(scope="session")
def mosquitto_path() -> str:
    """The mosquitto binary. Missing: skip locally, fail under CI (a skip there hides tests)."""
    try:
        return find_mosquitto()
    except BrokerUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(str(err))
        pytest.skip(str(err))


@pytest.fixture
def broker(mosquitto_path: str) -> Iterator[PrivateBroker]:
    """A fresh private mosquitto on a free loopback port, for one test."""
    with PrivateBroker() as private:
        yield private


@pytest.fixture(scope="session")
def session_broker(mosquitto_path: str) -> Iterator[PrivateBroker]:
    """One private mosquitto shared by the session: cheaper, but use unique topics and never
    stop it."""
    with PrivateBroker() as private:
        yield private


@pytest.fixture
def mqtt_subscriber(request: pytest.FixtureRequest) -> Iterator[SubscriberFactory]:
    """Factory: `mqtt_subscriber("wearable/#", broker=...)` -> a subscribed `Subscriber`.

    Without `broker` it uses the function-scoped `broker` fixture. No topics means "#".
    Every subscriber is disconnected at teardown.
    """
    made: list[Subscriber] = []

    def make(
        *topics: str,
        broker: PrivateBroker | None = None,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
    ) -> Subscriber:
        target = broker if broker is not None else request.getfixturevalue("broker")
        sub = Subscriber(
            target.host,
            target.port,
            topics or ("#",),
            qos=qos,
            username=username,
            password=password,
        )
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def mqtt_publish(request: pytest.FixtureRequest) -> Publisher:
    """`mqtt_publish(topic, payload, broker=...)`: one acknowledged publish from a fresh client.

    Without `broker` it uses the function-scoped `broker` fixture.
    """

    def send(
        topic: str,
        payload: bytes | str,
        *,
        broker: PrivateBroker | None = None,
        qos: int = 1,
        retain: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        target = broker if broker is not None else request.getfixturevalue("broker")
        publish(
            target.host,
            target.port,
            topic,
            payload,
            qos=qos,
            retain=retain,
            username=username,
            password=password,
        )

    return send


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Subprocesses (simulators, runtimes) killed at the end of the test, pass or fail."""
    procs = Processes()
    yield procs
    procs.stop_all()


class Certificates(NamedTuple):
    """PEM files made by the openssl CLI for one test session: a CA, server certificates for
    127.0.0.1/localhost and for a name the broker is not reached by, a client certificate."""

    ca: str
    server_cert: str
    server_key: str
    wrong_name_cert: str
    wrong_name_key: str
    client_cert: str
    client_key: str


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    import shutil
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl CLI not found (sudo apt-get install openssl)")
        pytest.skip("openssl CLI not found (sudo apt-get install openssl)")
    folder = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        "/CN=wearable-test-ca", "-keyout", "ca.key", "-out", "ca.crt",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")

    def issue(name: str, subject: str, san: str, usage: str) -> None:
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext")

    issue("server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    issue("wrong", "/CN=broker.elsewhere.example", "DNS:broker.elsewhere.example", "serverAuth")
    issue("client", "/CN=wearable-edge", "DNS:wearable-edge", "clientAuth")
    return Certificates(*(str(folder / f) for f in (
        "ca.crt", "server.crt", "server.key", "wrong.crt", "wrong.key", "client.crt",
        "client.key")))


def tls_listener(certs: Certificates, *, wrong_name: bool = False, plain_port: int) -> str:
    """PrivateBroker extra_config: its listener speaks TLS and wants a client certificate;
    a second, plain listener on `plain_port` is for the test's own subscriber."""
    cert, key = ((certs.wrong_name_cert, certs.wrong_name_key) if wrong_name
                 else (certs.server_cert, certs.server_key))
    return (f"cafile {certs.ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n"
            f"tls_version tlsv1.2\nlistener {plain_port} 127.0.0.1\n")


# -- optional extras -------------------------------------------------------------------------
# `make test` installs every extra; a machine that lacks one (no TensorFlow wheel for its
# architecture or Python, a venv made by `make demo`) skips the tests that need it with one
# line saying what to install. Under CI (CI=true) a missing extra fails instead: a skip there
# would hide tests, as for mosquitto above.
EXTRA_MODULES = {"tensorflow": "training", "matplotlib": "training", "wfdb": "recordings"}
# Test files that train or evaluate models need the training stack as a whole.
FILES_NEEDING = {"test_training": "tensorflow"}


def _missing_extra(module: str) -> str | None:
    """One line naming the extra to install, or None when `module` imports."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return None
    extra = EXTRA_MODULES[module]
    return (f"needs the '{extra}' extra ({module} is not installed): "
            f"pip install -e '.[{extra}]' or make test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI"):
        return  # they run, and fail on the missing module
    for item in items:
        for prefix, module in FILES_NEEDING.items():
            if item.path.name.startswith(prefix) and (reason := _missing_extra(module)):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A test that imports an optional extra's module lazily (training imports TensorFlow
    inside its functions): missing -> skip with one line, or fail under CI."""
    try:
        return (yield)
    except ModuleNotFoundError as err:
        root = (err.name or "").split(".")[0]
        if root in EXTRA_MODULES and not os.environ.get("CI"):
            pytest.skip(_missing_extra(root) or str(err))
        raise
