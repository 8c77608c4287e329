"""Progress on stderr while devices stream: how much device time is sent, how fast, and
whether a pty is still waiting for its reader. A day simulated to a file takes a minute or
more, and a real-time `--pty` run lasts as long as its scenario: neither should look hung.

A heartbeat thread prints one line every `interval_s` of wall time, also while a writer is
blocked (no reader on the pty, a full buffer), which a check inside the stream loop could not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class DeviceProgress:
    device_id: int
    total_s: float  # device time the stream will cover
    sent_s: float = 0.0  # device time of the last frame handed to the writer
    frames: int = 0
    done: bool = False
    # While set and it returns a str: what the device waits for (e.g. a reader on a pty).
    waiting: Callable[[], str | None] | None = None

    def track(self, items: Iterable[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
        for device_time, data in items:
            yield device_time, data
            self.sent_s, self.frames = device_time, self.frames + 1
        self.done = True


class Progress:
    """Use as a context manager around the streaming; `add` each device first."""

    def __init__(self, out: TextIO, prog: str, interval_s: float = 10.0) -> None:
        self.out, self.prog, self.interval_s = out, prog, interval_s
        self.devices: list[DeviceProgress] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._started = time.monotonic()

    def add(self, device_id: int, total_s: float,
            waiting: Callable[[], str | None] | None = None) -> DeviceProgress:
        device = DeviceProgress(device_id, total_s, waiting=waiting)
        self.devices.append(device)
        return device

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.interval_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)

    def line(self) -> str:
        """The current state in one line."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        active = [d for d in self.devices if not d.done] or self.devices
        slowest = min(active, key=lambda d: d.sent_s)
        total = max(d.total_s for d in self.devices)
        share = 100.0 * slowest.sent_s / total if total > 0 else 100.0
        who = (f"device {slowest.device_id}" if len(self.devices) == 1
               else f"{len(self.devices)} devices (slowest {slowest.device_id})")
        text = (f"{self.prog}: {who}: {_clock(slowest.sent_s)} of {_clock(total)} sent "
                f"({share:.0f}%), {slowest.sent_s / elapsed:.1f}x real time")
        waits = [w for d in self.devices if d.waiting and (w := d.waiting())]
        if waits:
            text += f"; waiting for {waits[0]}" + (
                f" (and {len(waits) - 1} more)" if len(waits) > 1 else "")
        return text

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if all(d.done for d in self.devices):
                return
            print(self.line(), file=self.out, flush=True)
