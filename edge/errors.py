"""Errors of the edge runtime. All derive from the project root, wire.errors.WearableError."""

from wire.errors import ProtocolError, WearableError


class ConfigError(WearableError):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class ModelError(WearableError):
    """A model bundle is missing, altered, or does not match its manifest."""


class SerialPortError(WearableError):
    """A serial port cannot be opened."""


class BrokerError(WearableError):
    """The MQTT broker cannot be reached or refused the connection."""


class StreamError(WearableError):
    """A device's stream cannot feed a model (e.g. a sample rate the model cannot use)."""


class CommandError(WearableError):
    """An operator command was refused; the reason goes back on the reply topic."""

    def __init__(self, reason: str, command_id: str | None = None) -> None:
        super().__init__(reason)
        self.command_id = command_id


class InterpreterError(WearableError):
    """No TFLite interpreter package is installed."""


__all__ = [
    "BrokerError",
    "CommandError",
    "ConfigError",
    "InterpreterError",
    "ModelError",
    "ProtocolError",
    "SerialPortError",
    "StreamError",
    "WearableError",
]
