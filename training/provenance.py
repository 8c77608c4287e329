"""What produced a model: versions, code revision, date. Goes into the manifest."""

from __future__ import annotations

import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import training

_PACKAGES = ("numpy", "scipy", "tensorflow-cpu", "tensorflow", "keras", "ai-edge-litert")


def _git_commit() -> str | None:
    """The source revision, with "-dirty" if the tree has local changes; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "training", "edge"],
                               cwd=root, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("-dirty" if dirty else "")


def describe() -> dict[str, Any]:
    versions = {"python": platform.python_version(), "training": training.__version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "machine": f"{platform.machine()}, {platform.system()}",
        "versions": versions,
    }
