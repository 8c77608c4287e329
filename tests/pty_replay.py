"""Shared by the simulator's serial tests: play a recording into a real pseudo-terminal and
read it back with pyserial into the runtime's decoder, the way a wearable's host would."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import serial

from device_sim.faults import windows
from device_sim.physiology import Recording
from device_sim.stream import stream
from device_sim.writers import PtyWriter
from wire.protocol import Decoder, Frame


class HandshakePty(PtyWriter):
    """A PtyWriter that writes to each of its ptys only once the reader has said it opened
    that one (`opened`). pyserial flushes its input while opening a port, so the writer's
    settle time is a guess that a loaded machine can beat; a handshake cannot be beaten."""

    def __init__(self, **kwargs) -> None:
        self._opened: set[str] = set()
        self._changed = threading.Condition()
        super().__init__(settle_s=0.0, **kwargs)

    def opened(self, path: str) -> None:
        with self._changed:
            self._opened.add(path)
            self._changed.notify_all()

    def _await_reader(self) -> None:
        with self._changed:
            while self.path not in self._opened or not self.reader_present():
                self._changed.wait(0.02)  # also re-checks presence, which has no event


def through_pty(rec: Recording, tmp_path: Path) -> tuple[Decoder, list[Frame], list[str]]:
    """Play `rec` into a PtyWriter at full speed and read it back with pyserial through the
    writer's link, opening the link again whenever the line hangs up."""
    items = list(stream(rec, device_id=3))
    link = tmp_path / "wearable"
    paths: list[str] = []
    writer = HandshakePty(link=link, on_open=paths.append)
    done = threading.Event()

    def play() -> None:
        with writer:
            writer.play(items, speed=0, hangups=windows(rec.faults, "disconnect"))
        done.set()

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    decoder, got = Decoder(), []
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        try:
            path = os.path.realpath(link)
            port = serial.Serial(path, timeout=0.2)
        except (serial.SerialException, OSError):  # between unplug and re-plug
            time.sleep(0.01)
            continue
        writer.opened(path)  # pyserial has flushed: from here on nothing written is lost
        with port:
            while True:
                try:
                    got += decoder.feed(port.read(max(1, port.in_waiting)))
                except serial.SerialException:  # hang-up: unplugged, or the end
                    break
    thread.join(timeout=10)
    assert not thread.is_alive()
    return decoder, got, paths
