"""Training on the user's own recordings (`wearable-train MODEL --data PATH ...`).

Recordings are CSV files or WFDB records (docs/recording-csv.md), read only through
`wire.recordings.load_recording`, the reader `wearable-edge replay` uses, so training and the
runtime see the same arrays. Each file is one subject: it is never split across train,
validation and test. Windows are cut and featurised by the same code as simulated subjects
(`training.windows`, i.e. `edge.signal` + `edge.features`); the labels come from the
recording itself:

- hr: the heart rate of the ECG: R peaks (`edge.features.r_peaks`) of the QRS-band-passed
  ECG inside each model window, 60 / median RR interval. A window without a steady rhythm
  (fewer than 3 RR intervals, or a quarter of them more than 25 % off the median: missed or
  extra beats) is not labelled.
- glucose: the `glucose` column (5-min CGM readings); history and targets are cut from the
  readings exactly as for simulated subjects, per stretch of readings without a gap.
- bp: the `sbp`/`dbp` cuff readings: a window gets the reading within +-30 s of its end (the
  nearest), else it is unlabelled; evaluation calibrates on each recording's first reading
  like the runtime's calibrate command.

By default the recordings are added to the simulated training data and a held-out share of
them (by file) is evaluated separately ("Your recordings" in the report, `your_recordings`
in the manifest's metrics). With `only` (`--data-only`) training and validation use the
recordings alone; the simulated test subjects are still scored, as a reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest
from training.errors import TrainingError
from wire.recordings import RecordingError, Signals, load_recording, recording_kind

MODELS = ("hr", "glucose", "bp")
SUFFIXES = (".csv", ".hea")  # what a --data folder is searched for
RECORDING_INDEX = 900_000  # subject index of recording k in its split (simulated ones are small)
HOLDOUT_SHARE = 0.2  # of the files, held out for the test ("at least 1 from 3 files")
VAL_SHARE = 0.1  # --data-only: of the files, for validation (at least 1)
MIN_FILES_ONLY = 3
# hr labels
QRS_BAND_HZ = (5.0, 15.0)  # Pan-Tompkins' QRS band: R peaks stand out, T waves do not
ECG_MIN_RATE_HZ = 64.0  # below this an R peak is too coarse to time
MIN_RR = 3  # RR intervals a labelled window needs
RR_STEADY = 0.25  # an RR this far off the window's median counts as a missed/extra beat
RR_OUTLIER_SHARE = 0.25  # windows with more such RR intervals are not labelled
MOVING_G = 0.05  # RMS band-passed acceleration from which a window counts as "motion"
# glucose
CGM_STEP_S = 300.0
CGM_JITTER = 0.2  # a reading interval within 20 % of 5 min continues a stretch
# bp
CUFF_MATCH_S = 30.0


def _name(path: Path) -> str:
    return str(path)


# --- finding and reading files ----------------------------------------------------------------

def find_recordings(paths: Iterable[str | Path]) -> list[Path]:
    """The recording files named by `paths` (files, or folders searched recursively for .csv
    and .hea), in a fixed order, each once. TrainingError names a path that is missing, an
    empty folder, or a file that is neither CSV nor WFDB."""
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not inside:
                raise TrainingError(f"--data {path}: no .csv or .hea recordings in this "
                                    "folder (docs/recording-csv.md)")
            for p in inside:
                found.setdefault(str(p.resolve()), p)
            continue
        kind = recording_kind(path)
        if kind == "wfdb":
            if path.suffix.lower() != ".hea":
                path = path.with_suffix(".hea") if path.suffix.lower() == ".dat" \
                    else Path(f"{path}.hea")
        elif not path.exists():
            raise TrainingError(f"--data {path}: no such file or folder")
        elif kind != "csv":
            raise TrainingError(f"--data {path}: neither a .csv file nor a WFDB record (.hea); "
                                "give recordings in the formats of docs/recording-csv.md")
        found.setdefault(str(path.resolve()), path)
    if not found:
        raise TrainingError("--data: no recordings given")
    return sorted(found.values(), key=lambda p: str(p))


def read(path: Path) -> Signals:
    """`wire.recordings.load_recording`, its one-line errors as TrainingError."""
    try:
        return load_recording(path)
    except RecordingError as err:
        raise TrainingError(str(err)) from None


def split_files(files: Sequence[Path], seed: int, only: bool) -> dict[str, list[Path]]:
    """Files per split, by file (a file is one subject), drawn with `seed`. Default: a
    HOLDOUT_SHARE test share (at least one from three files; none below three), the rest
    train. `only`: also a validation share, and at least MIN_FILES_ONLY files."""
    n = len(files)
    if only and n < MIN_FILES_ONLY:
        raise TrainingError(f"--data-only needs at least {MIN_FILES_ONLY} recordings (one "
                            f"each for training, validation and test); got {n}")
    order = [files[i] for i in np.random.default_rng([seed, 4242]).permutation(n)]
    n_test = max(1, round(HOLDOUT_SHARE * n)) if n >= 3 else 0
    n_val = max(1, round(VAL_SHARE * n)) if only else 0
    split = {"train": order[n_test + n_val:], "val": order[n_test:n_test + n_val],
             "test": order[:n_test]}
    return {k: sorted(v, key=str) for k, v in split.items()}


# --- labels --------------------------------------------------------------------------------

def _check_rate(path: Path, model: str, channel: str, rate: float, model_rate: float) -> None:
    if rate < model_rate - 1e-6:
        raise TrainingError(f"{_name(path)}: {channel} at {rate:g} Hz is below the {model} "
                            f"model's {model_rate:g} Hz; record or resample it at "
                            f"{model_rate:g} Hz or faster")


def _missing(path: Path, column: str, why: str) -> TrainingError:
    return TrainingError(f"{_name(path)}: no '{column}' column; {why}")


def ecg_heart_rate(ecg: np.ndarray, rate: float, end_s: np.ndarray,
                   window_s: float) -> np.ndarray:
    """Reference HR per window (bpm; NaN = not labelled): 60 / median RR of the R peaks
    (`edge.features.r_peaks`) of the QRS-band-passed ECG inside [end - window_s, end)."""
    from scipy import signal

    from edge.features import r_peaks

    hi = min(QRS_BAND_HZ[1], 0.45 * rate)
    sos = signal.butter(2, (QRS_BAND_HZ[0], hi), btype="bandpass", fs=rate, output="sos")
    x = signal.sosfiltfilt(sos, np.nan_to_num(np.asarray(ecg, np.float64)))
    out = np.full(len(end_s), np.nan)
    for i, end in enumerate(end_s):
        a, b = round((end - window_s) * rate), round(end * rate)
        if a < 0 or b > len(x):
            continue
        rr = np.diff(r_peaks(x[a:b], rate)) / rate
        if len(rr) < MIN_RR:
            continue
        median = float(np.median(rr))
        if np.mean(np.abs(rr - median) > RR_STEADY * median) > RR_OUTLIER_SHARE:
            continue
        out[i] = 60.0 / median
    return out


def _moving(motion_g: np.ndarray) -> np.ndarray:
    """A motion level for recordings (no truth): 1 where the wrist moves, else 0."""
    return (np.asarray(motion_g) >= MOVING_G).astype(float)


def hr_windows(path: Path, sig: Signals, split: str, index: int):
    """(data.Subject, data.Windows) of one recording: labelled windows only."""
    from training import data, hr
    from training.windows import extract_windows

    pre = hr.PREPROCESSING
    if "ppg" not in sig.channels:
        raise _missing(path, "ppg", "the hr model estimates heart rate from the PPG")
    if sig.ecg is None:
        raise _missing(path, "ecg", "the hr model's labels are the heart rate of the ECG "
                       "(R peaks); record the ECG alongside the PPG")
    _check_rate(path, "hr", "PPG", sig.ppg_rate, pre.min_sensor_rate_hz or pre.sample_rate_hz)
    has_acc = "acc" in sig.channels
    if has_acc:
        _check_rate(path, "hr", "accelerometer", sig.acc_rate,
                    pre.min_sensor_rate_hz or pre.sample_rate_hz)
    if sig.ecg_rate < ECG_MIN_RATE_HZ:
        raise TrainingError(f"{_name(path)}: ECG at {sig.ecg_rate:g} Hz is too slow to time "
                            f"the R peaks of the hr labels; record it at "
                            f"{ECG_MIN_RATE_HZ:g} Hz or faster")
    win = extract_windows(pre, sig.ppg, sig.ppg_rate, sig.acc if has_acc else None,
                          sig.acc_rate if has_acc else None)
    if not len(win.end_s):
        raise TrainingError(f"{_name(path)}: no usable hr windows: the recording lasts "
                            f"{sig.duration_s:.1f} s, shorter than one {pre.window_s:g} s "
                            "window")
    label = ecg_heart_rate(sig.ecg, sig.ecg_rate, win.end_s, pre.window_s)
    classes = hr.classes_bpm()
    keep = np.isfinite(label) & (label >= classes[0]) & (label <= classes[-1])
    if not keep.any():
        raise TrainingError(f"{_name(path)}: no usable hr windows: no {pre.window_s:g} s "
                            "window of the ECG has a steady rhythm of at least "
                            f"{MIN_RR + 1} R peaks at {classes[0]:.0f}-{classes[-1]:.0f} bpm")
    subject = data.Subject(split=split, index=index, seed=-1, scenario=f"recording {path.name}",
                           duration_s=sig.duration_s, ppg_rate=sig.ppg_rate,
                           acc_rate=sig.acc_rate if has_acc else 0.0, noise=float("nan"),
                           has_acc=has_acc, augment=False)
    n = int(keep.sum())
    windows = data.Windows(win.features[keep], label[keep], _moving(win.motion_g[keep]),
                           win.motion_g[keep], np.full(n, subject.id, dtype=np.int64))
    return subject, windows


def _cgm_stretches(times: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of readings 5 min (+-20 %) apart, without a gap."""
    step = np.diff(times)
    breaks = np.flatnonzero(np.abs(step - CGM_STEP_S) > CGM_JITTER * CGM_STEP_S) + 1
    bounds = [0, *breaks.tolist(), len(times)]
    return [(a, b) for a, b in pairwise(bounds) if b > a]


