"""Writers against real sinks: a real pseudo-terminal, a pyserial loop:// port, a file; and
pacing by device time."""

from __future__ import annotations

import errno
import os
import termios
import threading
import time

import pytest

from device_sim import WriterError, get_scenario, simulate, stream
from device_sim.writers import FileWriter, PtyWriter, SerialWriter
from wire.protocol import Decoder, Frame


def read_until_hang_up(fd: int) -> tuple[Decoder, list[Frame]]:
    """Decode what a pty slave receives until the simulator closes it (EIO); closes `fd`."""
    decoder, got = Decoder(), []
    try:
        while data := os.read(fd, 4096):
            got += decoder.feed(data)
    except OSError as err:  # EIO: the simulator closed the pty, end of stream
        assert err.errno == errno.EIO, err
    finally:
        os.close(fd)
    return decoder, got


def test_pty_round_trip_with_a_late_reader_loses_nothing() -> None:
    items = list(stream(simulate("tachycardia", 1), device_id=9))
    writer = PtyWriter(settle_s=0.1)
    played = {}

    def play() -> None:
        with writer:
            played["stats"] = writer.play(items, speed=0)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    time.sleep(0.3)  # the reader arrives after the simulator is ready to send
    assert thread.is_alive(), "the writer must wait for its reader"
    # Opened as `cat` would: no flush, so the writer starts once settle_s has passed.
    fd = os.open(writer.path, os.O_RDONLY | os.O_NOCTTY)
    decoder, got = read_until_hang_up(fd)
    thread.join(timeout=10)
    assert played["stats"].frames == len(items) == len(got)
    assert decoder.stats.bytes_in == sum(len(data) for _, data in items)
    stats = decoder.stats
    assert (stats.crc_errors, stats.malformed, stats.frames_lost) == (0, 0, 0)
    assert {f.device_id for f in got} == {9}


def test_pty_waits_for_a_slow_reader_to_flush_its_input() -> None:
    # pyserial flushes the port's input while it opens it; on a busy machine that can come
    # long after the open. The writer must wait for the flush itself, not for a fixed time.
    items = list(stream(simulate(get_scenario("tachycardia").with_duration(5), 1), device_id=4))
    writer = PtyWriter(settle_s=60.0)  # the flush, not this cap, must end the wait

    def play() -> None:
        with writer:  # closes (after draining) at the end: the reader sees EIO
            writer.play(items, speed=0)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    fd = os.open(writer.path, os.O_RDONLY | os.O_NOCTTY)
    time.sleep(0.5)  # a slow opener: nothing may be written yet, or the flush loses it
    termios.tcflush(fd, termios.TCIFLUSH)
    decoder, got = read_until_hang_up(fd)
    thread.join(timeout=30)
    sent = Decoder().feed(b"".join(data for _, data in items))
    assert [(f.channel, f.seq) for f in got] == [(f.channel, f.seq) for f in sent]
    assert decoder.stats.frames_lost == 0


def test_pty_without_waiting_blocks_instead_of_dropping() -> None:
    items = list(stream(simulate("tachycardia", 1)))  # ~50 kB: more than a pty buffers
    writer = PtyWriter(wait_for_reader=False)
    thread = threading.Thread(target=lambda: writer.play(items, speed=0), daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive(), "with nobody reading, the writer must block on a full buffer"
    # Read with plain os-level semantics (no flush on open), as `cat` would.
    with open(writer.path, "rb", buffering=0) as tty:
        decoder = Decoder()
        got: list[Frame] = []
        while len(got) < len(items):
            got += decoder.feed(tty.read(4096))
    thread.join(timeout=10)
    writer.close(drain=False)
    assert decoder.stats.frames_lost == 0 and decoder.stats.crc_errors == 0


def test_serial_url_and_file_writers(tmp_path) -> None:
    items = list(stream(simulate("tachycardia", 2)))
    blob = b"".join(data for _, data in items)
    received = bytearray()
    with SerialWriter("loop://") as port:
        # loop:// holds 4 KB, like a real line it blocks the writer until someone reads.
        loop = port._port
        reader = threading.Thread(target=lambda: received.extend(loop.read(len(blob))))
        reader.start()
        port.play(items, speed=0)
        reader.join(timeout=10)
    assert bytes(received) == blob
    path = tmp_path / "rec.bin"
    with FileWriter(path) as out:
        out.play(items, speed=0)
    assert path.read_bytes() == blob


def test_pacing_follows_device_time() -> None:
    items = [(t, d) for t, d in stream(simulate("tachycardia", 0)) if t < 2.0]  # 2 s of device
    with SerialWriter("loop://") as port:
        start = time.monotonic()
        port.play(items, speed=10)
        elapsed = time.monotonic() - start
    assert 0.15 < elapsed < 0.6  # ~0.2 s at 10x
    stop = threading.Event()
    stop.set()
    with SerialWriter("loop://") as port:
        assert port.play(items, speed=1, stop=stop).stopped


def test_outputs_that_cannot_be_opened() -> None:
    with pytest.raises(WriterError, match="cannot open serial port"):
        SerialWriter("/dev/does-not-exist")
    with pytest.raises(WriterError, match="cannot open serial port"):
        SerialWriter("nosuch://x")
    with pytest.raises(WriterError, match="cannot write"):
        FileWriter("/nonexistent-dir/x.bin")
