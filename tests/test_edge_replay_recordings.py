"""`wearable-edge replay` of CSV files and PhysioNet WFDB records: the same bytes and the same
pipeline as a wire recording, and one-line errors for bad input (through `edge.cli.main`, with
the shipped int8 HR bundle on a real TFLite interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_sim import get_scenario, simulate, stream
from edge.cli import main
from wire import recordings

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
HR = json.loads((MODELS / "hr.json").read_text())
HR_LABEL = f"{HR['name']}@{HR['version']}"
VOLATILE = {"time", "id", "alarm_id"}  # wall clock and random ids differ between runs


def replay(capsys, path: Path, out: Path | None = None) -> tuple[int, str]:
    """Exit status and stderr of `wearable-edge replay PATH` (nothing may go to stdout)."""
    code = main(["replay", str(path), "--models", str(MODELS),
                 "--out", "none" if out is None else str(out)])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def messages(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{**m, "payload": {k: v for k, v in m["payload"].items() if k not in VOLATILE}}
            for m in lines]


def write_csv(path: Path, rec, offset_s: float = 100.0) -> None:
    """PPG and accelerometer of a simulated recording as a CSV file, at the wire's resolution
    (ADC counts, 1/4096 g), with times that do not start at 0."""
    raw_acc = np.round(rec.acc * 4096) / 4096
    lines = ["time_s,ppg,acc_x,acc_y,acc_z"]
    for i, (ppg, (x, y, z)) in enumerate(zip(rec.ppg, raw_acc, strict=True)):
        lines.append(f"{offset_s + i / rec.ppg_rate:.6f},{ppg:.0f},{x:.12g},{y:.12g},{z:.12g}")
    path.write_text("\n".join(lines) + "\n")


def test_csv_replays_to_the_same_vitals_as_the_wire_recording(tmp_path, capsys) -> None:
    # One rate for PPG and accelerometer: a CSV file has one time column.
    rec = simulate("exercise", 5, ppg_rate=64.0, acc_rate=64.0)
    wire_file, csv_file = tmp_path / "exercise.bin", tmp_path / "exercise.csv"
    wire_file.write_bytes(b"".join(data for _, data in stream(rec)))
    write_csv(csv_file, rec)
    # The CSV becomes exactly the bytes the wearable sent.
    signals = recordings.load_csv(csv_file)
    assert b"".join(d for _, d in recordings.stream(signals)) == wire_file.read_bytes()

    results = {}
    for kind, path in (("wire", wire_file), ("csv", csv_file)):
        out = tmp_path / f"{kind}.jsonl"
        code, err = replay(capsys, path, out)
        assert code == 0, err
        assert f"device time ({kind})" in err
        results[kind] = messages(out)
    from_wire, from_csv = results["wire"], results["csv"]
    vitals = [m for m in from_csv if m["topic"].endswith("/vitals")]
    alarms = [m["payload"]["event"] for m in from_csv if m["topic"].endswith("/alarms")]
    assert len(vitals) == (rec.duration_s - 8) // 2 + 1  # 8 s windows every 2 s
    assert alarms == ["raised", "cleared"]  # the run's tachycardia
    assert from_csv == from_wire  # same values, same count, same order


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # wfdb 4.3 on pandas 3
@pytest.mark.parametrize("name", ["rec01.hea", "rec01"])
def test_wfdb_record_replays(tmp_path, capsys, name: str) -> None:
    wfdb = pytest.importorskip("wfdb")
    rate = 125  # not a multiple of the model's 32 Hz: the resampler runs
    rec = simulate(get_scenario("tachycardia").with_duration(60), 1, ppg_rate=rate,
                   ecg_rate=rate, channels=("ppg", "ecg"))
    pleth = rec.ppg / 1e5  # a physical unit ("NU"), as monitors export it
    wfdb.wrsamp("rec01", fs=rate, units=["mV", "NU"], sig_name=["II", "PLETH"],
                p_signal=np.stack([rec.ecg, pleth], axis=1), fmt=["16", "16"],
                write_dir=str(tmp_path))
    out = tmp_path / "events.jsonl"
    code, err = replay(capsys, tmp_path / name, out)
    assert code == 0, err
    assert "(wfdb)" in err and f"no ACCEL in the recording: model {HR_LABEL} runs" in err
    vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")
              and m["payload"]["vital"] == "heart_rate"]
    # 8 s windows every 2 s; the resampler waits for 0.31 s past the end of the last one.
    assert len(vitals) == (60 - 8) // 2
    assert all(v["motion_g"] is None for v in vitals)  # no accelerometer: motion unknown
    truth = [np.mean(rec.truth.hr_bpm[int(v["device_time_s"]) - 8:int(v["device_time_s"])])
             for v in vitals]
    error = np.abs(np.array([v["value"] for v in vitals]) - truth)
    assert np.median(error) < 5, error


def test_recording_kind_by_extension_then_content(tmp_path) -> None:
    (tmp_path / "walk.txt").write_text("time_s,ppg\n0,1\n")
    (tmp_path / "capture.dat").write_bytes(b"\x01\x02\x00")
    (tmp_path / "rec01.hea").write_text("rec01 1 250 10\n")
    (tmp_path / "rec01.dat").write_bytes(b"\x00\x00")
    kinds = {name: recordings.recording_kind(tmp_path / name)
             for name in ("walk.txt", "capture.dat", "rec01", "rec01.hea", "rec01.dat",
                          "missing.csv", "missing.bin")}
    assert kinds == {"walk.txt": "csv", "capture.dat": "wire", "rec01": "wfdb",
                     "rec01.hea": "wfdb", "rec01.dat": "wfdb", "missing.csv": "csv",
                     "missing.bin": "wire"}


def ppg_csv(seconds: float, rate: float) -> str:
    t = np.arange(int(seconds * rate)) / rate
    ppg = 100_000 + 1_000 * np.sin(2 * np.pi * 1.5 * t)
    return "time_s,ppg\n" + "".join(f"{a:.5f},{b:.0f}\n" for a, b in zip(t, ppg, strict=True))


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("nope.bin", None, "recording {path} cannot be read: No such file or directory; check "
                       "the path"),
    ("nope.csv", None, "cannot read '{path}' (No such file or directory); check the path"),
    ("back.csv", "time_s,ppg\n0,1\n0.02,2\n0.01,3\n",
     "{path}:4: column 'time_s' goes from 0.02 to 0.01; times must increase"),
    ("nan.csv", "time_s,ppg\n0,1\n0.02,x\n", "{path}:3: column 'ppg': 'x' is not a number"),
    ("axes.csv", "time_s,ppg,acc_x,acc_y\n0,1,0,0\n0.1,2,0,0\n",
     "{path}:1: missing column 'acc_z'; the accelerometer needs acc_x, acc_y and acc_z"),
    ("gap.csv", "time_s,ppg\n0,1\n0.02,1\n0.04,1\n1.0,1\n",
     "{path}:5: time_s jumps by 0.96 s where the sampling interval is 0.02 s; resample the "
     "file to a regular rate (gaps are not supported)"),
    ("ecg-only.csv", "time_s,ecg\n0,0.1\n0.004,0.2\n0.008,0.1\n",
     "recording {path} has no PPG channel, which model " + HR_LABEL + " needs (the recording "
     "has ECG); add the column(s) ppg"),
    ("slow.csv", ppg_csv(20, 20.0),
     "{path}: PPG at 20 Hz cannot feed model " + HR_LABEL + " (32 Hz): "),
])
def test_bad_recording_is_one_line(tmp_path, capsys, name: str, text: str | None,
                                   expected: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    code, err = replay(capsys, path)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    line = f"wearable-edge: error: {expected.format(path=path)}"
    if expected.endswith(": "):  # the rest is the signal stage's reason
        assert err.startswith(line) and "32 Hz" in err[len(line):], err
    else:
        assert err == line + "\n"


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_wfdb_record_without_ppg_names_the_channel_and_the_model(tmp_path, capsys) -> None:
    wfdb = pytest.importorskip("wfdb")
    t = np.arange(250 * 10) / 250
    wfdb.wrsamp("ecg01", fs=250, units=["mV"], sig_name=["II"],
                p_signal=np.sin(2 * np.pi * 1.2 * t)[:, None], fmt=["16"],
                write_dir=str(tmp_path))
    code, err = replay(capsys, tmp_path / "ecg01.hea")
    assert code == 1
    assert err == (f"wearable-edge: error: recording {tmp_path / 'ecg01.hea'} has no PPG "
                   f"channel, which model {HR_LABEL} needs (the recording has ECG); use a "
                   "record with a PLETH, PPG or BVP signal\n")


def test_unwritable_output_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "walk.csv"
    path.write_text(ppg_csv(10, 64.0))
    code = main(["replay", str(path), "--models", str(MODELS),
                 "--out", str(tmp_path / "no" / "such" / "dir.jsonl")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "cannot be written: No such file or directory" in err


def test_csv_quirks_read_like_a_plain_file(tmp_path) -> None:
    """numpy reads a plain file at once; a file it will not take (here an empty row ',,', as
    spreadsheets export) is read row by row: both give the same numbers."""
    rows = [(100 + i / 50, 1000 + i, "" if i % 10 else f"{90 + i / 10:g}") for i in range(40)]
    plain = tmp_path / "plain.csv"
    plain.write_text("time_s,ppg,glucose\n" + "".join(f"{t!r},{p},{g}\n" for t, p, g in rows))
    quirky = tmp_path / "quirky.csv"
    quirky.write_text("\ufefftime_s, ppg ,glucose\n\n" + "".join(
        f' {t!r} ,"{p}",{g or "  "}\n' + ("\n,,\n" if i == 7 else "")
        for i, (t, p, g) in enumerate(rows)), encoding="utf-8")
    a, b = recordings.load_csv(plain), recordings.load_csv(quirky)
    assert a.channels == b.channels == ("ppg", "cgm")
    assert np.array_equal(a.ppg, b.ppg) and a.ppg_rate == b.ppg_rate == pytest.approx(50)
    assert np.array_equal(a.cgm[0], b.cgm[0]) and np.array_equal(a.cgm[1], b.cgm[1])
    assert list(a.cgm[1]) == [90, 91, 92, 93]


def test_edge_reads_a_csv_without_the_simulator(tmp_path) -> None:
    """The runtime reads recordings through wire.recordings: replaying a CSV file imports
    neither device_sim nor TensorFlow."""
    path = tmp_path / "walk.csv"
    path.write_text(ppg_csv(12, 64.0))
    code = ("import sys\nfrom edge.cli import main\n"
            f"assert main(['replay', {str(path)!r}, '--models', {str(MODELS)!r}, "
            "'--out', 'none']) == 0\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'device_sim', 'tensorflow', 'training'}))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_glucose_only_csv_is_not_an_error(tmp_path, capsys) -> None:
    """CGM readings give glucose estimates without a model, so a recording with nothing for
    the HR model still replays; the summary says what the model lacked."""
    path = tmp_path / "cgm.csv"
    path.write_text("time_s,glucose\n" + "".join(f"{300 * i},{110 - 5 * i}\n" for i in range(6)))
    out = tmp_path / "events.jsonl"
    code, err = replay(capsys, path, out)
    assert code == 0, err
    assert f"no PPG in the recording: model {HR_LABEL} gives nothing" in err
    vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")]
    assert [(v["vital"], v["value"]) for v in vitals] == [
        ("glucose", 110 - 5 * i) for i in range(6)]