def glucose_windows(path: Path, sig: Signals, split: str, index: int):
    """(CgmSubject, Series, GlucoseWindows) of one recording; `end` indexes its readings."""
    from training import glucose
    from training import glucose_data as gdata

    pre = glucose.PREPROCESSING
    if sig.cgm is None:
        raise _missing(path, "glucose", "the glucose model learns to forecast the CGM "
                       "readings (mg/dL, one every 5 min)")
    times, cgm = (np.asarray(a, np.float64) for a in sig.cgm)
    if len(times) >= 2:
        interval = float(np.median(np.diff(times)))
        if interval > (1 + CGM_JITTER) * CGM_STEP_S:
            raise TrainingError(f"{_name(path)}: glucose at one reading every {interval:g} s "
                                f"is below the glucose model's one every {CGM_STEP_S:g} s; "
                                "give 5-min CGM readings")
        if interval < (1 - CGM_JITTER) * CGM_STEP_S:
            raise TrainingError(f"{_name(path)}: glucose readings every {interval:g} s; the "
                                f"glucose model takes one every {CGM_STEP_S:g} s (5-min CGM): "
                                "keep every 5-min reading and leave the others empty")
    series = gdata.Series(times, cgm, np.full(len(cgm), np.nan), (), ())
    subject = gdata.CgmSubject(split=split, index=index, seed=-1, kind="recording",
                               days=float(times[-1] - times[0]) / gdata.DAY_S if len(times)
                               else 0.0, noise=float("nan"))
    parts = []
    for a, b in _cgm_stretches(times):
        part = gdata.series_windows(replace(series, times_s=times[a:b], cgm=cgm[a:b],
                                            plasma=series.plasma[a:b]), pre, subject.id)
        parts.append(replace(part, end=part.end + a))
    windows = gdata.GlucoseWindows.concat(parts) if parts else None
    if windows is None or not len(windows):
        need = glucose.WINDOW_READINGS + max(gdata.HORIZONS.values())
        raise TrainingError(f"{_name(path)}: no usable glucose windows: no stretch of {need} "
                            f"readings {CGM_STEP_S:g} s apart without a gap (1 h of history "
                            "and the reading 30 min later)")
    return subject, series, windows


