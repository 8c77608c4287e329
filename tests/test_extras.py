"""A machine without an optional extra (no TensorFlow wheel for its architecture, a venv made
by `make demo`) skips the tests that need it with one line naming the extra; CI=true runs
them anyway, so a missing extra there is a failure, not a quiet skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_without_tensorflow(tmp_path: Path, ci: bool) -> str:
    # A plugin loaded before collection makes `import tensorflow` fail as if not installed.
    (tmp_path / "hide_tensorflow.py").write_text(
        "import sys\nsys.modules['tensorflow'] = None\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(tmp_path)
    if ci:
        env["CI"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "hide_tensorflow", "--setup-only", "-q", "-rs",
         "-p", "no:cacheprovider", "tests/test_training_data.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    return result.stdout


def test_a_missing_training_extra_skips_with_one_line(tmp_path):
    out = _pytest_without_tensorflow(tmp_path, ci=False)
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert reasons, out
    assert all("needs the 'training' extra (tensorflow is not installed)" in line
               for line in reasons), out
    assert "failed" not in out.splitlines()[-1], out


def test_under_ci_a_missing_extra_is_not_skipped(tmp_path):
    out = _pytest_without_tensorflow(tmp_path, ci=True)
    assert "SKIPPED" not in out and "skipped" not in out.splitlines()[-1], out


def test_the_training_extra_picks_a_tensorflow_that_exists_for_the_machine():
    """tensorflow-cpu has wheels for x86-64 Linux only; aarch64 (Raspberry Pi OS 64-bit) and
    macOS get `tensorflow`. Exactly one of them for each."""
    import tomllib

    from packaging.requirements import Requirement

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    training = [Requirement(r) for r in extras["training"]]

    def chosen(machine: str, platform: str) -> set[str]:
        env = {"platform_machine": machine, "sys_platform": platform}
        return {r.name for r in training if r.marker is None or r.marker.evaluate(env)
                } & {"tensorflow", "tensorflow-cpu"}

    assert chosen("x86_64", "linux") == {"tensorflow-cpu"}
    assert chosen("aarch64", "linux") == {"tensorflow"}
    assert chosen("arm64", "darwin") == {"tensorflow"}
    # The board's extra never pulls TensorFlow.
    assert not any("tensorflow" in r for r in extras["runtime"])
