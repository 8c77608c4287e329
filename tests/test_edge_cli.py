"""Bad input to `wearable-edge`: one clear line naming the problem and the fix, a non-zero exit,
never a traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def write_config(tmp_path: Path, body: str, models: Path = MODELS) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'models_dir = "{models}"\n' + body)
    return path


def assert_one_line_error(result, exit_code: int, *needles: str) -> None:
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_lists_the_commands():
    result = edge("--help")
    assert result.returncode == 0
    for command in ("run", "replay", "check"):
        assert command in result.stdout


def test_missing_config_file(tmp_path):
    result = edge("run", "--config", str(tmp_path / "nope.toml"))
    assert_one_line_error(result, 2, "nope.toml", "not found")


@pytest.mark.parametrize(("body", "needles"), [
    ("[mqtt]\nhots = 'x'\n", ["unknown key 'mqtt.hots'", "valid keys", "host"]),
    ("[mqtt]\nport = 'a'\n", ["'mqtt.port' must be int"]),
    ("[mqtt]\nport = 70000\n", ["'mqtt.port'", "1-65535"]),
    ("[alarms.hr_high]\ndelay_s = 30\n", ["'alarms.hr_high.delay_s'", "10 seconds"]),
    ("[alarms.hr_high]\npriority = 'urgent'\n", ["'alarms.hr_high.priority'", "high"]),
    ("[[devices]]\nname = 'a/b'\nport = 'loop://'\n", ["'devices[0].name'"]),
    ("node = \n", ["not valid TOML"]),
])
def test_invalid_config_names_the_key(tmp_path, body, needles):
    result = edge("check", "--config", str(write_config(tmp_path, body)))
    assert_one_line_error(result, 2, *needles)


def test_missing_model(tmp_path):
    result = edge("check", "--config", str(write_config(tmp_path, "", tmp_path / "none")))
    assert_one_line_error(result, 1, "hr.json", "not found", "make models")


def test_altered_model_is_refused(tmp_path):
    bundle = tmp_path / "models"
    shutil.copytree(MODELS, bundle)
    data = bytearray((bundle / "hr.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "hr.tflite").write_bytes(bytes(data))
    result = edge("check", "--config", str(write_config(tmp_path, "", bundle)))
    assert_one_line_error(result, 1, "hr.tflite", "does not match its manifest", "retrain")


def test_check_accepts_the_shipped_models(tmp_path):
    result = edge("check", "--config", str(write_config(tmp_path, "")))
    assert result.returncode == 0, result.stderr
    assert "model hr" in result.stdout and "ok" in result.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_outbox_directory_that_cannot_be_created(tmp_path, command):
    (tmp_path / "a-file").write_text("not a directory")
    body = (f"[mqtt]\nport = {free_port()}\noutbox = '{tmp_path / 'a-file' / 'outbox.sqlite'}'\n"
            "[[devices]]\nname = 'wrist'\nport = 'loop://'\n")
    options = ["--log-level", "error"] if command == "run" else []
    result = edge(command, *options, "--config", str(write_config(tmp_path, body)))
    assert_one_line_error(result, 2, "'mqtt.outbox'", "a-file", "cannot be created")


def test_replay_of_a_file_that_is_not_a_recording(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello, world\n" * 100)
    result = edge("replay", str(junk), "--models", str(MODELS), "--out", "none")
    assert_one_line_error(result, 2, "no valid wire-protocol frames")


def test_replay_of_a_rate_no_model_can_use_names_both(tmp_path):
    recording = tmp_path / "odd-rate.bin"
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario", "normal",
                    "--duration", "20", "--ppg-rate", "12", "--out", str(recording)],
                   check=True, cwd=ROOT)  # below 16 Hz: too slow even to upsample
    result = edge("replay", str(recording), "--models", str(MODELS), "--out", "none")
    assert_one_line_error(result, 2, "PPG at 12 Hz", "model hr@", "32 Hz", "16 Hz or faster")


def test_the_board_config_shipped_in_deploy_is_valid():
    from edge.config import load_config

    config = load_config(ROOT / "deploy" / "edge.toml")
    assert config.devices[0].port == "/dev/wearable0"
    assert str(config.state_path(config.mqtt.outbox)).startswith("/var/lib/wearable-edge/")
    assert str(config.state_path(config.calibration_file)).startswith("/var/lib/wearable-edge/")


def test_json_logs_are_one_object_per_line(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    body = (f"log_format = 'json'\n[mqtt]\nport = {free_port()}\n"
            f"outbox = '{tmp_path / 'a-file' / 'outbox.sqlite'}'\n"
            "[[devices]]\nname = 'w'\nport = 'loop://'\n")
    result = edge("run", "--config", str(write_config(tmp_path, body)))
    *logs, error = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "cannot be created" in error
    entries = [json.loads(line) for line in logs]
    assert entries and all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    assert any("loaded model hr" in e["message"] for e in entries)
