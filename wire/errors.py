"""The project's one exception root. Every error raised on purpose derives from WearableError,
so a CLI can catch it, print its one-line message and exit non-zero without a traceback."""


class WearableError(Exception):
    """Root of every error this project raises deliberately. str(err) is user-facing."""


class ProtocolError(WearableError):
    """A byte string is not a valid v1 frame (bad COBS, CRC, header or length)."""


class CrcError(ProtocolError):
    """A frame's CRC does not match its contents: bytes were damaged on the wire."""
