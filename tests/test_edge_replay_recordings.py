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
    ("back.csv", "time_s,ppg\n" + "".join(f"{0.3 if i == 20 else i / 50},{i}\n"
                                           for i in range(50)),
     "{path}:22: column 'time_s' goes back from 0.38 to 0.3, more than one sampling interval "
     "(0.02 s); sort the rows by time_s, or split the file where the logger's clock was reset"),
    ("nan.csv", "time_s,ppg\n0,1\n0.02,x\n", "{path}:3: column 'ppg': 'x' is not a number"),
    ("axes.csv", "time_s,ppg,acc_x,acc_y\n0,1,0,0\n0.1,2,0,0\n",
     "{path}:1: missing column 'acc_z'; the accelerometer needs acc_x, acc_y and acc_z"),
    ("gap.csv", "time_s,ppg\n0,1\n0.02,1\n0.04,1\n1.0,1\n",
     "{path}:5: time_s jumps by 0.96 s where the sampling interval is 0.02 s; resample the "
     "file to a regular rate (gaps are not supported)"),
    ("ecg-only.csv", "time_s,ecg\n0,0.1\n0.004,0.2\n0.008,0.1\n",
     "recording {path} has no PPG channel, which model " + HR_LABEL + " needs (the recording "
     "has ECG); add the column(s) ppg"),
    ("slow.csv", ppg_csv(20, 12.5),
     "{path}:3: time_s steps by 0.08 s, 12.5 Hz: outside 16-10000 Hz, the rates the models can "
     "use; record at 16 Hz or faster (or resample the file)"),
    ("flat.csv", "time_s,ppg\n" + "".join(f"{i / 50},512\n" for i in range(500)),
     "{path}:2: column 'ppg' is 512 on every row: the sensor saw no pulse; check its contact "
     "with the skin, or drop the column"),
    ("clipped.csv", "time_s,ppg\n" + "".join(
        f"{i / 50},{min(4095, round(3000 + 2000 * np.sin(i / 8)))}\n" for i in range(500)),
     "{path}:7: column 'ppg' is clipped: 32% of the rows sit at its maximum 4095; lower the "
     "sensor's gain or LED current, or replay only the part that is not clipped"),
])
def test_bad_recording_is_one_line(tmp_path, capsys, name: str, text: str | None,
                                   expected: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    out = tmp_path / "events.jsonl"
    out.write_text("an earlier replay\n")
    code, err = replay(capsys, path, out)
    assert code == 2  # the input is at fault
    assert err == f"wearable-edge: error: {expected.format(path=path)}\n"
    # Nothing partial written: the earlier output is untouched, no temporary file is left.
    assert out.read_text() == "an earlier replay\n"
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted({name, "events.jsonl"}
                                                                - {"nope.bin", "nope.csv"})


@pytest.mark.filterwarnings("ignore:The inplace keyword")
def test_wfdb_record_without_ppg_names_the_channel_and_the_model(tmp_path, capsys) -> None:
    wfdb = pytest.importorskip("wfdb")
    t = np.arange(250 * 10) / 250
    wfdb.wrsamp("ecg01", fs=250, units=["mV"], sig_name=["II"],
                p_signal=np.sin(2 * np.pi * 1.2 * t)[:, None], fmt=["16"],
                write_dir=str(tmp_path))
    code, err = replay(capsys, tmp_path / "ecg01.hea")
    assert code == 2
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


BP = json.loads((MODELS / "bp.json").read_text())
BP_LABEL = f"{BP['name']}@{BP['version']}"


def test_a_weak_coarse_pulse_is_not_called_clipped(tmp_path) -> None:
    """A 12-bit PPG whose pulse spans 4 counts sits at its maximum on a third of the rows:
    quantisation, not clipping. A file in reverse order is named as such."""
    t = np.arange(500) / 50
    weak = np.floor(2048 + 1.6 * np.sin(2 * np.pi * 1.2 * t))  # 2046-2049
    path = tmp_path / "weak.csv"
    path.write_text("time_s,ppg\n" + "".join(f"{a:g},{b:g}\n" for a, b in zip(t, weak,
                                                                              strict=True)))
    assert np.mean(weak == weak.max()) > 0.25
    np.testing.assert_array_equal(recordings.load_csv(path).ppg, weak)
    path.write_text("time_s,ppg\n" + "".join(f"{a:g},{b:g}\n" for a, b in zip(t[::-1], weak,
                                                                              strict=True)))
    with pytest.raises(recordings.RecordingError, match=r"weak\.csv:3: column 'time_s' goes "
                                                        r"back from 9\.98 to 9\.96; sort the"):
        recordings.load_csv(path)


def test_the_reader_and_the_runtime_agree_on_the_slowest_rate() -> None:
    from edge.signal import MIN_SENSOR_RATE_HZ

    assert recordings.MIN_RATE_HZ == MIN_SENSOR_RATE_HZ


def jittered_times(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """What real loggers write: stamps jittered by up to 30 % of an interval, to the ms; a
    batch of 4 samples under one stamp; one sample's stamp written twice."""
    t = np.arange(n) / rate + rng.uniform(-0.3, 0.3, n) / rate
    t[100:104] = t[100]  # a batch stamped at its first sample
    t[500] = t[499]  # a repeated timestamp
    return np.round(t, 3)


def sine_csv(path: Path, stamps: np.ndarray, true_t: np.ndarray, f: float) -> np.ndarray:
    ppg = np.round(1e5 + 1e3 * np.sin(2 * np.pi * f * true_t), 1)
    path.write_text("time_s,ppg\n" + "".join(f"{100 + s:.3f},{p:.1f}\n"
                                             for s, p in zip(stamps, ppg, strict=True)))
    return ppg


def test_a_loggers_noisy_stamps_over_regular_samples_keep_the_samples(tmp_path) -> None:
    """Stamps jittered, batched and repeated, but within an interval of a straight line: the
    sensor sampled regularly and the logger stamped late. The rows are kept, sample for
    sample, at the line's rate; the note says what was seen and done."""
    rate = 50.0
    stamps = jittered_times(3000, rate, np.random.default_rng(5))
    ppg = sine_csv(tmp_path / "jitter.csv", stamps, np.arange(3000) / rate, 1.3)
    sig = recordings.load_csv(tmp_path / "jitter.csv")
    np.testing.assert_array_equal(sig.ppg, ppg)
    assert sig.ppg_rate == pytest.approx(rate, rel=1e-4)
    repeated = len(stamps) - len(np.unique(stamps))
    assert repeated >= 4
    (note,) = sig.notes
    assert note.startswith(f"time_s irregular ({repeated} repeated timestamps, intervals 0 to ")
    assert f"rows taken as regular samples at {sig.ppg_rate:g} Hz (the stamps stay within " in note


def test_irregular_sampling_is_interpolated_onto_a_uniform_grid(tmp_path) -> None:
    """Samples really taken at irregular times (intervals 10-30 ms, a repeated stamp, a
    batch): spread the repeats, interpolate onto a uniform grid; the values are the signal's
    at the grid times."""
    rate, f = 50.0, 1.3
    rng = np.random.default_rng(6)
    true_t = np.cumsum(rng.uniform(0.5, 1.5, 3000)) / rate
    true_t -= true_t[0]
    stamps = true_t.copy()
    stamps[100:104] = stamps[100]  # a batch under its first sample's stamp...
    stamps[500] = stamps[499]  # ... and a repeated stamp: where the spread puts them is a guess
    sine_csv(tmp_path / "irregular.csv", np.round(stamps, 3), true_t, f)
    sig = recordings.load_csv(tmp_path / "irregular.csv")
    rows_per_s = (len(true_t) - 1) / true_t[-1]  # 49.8: the grid is a round rate near it
    assert sig.ppg_rate == float(f"{rows_per_s:.3g}")
    grid = np.arange(len(sig.ppg)) / sig.ppg_rate
    expected = 1e5 + 1e3 * np.sin(2 * np.pi * f * grid)
    error = np.abs(sig.ppg - expected)
    # Linear interpolation over intervals up to 30 ms (5 a.u. at most), stamps to the ms.
    far = (grid > true_t[99]) & (grid < true_t[105]) | (grid > true_t[498]) & (grid < true_t[502])
    assert error[~far].max() < 1e3 * 2 * np.pi * f * 5e-4 + 8
    assert error[far].max() < 1e3 * 2 * np.pi * f * 1.5 / rate  # off by at most a sample
    (note,) = sig.notes
    assert note.startswith("time_s irregular (4 repeated timestamps, ")
    assert note.endswith(f"resampled from {rows_per_s:.5g} rows/s onto a uniform "
                         f"{sig.ppg_rate:g} Hz grid")


def test_a_jittery_watch_csv_replays_like_a_regular_one(tmp_path, capsys) -> None:
    """A 25 Hz watch (PPG + accelerometer, below the HR model's 32 Hz: upsampled) logged with
    jitter and repeated stamps: the summary says it was resampled; the heart rate is what the
    regular file of the same samples gives, and the truth."""
    rec = simulate(get_scenario("rest").with_duration(60), 2, ppg_rate=25.0, acc_rate=25.0)
    regular, jittery = tmp_path / "regular.csv", tmp_path / "jittery.csv"
    write_csv(regular, rec)
    lines = regular.read_text().splitlines()
    stamps = jittered_times(len(lines) - 1, 25.0, np.random.default_rng(3))
    jittery.write_text("\n".join([lines[0], *(f"{100 + s:.3f}," + line.split(",", 1)[1]
                                             for s, line in zip(stamps, lines[1:],
                                                                strict=True))]) + "\n")
    values = {}
    for path in (regular, jittery):
        out = tmp_path / f"{path.stem}.jsonl"
        code, err = replay(capsys, path, out)
        assert code == 0, err
        assert ("time_s irregular (" in err) == (path == jittery), err
        vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")]
        assert {v["quality"] for v in vitals} == {"good"}
        values[path.stem] = {v["device_time_s"]: v["value"] for v in vitals}
    assert "rows taken as regular samples at " in err
    assert len(values["jittery"]) >= (60 - 8) // 2
    for t, value in values["jittery"].items():
        truth = rec.truth.hr_bpm[round(t) - 8 : round(t)].mean()
        assert abs(value - truth) < 3.0
        # To one HR bin (1.875 bpm): the published rate is the tracked belief's mode, which a
        # small change of a window's distribution can move by a bin (test_edge_signal_rates).
        assert value == pytest.approx(values["regular"][t], abs=1.875)


def test_a_model_the_csv_cannot_feed_is_skipped_with_a_note(tmp_path, capsys) -> None:
    """A 32 Hz PPG + accelerometer file, every shipped model loaded: heart rate runs
    (upsampled), blood pressure (no ECG, and a PPG below its 64 Hz) is a note."""
    rec = simulate(get_scenario("rest").with_duration(30), 1, ppg_rate=32.0, acc_rate=32.0)
    path = tmp_path / "watch.csv"
    write_csv(path, rec)
    out = tmp_path / "events.jsonl"
    code, err = replay(capsys, path, out)
    assert code == 0, err
    assert f"no ECG in the recording: model {BP_LABEL} gives nothing" in err
    vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")]
    assert {v["vital"] for v in vitals} == {"heart_rate"} and len(vitals) >= 10


def test_a_ppg_too_slow_for_one_model_skips_only_that_model(tmp_path, capsys) -> None:
    """A wire recording (rates known only from the frames) and a CSV file with ECG and a
    32 Hz PPG: HR runs, BP's refusal is a note naming the rate and the fix."""
    bin_path = tmp_path / "slow-ppg.bin"
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario", "normal",
                    "--duration", "30", "--ppg-rate", "32", "--ecg-rate", "32",
                    "--channels", "ppg,acc,ecg", "--out", str(bin_path)], check=True, cwd=ROOT)
    rec = simulate(get_scenario("normal").with_duration(30), 1, ppg_rate=32.0, acc_rate=32.0,
                   ecg_rate=32.0, channels=("ppg", "acc", "ecg"))
    csv_path = tmp_path / "slow-ppg.csv"
    csv_path.write_text("time_s,ppg,ecg\n" + "".join(
        f"{i / 32:.6f},{p:.0f},{e:.4f}\n" for i, (p, e) in enumerate(zip(rec.ppg, rec.ecg,
                                                                         strict=True))))
    reason = (f"cannot feed model {BP_LABEL} (64 Hz): sensor rate 32 Hz is below the 64 Hz "
              "this model takes; record at 64 Hz or faster")
    for path, note in ((bin_path, "that model got none of those frames"),
                       (csv_path, f"model {BP_LABEL} skipped")):
        out = tmp_path / "events.jsonl"
        code, err = replay(capsys, path, out)
        assert code == 0, err
        assert f"{reason}; {note}" in err, err
        vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")]
        assert {v["vital"] for v in vitals} == {"heart_rate"} and len(vitals) >= 10


