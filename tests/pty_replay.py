"""Shared by the simulator's serial tests: play a recording into a real pseudo-terminal and
read it back with pyserial into the runtime's decoder, the way a wearable's host would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import serial

from device_sim.faults import windows
from device_sim.physiology import Recording
from device_sim.stream import stream
from device_sim.writers import PtyWriter
from wire.protocol import Decoder, Frame


def through_pty(rec: Recording, tmp_path: Path) -> tuple[Decoder, list[Frame], list[str]]:
    """Play `rec` into a PtyWriter at full speed and read it back with pyserial through the
    writer's link, opening the link again whenever the line hangs up."""
    items = list(stream(rec, device_id=3))
    link = tmp_path / "wearable"
    paths: list[str] = []
    # pyserial flushes its input while opening; on a loaded machine that can take a while.
    writer = PtyWriter(link=link, on_open=paths.append, settle_s=1.0)
    done = threading.Event()

    def play() -> None:
        with writer:
            writer.play(items, speed=0, hangups=windows(rec.faults, "disconnect"))
        done.set()

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    decoder, got = Decoder(), []
    deadline = time.monotonic() + 30
    while not done.is_set() and time.monotonic() < deadline:
        try:
            port = serial.Serial(str(link), timeout=0.2)
        except (serial.SerialException, OSError):  # between unplug and re-plug
            time.sleep(0.01)
            continue
        with port:
            while True:
                try:
                    got += decoder.feed(port.read(max(1, port.in_waiting)))
                except serial.SerialException:  # hang-up: unplugged, or the end
                    break
    thread.join(timeout=10)
    assert not thread.is_alive()
    return decoder, got, paths
