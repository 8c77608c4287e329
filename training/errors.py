"""Errors of the training side. All derive from the project root, so the CLI can print the
one-line message and exit non-zero without a traceback."""

from wire.errors import WearableError


class TrainingError(WearableError):
    """Training cannot start or finish: bad arguments, missing simulator, unwritable output,
    or a model that fails its own acceptance checks."""


__all__ = ["TrainingError", "WearableError"]
