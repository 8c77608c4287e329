"""Errors the simulator raises on purpose; all derive from wire.errors.WearableError."""

from wire.errors import WearableError


class SimulatorError(WearableError):
    """Root of the simulator's errors. str(err) names the problem and the fix."""


class ScenarioError(SimulatorError):
    """A scenario or segment is unknown or invalid."""


class WriterError(SimulatorError):
    """An output (pty, serial port, file) cannot be opened or written."""
