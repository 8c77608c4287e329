"""Serial ingest: one reader thread per device, reconnecting when the port goes away."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import serial

from edge.config import DeviceConfig
from edge.errors import SerialPortError
from edge.messages import Message
from edge.pipeline import DevicePipeline

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 0.02  # bounds the latency a partly filled read adds
RECONNECT_S = 1.0


def open_port(device: DeviceConfig) -> serial.SerialBase:
    """Open a device path or pyserial URL (socket://, loop://, rfc2217://)."""
    try:
        return serial.serial_for_url(device.port, baudrate=device.baudrate,
                                     timeout=READ_TIMEOUT_S)
    except (serial.SerialException, ValueError, OSError) as err:
        raise SerialPortError(
            f"device '{device.name}': serial port {device.port} cannot be opened ({err}); "
            "check devices.port in the config, that the wearable is plugged in, and that this "
            "user is in the 'dialout' group"
        ) from None


class PortReader(threading.Thread):
    """Reads one port, feeds its pipeline, hands messages to `publish`."""

    def __init__(self, device: DeviceConfig, pipeline: DevicePipeline,
                 publish: Callable[[Message], None], stop: threading.Event) -> None:
        super().__init__(name=f"ingest-{device.name}", daemon=True)
        self.device, self.pipeline, self.publish, self._stop_event = (
            device, pipeline, publish, stop)
        self.reconnects = 0
        self.last_data = time.monotonic()
        # A wearable not plugged in at start is waited for like one unplugged later: the
        # other devices run, this one shows connected: false and raises no_data meanwhile.
        self.port: serial.SerialBase | None = None
        try:
            self.port = open_port(device)
        except SerialPortError as err:
            log.warning("%s; waiting for it (no_data is raised meanwhile)", err)

    @property
    def connected(self) -> bool:
        return self.port is not None

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self._step()
            except Exception:  # a bug here must not end this device's monitoring
                log.exception("device %s: reader fault; reading on", self.device.name)
                self._stop_event.wait(RECONNECT_S)  # no busy loop if it repeats
        self._close()

    def _step(self) -> None:
        if self.port is None:
            self._reconnect()
            return
        try:
            data = self.port.read(max(1, self.port.in_waiting))
        except (serial.SerialException, OSError) as err:
            log.warning("device %s: serial port lost (%s); reconnecting", self.device.name, err)
            self._close()
            return
        if data:
            self.last_data = time.monotonic()
            for message in self.pipeline.feed(data):
                self.publish(message)

    def _reconnect(self) -> None:
        if self._stop_event.wait(RECONNECT_S):
            return
        try:
            self.port = open_port(self.device)
        except SerialPortError:
            return
        self.reconnects += 1
        log.info("device %s: serial port %s reopened", self.device.name, self.device.port)

    def _close(self) -> None:
        if self.port is not None:
            with contextlib.suppress(serial.SerialException, OSError):  # already gone
                self.port.close()
            self.port = None
