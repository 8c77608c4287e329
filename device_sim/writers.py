"""Where the simulated device's bytes go: a pseudo-terminal, a serial port / pyserial URL, a file.

The base class `Writer` owns what is common, pacing a stream against device time (`play`);
each writer implements only `_write` (and `_wait_ready` when it has to wait for a peer),
like python-can's `BusABC.send`/`_recv_internal` split.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
import sys
import termios
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import serial

from device_sim.errors import WriterError

log = logging.getLogger(__name__)

MAX_LAG_S = 1.0  # behind schedule by more than this (writer blocked): re-anchor, do not burst
DRAIN_QUIET_S = 0.25  # a pty reader's queue empty this long: it has read everything


@dataclass
class PlayStats:
    frames: int = 0
    bytes: int = 0
    device_time_s: float = 0.0  # device time of the last frame sent
    stopped: bool = False  # play ended because `stop` was set


class Writer(ABC):
    """A byte sink for a simulated device. Use as a context manager."""

    def write(self, data: bytes) -> None:
        """Write all of `data`, blocking while the peer is not ready (bytes are never dropped)."""
        self._write(data)

    def wait_ready(self) -> None:
        """Block until the other end can receive (a pty reader has opened it)."""
        self._wait_ready()

    def play(
        self,
        stream: Iterable[tuple[float, bytes]],
        speed: float = 1.0,
        *,
        stop: threading.Event | None = None,
        hangups: Sequence[tuple[float, float]] = (),
    ) -> PlayStats:
        """Write (device_time_s, bytes) items, paced: speed 1 = real time, 10 = ten times
        faster, 0 = as fast as the sink takes them. Returns early once `stop` is set.

        `hangups`: (start, end) device-time spans during which the line is unplugged: the
        writer closes its sink at `start` (after the reader has what was sent) and opens it
        again at `end` (the `disconnect` fault; the stream has no frames in between).
        """
        if not (speed >= 0 and speed != float("inf")):
            raise WriterError(f"speed {speed!r} must be 0 (as fast as possible) or positive")
        stop = stop or threading.Event()
        stats = PlayStats()
        pending = sorted(hangups)
        self.wait_ready()
        origin = time.monotonic()  # wall time of device time 0 (the device boots now)
        for device_time, data in stream:
            while pending and device_time >= pending[0][0]:
                _, end = pending.pop(0)
                log.info("line unplugged at %.1f s of device time", device_time)
                self.hang_up()
                if speed > 0:
                    stop.wait(max(0.0, origin + end / speed - time.monotonic()))
                if stop.is_set():
                    break
                self.reconnect()
            if speed > 0:
                delay = origin + device_time / speed - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
                if delay < -MAX_LAG_S:  # we were blocked: carry on from here at pace
                    origin -= delay
            if stop.is_set():
                break
            self.write(data)
            stats.frames += 1
            stats.bytes += len(data)
            stats.device_time_s = device_time
        stats.stopped = stop.is_set()
        return stats

    def hang_up(self) -> None:  # noqa: B027 - a file has no line to unplug
        """Close the line as an unplugged cable would (the `disconnect` fault)."""

    def reconnect(self) -> None:  # noqa: B027
        """Open the line again after `hang_up`."""

    @abstractmethod
    def close(self, *, drain: bool = True) -> None:
        """Release the sink. With `drain`, first let buffered bytes reach the other end;
        after an error or a signal, pass drain=False to leave at once."""

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(drain=exc_type is None)

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    def _wait_ready(self) -> None:  # noqa: B027 - most sinks are always ready
        pass


class PtyWriter(Writer):
    """A pseudo-terminal that looks like a serial port to the reader (`path`, e.g. /dev/pts/3).

    The slave side is put in raw mode, so no byte is translated (no CR/LF mapping, no echo).
    The simulator keeps only the master open, which lets it see whether a reader has the
    slave open (POLLHUP while nobody does). With `wait_for_reader` it writes nothing until a
    reader is there and has flushed its input, as pyserial does while it opens a port (bytes
    written before that flush would be lost). The master is in packet mode, so the kernel
    reports the flush; a reader that never flushes (`cat`) is written to after `settle_s`.
    If the reader goes away it waits again, holding on to its bytes. When the kernel buffer
    (~4 KB to 18 KB) is full, writes block until the reader catches up.
    """

    def __init__(self, *, wait_for_reader: bool = True, settle_s: float = 1.0,
                 drain_timeout_s: float = 5.0, link: str | os.PathLike | None = None,
                 on_open: Callable[[str], None] | None = None) -> None:
        self.wait_for_reader = wait_for_reader
        self.settle_s = settle_s
        self.drain_timeout_s = drain_timeout_s
        self.link = os.fspath(link) if link is not None else None
        self.on_open = on_open
        self._master: int | None = None
        self._open()

    def _open(self) -> None:
        """A fresh pty; `link` (if any) is pointed at it atomically, like socat's link=."""
        try:
            master, slave = os.openpty()
        except OSError as err:
            raise WriterError(
                f"cannot create a pseudo-terminal ({err.strerror}); check that /dev/pts is "
                "mounted and ptys are not exhausted, or use --port/--out"
            ) from None
        try:
            tty.setraw(slave)
            self.path = os.ttyname(slave)
        except OSError as err:
            os.close(master)
            raise WriterError(f"cannot set up the pseudo-terminal ({err.strerror})") from None
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))  # report the reader's flush
        self._master = master
        self._settled = False  # the current reader has opened and flushed
        self._hup = select.poll()
        self._hup.register(master, 0)  # POLLHUP is always reported
        self._packets = select.poll()
        self._packets.register(master, select.POLLIN | select.POLLPRI)
        self._room = select.poll()
        self._room.register(master, select.POLLOUT)
        if self.link is not None:
            tmp = f"{self.link}.{os.getpid()}.tmp"
            try:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                os.symlink(self.path, tmp)
                os.replace(tmp, self.link)
            except OSError as err:
                os.close(master)
                self._master = None
                raise WriterError(f"cannot create the link {self.link!r} to {self.path} "
                                  f"({err.strerror}); check the directory") from None
        if self.on_open is not None:
            self.on_open(self.path)

    def hang_up(self) -> None:
        """Unplug: the reader sees a hang-up (pyserial raises) once it has read what was sent."""
        if self._master is not None:
            self.drain()
            os.close(self._master)
            self._master = None

    def reconnect(self) -> None:
        """Plug in again: a new pty (a new /dev/pts/N, as a USB device re-enumerates)."""
        if self._master is None:
            self._open()

    def reader_present(self) -> bool:
        return not any(ev & select.POLLHUP for _, ev in self._hup.poll(0))

    def awaiting_reader(self) -> bool:
        """From any thread (a poll object must not be shared): is the pty open, meant to
        wait for its reader, and has none?"""
        master = self._master
        if master is None or not self.wait_for_reader:
            return False
        probe = select.poll()
        try:
            probe.register(master, 0)
            return any(ev & select.POLLHUP for _, ev in probe.poll(0))
        except (OSError, ValueError):  # closed meanwhile (a disconnect fault)
            return False

    def _wait_ready(self) -> None:
        if self.wait_for_reader:
            self._await_reader()

    def _await_reader(self) -> None:
        if self._settled and self.reader_present():
            return
        if not self.reader_present():
            log.info("waiting for a reader to open %s", self.path)
            self._reader_flushed()  # forget a flush by an earlier reader
            while not self.reader_present():
                time.sleep(0.02)
        deadline = time.monotonic() + self.settle_s
        while not self._reader_flushed() and self.reader_present():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._packets.poll(left * 1000)
        self._settled = True
        log.info("reader connected to %s", self.path)

    def _reader_flushed(self) -> bool:
        """Has the reader flushed its input since the last look? (Reads the master's packets;
        what the reader wrote to the device is discarded.)"""
        assert self._master is not None
        flushed = False
        while True:
            try:
                packet = os.read(self._master, 4096)
            except OSError:  # nothing pending (EAGAIN), or no reader (EIO)
                return flushed
            if not packet:
                return flushed
            # A data packet's first byte is TIOCPKT_DATA (0); a status byte carries flags.
            flushed |= bool(packet[0] & termios.TIOCPKT_FLUSHREAD)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            raise WriterError(f"pty {self.path} is closed; open a new one")
        view = memoryview(data)
        while view:
            if self.wait_for_reader:
                self._await_reader()
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                # Buffer full: wait for room, or (no reader) just retry a little later.
                if self.reader_present():
                    self._room.poll(50)
                else:
                    time.sleep(0.01)
            except OSError as err:
                raise WriterError(f"writing to pty {self.path} failed: {err}") from err

    def _pending_for_reader(self) -> int:
        """Bytes written but not yet read, as seen from the slave side (0 if unknown)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            return 0
        finally:
            os.close(fd)

    def drain(self) -> None:
        """Wait (up to drain_timeout_s) until the reader has read everything: closing the
        master would discard bytes still in the buffer."""
        deadline = time.monotonic() + self.drain_timeout_s
        quiet_since = None
        while time.monotonic() < deadline and self.reader_present():
            # Bytes reach the reader's queue asynchronously (a kernel worker moves them, late
            # on a busy machine): the queue must stay empty for a while, not just once.
            if self._pending_for_reader() > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= DRAIN_QUIET_S:
                return
            time.sleep(0.02)

    def close(self, *, drain: bool = True) -> None:
        if self._master is not None:
            if drain:
                self.drain()
            os.close(self._master)
            self._master = None
        if self.link is not None and os.path.islink(self.link):
            os.unlink(self.link)


class SerialWriter(Writer):
    """A serial port or any pyserial URL (loop://, socket://host:port, rfc2217://...)."""

    def __init__(self, url: str, *, baudrate: int = 115200) -> None:
        self.url = url
        self.baudrate = baudrate
        self._open()

    def _open(self) -> None:
        url, baudrate = self.url, self.baudrate
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, write_timeout=None)
        except (serial.SerialException, ValueError, OSError) as err:
            reason = os.strerror(err.errno) if getattr(err, "errno", None) else str(err)
            raise WriterError(
                f"cannot open serial port {url!r} ({reason}); check the device path or URL, "
                "e.g. /dev/ttyUSB0, loop://, socket://host:7000"
            ) from None

    def hang_up(self) -> None:
        self.close(drain=True)

    def reconnect(self) -> None:
        self._open()

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as err:
            raise WriterError(
                f"writing to {self.url!r} failed ({err}); check that the port is still there"
            ) from None

    def close(self, *, drain: bool = True) -> None:
        try:
            if drain:
                self._port.flush()
        except (serial.SerialException, OSError):
            pass  # the port is gone; nothing left to flush to
        finally:
            self._port.close()


class FileWriter(Writer):
    """Raw wire bytes to a file ('-' for stdout): the recording format that replay reads."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._owned = self.path != "-"
        try:
            self._file: BinaryIO = (
                open(self.path, "wb") if self._owned else sys.stdout.buffer  # noqa: SIM115
            )
        except OSError as err:
            raise WriterError(
                f"cannot write {self.path!r} ({err.strerror}); check the directory exists "
                "and is writable"
            ) from None

    def _write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except BrokenPipeError:
            raise  # stdout's reader left: the CLI stops quietly, this is not a failure
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise WriterError(f"disk full writing {self.path!r}; free some space") from None
            raise WriterError(f"writing {self.path!r} failed ({err.strerror})") from None

    def close(self, *, drain: bool = True) -> None:
        try:
            self._file.flush()
        finally:
            if self._owned:
                self._file.close()
