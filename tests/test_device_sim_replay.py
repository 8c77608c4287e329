"""Real recordings (CSV, PhysioNet WFDB) and many devices over the same serial path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from device_sim import get_scenario, simulate, stream
from device_sim.cli import main
from device_sim.recordings import RecordingError, load_csv, load_recording
from wire.protocol import Channel, Decoder

SHORT = get_scenario("tachycardia").with_duration(10)
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                 os.environ.get("PYTHONPATH")]))}


def write_csv(path: Path, seconds: int = 20, rate: float = 50.0) -> np.ndarray:
    """A CSV written from a simulated recording (so its content is known)."""
    rec = simulate("tachycardia", 2, ppg_rate=rate, acc_rate=rate, channels=("ppg", "acc", "ecg"),
                   ecg_rate=rate)
    n = int(seconds * rate)
    t = np.arange(n) / rate + 100.0  # recordings rarely start at 0
    glucose = np.full(n, np.nan)
    glucose[:: int(5 * rate)] = 100 + np.arange(len(glucose[:: int(5 * rate)]))
    lines = ["time_s,ppg,acc_x,acc_y,acc_z,ecg,glucose"]
    for i in range(n):
        g = "" if np.isnan(glucose[i]) else f"{glucose[i]:g}"
        lines.append(f"{t[i]:.4f},{rec.ppg[i]:.0f},{rec.acc[i, 0]:.5f},{rec.acc[i, 1]:.5f},"
                     f"{rec.acc[i, 2]:.5f},{rec.ecg[i]:.4f},{g}")
    path.write_text("\n".join(lines) + "\n")
    return rec.ppg[:n]


def test_csv_replays_every_column(tmp_path) -> None:
    path = tmp_path / "rec.csv"
    ppg = write_csv(path)
    rec = load_csv(path)
    assert rec.channels == ("ppg", "acc", "ecg", "cgm")
    assert rec.ppg_rate == pytest.approx(50.0) and rec.duration_s == 20
    out = tmp_path / "rec.bin"
    assert main(["replay", str(path), "--out", str(out)]) == 0
    decoder = Decoder()
    got = decoder.feed(out.read_bytes())
    assert decoder.stats.crc_errors == decoder.stats.frames_lost == 0
    sent = np.concatenate([f.values[:, 0] for f in got if f.channel == Channel.PPG])
    assert np.array_equal(sent, np.round(ppg))
    cgm = [f for f in got if f.channel == Channel.CGM]
    assert [f.timestamp_us for f in cgm] == [0, 5_000_000, 10_000_000, 15_000_000]
    assert [f.values[0, 0] for f in cgm] == [100, 101, 102, 103]


@pytest.mark.parametrize(("text", "needle"), [
    ("time_s,ppg\n" + "".join(f"{0.3 if i == 20 else i / 50},{i}\n" for i in range(50)),
     ":22: column 'time_s' goes back from 0.38 to 0.3, more than one sampling interval"),
    ("time_s,ppg\n" + "".join(f"{i / 10},{i}\n" for i in range(50)),
     ":3: time_s steps by 0.1 s, 10 Hz: outside 16-10000 Hz"),
    ("time_s,ppg\n" + "".join(f"{i / 50},7\n" for i in range(50)),
     ":2: column 'ppg' is 7 on every row"),
    ("time_s,ppg,acc_x,acc_y\n0,1,0,0\n0.1,2,0,0\n", ":1: missing column 'acc_z'"),
    ("time,ppg\n0,1\n", ":1: no 'time_s' column"),
    ("time_s,ppg,spo2\n0,1,2\n", ":1: unknown column 'spo2'"),
    ("time_s,ppg\n0,1\n0.02,x\n", ":3: column 'ppg': 'x' is not a number"),
    ("time_s,ppg\n0,1\n0.02\n", ":3: 1 values for 2 columns"),
    ("time_s,ppg\n0,1\n0.02,1\n0.04,1\n1.0,1\n", ":5: time_s jumps by 0.96 s"),
    ("time_s,sbp\n0,120\n", ":1: missing column 'dbp'"),
])
def test_bad_csv_names_line_and_column(tmp_path, text: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(RecordingError) as err:
        load_csv(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    result = subprocess.run([sys.executable, "-m", "device_sim", "replay", str(path), "--out",
                             str(tmp_path / "x.bin")], cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert needle in result.stderr and "Traceback" not in result.stderr


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # wfdb 4.3 on pandas 3
def test_wfdb_record_replays_over_a_pty(tmp_path) -> None:
    wfdb = pytest.importorskip("wfdb")
    rate, n = 250, 250 * 12
    t = np.arange(n) / rate
    ecg = np.sin(2 * np.pi * 1.2 * t) * 1.2  # mV
    pleth = 1.5 + 0.3 * np.sin(2 * np.pi * 1.2 * t - 1)  # NU, a physical unit
    wfdb.wrsamp("rec01", fs=rate, units=["mV", "NU"], sig_name=["II", "PLETH"],
                p_signal=np.stack([ecg, pleth], axis=1), fmt=["16", "16"],
                write_dir=str(tmp_path))
    rec = load_recording(tmp_path / "rec01.hea")
    assert rec.channels == ("ppg", "ecg") and rec.ecg_rate == rate
    proc = subprocess.Popen([sys.executable, "-m", "device_sim", "replay",
                             str(tmp_path / "rec01"), "--pty", "--speed", "4"], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PTY "), (line, proc.stderr.read() if proc.poll() else "")
        decoder, got = Decoder(), []
        start = time.monotonic()
        with serial.Serial(line.split()[1], timeout=0.5) as port:
            while time.monotonic() - start < 20:
                try:
                    got += decoder.feed(port.read(max(1, port.in_waiting)))
                except serial.SerialException:
                    break
        elapsed = time.monotonic() - start
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    assert 2.0 < elapsed < 8  # 12 s of recording at 4x
    ecg_out = np.concatenate([f.values[:, 0] for f in got if f.channel == Channel.ECG])
    ppg_out = np.concatenate([f.values[:, 0] for f in got if f.channel == Channel.PPG])
    assert np.abs(ecg_out - rec.ecg).max() < 0.001
    assert np.abs(ppg_out - pleth).max() < 0.01
    assert decoder.stats.frames_lost == decoder.stats.crc_errors == 0


def test_many_devices_on_many_ptys(tmp_path) -> None:
    n = 3
    proc = subprocess.Popen([sys.executable, "-m", "device_sim", "run", "--scenario",
                             "tachycardia", "--duration", "10", "--devices", str(n), "--pty",
                             "--speed", "0", "--truth", str(tmp_path / "t.jsonl")], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        paths = [proc.stdout.readline().split()[1] for _ in range(n)]
        assert len(set(paths)) == n
        results = {}
        for path in paths:
            decoder, got = Decoder(), []
            with serial.Serial(path, timeout=0.5) as port:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        got += decoder.feed(port.read(max(1, port.in_waiting)))
                    except serial.SerialException:
                        break
            results[path] = (decoder, got)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
    ids = sorted({f.device_id for _, got in results.values() for f in got})
    assert ids == [1, 2, 3]
    for decoder, got in results.values():
        assert len({f.device_id for f in got}) == 1
        assert decoder.stats.frames_lost == decoder.stats.crc_errors == 0
        assert len(got) == len(list(stream(simulate(SHORT, 0))))
    assert all((tmp_path / f"t-{i}.jsonl").exists() for i in (1, 2, 3))


def test_devices_need_a_pty(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "device_sim", "run", "--devices", "2",
                             "--out", str(tmp_path / "x.bin")], cwd=ROOT, env=ENV,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--devices N needs --pty" in result.stderr


def test_an_irregular_csv_streams_and_says_how_it_was_read(tmp_path) -> None:
    """Repeated, jittered stamps over regular samples: the same samples go out, and stderr
    says what the reader saw and did."""
    path = tmp_path / "logger.csv"
    ppg = write_csv(path)
    header, *rows = path.read_text().splitlines()
    rng = np.random.default_rng(4)
    stamps = 100 + np.arange(len(rows)) / 50.0 + rng.uniform(-0.006, 0.006, len(rows))
    stamps[200:204] = stamps[200]  # a batch under one stamp
    path.write_text("\n".join([header, *(f"{t:.3f}," + row.split(",", 1)[1]
                                         for t, row in zip(stamps, rows, strict=True))]) + "\n")
    out = tmp_path / "logger.bin"
    result = subprocess.run([sys.executable, "-m", "device_sim", "replay", str(path), "--out",
                             str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"wearable-sim: {path}: time_s irregular (3 repeated "
                                    "timestamps, ") and result.stderr.count("\n") == 1
    assert "rows taken as regular samples at " in result.stderr
    got = Decoder().feed(out.read_bytes())
    sent = np.concatenate([f.values[:, 0] for f in got if f.channel == Channel.PPG])
    assert np.array_equal(sent, np.round(ppg))
