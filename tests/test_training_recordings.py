"""wearable-train --data: the user's own recordings, read through wire.recordings, labelled from
the file itself (ECG R-peak heart rate, CGM readings, cuff readings), split by file; every bad
input is one line naming the file or option, exit 2, and no bundle in --out."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device_sim import random_scenario, simulate
from edge.infer import load_model
from training import data, glucose, hr, recordings
from training import glucose_data as gdata
from training.cli import main

ROOT = Path(__file__).resolve().parent.parent
RATE = 128.0


def write_csv(path: Path, rec, rate: float = RATE, *, ecg: bool = True, acc: bool = True,
              cuff: bool = True, seconds: float | None = None) -> Path:
    """A simulated recording (all dense channels at `rate`) as a CSV file of
    docs/recording-csv.md: a cuff reading goes on the row nearest its time."""
    n = min(len(rec.ppg), len(rec.acc), len(rec.ecg))
    if seconds is not None:
        n = min(n, int(seconds * rate))
    names, cols = ["time_s", "ppg"], [np.arange(n) / rate, rec.ppg[:n]]
    if acc:
        names += ["acc_x", "acc_y", "acc_z"]
        cols += [rec.acc[:n, 0], rec.acc[:n, 1], rec.acc[:n, 2]]
    if ecg:
        names.append("ecg")
        cols.append(rec.ecg[:n])
    if cuff and rec.cuff is not None:
        sbp, dbp = np.full(n, np.nan), np.full(n, np.nan)
        for t, (s, d) in zip(*rec.cuff, strict=True):
            if round(t * rate) < n:
                sbp[round(t * rate)], dbp[round(t * rate)] = s, d
        names += ["sbp", "dbp"]
        cols += [sbp, dbp]
    rows = np.column_stack(cols)
    lines = [",".join(names)]
    lines += [",".join("" if np.isnan(v) else f"{v:.7g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def sim(seconds: float, seed: int, rate: float = RATE, scenario=None):
    scenario = scenario or random_scenario(np.random.default_rng(seed), seconds)
    return simulate(scenario, seed=seed, ppg_rate=rate, acc_rate=rate, ecg_rate=rate,
                    channels=("ppg", "acc", "ecg", "bp"))


def write_cgm(path: Path, times: np.ndarray, cgm: np.ndarray) -> Path:
    path.write_text("time_s,glucose\n" + "".join(f"{t:g},{g:g}\n"
                                                 for t, g in zip(times, cgm, strict=True)))
    return path


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """One 4-min simulated recording (rest, walk, run: random scenario) with ECG, PPG,
    accelerometer and cuff, and its CSV file."""
    rec = sim(240, seed=5)
    return rec, write_csv(tmp_path_factory.mktemp("rec") / "walk.csv", rec)


@pytest.fixture(scope="module")
def cgm_dir(tmp_path_factory) -> Path:
    """Three CGM-only recordings of half a day each (simulated type-1 subjects)."""
    folder = tmp_path_factory.mktemp("cgm")
    for i, s in enumerate(gdata.plan_subjects("test", 3, seed=77, days=(0.5, 0.5),
                                              first_index=500)):
        series = gdata.simulate(s)
        write_cgm(folder / f"cgm{i}.csv", series.times_s, series.cgm)
    return folder


def run_error(argv: list[str], out: Path, capsys) -> str:
    """main(argv + --out) must fail with exit 2, one line on stderr, no bundle in --out."""
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("wearable-train: error: ")
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    return err.removeprefix("wearable-train: error: ")


# --- labels --------------------------------------------------------------------------------

def test_hr_labels_from_the_ecg_match_the_simulators_truth(walk):
    """60 / median RR of the file's ECG is within ~2 bpm of the simulator's true HR over the
    window, and the inputs are the runtime's conditioning of the file's PPG and ACC."""
    from training.windows import extract_windows

    rec, path = walk
    sig = recordings.read(path)
    subject, w = recordings.hr_windows(path, sig, "train", recordings.RECORDING_INDEX)
    assert subject.has_acc and subject.id == recordings.RECORDING_INDEX
    win = extract_windows(hr.PREPROCESSING, sig.ppg, sig.ppg_rate, sig.acc, sig.acc_rate)
    labelled = np.isfinite(recordings.ecg_heart_rate(sig.ecg, sig.ecg_rate, win.end_s, 8.0))
    assert labelled.sum() == len(w) >= 0.8 * len(win.end_s)  # nearly every window
    beats = rec.truth.beat_times  # the simulator's true beats: the same statistic
    truth = np.array([60.0 / np.median(np.diff(beats[(beats >= e - 8.0) & (beats < e)]))
                      for e in win.end_s[labelled]])
    err = np.abs(w.hr_bpm - truth)
    assert np.percentile(err, 95) < 2.0 and err.max() < 4.0, np.percentile(err, [50, 95, 100])
    # and against the truth training uses for simulated subjects (Hann-weighted per-second
    # HR), which differs from a median over the window while HR ramps
    hann = np.array([data._hann_mean(rec.truth.hr_bpm, e - 8.0, e) for e in win.end_s[labelled]])
    assert np.median(np.abs(w.hr_bpm - hann)) < 1.0
    np.testing.assert_array_equal(win.features[labelled], w.x)


def test_glucose_windows_are_cut_from_the_readings_like_simulated_subjects(tmp_path):
    series = gdata.simulate(gdata.plan_subjects("test", 1, seed=3, days=(0.5, 0.5))[0])
    path = write_cgm(tmp_path / "cgm.csv", series.times_s, series.cgm)
    _, got_series, got = recordings.glucose_windows(path, recordings.read(path), "train", 7)
    want = gdata.series_windows(series, glucose.PREPROCESSING, got.subject[0])
    np.testing.assert_array_equal(got_series.cgm, series.cgm)
    for field in ("x", "y", "last", "history", "end"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))

    # A gap splits the readings into stretches; no window spans it.
    keep = np.ones(len(series.cgm), bool)
    keep[100:103] = False
    gap = write_cgm(tmp_path / "gap.csv", series.times_s[keep], series.cgm[keep])
    _, s2, w2 = recordings.glucose_windows(gap, recordings.read(gap), "train", 7)
    n = glucose.WINDOW_READINGS + max(gdata.HORIZONS.values())
    assert len(w2) == len(want) - (n - 1) - 3  # 17 windows span the gap, 3 lost
    for e, y in zip(w2.end, w2.y[:, 1], strict=True):
        assert s2.cgm[e + 6] == y  # target 30 min (6 readings) later, same stretch
        assert s2.times_s[e + 6] - s2.times_s[e - 11] == pytest.approx(17 * 300)


def test_bp_labels_are_the_cuff_reading_within_30_s_of_the_window_end(walk):
    rec, path = walk
    _, w = recordings.bp_windows(path, recordings.read(path), "test", 3)
    (t_cuff,), ((sbp, dbp),) = rec.cuff[0][:1], rec.cuff[1][:1]
    near = np.abs(w.end_s - t_cuff) <= 30.0
    assert near.any() and (~near).any()
    np.testing.assert_array_equal(w.sbp[near], sbp)
    np.testing.assert_array_equal(w.dbp[near], dbp)
    assert np.isnan(w.sbp[~near]).all() and np.isnan(w.dbp[~near]).all()
    assert (w.cal_time == t_cuff).all() and (w.cal_sbp == sbp).all()


def test_split_is_by_file_and_deterministic(tmp_path):
    files = [tmp_path / f"r{i}.csv" for i in range(10)]
    split = recordings.split_files(files, seed=0, only=False)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (8, 0, 2)
    assert sorted((f for part in split.values() for f in part), key=str) == sorted(files, key=str)
    assert split == recordings.split_files(files, seed=0, only=False)
    assert len(recordings.split_files(files[:3], 0, only=False)["test"]) == 1
    assert recordings.split_files(files[:2], 0, only=False)["test"] == []
    only = recordings.split_files(files[:3], 0, only=True)
    assert [len(only[k]) for k in ("train", "val", "test")] == [1, 1, 1]


# --- bad input: one line, exit 2, nothing in --out ------------------------------------------

def test_missing_path(tmp_path, capsys):
    missing = tmp_path / "nope"
    err = run_error(["hr", "--data", str(missing)], tmp_path / "out", capsys)
    assert err == f"--data {missing}: no such file or folder"


def test_not_a_recording(tmp_path, capsys):
    blob = tmp_path / "stream.bin"
    blob.write_bytes(b"\x05\x01\x02\x00" * 10)
    err = run_error(["hr", "--data", str(blob)], tmp_path / "out", capsys)
    assert err == (f"--data {blob}: neither a .csv file nor a WFDB record (.hea); give "
                   "recordings in the formats of docs/recording-csv.md")
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run_error(["hr", "--data", str(empty)], tmp_path / "out", capsys)
    assert err == (f"--data {empty}: no .csv or .hea recordings in this folder "
                   "(docs/recording-csv.md)")


def test_malformed_csv_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,ppg,ecg\n0,1,0.1\n0.01,x,0.2\n")
    err = run_error(["hr", "--data", str(bad)], tmp_path / "out", capsys)
    assert err == f"{bad}:3: column 'ppg': 'x' is not a number"


def test_a_rate_below_the_model_rate(tmp_path, capsys):
    """The hr model takes a 25 Hz PPG (upsampled, min_sensor_rate_hz 16); its ECG labels and
    the bp model (pulse-arrival timing) need more."""
    rec = sim(60, seed=2, rate=25.0)
    slow = write_csv(tmp_path / "slow.csv", rec, 25.0)
    err = run_error(["hr", "--data", str(slow)], tmp_path / "out", capsys)
    assert err == (f"{slow}: ECG at 25 Hz is too slow to time the R peaks of the hr labels; "
                   "record it at 64 Hz or faster")
    err = run_error(["bp", "--data", str(slow)], tmp_path / "out", capsys)
    assert err == (f"{slow}: ECG at 25 Hz is below the bp model's 64 Hz; record or resample "
                   "it at 64 Hz or faster")


def test_missing_label_columns(tmp_path, capsys, walk):
    rec, _ = walk
    no_ecg = write_csv(tmp_path / "no_ecg.csv", rec, ecg=False, seconds=30)
    err = run_error(["hr", "--data", str(no_ecg)], tmp_path / "out", capsys)
    assert err == (f"{no_ecg}: no 'ecg' column; the hr model's labels are the heart rate of "
                   "the ECG (R peaks); record the ECG alongside the PPG")
    no_cuff = write_csv(tmp_path / "no_cuff.csv", rec, cuff=False, seconds=30)
    err = run_error(["bp", "--data", str(no_cuff)], tmp_path / "out", capsys)
    assert err == (f"{no_cuff}: no 'sbp' column; the bp model's labels are cuff readings "
                   "(sbp and dbp columns, mmHg)")
    err = run_error(["glucose", "--data", str(no_cuff)], tmp_path / "out", capsys)
    assert err == (f"{no_cuff}: no 'glucose' column; the glucose model learns to forecast "
                   "the CGM readings (mg/dL, one every 5 min)")


def test_no_usable_windows(tmp_path, capsys, walk):
    rec, _ = walk
    short = write_csv(tmp_path / "short.csv", rec, seconds=5)
    err = run_error(["hr", "--data", str(short)], tmp_path / "out", capsys)
    assert err == (f"{short}: no usable hr windows: the recording lasts 5.0 s, shorter than "
                   "one 8 s window")
    few = write_cgm(tmp_path / "few.csv", np.arange(10) * 300.0, np.full(10, 120.0))
    err = run_error(["glucose", "--data", str(few)], tmp_path / "out", capsys)
    assert err == (f"{few}: no usable glucose windows: no stretch of 18 readings 300 s apart "
                   "without a gap (1 h of history and the reading 30 min later)")


def test_option_errors(tmp_path, capsys, cgm_dir):
    err = run_error(["glucose", "--data-only"], tmp_path / "out", capsys)
    assert err == "--data-only needs --data PATH ...: the recordings to train on"
    two = sorted(cgm_dir.iterdir())[:2]
    err = run_error(["glucose", "--data-only", "--data", *map(str, two)], tmp_path / "out",
                    capsys)
    assert err == ("--data-only needs at least 3 recordings (one each for training, "
                   "validation and test); got 2")


def test_a_bad_file_among_good_ones_is_named_before_training(tmp_path, capsys, cgm_dir):
    bad = write_cgm(tmp_path / "hourly.csv", np.arange(40) * 3600.0, np.full(40, 120.0))
    out = tmp_path / "out"
    err = run_error(["glucose", "--data", str(cgm_dir), str(bad)], out, capsys)
    assert err == (f"{bad}: glucose at one reading every 3600 s is below the glucose model's "
                   "one every 300 s; give 5-min CGM readings")


# --- end to end ------------------------------------------------------------------------------

# One simulation worker (the CLI's glucose build uses two): run the CLI with it forced to one.
_CLI_ONE_WORKER = """
import sys
from training import glucose_data
build = glucose_data.build
glucose_data.build = lambda subjects, pre, workers=1: build(subjects, pre, workers=1)
from training.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_quick_glucose_run_on_a_folder_of_recordings(tmp_path, cgm_dir):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", _CLI_ONE_WORKER, "glucose", "--quick",
                             "--data", str(cgm_dir), "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "your recordings: train 2 files" in result.stdout
    model = load_model(out / "glucose.json")  # the runtime's loader: hash and tensor specs
    mine = model.manifest.metrics["your_recordings"]
    assert mine["only"] is False and len(mine["files"]["test"]) == 1
    assert mine["int8"]["h30"]["n"] == mine["windows"]["test"] > 0
    assert model.manifest.training["recordings"]["files"] == mine["files"]
    report = (out / "glucose_report.md").read_text()
    assert "## Your recordings (glucose)" in report
    held_out = Path(mine["files"]["test"][0]).name
    assert f"`{held_out}`" in report
    assert sorted(p.name for p in out.iterdir()) == [
        "glucose.json", "glucose.tflite", "glucose_clarke.png", "glucose_hypo_timeseries.png",
        "glucose_report.md"]


