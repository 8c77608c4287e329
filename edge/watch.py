"""`wearable-edge watch`: a live view of every device of a node, from any broker.

It starts from the retained present state (docs/mqtt.md: status, `latest/<vital>`,
`active_alarms`), so it shows the node at once, then follows vitals and alarm events. On a
terminal it is a curses screen: per device the latest vitals with their quality, a short
trend, the active alarms by priority; arrow keys pick an alarm, `a` acknowledges it, `s`
silences it, `q` quits. When stdout is not a terminal (a pipe, a log) it prints plain lines,
one per event, instead.

Commands go out as the operator named with --operator (default: the first in the config's
[commands.operators]), signed with the operator's secret by `edge.commands.signed_command`.
"""

from __future__ import annotations

import curses
import json
import queue
import signal
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import paho.mqtt.client as mqtt

from edge.commands import signed_command
from edge.config import PRIORITIES, Config
from edge.errors import BrokerError, ConfigError
from edge.publish import tls_context

VITALS = (("heart_rate", "HR"), ("systolic_bp", "SBP"), ("diastolic_bp", "DBP"),
          ("glucose", "Glucose"))
SPARKS = "▁▂▃▄▅▆▇█"
_LINK = "+link"  # a pseudo node for the watcher's own news ('+' is never in a topic level)
TREND_POINTS = 20


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    return "".join(SPARKS[min(7, int((v - lo) / span * 7.999))] for v in values)


@dataclass
class Device:
    node: str
    name: str
    vitals: dict[str, dict[str, Any]] = field(default_factory=dict)
    trends: dict[str, deque[float]] = field(default_factory=dict)
    alarms: list[dict[str, Any]] = field(default_factory=list)  # active, high priority first

    def vital(self, payload: dict[str, Any]) -> None:
        self.vitals[payload["vital"]] = payload
        if payload.get("quality") == "good":
            trend = self.trends.setdefault(payload["vital"], deque(maxlen=TREND_POINTS))
            trend.append(float(payload["value"]))


@dataclass
class Board:
    """What the view shows, built from the messages; nothing here touches the terminal."""

    prefix: str
    nodes: dict[str, str] = field(default_factory=dict)  # node -> status state
    devices: dict[tuple[str, str], Device] = field(default_factory=dict)
    note: str = ""  # the last command's fate, or a problem

    def device(self, node: str, name: str) -> Device:
        return self.devices.setdefault((node, name), Device(node, name))

    def apply(self, topic: str, payload: dict[str, Any]) -> str | None:
        """Update from one message; returns a plain line describing it (None: nothing new)."""
        levels = topic.split("/")
        if levels[0] != self.prefix or len(levels) < 2:
            return None
        node = levels[1]
        if node == _LINK:
            self.note = str(payload.get("state"))
            return self.note
        if len(levels) < 3:
            return None
        if levels[2] == "status" and len(levels) == 3:
            state = str(payload.get("state"))
            changed = self.nodes.get(node) != state
            self.nodes[node] = state
            return f"node {node} {state}" if changed else None
        if len(levels) < 4:
            return None
        device, kind = self.device(node, levels[2]), levels[3]
        if kind in ("vitals", "latest") and _is_vitals(payload):
            if kind == "latest" and payload["vital"] in device.vitals:
                return None  # the retained copy of one we already have
            device.vital(payload)
            return (f"{node}/{device.name} {payload['vital']} {payload['value']:g} "
                    f"{payload['unit']} {payload['quality']}")
        if kind == "active_alarms":
            alarms = payload.get("alarms")
            if not isinstance(alarms, list) or not all(map(_is_alarm, alarms)):
                return None
            device.alarms = alarms
            names = ", ".join(f"{a['condition']} ({a['priority']}, {a['state']})"
                              for a in device.alarms) or "none"
            return f"{node}/{device.name} active alarms: {names}"
        if kind == "alarms" and _is_alarm(payload):
            return (f"{node}/{device.name} ALARM {payload['event']} {payload['condition']} "
                    f"({payload['priority']}): {payload['message']}")
        if kind == "reply":
            self.note = (f"{device.name}: {payload.get('id')}: "
                         f"{'ok' if payload.get('ok') else 'REFUSED'}, {payload.get('reason')}")
            return f"{node}/{device.name} reply {self.note}"
        return None

    def alarm_rows(self) -> list[tuple[Device, dict[str, Any]]]:
        return [(d, a) for d in self.sorted_devices() for a in d.alarms]

    def sorted_devices(self) -> list[Device]:
        return [self.devices[k] for k in sorted(self.devices)]

    def lines(self, width: int, selected: int = -1) -> list[tuple[str, str]]:
        """(text, style) rows for the screen: style is "", "title", "high", "medium", "low"
        or "selected"."""
        rows: list[tuple[str, str]] = []
        nodes = ", ".join(f"{n} {s}" for n, s in sorted(self.nodes.items())) or "no status yet"
        rows.append((f"wearable-edge watch  nodes: {nodes}"[:width], "title"))
        index = 0
        for device in self.sorted_devices():
            rows.append(("", ""))
            rows.append((f"{device.node}/{device.name}"[:width], "title"))
            for vital, label in VITALS:
                p = device.vitals.get(vital)
                if p is None:
                    continue
                shown = f"{p['value']:g}" if p["quality"] == "good" else f"({p['value']:g})?"
                trend = sparkline(list(device.trends.get(vital, [])))
                rows.append((f"  {label:<8}{shown:>9} {p['unit']:<6} {p['quality']:<14}{trend}"
                             [:width], ""))
            if not device.alarms:
                rows.append(("  no active alarm", ""))
            for alarm in device.alarms:
                mark = ">" if index == selected else " "
                text = (f" {mark}{alarm['priority'].upper():<7}{alarm['condition']:<22}"
                        f"{alarm.get('state', ''):<13}{alarm['message']}")
                rows.append((text[:width], "selected" if index == selected
                             else alarm["priority"]))
                index += 1
        rows.append(("", ""))
        rows.append((self.note[:width], ""))
        return rows


