"""Shared by the end-to-end tests: the processes they start, the config they run the
runtime with, and JSON Schema validation of what it publishes."""

from __future__ import annotations

import json
import subprocess
import sys
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

    def start(self, *args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, **kwargs)
        self.procs.append(proc)
        return proc

    def simulator(self, *args: str) -> tuple[subprocess.Popen, str]:
        sim = self.start("-m", "device_sim", "run", "--pty", *args, stdout=subprocess.PIPE,
                         text=True)
        line = sim.stdout.readline().strip()
        assert line.startswith("PTY /dev/"), line
        return sim, line.split(" ", 1)[1]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def edge_config(tmp_path: Path, pty: str, port: int) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'node = "ward-7"\nmodels_dir = "{ROOT / "models"}"\n'
        f'[mqtt]\nport = {port}\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
        "status_interval_s = 1\n"
        f'[[devices]]\nname = "wrist-1"\nport = "{pty}"\n')
    return path