@pytest.mark.parametrize("model", ["hr", "bp"])
def test_held_out_recordings_are_scored_through_the_runtime_and_reported(tmp_path, model):
    """--data-only with three files: one each for train, validation and test; merge puts
    the first two in place of the simulated splits; finish scores the held-out file with the
    staged bundle (here the shipped one, read-only: copied) and writes the report section."""
    import shutil

    from edge.bundle import load_manifest

    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        write_csv(folder / f"r{i}.csv", sim(75, seed=20 + i))
    user = recordings.UserData.load([folder], only=True, seed=0)
    prepared = user.prepare(model, log=lambda message: None)
    assert [len(prepared.files[k]) for k in ("train", "val", "test")] == [1, 1, 1]
    assert prepared.simulated({"train": [1], "val": [2], "test": [3]}) == {"test": [3]}
    subjects, sets, _ = prepared.merge({"test": ["simulated"]}, {"test": "simulated"})
    assert list(sets) == ["train", "val", "test"] and sets["test"] == "simulated"
    assert sets["train"] is prepared.sets["train"] and len(subjects["val"]) == 1
    if model == "bp":  # training windows are labelled; the held-out file keeps them all
        assert np.isfinite(sets["train"].sbp).all()
        assert np.isnan(prepared.sets["test"].sbp).any()

    stage = tmp_path / "stage"
    stage.mkdir()
    for suffix in (".json", ".tflite"):
        shutil.copy(ROOT / "models" / f"{model}{suffix}", stage / f"{model}{suffix}")
    (stage / f"{model}_report.md").write_text(f"# {model}\n\nintro\n\n## Accuracy\n")
    manifest = load_manifest(stage / f"{model}.json")
    runtime = load_model(stage / f"{model}.json")
    predict = runtime.predict if model == "hr" else runtime.estimates
    done = prepared.finish(stage, manifest, lambda x: np.array([predict(w) for w in x]))
    mine = done.metrics["your_recordings"]
    assert mine["only"] is True and mine["files"]["test"] == [str(prepared.files["test"][0])]
    report = (stage / f"{model}_report.md").read_text()
    assert report.index(f"## Your recordings ({model})") < report.index("## Accuracy")
    assert "`r" in report and "only your recordings" in report
    if model == "hr":
        assert mine["int8"]["all"]["n"] == len(prepared.sets["test"]) > 0
        assert mine["int8"]["all"]["mae"] == pytest.approx(mine["float"]["all"]["mae"])
        assert mine["int8"]["all"]["mae"] < 10.0  # the shipped model on a fresh recording
    else:
        assert mine["scored_windows"] > 0 and mine["not_calibrated"] == []
        assert mine["int8, calibrated"]["systolic"]["n"] == mine["scored_windows"]