def test_a_wire_recording_no_model_can_use_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "slow.bin"
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario", "normal",
                    "--duration", "20", "--ppg-rate", "12", "--acc-rate", "12",
                    "--out", str(path)], check=True, cwd=ROOT)
    out = tmp_path / "events.jsonl"
    code, err = replay(capsys, path, out)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"wearable-edge: error: {path}: ")
    assert "at 12 Hz cannot feed model" in err and "record at 16 Hz or faster" in err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]  # nothing partial


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # wfdb 4.3 on pandas 3
def test_a_mixed_rate_wfdb_record_replays_each_signal_at_its_own_rate(tmp_path, capsys):
    """A multi-frequency PhysioNet record (frames at 62.45 Hz: ECG 4 samples per frame,
    249.8 Hz; PPG 2, 124.9 Hz) used to be averaged down to 62.45 Hz, too slow for the 64 Hz
    BP model. Each signal now keeps its rate: heart rate and blood pressure both run."""
    wfdb = pytest.importorskip("wfdb")
    rec = simulate(get_scenario("tachycardia").with_duration(60), 1, ppg_rate=124.9,
                   ecg_rate=249.8, channels=("ppg", "ecg"))
    frames_n = min(len(rec.ppg) // 2, len(rec.ecg) // 4)
    pleth = rec.ppg[: 2 * frames_n] / 1e5  # a physical unit ("NU"), as monitors export it
    wfdb.wrsamp("mixed", fs=62.45, units=["mV", "NU"], sig_name=["II", "PLETH"],
                e_p_signal=[rec.ecg[: 4 * frames_n], pleth], samps_per_frame=[4, 2],
                fmt=["16", "16"], write_dir=str(tmp_path))
    assert "16x4" in (tmp_path / "mixed.hea").read_text()  # really a multi-frequency record

    sig = recordings.load_wfdb(tmp_path / "mixed")
    assert (sig.ppg_rate, sig.ecg_rate) == (pytest.approx(124.9), pytest.approx(249.8))
    assert (len(sig.ppg), len(sig.ecg)) == (2 * frames_n, 4 * frames_n)
    np.testing.assert_allclose(sig.ecg, rec.ecg[: 4 * frames_n], atol=2e-3)

    out = tmp_path / "events.jsonl"
    code, err = replay(capsys, tmp_path / "mixed.hea", out)
    assert code == 0, err
    assert "cannot feed" not in err and "(wfdb)" in err
    vitals = [m["payload"] for m in messages(out) if m["topic"].endswith("/vitals")]
    assert {v["vital"] for v in vitals} == {"heart_rate", "systolic_bp", "diastolic_bp"}
    hr = [v for v in vitals if v["vital"] == "heart_rate"]
    truth = [np.mean(rec.truth.hr_bpm[int(v["device_time_s"]) - 8:int(v["device_time_s"])])
             for v in hr]
    assert np.median(np.abs(np.array([v["value"] for v in hr]) - truth)) < 5
    bp = [v for v in vitals if v["vital"] == "systolic_bp"]
    assert len(bp) >= (60 - 16) // 4 - 1  # 16 s windows every 4 s
