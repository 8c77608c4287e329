"""Provisioning a board: `python -m deploy.provision` (typed values checked against the
runtime's config schema, operators with a secret shown once), first-boot.sh and install.sh's
up-front checks. Everything runs the real scripts on a copy of the shipped deploy/edge.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def board_config(tmp_path: Path) -> Path:
    path = tmp_path / "edge.toml"
    shutil.copy(ROOT / "deploy" / "edge.toml", path)
    return path


def provision(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy.provision", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_threshold_is_written_as_a_number_and_comments_stay(board_config):
    before = board_config.read_text()
    result = provision(str(board_config), "alarms.hr_high.threshold=130",
                       "alarms.hr_low.enabled=false", "models=hr,glucose",
                       "mqtt.port=8883")
    assert result.returncode == 0, result.stderr
    config = load_config(board_config)
    assert config.alarms.hr_high.threshold == 130.0
    assert config.alarms.hr_low.enabled is False
    assert config.models == ["hr", "glucose"]
    assert config.mqtt.port == 8883
    after = board_config.read_text()
    assert "threshold = 130.0\n" in after and "port = 8883\n" in after
    comments = [line for line in before.splitlines() if line.startswith("#")]
    assert comments and all(line in after.splitlines() for line in comments)


def test_a_table_the_file_lacks_is_added(board_config):
    assert "[alarms.sbp_high]" not in board_config.read_text()
    result = provision(str(board_config), "alarms.sbp_high.threshold=170")
    assert result.returncode == 0, result.stderr
    assert load_config(board_config).alarms.sbp_high.threshold == 170.0


@pytest.mark.parametrize(("assignment", "needles"), [
    ("alarms.hr_high.threshold=fast", ("alarms.hr_high.threshold", "must be a number")),
    ("alarms.hr_high.enabled=maybe", ("alarms.hr_high.enabled", "true or false")),
    ("mqtt.port=18.5", ("mqtt.port", "whole number")),
    ("site=ward3", ("unknown key 'site'", "valid keys in the top level", "node")),
    ("alarms.hr_hihg.threshold=130", ("unknown key", "hr_high")),
    ("alarms.hr_high=130", ("is a table",)),
    # Typed right but out of range: the runtime's own rules refuse it.
    ("alarms.hr_high.threshold=30", ("hr_low.threshold", "must be below")),
    ("mqtt.port=70000", ("mqtt.port", "1-65535")),
])
def test_a_bad_value_is_refused_in_one_line_and_nothing_changes(board_config, assignment,
                                                                needles):
    before = board_config.read_text()
    assert_one_line_error(provision(str(board_config), assignment), *needles)
    assert board_config.read_text() == before


def test_keys_lists_every_key_with_its_type(board_config):
    result = provision(str(board_config), "--keys")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert rows["alarms.hr_high.threshold"] == "float"
    assert rows["alarms.hr_high.latching"] == "bool"
    assert rows["mqtt.port"] == "int"
    assert rows["state_dir"] == "str"
    assert rows["commands.operators.<name>"] == "str"


def test_an_operator_gets_a_secret_shown_once_and_kept_only_in_the_config(board_config):
    assert load_config(board_config).commands.operators == {}
    result = provision(str(board_config), "--add-operator", "nurse-station")
    assert result.returncode == 0, result.stderr
    secret = result.stdout.split("secret ", 1)[1].split()[0]
    assert len(secret) >= 24
    assert load_config(board_config).commands.operators == {"nurse-station": secret}
    # Shown once: reading the config back is the only other way to it.
    again = provision(str(board_config), "--add-operator", "nurse-station")
    assert_one_line_error(again, "already exists", "--replace")
    # --if-none (install.sh): an existing operator means nothing to do, and nothing printed.
    quiet = provision(str(board_config), "--add-operator", "other", "--if-none")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert list(load_config(board_config).commands.operators) == ["nurse-station"]
    second = provision(str(board_config), "--add-operator", "ward-phone")
    other = second.stdout.split("secret ", 1)[1].split()[0]
    assert other != secret
    assert load_config(board_config).commands.operators == {"nurse-station": secret,
                                                           "ward-phone": other}
    replaced = provision(str(board_config), "--add-operator", "ward-phone", "--replace")
    assert replaced.returncode == 0
    assert load_config(board_config).commands.operators["ward-phone"] not in (other, secret)


def test_an_operator_name_must_be_a_plain_key(board_config):
    assert_one_line_error(provision(str(board_config), "--add-operator", "nurse station"),
                          "letters, digits")


def test_relative_state_files_live_in_the_state_dir(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_text("")
    config = load_config(path)
    assert config.state_path(config.mqtt.outbox) == tmp_path / "state" / "outbox.sqlite"
    assert config.state_path(config.calibration_file) == tmp_path / "state" / "calibration.json"
    # A checkout ignores that folder.
    ignored = subprocess.run(["git", "check-ignore", "-q", "state/outbox.sqlite"], cwd=ROOT)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout: cannot ask git what it ignores")
    assert ignored.returncode == 0


def first_boot(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "first-boot.sh"), "--config", str(config),
         "--no-restart", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "WEARABLE_PYTHON": sys.executable, **env})


def test_first_boot_names_the_board_and_adds_an_operator(board_config):
    result = first_boot(board_config, "--node", "ward3-bed12", "--device", "wrist-1",
                        "--operator", "ward-phone")
    assert result.returncode == 0, result.stderr
    config = load_config(board_config)
    assert config.node == "ward3-bed12" and config.devices[0].name == "wrist-1"
    secret = config.commands.operators["ward-phone"]
    assert f"secret {secret}" in result.stdout


def test_first_boot_has_no_site_option(board_config):
    result = first_boot(board_config, "--site", "ward3")
    assert result.returncode != 0 and "unknown option: --site" in result.stderr
    assert tomllib.loads(board_config.read_text())["node"] == "edge-1"


def test_install_refuses_32_bit_arm_before_touching_anything(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "uname").write_text("#!/bin/sh\necho armv7l\n")
    (fake / "uname").chmod(0o755)
    result = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.returncode == 1
    assert "32-bit ARM" in result.stderr and "64-bit" in result.stderr
    assert "runtime-tflite" in result.stderr
    assert "run it as root" not in result.stderr  # the architecture is the first check
