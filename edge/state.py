"""State files (outbox, calibrations, command ids): health data and operator history, so
readable by the service user only: files 0600 in a 0700 directory."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from edge.errors import ConfigError

log = logging.getLogger(__name__)


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by this user only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def private_dir(path: Path, key: str) -> Path:
    """Create `path` (a state directory) as 0700 if missing, or ConfigError naming `key`."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"'{key}': directory {path} cannot be created ({err.strerror or err}); "
                          "create it for the service user or point the option elsewhere") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"'{key}': directory {path} is not writable by this user; fix its "
                          "owner/permissions or point the option elsewhere")
    if path.stat().st_mode & 0o077:
        log.warning("state directory %s is readable by other users; health data belongs in a "
                    "0700 directory: chmod 700 %s", path, path)
    return path