def _is_vitals(p: dict[str, Any]) -> bool:
    """Messages come from any client the broker lets publish: show only well-formed ones."""
    return (all(isinstance(p.get(k), str) for k in ("vital", "unit", "quality"))
            and isinstance(p.get("value"), int | float) and not isinstance(p["value"], bool))


def _is_alarm(a: Any) -> bool:
    return isinstance(a, dict) and all(
        isinstance(a.get(k), str) for k in ("condition", "priority", "message")) and (
        a["priority"] in PRIORITIES) and isinstance(a.get("state", a.get("event")), str)


class Watcher:
    """The MQTT side: subscribes, queues messages for the UI thread, sends commands."""

    def __init__(self, host: str, port: int, prefix: str, node: str, *, username: str = "",
                 password: str = "", operator: str = "", secret: str = "",
                 silence_min: float = 5.0, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.prefix, self.node = host, port, prefix, node
        self.operator, self.secret, self.silence_min = operator, secret, silence_min
        self.inbox: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"wearable-watch-{uuid.uuid4().hex[:8]}")
        if username:
            self.client.username_pw_set(username, password or None)
        if tls is not None:  # the config's [mqtt] TLS: CA, client certificate, name check
            self.client.tls_set_context(tls)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._connected = threading.Event()
        self._refused = ""

    def topics(self) -> list[str]:
        base = f"{self.prefix}/{self.node or '+'}"
        return [f"{base}/status", f"{base}/+/latest/+", f"{base}/+/active_alarms",
                f"{base}/+/vitals", f"{base}/+/alarms", f"{base}/+/reply"]

    def connect(self, timeout_s: float = 5.0) -> None:
        try:
            self.client.connect(self.host, self.port)
        except OSError as err:
            raise BrokerError(f"MQTT broker {self.host}:{self.port} is not reachable "
                              f"({err.strerror or err}); check --host/--port or the config's "
                              "[mqtt]") from None
        self.client.loop_start()
        if not self._connected.wait(timeout_s) or self._refused:
            self.client.loop_stop()
            raise BrokerError(f"MQTT broker {self.host}:{self.port} refused the connection "
                              f"({self._refused or 'no answer'}); check username/password")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, device: Device, command: str, alarm: dict[str, Any]) -> str:
        if not self.operator:
            return "no operator: pass --operator/--secret or a config with [commands.operators]"
        fields: dict[str, Any] = {"condition": alarm["condition"]}
        if command == "silence":
            fields["minutes"] = self.silence_min
        payload = signed_command(self.operator, self.secret, device.name, command, fields,
                                 node=device.node)
        topic = f"{self.prefix}/{device.node}/{device.name}/cmd"
        self.client.publish(topic, json.dumps(payload), qos=1)
        return f"sent {command} {alarm['condition']} on {device.name} as {self.operator} " \
               f"({payload['id']})"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        else:
            client.subscribe([(t, 1) for t in self.topics()])
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code != 0:  # paho reconnects by itself; say so meanwhile
            self.inbox.put((f"{self.prefix}/{_LINK}", {"state": "lost the broker, "
                                                                "reconnecting"}))

    def _on_message(self, client, userdata, message) -> None:
        try:
            payload = json.loads(message.payload)
        except (ValueError, UnicodeDecodeError):
            return  # not ours to show: hostile or foreign input is ignored
        if isinstance(payload, dict):
            self.inbox.put((message.topic, payload))


