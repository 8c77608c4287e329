"""Real recordings as a wearable's stream: a CSV file (docs/recording-csv.md) or a PhysioNet
WFDB record, turned into a `Recording` that `stream()` and the writers send like a simulated
one. The ground truth of a recording is unknown, so its truth holds only the time axis.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from device_sim.errors import SimulatorError
from device_sim.physiology import MAX_RATE_HZ, MIN_RATE_HZ, Recording, Truth

DENSE = ("ppg", "acc_x", "acc_y", "acc_z", "ecg")  # a value on every row
SPARSE = ("glucose", "sbp", "dbp")  # a value where there is a reading, else empty
COLUMNS = ("time_s", *DENSE, *SPARSE)
JITTER = 0.2  # a sample interval may differ from the median by this fraction
ECG_NAMES = {"i", "ii", "iii", "avr", "avl", "avf", "v", "v1", "v2", "v3", "v4", "v5", "v6",
             "mlii", "ml2", "ecg", "ecg1", "ecg2", "ecg i", "ecg ii"}
PPG_NAMES = {"pleth", "ppg", "bvp", "pulse", "ppg1"}


class RecordingError(SimulatorError):
    """A recording file cannot be read or is not usable; says where and how to fix it."""


def _ppg_scale(ppg: np.ndarray) -> float:
    """1.0 for ADC counts; for physical units (e.g. 0.2-2 NU), a scale that keeps ~30 bits."""
    finite = ppg[np.isfinite(ppg)]
    if not len(finite) or np.all(finite == np.round(finite)):
        return 1.0
    return max(float(np.abs(finite).max()), 1e-9) / 2**30


def _recording(duration_s: float, rate: float, columns: dict[str, np.ndarray],
               sparse: dict[str, tuple[np.ndarray, np.ndarray]]) -> Recording:
    n_sec = max(1, math.ceil(duration_s))
    nan = np.full(n_sec, np.nan)
    truth = Truth(t=np.arange(n_sec, dtype=float), hr_bpm=nan, motion=nan.copy())
    channels = []
    ppg = columns.get("ppg", np.zeros(0))
    if "ppg" in columns:
        channels.append("ppg")
    acc = np.zeros((0, 3))
    if "acc_x" in columns:
        acc = np.stack([columns[f"acc_{a}"] for a in "xyz"], axis=1)
        channels.append("acc")
    ecg = columns.get("ecg")
    if ecg is not None:
        channels.append("ecg")
    cgm = sparse.get("glucose")
    if cgm is not None:
        channels.append("cgm")
    cuff = None
    if "sbp" in sparse:
        (times, sbp), (_, dbp) = sparse["sbp"], sparse["dbp"]
        cuff = (times, np.stack([sbp, dbp], axis=1))
        channels.append("bp")
    if not channels:
        raise RecordingError("no channel to replay")
    return Recording(ppg, rate, acc, rate, truth, ecg, rate, cgm, cuff,
                     channels=tuple(channels), ppg_scale=_ppg_scale(ppg))


def load_csv(path: str | os.PathLike) -> Recording:
    """A CSV recording: header row, `time_s` plus any of ppg, acc_x/acc_y/acc_z (all three),
    ecg (mV), glucose (mg/dL), sbp/dbp (mmHg, both); see docs/recording-csv.md."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as err:
        raise RecordingError(f"cannot read {str(path)!r} ({err.strerror}); check the path") \
            from None
    with handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        if "time_s" not in header:
            raise RecordingError(f"{path}:1: no 'time_s' column; the header must name "
                                 f"time_s and some of: {', '.join(COLUMNS[1:])}")
        for name in header:
            if name not in COLUMNS:
                raise RecordingError(f"{path}:1: unknown column {name!r}; use: "
                                     f"{', '.join(COLUMNS)}")
        if len(set(header)) != len(header):
            raise RecordingError(f"{path}:1: a column is named twice; name each once")
        axes = [a for a in ("acc_x", "acc_y", "acc_z") if a in header]
        if axes and len(axes) != 3:
            missing = sorted({"acc_x", "acc_y", "acc_z"} - set(axes))
            raise RecordingError(f"{path}:1: missing column {missing[0]!r}; the accelerometer "
                                 "needs acc_x, acc_y and acc_z")
        if ("sbp" in header) != ("dbp" in header):
            raise RecordingError(f"{path}:1: missing column "
                                 f"{'dbp' if 'sbp' in header else 'sbp'!r}; a cuff reading "
                                 "needs both sbp and dbp")
        rows: list[list[float]] = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise RecordingError(f"{path}:{line}: {len(row)} values for {len(header)} "
                                     "columns; give every row one value per column")
            values = []
            for name, cell in zip(header, row, strict=True):
                cell = cell.strip()
                if not cell and name in SPARSE:
                    values.append(math.nan)
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise RecordingError(f"{path}:{line}: column {name!r}: {cell!r} is not a "
                                         "number" + ("" if name not in SPARSE else
                                                     " (leave the cell empty for no reading)"))
                values.append(value)
            if rows and values[header.index("time_s")] <= rows[-1][header.index("time_s")]:
                raise RecordingError(f"{path}:{line}: column 'time_s' goes from "
                                     f"{rows[-1][header.index('time_s')]:g} to "
                                     f"{values[header.index('time_s')]:g}; times must increase")
            rows.append(values)
    if len(rows) < 2:
        raise RecordingError(f"{path}: fewer than two rows of data; nothing to replay")
    data = np.array(rows)
    t = data[:, header.index("time_s")]
    t = t - t[0]
    dt = np.diff(t)
    step = float(np.median(dt))
    rate = 1.0 / step
    dense = [name for name in header if name in DENSE]
    if dense:
        bad = np.flatnonzero(np.abs(dt - step) > JITTER * step)
        if len(bad):
            raise RecordingError(f"{path}:{bad[0] + 3}: time_s jumps by {dt[bad[0]]:g} s where "
                                 f"the sampling interval is {step:g} s; resample the file to "
                                 "a regular rate (gaps are not supported)")
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise RecordingError(f"{path}: sampling rate {rate:g} Hz is outside "
                                 f"{MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz; resample the file")
    columns = {name: data[:, header.index(name)] for name in dense}
    sparse = {}
    for name in SPARSE:
        if name in header:
            col = data[:, header.index(name)]
            have = np.isfinite(col)
            sparse[name] = (t[have], col[have])
    if "sbp" in sparse and not np.array_equal(sparse["sbp"][0], sparse["dbp"][0]):
        raise RecordingError(f"{path}: sbp and dbp must be given on the same rows")
    duration = t[-1] + (step if dense else 1.0)
    try:
        return _recording(duration, rate if dense else 64.0, columns, sparse)
    except RecordingError as err:
        raise RecordingError(f"{path}: {err}; add a ppg, acc_*, ecg or glucose column") \
            from None