def bp_windows(path: Path, sig: Signals, split: str, index: int):
    """(BpSubject, BpWindows) of one recording: every window, labelled (sbp/dbp) with the cuff
    reading within CUFF_MATCH_S of its end, NaN where there is none."""
    from training import bp, bp_data
    from training.windows import extract_channel_windows

    pre = bp.PREPROCESSING
    if sig.ecg is None:
        raise _missing(path, "ecg", "the bp model needs the ECG and the PPG (pulse arrival "
                       "time)")
    if "ppg" not in sig.channels:
        raise _missing(path, "ppg", "the bp model needs the ECG and the PPG (pulse arrival "
                       "time)")
    if sig.cuff is None or not len(sig.cuff[0]):
        raise _missing(path, "sbp", "the bp model's labels are cuff readings (sbp and dbp "
                       "columns, mmHg)")
    _check_rate(path, "bp", "ECG", sig.ecg_rate, pre.sample_rate_hz)
    _check_rate(path, "bp", "PPG", sig.ppg_rate, pre.sample_rate_hz)
    win = extract_channel_windows(pre, [(sig.ecg, sig.ecg_rate), (sig.ppg, sig.ppg_rate)])
    times, readings = (np.asarray(a, np.float64) for a in sig.cuff)
    n = len(win.end_s)
    y = np.full((n, 2), np.nan)
    if n:
        gap = np.abs(win.end_s[:, None] - times[None, :])
        nearest = gap.argmin(axis=1)
        ok = gap[np.arange(n), nearest] <= CUFF_MATCH_S
        y[ok] = readings[nearest[ok]]
    if not np.isfinite(y[:, 0]).any():
        raise TrainingError(f"{_name(path)}: no usable bp windows: no {pre.window_s:g} s "
                            f"window ends within {CUFF_MATCH_S:g} s of a cuff reading")
    motion = np.zeros(n)
    if "acc" in sig.channels and sig.acc_rate >= pre.sample_rate_hz:
        from training import hr
        from training.windows import extract_windows

        acc_win = extract_windows(hr.PREPROCESSING, sig.ppg, sig.ppg_rate, sig.acc,
                                  sig.acc_rate)
        at = np.searchsorted(acc_win.end_s, win.end_s)
        ok = at < len(acc_win.end_s)
        motion[ok] = _moving(acc_win.motion_g[at[ok]])
    subject = bp_data.BpSubject(split=split, index=index, seed=-1,
                                scenario=f"recording {path.name}", duration_s=sig.duration_s,
                                ecg_rate=sig.ecg_rate, ppg_rate=sig.ppg_rate,
                                noise=float("nan"), path_m=float("nan"),
                                stiffness=float("nan"), pat_offset_ms=float("nan"))
    full = lambda v: np.full(n, v)  # noqa: E731
    windows = bp_data.BpWindows(
        x=bp_data.relative_to_calibration(win.features, win.end_s, times[0],
                                          pre.feature_params["shape_points"]),
        sbp=y[:, 0], dbp=y[:, 1],
        hr=ecg_heart_rate(sig.ecg, sig.ecg_rate, win.end_s, pre.window_s), motion=motion,
        end_s=win.end_s, subject=np.full(n, subject.id, dtype=np.int64),
        cal_time=full(times[0]), cal_sbp=full(readings[0, 0]), cal_dbp=full(readings[0, 1]))
    return subject, windows


