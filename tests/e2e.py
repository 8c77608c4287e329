"""Shared by the end-to-end tests: the processes they start, the config they run the
runtime with, and JSON Schema validation of what it publishes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema

import edge

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = {name: json.loads((Path(edge.__file__).parent / "schemas" /
                             f"{name}.schema.json").read_text())
           for name in ("vitals", "alarm", "status", "reply")}


def validate(kind: str, payload: dict) -> None:
    jsonschema.validate(payload, SCHEMAS[kind],
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self._links: str | None = None

    def start(self, *args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, **kwargs)
        self.procs.append(proc)
        return proc

    def simulator(self, *args: str) -> tuple[subprocess.Popen, str]:
        """A simulator on a pty, and the path to give the runtime: a link the simulator removes
        when it ends, so a runtime that outlives it cannot reopen its /dev/pts/N, a number the
        kernel soon hands to another process (on a busy machine, another test's simulator)."""
        if self._links is None:
            self._links = tempfile.mkdtemp(prefix="wearable-pty-")
        link = f"{self._links}/sim-{len(self.procs)}"
        sim = self.start("-m", "device_sim", "run", "--pty", "--link", link, *args,
                         stdout=subprocess.PIPE, text=True)
        line = sim.stdout.readline().strip()
        assert line.startswith("PTY /dev/"), line
        return sim, link

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        if self._links is not None:
            shutil.rmtree(self._links, ignore_errors=True)


def edge_config(tmp_path: Path, pty: str, port: int) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'node = "ward-7"\nmodels_dir = "{ROOT / "models"}"\n'
        f'[mqtt]\nport = {port}\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
        "status_interval_s = 1\n"
        f'[[devices]]\nname = "wrist-1"\nport = "{pty}"\n')
    return path