def load_wfdb(path: str | os.PathLike) -> Recording:
    """A PhysioNet WFDB record (`name.hea` + its signal files): the first ECG lead (in mV)
    and a PPG ('PLETH', 'PPG', 'BVP') are replayed; other signals are skipped."""
    try:
        import wfdb
    except ImportError:
        raise RecordingError("reading WFDB records needs the 'wfdb' package; install the "
                             "project's 'recordings' extra (pip install -e '.[recordings]')") \
            from None
    base = str(path)
    if base.endswith((".hea", ".dat")):
        base = base[:-4]
    try:
        record = wfdb.rdrecord(base)
    except (OSError, ValueError) as err:
        raise RecordingError(f"cannot read WFDB record {base!r} ({err}); give the record's "
                             "path without extension, next to its .hea and .dat files") \
            from None
    names = [n.strip().lower() for n in record.sig_name]
    signals = record.p_signal
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        unit = (record.units[i] or "").lower()
        if "ecg" not in columns and (name in ECG_NAMES or unit == "mv"):
            scale = {"mv": 1.0, "uv": 1e-3, "v": 1e3}.get(unit, 1.0)
            columns["ecg"] = signals[:, i] * scale
        elif "ppg" not in columns and name in PPG_NAMES:
            columns["ppg"] = signals[:, i]
    if not columns:
        raise RecordingError(f"WFDB record {base!r} has no ECG or PPG signal (signals: "
                             f"{', '.join(record.sig_name)}); name a signal e.g. 'II' or "
                             "'PLETH'")
    rate = float(record.fs)
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise RecordingError(f"WFDB record {base!r}: rate {rate:g} Hz is outside "
                             f"{MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz")
    return _recording(record.sig_len / rate, rate, columns, {})


def load_recording(path: str | os.PathLike) -> Recording:
    """A CSV file (.csv) or a WFDB record (.hea, .dat, or the record name)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if path.suffix in (".hea", ".dat") or path.with_suffix(".hea").exists():
        return load_wfdb(path)
    raise RecordingError(f"{str(path)!r} is neither a .csv file nor a WFDB record (.hea); "
                         "see docs/recording-csv.md")