def drain(watcher: Watcher, board: Board, emit: Callable[[str], None] | None = None,
          timeout_s: float = 0.0) -> bool:
    """Apply every queued message (waiting up to timeout_s for the first); True if any."""
    got = False
    try:
        topic, payload = watcher.inbox.get(timeout=timeout_s) if timeout_s else (
            watcher.inbox.get_nowait())
    except queue.Empty:
        return False
    while True:
        try:
            line = board.apply(topic, payload)
        except (KeyError, TypeError, ValueError):
            line = None  # a malformed message: skip it, keep watching
        got = True
        if line and emit:
            emit(line)
        try:
            topic, payload = watcher.inbox.get_nowait()
        except queue.Empty:
            return got


def run_plain(watcher: Watcher, board: Board, out: TextIO, stop: threading.Event) -> None:
    def emit(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)

    emit(f"watching {', '.join(watcher.topics())} on {watcher.host}:{watcher.port}")
    while not stop.is_set():
        drain(watcher, board, emit, timeout_s=0.2)


def run_curses(watcher: Watcher, board: Board, stop: threading.Event) -> None:
    curses.wrapper(_screen, watcher, board, stop)


def _screen(screen: curses.window, watcher: Watcher, board: Board,
            stop: threading.Event) -> None:
    curses.curs_set(0)
    screen.timeout(200)  # getch waits at most this long: the screen follows the broker
    styles = {"": curses.A_NORMAL, "title": curses.A_BOLD, "low": curses.A_NORMAL,
              "medium": curses.A_BOLD, "high": curses.A_BOLD | curses.A_STANDOUT,
              "selected": curses.A_REVERSE}
    if curses.has_colors():
        curses.start_color()
        curses.use_default_colors()
        for i, colour in enumerate((curses.COLOR_RED, curses.COLOR_YELLOW, curses.COLOR_CYAN),
                                   start=1):
            curses.init_pair(i, colour, -1)
        styles["high"] |= curses.color_pair(1)
        styles["medium"] |= curses.color_pair(2)
        styles["low"] |= curses.color_pair(3)
    selected = 0
    while not stop.is_set():
        drain(watcher, board)
        rows = board.alarm_rows()
        selected = max(0, min(selected, len(rows) - 1))
        height, width = screen.getmaxyx()
        screen.erase()
        lines = board.lines(width - 1, selected if rows else -1)
        keys = "keys: up/down pick an alarm, a acknowledge, s silence " \
               f"{watcher.silence_min:g} min, q quit"
        for y, (text, style) in enumerate(lines[:height - 1]):
            screen.addstr(y, 0, text, styles[style])
        screen.addstr(height - 1, 0, keys[:width - 1], curses.A_DIM)
        screen.refresh()
        key = screen.getch()
        if key in (ord("q"), ord("Q")):
            return
        if key in (curses.KEY_UP, ord("k")):
            selected -= 1
        elif key in (curses.KEY_DOWN, ord("j")):
            selected += 1
        elif key in (ord("a"), ord("s")) and rows:
            device, alarm = rows[selected]
            command = "acknowledge" if key == ord("a") else "silence"
            board.note = watcher.send(device, command, alarm)


def watch(config: Config | None, host: str | None, port: int | None, username: str | None,
          password: str | None, operator: str | None, secret: str | None, node: str | None,
          silence_min: float, plain: bool) -> int:
    mq = config.mqtt if config else None
    operators = config.commands.operators if config else {}
    if operator and secret is None:
        if operator not in operators:
            raise ConfigError(f"operator {operator!r} is not in the config's "
                              f"[commands.operators] ({', '.join(operators) or 'none'}); "
                              "pass --secret or another --operator")
        secret = operators[operator]
    if not operator and operators:
        operator, secret = next(iter(operators.items()))
    watcher = Watcher(
        host or (mq.host if mq else "127.0.0.1"), port or (mq.port if mq else 1883),
        mq.topic_prefix if mq else "wearable", node if node is not None else (
            config.node if config else ""),
        username=username if username is not None else (mq.username if mq else ""),
        password=password if password is not None else (mq.password if mq else ""),
        operator=operator or "", secret=secret or "", silence_min=silence_min,
        tls=tls_context(mq, config.path) if config and mq and mq.tls else None)
    board = Board(watcher.prefix)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    watcher.connect()
    try:
        if plain:
            run_plain(watcher, board, sys.stdout, stop)
        else:
            run_curses(watcher, board, stop)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        watcher.close()
    return 0
