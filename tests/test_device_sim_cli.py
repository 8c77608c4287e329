"""`wearable-sim` as users run it: a subprocess, real pty, one-line errors, clean signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from device_sim import get_scenario, simulate, stream
from device_sim.cli import main
from wire.protocol import Decoder

ROOT = Path(__file__).resolve().parents[1]


# The project root on the path, so the tests also run from a checkout that is not installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                 os.environ.get("PYTHONPATH")]))}


def sim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "device_sim", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=60)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "device_sim", *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_list_shows_every_scenario_with_its_description(capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("normal", "tachycardia", "bradycardia", "exercise"):
        assert name in out
    assert "145 bpm" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["run", "--scenario", "tachy", "--out", "x.bin"], "unknown scenario 'tachy'; choose one of"),
    (["run", "--ppg-rate", "-5", "--out", "x.bin"], "--ppg-rate"),
    (["run", "--acc-rate", "fast", "--out", "x.bin"], "--acc-rate"),
    (["run", "--port", "/dev/does-not-exist"], "cannot open serial port"),
    (["run", "--port", "bogus://x"], "cannot open serial port"),
    (["run", "--out", "/nonexistent-dir/x.bin"], "cannot write"),
    (["run", "--device-id", "70000", "--out", "x.bin"], "0 to 65535"),
    (["run", "--scenario", "normal"], "one of the arguments --pty --port --out is required"),
    (["frobnicate"], "invalid choice"),
    (["run", "--fault", "melt@3", "--out", "x.bin"], "argument --fault: unknown fault 'melt'"),
    (["run", "--fault", "detach", "--out", "x.bin"], "is not KIND@START[:DURATION]"),
    (["run", "--channels", "ppg,eeg", "--out", "x.bin"], "argument --channels"),
    (["run", "--devices", "0", "--pty"], "argument --devices"),
    (["replay", "nothing.txt", "--out", "x.bin"], "neither a .csv file nor a WFDB record"),
    (["replay", "missing.csv", "--out", "x.bin"], "cannot read 'missing.csv'"),
])
def test_user_errors_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path) -> None:
    result = sim(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and lines[0].startswith("wearable-sim")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_out_and_truth_files_match_the_library(tmp_path) -> None:
    out, truth = tmp_path / "t.bin", tmp_path / "t.jsonl"
    result = sim("run", "--scenario", "tachycardia", "--seed", "3", "--device-id", "7",
                 "--out", str(out), "--truth", str(truth))
    assert result.returncode == 0, result.stderr
    expected = simulate("tachycardia", 3)
    assert out.read_bytes() == b"".join(data for _, data in stream(expected, 7))
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(rows) == expected.duration_s


def test_duration_and_rates_reach_the_stream(tmp_path) -> None:
    out = tmp_path / "short.bin"
    assert sim("run", "--scenario", "exercise", "--duration", "12", "--ppg-rate", "117",
               "--acc-rate", "50", "--out", str(out)).returncode == 0
    frames = Decoder().feed(out.read_bytes())
    ppg = [f for f in frames if f.channel == 1]
    assert sum(len(f.samples) for f in ppg) == 12 * 117
    assert {f.sample_rate_hz for f in ppg} == {117.0}


def test_pty_end_to_end_through_pyserial() -> None:
    proc = start("run", "--scenario", "tachycardia", "--duration", "20", "--pty", "--speed", "0")
    try:
        line = proc.stdout.readline()
        assert line.startswith("PTY /dev/"), line
        time.sleep(0.3)  # a reader that is late must not miss anything
        decoder, got = Decoder(), []
        with serial.Serial(line.split()[1], timeout=0.5) as port:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    got += decoder.feed(port.read(max(1, port.in_waiting)))
                except serial.SerialException:  # hang-up: the simulator is done
                    break
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        proc.kill()
    expected = list(stream(simulate(get_scenario("tachycardia").with_duration(20), 0)))
    assert len(got) == len(expected)
    assert decoder.stats.crc_errors == decoder.stats.frames_lost == decoder.stats.malformed == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_cleanly(sig: signal.Signals) -> None:
    # The PTY line comes once the handlers are in place: no race with a loaded machine.
    proc = start("run", "--scenario", "normal", "--pty", "--no-wait-for-reader")
    assert proc.stdout.readline().startswith("PTY ")
    time.sleep(0.3)  # streaming, blocked on the full pty buffer
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == "" and out == ""


def test_cli_disconnect_fault_reopens_the_pty_behind_a_stable_link(tmp_path) -> None:
    link = tmp_path / "wrist"
    proc = start("run", "--scenario", "tachycardia", "--duration", "12", "--pty", "--speed",
                 "0", "--link", str(link), "--fault", "disconnect@5:2")
    try:
        first = proc.stdout.readline()
        assert first.startswith("PTY ") and os.path.realpath(link) == first.split()[1]
        decoder, got, opened = Decoder(), [], 0
        deadline = time.monotonic() + 30
        while opened < 2 and time.monotonic() < deadline:
            try:
                port = serial.Serial(str(link), timeout=0.5)
            except (serial.SerialException, OSError):
                time.sleep(0.01)
                continue
            opened += 1
            with port:
                while True:
                    try:
                        got += decoder.feed(port.read(max(1, port.in_waiting)))
                    except serial.SerialException:
                        break
        assert proc.wait(timeout=10) == 0
        second = proc.stdout.readline()
        assert second.startswith("PTY ") and proc.stdout.read() == ""
    finally:
        proc.kill()
    full = simulate(get_scenario("tachycardia").with_duration(12), 0)
    expected = [t for t, _ in stream(full) if not 5 <= t < 7]
    assert len(got) == len(expected)
    assert decoder.stats.frames_lost == len(list(stream(full))) - len(expected)
    assert decoder.stats.crc_errors == decoder.stats.malformed == 0
    assert not link.exists()  # removed at the end
