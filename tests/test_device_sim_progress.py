"""Long simulations say how far they are: a progress line on stderr while a file is written,
and a `--pty` stream that keeps saying it is alive (and what it waits for) after its PTY
line. Real subprocesses and a real pty; the tests wait for lines, never for time."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

import serial

from device_sim.progress import Progress
from wire.protocol import Decoder

ROOT = Path(__file__).resolve().parents[1]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "device_sim", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_long_file_simulation_reports_progress_on_stderr(tmp_path):
    out = tmp_path / "day.bin"
    # 2 h at 100 progress lines a second: it cannot finish before the first line.
    result = subprocess.run(
        [sys.executable, "-m", "device_sim", "run", "--scenario", "normal", "--duration",
         "7200", "--out", str(out), "--progress", "0.01"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "wearable-sim: simulating 2 h of 'normal' for 1 device(s)"
    progress = [line for line in lines[1:] if " sent (" in line]
    assert progress and len(progress) == len(lines) - 1, result.stderr
    assert all(line.startswith("wearable-sim: device 1: ") and "of 2:00:00 sent" in line
               for line in progress)
    # Device time only moves forward, and the stream really is a file of frames.
    shares = [int(line.split(" sent (")[1].split("%")[0]) for line in progress]
    assert shares == sorted(shares)
    decoder = Decoder()
    frames = decoder.feed(out.read_bytes()[:100_000])
    assert frames and decoder.stats.crc_errors == 0


def test_progress_can_be_turned_off(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "device_sim", "run", "--scenario", "normal", "--duration",
         "3600", "--out", str(tmp_path / "h.bin"), "--progress", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_pty_keeps_saying_it_is_alive_and_what_it_waits_for():
    proc = start("run", "--scenario", "normal", "--duration", "600", "--pty", "--progress", "0.2")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        path = proc.stdout.readline().split()[1]
        # Nobody has opened the pty: the line says so, again and again.
        waiting = [proc.stderr.readline() for _ in range(2)]
        assert all(f"waiting for a reader on {path}" in line for line in waiting), waiting
        assert all("0:00:00 of 0:10:00 sent" in line for line in waiting), waiting
        with serial.Serial(path, timeout=5) as port:
            decoder = Decoder()
            while not decoder.feed(port.read(256)):
                pass  # data flows: the reader is seen
            # Later lines drop the waiting note once the reader is there.
            for _ in range(200):
                line = proc.stderr.readline()
                port.reset_input_buffer()
                if "waiting for" not in line:
                    break
            assert line.startswith("wearable-sim: device 1: ") and "of 0:10:00 sent" in line
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_several_devices_report_the_slowest():
    progress = Progress(io.StringIO(), "wearable-sim", 0)
    a, b = progress.add(1, 600.0), progress.add(2, 600.0)
    a.sent_s, b.sent_s = 300.0, 120.0
    with progress:
        line = progress.line()
    assert line.startswith("wearable-sim: 2 devices (slowest 2): 0:02:00 of 0:10:00 sent (20%)")