def test_a_wfdb_record_is_read_through_the_same_reader(tmp_path):
    """ECG + PLETH in a PhysioNet WFDB record (no accelerometer): hr windows without the
    motion column, labelled from the ECG; the folder search finds the .hea, not the .dat."""
    wfdb = pytest.importorskip("wfdb")
    rec = sim(60, seed=9, rate=125.0)
    n = min(len(rec.ppg), len(rec.ecg))
    ppg = (rec.ppg[:n] - rec.ppg[:n].mean()) / rec.ppg[:n].std()
    wfdb.wrsamp("rec1", fs=125, units=["mV", "NU"], sig_name=["II", "PLETH"],
                p_signal=np.column_stack([rec.ecg[:n], ppg]), fmt=["16", "16"],
                write_dir=str(tmp_path))
    (path,) = recordings.find_recordings([tmp_path])
    assert path.name == "rec1.hea"
    subject, w = recordings.hr_windows(path, recordings.read(path), "train", 1)
    assert not subject.has_acc and len(w) > 10
    assert (w.x[:, :, 1] == 0).all() and (w.motion_g == 0).all()  # no accelerometer
    beats = rec.truth.beat_times
    sig = recordings.read(path)
    from training.windows import extract_windows

    win = extract_windows(hr.PREPROCESSING, sig.ppg, sig.ppg_rate, None, None)
    ends = win.end_s[np.isfinite(recordings.ecg_heart_rate(sig.ecg, sig.ecg_rate, win.end_s,
                                                           8.0))]
    truth = [60.0 / np.median(np.diff(beats[(beats >= e - 8.0) & (beats < e)])) for e in ends]
    assert np.percentile(np.abs(w.hr_bpm - truth), 95) < 2.0