# --- the data of one model, and the trainers' hooks ------------------------------------------

@dataclass
class Prepared:
    """One model's windows from the recordings, per split, and what the trainer needs."""

    model: str
    only: bool
    files: dict[str, list[Path]]
    subjects: dict[str, list[Any]]
    sets: dict[str, Any]
    series: dict[str, dict[int, Any]] = field(default_factory=dict)  # glucose
    names: dict[int, str] = field(default_factory=dict)  # subject id -> file

    def simulated(self, subjects: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """The simulated subjects still to build: with --data-only, the test split only."""
        return {"test": subjects["test"]} if self.only else subjects

    def merge(self, subjects: dict[str, list[Any]], sets: dict[str, Any],
              series: dict[str, dict[int, Any]] | None = None):
        """(subjects, sets, series) with the recordings' training and validation windows
        added (--data-only: instead of simulated ones). The held-out recordings stay out:
        `finish` scores them separately."""
        subjects, sets = dict(subjects), dict(sets)
        series = dict(series or {})
        for split in ("train", "val"):
            mine = self.subjects[split]
            if not mine:
                continue
            if split in sets:
                sets[split] = type(sets[split]).concat([sets[split], self.sets[split]])
                subjects[split] = [*subjects[split], *mine]
                if split in self.series:
                    series[split] = {**series.get(split, {}), **self.series[split]}
            else:
                sets[split], subjects[split] = self.sets[split], list(mine)
                if split in self.series:
                    series[split] = dict(self.series[split])
        order = ("train", "val", "test")
        return ({k: subjects[k] for k in order if k in subjects},
                {k: sets[k] for k in order if k in sets},
                {k: series[k] for k in order if k in series})

    def summary(self) -> dict[str, Any]:
        return {"only": self.only,
                "files": {k: [_name(p) for p in v] for k, v in self.files.items()},
                "windows": {k: len(v) if v is not None else 0 for k, v in self.sets.items()}}

    def finish(self, stage: Path, manifest: Manifest,
               float_predict: Callable[[np.ndarray], np.ndarray]) -> Manifest:
        """Score the held-out recordings (float, and int8 through the runtime's
        `edge.infer.Model` on the staged bundle), add a "Your recordings" section to the
        staged report and the figures to the manifest."""
        from edge.infer import load_model

        test = self.sets.get("test")
        metrics: dict[str, Any] = {}
        if test is not None and len(test):
            model = load_model(stage / f"{manifest.name}.json")
            predict = model.predict if self.model == "hr" else model.estimates
            pred = {"float": np.asarray(float_predict(test.x)),
                    "int8": np.array([predict(x) for x in test.x])}
            metrics = SCORERS[self.model](self, test, pred)
        section = _section(self, metrics)
        report = stage / f"{manifest.name}_report.md"
        if report.exists():
            text = report.read_text()
            at = text.find("\n## ")
            at = len(text) if at < 0 else at + 1
            report.write_text(text[:at] + section + "\n" + text[at:])
        metrics_out = {**manifest.metrics,
                       "your_recordings": {**self.summary(), **metrics.get("json", {})}}
        training = {**manifest.training, "recordings": self.summary()}
        return replace(manifest, metrics=metrics_out, training=training)


def prepare(model: str, files: Sequence[Path], signals: dict[Path, Signals], *, seed: int,
            only: bool, log: Callable[[str], None] = print) -> Prepared:
    """Label every recording for `model` (TrainingError naming the first file that cannot
    be used) and split them by file."""
    if model not in MODELS:
        raise TrainingError(f"unknown model {model!r}; valid: {', '.join(MODELS)}")
    files_by_split = split_files(files, seed, only)
    subjects: dict[str, list[Any]] = {}
    sets: dict[str, Any] = {}
    series: dict[str, dict[int, Any]] = {}
    names: dict[int, str] = {}
    for split, members in files_by_split.items():
        subjects[split], parts, series[split] = [], [], {}
        for path in members:
            index = RECORDING_INDEX + files.index(path)
            sig = signals[path]
            if model == "hr":
                subject, w = hr_windows(path, sig, split, index)
            elif model == "glucose":
                subject, s, w = glucose_windows(path, sig, split, index)
                series[split][subject.id] = s
            else:
                subject, w = bp_windows(path, sig, split, index)
                if split != "test":  # training needs labels; the test keeps every window
                    w = w.select(np.isfinite(w.sbp))  # for the calibration
            subjects[split].append(subject)
            parts.append(w)
            names[subject.id] = _name(path)
        sets[split] = type(parts[0]).concat(parts) if parts else None
    log(f"{model}: your recordings: " + ", ".join(
        f"{split} {len(files_by_split[split])} files / "
        f"{len(sets[split]) if sets[split] is not None else 0} windows"
        for split in ("train", "val", "test")) + (" (--data-only)" if only else
                                                  " (added to the simulated subjects)"))
    return Prepared(model, only, files_by_split, subjects, sets,
                    {k: v for k, v in series.items() if v}, names)


@dataclass
class UserData:
    """The recordings given with --data, read once, labelled per model on demand."""

    files: list[Path]
    signals: dict[Path, Signals]
    only: bool
    seed: int

    @staticmethod
    def load(paths: Iterable[str | Path], *, only: bool, seed: int) -> UserData:
        files = find_recordings(paths)
        return UserData(files, {p: read(p) for p in files}, only, seed)

    def prepare(self, model: str, log: Callable[[str], None] = print) -> Prepared:
        return prepare(model, self.files, self.signals, seed=self.seed, only=self.only,
                       log=log)


# --- scoring the held-out recordings ----------------------------------------------------------

def _per_recording(self: Prepared, subject: np.ndarray, err: np.ndarray) -> dict[str, float]:
    return {self.names[int(s)]: float(np.abs(err[subject == s]).mean())
            for s in np.unique(subject)}


def _score_hr(self: Prepared, test, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    from training import hr
    from training.evaluate import regression_metrics

    rows = {k: regression_metrics(v, test.hr_bpm, test.subject, test.moving,
                                  tolerance=hr.TOLERANCE_BPM) for k, v in pred.items()}
    return {"json": rows, "rows": rows,
            "per_recording": _per_recording(self, test.subject, pred["int8"] - test.hr_bpm),
            "unit": "bpm"}


def _score_glucose(self: Prepared, test, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    from training import glucose

    cgm = {sid: one.cgm for by_id in self.series.values() for sid, one in by_id.items()}
    pred = {**pred, "last value": np.stack([test.last, test.last], axis=1)}
    rows = {k: glucose.evaluate(v, test, cgm) for k, v in pred.items()}
    return {"json": rows, "rows": rows,
            "per_recording": _per_recording(self, test.subject, pred["int8"][:, 1] -
                                            test.y[:, 1]), "unit": "mg/dL"}


def _score_bp(self: Prepared, test, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    from training import bp

    rows, scored = {}, None
    calibrated = {}
    for k, v in pred.items():
        calibrated[k], s = bp.calibrate(v, test)
        scored = s if scored is None else scored & s
    scored &= np.isfinite(test.sbp)
    calibrated["calibration only"] = np.where(scored[:, None], test.cal, np.nan)
    for k, v in calibrated.items():
        rows[f"{k}, calibrated"] = bp.score(v, test, scored)
    err = np.abs(calibrated["int8"] - test.y).mean(axis=1)
    uncalibrated = sorted({self.names[int(s)] for s in np.unique(test.subject)}
                          - {self.names[int(s)] for s in np.unique(test.subject[scored])})
    return {"json": rows | {"scored_windows": int(scored.sum()),
                            "not_calibrated": uncalibrated},
            "rows": rows, "unit": "mmHg", "not_calibrated": uncalibrated,
            "per_recording": _per_recording(self, test.subject[scored], err[scored])}


SCORERS = {"hr": _score_hr, "glucose": _score_glucose, "bp": _score_bp}


def _table(model: str, rows: dict[str, dict[str, Any]]) -> str:
    if model == "hr":
        lines = ["| variant | windows | MAE | RMSE | bias | MAE rest / motion | within ±5 bpm |",
                 "|---|---:|---:|---:|---:|---|---:|"]
        for k, r in rows.items():
            a, rest, mot = r["all"], r["rest"], r["motion"]
            fmt = lambda s: f"{s['mae']:.2f}" if s.get("n") else "–"  # noqa: E731
            lines.append(f"| {k} | {a['n']} | {a['mae']:.2f} | {a['rmse']:.2f} | "
                         f"{a['bias']:+.2f} | {fmt(rest)} / {fmt(mot)} | "
                         f"{r['within_tolerance_pct']:.1f}% |")
    elif model == "glucose":
        lines = ["| variant | windows | +30 min RMSE | +30 min MAE | +20 min RMSE | "
                 "Clarke A+B (+30) |", "|---|---:|---:|---:|---:|---:|"]
        for k, r in rows.items():
            lines.append(f"| {k} | {r['h30']['n']} | {r['h30']['rmse']:.2f} | "
                         f"{r['h30']['mae']:.2f} | {r['h20']['rmse']:.2f} | "
                         f"{r['clarke_30']['A+B']:.2f}% |")
    else:
        lines = ["| variant | output | windows | mean ± SD | MAE |", "|---|---|---:|---:|---:|"]
        for k, r in rows.items():
            for output in ("systolic", "diastolic"):
                m = r[output]
                if m.get("n"):
                    lines.append(f"| {k} | {output} | {m['n']} | {m['mean']:+.2f} ± "
                                 f"{m['sd']:.2f} | {m['mae']:.2f} |")
    return "\n".join(lines)


LABELS = {
    "hr": "reference heart rate from the recording's ECG: R peaks of the QRS-band-passed "
          "(5-15 Hz) ECG inside each window, 60 / median RR; windows without a steady "
          "rhythm are not labelled",
    "glucose": "the recording's own CGM readings 20 and 30 min after each hour of history, "
               "cut per stretch of 5-min readings without a gap",
    "bp": f"the cuff reading (sbp, dbp) within ±{CUFF_MATCH_S:g} s of each window's end; "
          "other windows are unlabelled (skipped in training; on the held-out recordings "
          "they only feed the calibration on the first cuff reading, as the runtime's "
          "calibrate command does)",
}


def _section(self: Prepared, metrics: dict[str, Any]) -> str:
    files = self.files
    how = ("Training and validation used **only your recordings** (`--data-only`); the "
           "tables below this section score the simulated test subjects, as a reference."
           if self.only else "Your recordings were **added** to the simulated training "
           "subjects; the tables below this section score simulated held-out subjects.")

    def listing(split: str) -> str:
        return ", ".join(f"`{p.name}`" for p in files[split]) or "none"

    text = [f"## Your recordings ({self.model})", "",
            f"{how} Each file is one subject, in one split only. Labels: {LABELS[self.model]}.",
            "", f"- Training: {len(files['train'])} files ({listing('train')})"]
    if self.only:
        text.append(f"- Validation: {len(files['val'])} files ({listing('val')})")
    text.append(f"- Held out: {len(files['test'])} files ({listing('test')})")
    text.append("")
    if not metrics:
        text.append(f"No recording was held out (fewer than 3 files); give {3} or more "
                    "recordings to get an evaluation on your own data.")
    else:
        text.append("Held-out recordings (never used for training or validation"
                    + (", scored after one cuff calibration" if self.model == "bp" else "")
                    + "):")
        text += ["", _table(self.model, metrics["rows"]), ""]
        text.append("int8 MAE per held-out recording: " + ", ".join(
            f"`{Path(n).name}` {v:.2f} {metrics['unit']}"
            for n, v in metrics["per_recording"].items()) + ".")
        if metrics.get("not_calibrated"):
            text.append("Not scored (no window ends in the 30 s before the first cuff "
                        "reading): " + ", ".join(f"`{Path(n).name}`"
                                                 for n in metrics["not_calibrated"]) + ".")
    return "\n".join(text) + "\n"
