"""Recordings as a wearable's byte stream, shared by the simulator and the runtime.

A real recording, a CSV file (docs/recording-csv.md) or a PhysioNet WFDB record, is read into
`Signals`: per-channel arrays in physical units with their sample rates. `frames()` and
`stream()` cut such arrays (or the simulator's `Recording`, which has the same attributes) into
exactly the wire-protocol v1 frames a wearable sends. `wearable-sim replay` writes those bytes
to a pty, a port or a file; `wearable-edge replay` feeds them straight into its pipeline, the
same code path as a live serial port.

Kept free of `edge` and `device_sim` (like the rest of `wire`) so both may import it. WFDB
needs the optional `wfdb` package, imported only when a WFDB record is read.

Encoding on the wire:
- PPG: INT32 with scale PPG_SCALE (1.0): raw ADC counts, arbitrary units; a recording in
  physical units carries a finer scale (`Signals.ppg_scale`).
- ACCEL: INT16, 3 axes, scale ACC_SCALE = 1/4096 g: +-8 g full scale, like a MEMS part at
  its +-8 g range. A block that clips is flagged Flag.SATURATED.
- ECG: INT16, scale 1/1000 mV (1 uV per count).
- CGM: INT16 mg/dL, one reading per frame (nominal rate 1/300 Hz).
- BP_CUFF: INT16 mmHg, 2 axes (systolic, diastolic), one reading per frame (nominal 1/300 Hz).
A block with no skin/electrode contact is flagged Flag.LEAD_OFF.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import heapq
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO, TypeVar

import numpy as np

from wire.errors import WearableError
from wire.protocol import MAX_PAYLOAD, Channel, Flag, Frame, encode_frame

PPG_SCALE = 1.0  # ADC counts; a recording in physical units carries its own (ppg_scale)
ACC_SCALE = 1.0 / 4096.0
ECG_SCALE = 1.0 / 1000.0  # mV per count: 1 uV resolution, +-32 mV range
CGM_SCALE = 1.0  # mg/dL
# A CGM column: readings outside this range are impossible (refused); a sensor's "Low" /
# "High" (below / above its range) become its limits and are flagged SATURATED.
CGM_VALID_MG_DL = (20.0, 600.0)
CGM_TEXT = {"low": -math.inf, "high": math.inf}  # sentinels while parsing: never a number
CGM_LIMITS_MG_DL = (40.0, 400.0)  # what Low / High are published as
CUFF_SCALE = 1.0  # mmHg
CGM_RATE_HZ = CUFF_RATE_HZ = 1.0 / 300.0  # nominal header rate of a sparse reading
FRAMES_PER_SECOND = 4.0
# Waveform rates a recording may have. 16 Hz is the slowest any model takes, upsampled
# (edge.signal.MIN_SENSOR_RATE_HZ; wire does not import edge: a test keeps them equal).
MIN_RATE_HZ, MAX_RATE_HZ = 16.0, 10_000.0

DENSE = ("ppg", "acc_x", "acc_y", "acc_z", "ecg")  # a value on every row
SPARSE = ("glucose", "sbp", "dbp")  # a value where there is a reading, else empty
COLUMNS = ("time_s", *DENSE, *SPARSE)
JITTER = 0.2  # intervals within this fraction of the median: a regular file, kept as is
# Irregular files (repeated timestamps, jitter) are resampled onto a uniform grid; an interval
# longer than this many sampling intervals is a gap, which the reader does not fill.
MAX_INTERVAL_STEPS = 2.5
# Stamps within this many sampling intervals of a straight line: regular samples under a
# noisy logger clock (kept as they are); beyond it the samples themselves were irregular.
REGULAR_WANDER_STEPS = 1.0
CLIPPED_SHARE = 0.25  # this share of the PPG's rows at its extreme value: a clipped sensor
CLIPPED_MIN_LEVELS = 16  # a PPG with fewer distinct values is coarse, not (known) clipped
ECG_NAMES = {"i", "ii", "iii", "avr", "avl", "avf", "v", "v1", "v2", "v3", "v4", "v5", "v6",
             "mlii", "ml2", "ecg", "ecg1", "ecg2", "ecg i", "ecg ii"}
PPG_NAMES = {"pleth", "ppg", "bvp", "pulse", "ppg1"}
# The simulator's channel names (Signals.channels) and what each one is on the wire.
WIRE_CHANNELS = {"ppg": Channel.PPG, "acc": Channel.ACCEL, "ecg": Channel.ECG,
                 "cgm": Channel.CGM, "bp": Channel.BP_CUFF}
# Where a wire channel comes from in a CSV file (docs/recording-csv.md).
CSV_COLUMNS = {Channel.PPG: "ppg", Channel.ACCEL: "acc_x, acc_y, acc_z", Channel.ECG: "ecg",
               Channel.CGM: "glucose", Channel.BP_CUFF: "sbp, dbp"}
_SNIFF_BYTES = 4096


class RecordingError(WearableError):
    """A recording file cannot be read or is not usable; says where and how to fix it."""


class ChannelArrays(Protocol):
    """What `frames()` reads: `Signals`, or the simulator's `Recording` (read-only, so a
    frozen dataclass fits)."""

    @property
    def ppg(self) -> np.ndarray: ...

    @property
    def ppg_rate(self) -> float: ...

    @property
    def acc(self) -> np.ndarray: ...

    @property
    def acc_rate(self) -> float: ...

    @property
    def ecg(self) -> np.ndarray | None: ...

    @property
    def ecg_rate(self) -> float: ...

    @property
    def cgm(self) -> tuple[np.ndarray, np.ndarray] | None: ...

    @property
    def cuff(self) -> tuple[np.ndarray, np.ndarray] | None: ...

    @property
    def lead_off(self) -> dict[str, np.ndarray]: ...

    @property
    def channels(self) -> tuple[str, ...]: ...

    @property
    def ppg_scale(self) -> float: ...


@dataclass(frozen=True)
class Signals:
    """A recording's channels: arrays in physical units at their sample rates.

    `channels` names what the recording has, from "ppg", "acc", "ecg", "cgm", "bp" (the
    simulator's names); an absent dense channel is an empty array. Sparse channels are
    (reading times s, readings): CGM readings (k,), cuff readings (k, 2) systolic/diastolic.
    """

    ppg: np.ndarray
    ppg_rate: float
    acc: np.ndarray  # (n, 3), g
    acc_rate: float
    ecg: np.ndarray | None  # mV
    ecg_rate: float
    cgm: tuple[np.ndarray, np.ndarray] | None
    cuff: tuple[np.ndarray, np.ndarray] | None
    channels: tuple[str, ...]
    duration_s: float
    ppg_scale: float = PPG_SCALE
    lead_off: dict[str, np.ndarray] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the reader did, e.g. resampled an irregular time_s
    saturated: dict[str, np.ndarray] = field(default_factory=dict)  # "cgm": Low/High readings

    @property
    def wire_channels(self) -> tuple[Channel, ...]:
        return tuple(WIRE_CHANNELS[name] for name in self.channels)


# --- reading recordings -------------------------------------------------------------------


def _ppg_scale(ppg: np.ndarray) -> float:
    """1.0 for ADC counts; for physical units (e.g. 0.2-2 NU), a scale that keeps ~30 bits."""
    finite = ppg[np.isfinite(ppg)]
    if not len(finite) or np.all(finite == np.round(finite)):
        return 1.0
    return max(float(np.abs(finite).max()), 1e-9) / 2**30


def _signals(duration_s: float, rate: float, columns: dict[str, np.ndarray],
             sparse: dict[str, tuple[np.ndarray, np.ndarray]],
             notes: tuple[str, ...] = ()) -> Signals:
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
    return Signals(ppg, rate, acc, rate, ecg, rate, cgm, cuff, tuple(channels), duration_s,
                   ppg_scale=_ppg_scale(ppg), notes=notes)


def load_csv(path: str | os.PathLike) -> Signals:
    """A CSV recording: header row, `time_s` plus any of ppg, acc_x/acc_y/acc_z (all three),
    ecg (mV), glucose (mg/dL), sbp/dbp (mmHg, both); see docs/recording-csv.md."""
    path = Path(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as err:
        raise RecordingError(f"cannot read {str(path)!r} ({err.strerror}); check the path") \
            from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip() for h in next(reader, [])]
        except UnicodeDecodeError:
            raise RecordingError(f"{path}:1: not a text file; a CSV recording is UTF-8 text "
                                 "with a header row (docs/recording-csv.md)") from None
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
        data = _fast_rows(handle, header)
        if data is None:  # something to point at, or something numpy would not read
            handle.seek(0)
            reader = csv.reader(handle)
            next(reader)
            data = _checked_rows(path, reader, header)
    if len(data) < 2:
        raise RecordingError(f"{path}: fewer than two rows of data; nothing to replay")
    t = data[:, header.index("time_s")]
    dense = [name for name in header if name in DENSE]
    columns = {name: data[:, header.index(name)] for name in dense}
    notes: tuple[str, ...] = ()
    if dense:
        raw_ppg = columns.get("ppg")
        rate, step, columns, note = _uniform(path, t, columns)
        if raw_ppg is not None:
            _check_ppg(path, raw_ppg)
        notes = (note,) if note else ()
    else:  # readings only (CGM, cuff): any spacing, but each reading after the one before
        rate, step = 64.0, 1.0
        back = np.flatnonzero(np.diff(t) <= 0)
        if len(back):
            i = int(back[0]) + 1
            raise RecordingError(f"{path}:{i + 2}: column 'time_s' goes from {t[i - 1]:g} to "
                                 f"{t[i]:g}; readings must come in time order, one per time: "
                                 "sort the rows by time_s and drop repeated readings")
    t = np.maximum.accumulate(t) - t[0]  # readings stay in order under a jittered clock
    sparse = {}
    saturated = {}
    for name in SPARSE:
        if name in header:
            col = data[:, header.index(name)]
            have = ~np.isnan(col)
            if name == "glucose":  # "Low" / "High" (±inf while parsing): the sensor's limits
                saturated["cgm"] = np.isinf(col[have])
                col = np.where(np.isinf(col), np.clip(col, *CGM_LIMITS_MG_DL), col)
            sparse[name] = (t[have], col[have])
    if "sbp" in sparse and not np.array_equal(sparse["sbp"][0], sparse["dbp"][0]):
        raise RecordingError(f"{path}: sbp and dbp must be given on the same rows")
    n = len(next(iter(columns.values()))) if dense else 0
    duration = float((n - 1) / rate + step if dense else t.max() + step)
    try:
        signals = _signals(duration, rate, columns, sparse, notes)
        return dataclasses.replace(signals, saturated=saturated) if saturated else signals
    except RecordingError as err:
        raise RecordingError(f"{path}: {err}; add a ppg, acc_*, ecg or glucose column") \
            from None


def _uniform(path: Path, t: np.ndarray, columns: dict[str, np.ndarray]
             ) -> tuple[float, float, dict[str, np.ndarray], str]:
    """(rate, sampling interval, the dense columns on a uniform grid, a note saying what was
    done). A regular file (every interval within JITTER of the median) is kept as it is.
    Real loggers repeat timestamps (a coarse clock, samples stamped in batches) and jitter:
    runs of one timestamp are spread evenly up to the next one, and a step back by up to one
    interval counts as jitter. If the stamps then stay within REGULAR_WANDER_STEPS of a
    straight line, the rows are a sensor's regular samples and are kept at that line's rate;
    otherwise they are linearly interpolated onto a uniform grid (a PPG's pulse lives below
    4 Hz: a fraction of a sample of timing error does not move it). RecordingError for times
    going back by more than an interval, a gap, or a rate the models cannot use."""
    n = len(t)
    dt = np.diff(t)
    monotone = np.maximum.accumulate(t)
    # Runs of one timestamp (after jitter back is clamped) spread evenly to the next one.
    starts = np.flatnonzero(np.r_[True, np.diff(monotone) > 0])
    lengths = np.diff(np.r_[starts, n])
    if len(starts) < 2:
        if t.min() == t.max():
            raise RecordingError(f"{path}:3: column 'time_s' is {t[0]:g} on every row; give "
                                 "each row the time its sample was taken")
        i = int(np.argmax(t < t[0]))
        raise RecordingError(f"{path}:{i + 2}: column 'time_s' goes back from {t[0]:g} to "
                             f"{t[i]:g}; sort the rows by time_s")
    gaps = np.diff(monotone[starts])
    gaps = np.r_[gaps, np.median(gaps / lengths[:-1]) * lengths[-1]]  # the last run: typical
    within = np.arange(n) - np.repeat(starts, lengths)
    spread = (np.repeat(monotone[starts], lengths)
              + within / np.repeat(lengths, lengths) * np.repeat(gaps, lengths))
    step = float(np.median(np.diff(spread)))
    back = np.flatnonzero(monotone - t > step * (1 + 1e-6))
    if len(back):
        i = back[0]
        raise RecordingError(f"{path}:{i + 2}: column 'time_s' goes back from "
                             f"{monotone[i]:g} to {t[i]:g}, more than one sampling interval "
                             f"({step:g} s); sort the rows by time_s, or split the file where "
                             "the logger's clock was reset")
    jumps = np.flatnonzero(np.diff(spread) > MAX_INTERVAL_STEPS * step)
    if len(jumps):
        i = jumps[0]
        raise RecordingError(f"{path}:{i + 3}: time_s jumps by {spread[i + 1] - spread[i]:g} s "
                             f"where the sampling interval is {step:g} s; resample the file to "
                             "a regular rate (gaps are not supported)")
    regular = len(starts) == n and not np.any(np.abs(dt - step) > JITTER * step)
    # The rate over the whole file: rounded time stamps bias a single interval (64 Hz written
    # to 5 decimals has a median interval of 0.01563 s, 63.98 Hz, below a 64 Hz model).
    rate = (n - 1) / (spread[-1] - spread[0])
    note = ""
    if not regular:
        repeated = n - len(starts)
        stats = (f"time_s irregular ({repeated} repeated timestamp{'s' * (repeated != 1)}, "
                 f"intervals {dt.min() * 1e3:.3g} to {dt.max() * 1e3:.3g} ms, median "
                 f"{np.median(dt) * 1e3:.3g} ms, SD {dt.std() * 1e3:.3g} ms)")
        # A sensor samples on its own crystal; a logger stamps the rows when they reach it
        # (late, in batches). Stamps that stay within a sampling interval of a straight line
        # are that: the rows are regular samples, kept as they are at the line's rate.
        # Otherwise the stamps are the sampling times: interpolate onto a uniform grid.
        index = np.arange(n)
        slope, offset = np.polyfit(index, spread, 1)
        wander = float(np.abs(spread - (offset + slope * index)).max())
        if wander <= REGULAR_WANDER_STEPS * slope:
            rate = float(f"{1 / slope:.6g}")
            note = (f"{stats}: rows taken as regular samples at {rate:g} Hz (the stamps stay "
                    f"within {wander * 1e3:.3g} ms of a straight line)")
        else:
            measured = rate
            rate = float(f"{rate:.3g}")  # the grid is ours: a round rate near the file's
            grid = spread[0] + np.arange(int((spread[-1] - spread[0]) * rate + 1e-9) + 1) / rate
            columns = {name: np.interp(grid, spread, col) for name, col in columns.items()}
            note = (f"{stats}: stamps wander {wander * 1e3:.3g} ms from a regular clock; "
                    f"resampled from {measured:.5g} rows/s onto a uniform {rate:g} Hz grid")
    if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise RecordingError(f"{path}:3: time_s steps by {step:g} s, {rate:g} Hz: outside "
                             f"{MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz, the rates the models can "
                             f"use; record at {MIN_RATE_HZ:g} Hz or faster (or resample the "
                             "file)")
    return rate, step, columns, note


def _check_ppg(path: Path, ppg: np.ndarray) -> None:
    """RecordingError if the PPG column holds no pulse: constant, or pinned at its extremes
    (a saturated sensor: too much gain or LED current, or no skin contact)."""
    if ppg.max() == ppg.min():
        raise RecordingError(f"{path}:2: column 'ppg' is {ppg[0]:g} on every row: the sensor "
                             "saw no pulse; check its contact with the skin, or drop the "
                             "column")
    if len(np.unique(ppg[:100_000])) < CLIPPED_MIN_LEVELS:
        return  # too few levels to tell clipping from coarse quantisation of a weak pulse
    for name, value in (("maximum", ppg.max()), ("minimum", ppg.min())):
        at = ppg == value
        if at.mean() >= CLIPPED_SHARE:
            raise RecordingError(
                f"{path}:{np.argmax(at) + 2}: column 'ppg' is clipped: {at.mean():.0%} of the "
                f"rows sit at its {name} {value:g}; lower the sensor's gain or LED current, "
                "or replay only the part that is not clipped")


def _fast_rows(handle: TextIO, header: list[str]) -> np.ndarray | None:
    """The data rows as floats (NaN for an empty sparse cell), read by numpy's C parser; None
    if anything is off (a bad cell, a short row...), which `_checked_rows` then points at."""
    sparse = {j: _glucose_cell if name == "glucose" else _sparse_cell
              for j, name in enumerate(header) if name in SPARSE}
    dense = [j for j, name in enumerate(header) if name not in SPARSE]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the checks say it
            data = np.loadtxt(handle, dtype=float, delimiter=",", comments=None, quotechar='"',
                              ndmin=2, converters=sparse or None)
    except (ValueError, UnicodeDecodeError):
        return None
    if (data.ndim != 2 or data.shape[1] != len(header) or len(data) < 2
            or not np.isfinite(data[:, dense]).all()):
        return None
    if "glucose" in header:  # an impossible reading: the checked path names its line
        g = data[:, header.index("glucose")]
        g = g[np.isfinite(g)]
        if ((g < CGM_VALID_MG_DL[0]) | (g > CGM_VALID_MG_DL[1])).any():
            return None
    return data


def _sparse_cell(cell: str) -> float:
    """A glucose/sbp/dbp cell: empty (no reading: NaN) or a finite number."""
    cell = cell.strip()
    if not cell:
        return math.nan
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(f"{cell!r} is not a number")
    return value


def _glucose_cell(cell: str) -> float:
    """A glucose cell: empty (NaN), a number, or the sensor's "Low" / "High" (±inf)."""
    text = cell.strip().lower()
    return CGM_TEXT[text] if text in CGM_TEXT else _sparse_cell(cell)


def _checked_rows(path: Path, reader: Iterator[list[str]], header: list[str]) -> np.ndarray:
    """The data rows, row by row: RecordingError naming the line and column of the first bad
    cell."""
    rows: list[list[float]] = []
    line = 1
    try:
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
                if name == "glucose":
                    values.append(_checked_glucose(path, line, cell))
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
            rows.append(values)
    except UnicodeDecodeError:
        raise RecordingError(f"{path}:{line + 1}: not UTF-8 text; save the file as UTF-8 "
                             "(numbers with '.' as the decimal separator)") from None
    return np.array(rows, dtype=float).reshape(-1, len(header))


def _checked_glucose(path: Path, line: int, cell: str) -> float:
    try:
        value = _glucose_cell(cell)
    except ValueError:
        raise RecordingError(f"{path}:{line}: column 'glucose': {cell!r} is not a number; "
                             "give mg/dL, 'Low' / 'High' for the sensor's out-of-range "
                             "readings, or leave the cell empty for no reading") from None
    if math.isfinite(value) and not CGM_VALID_MG_DL[0] <= value <= CGM_VALID_MG_DL[1]:
        raise RecordingError(
            f"{path}:{line}: column 'glucose': {cell} mg/dL is impossible (outside "
            f"{CGM_VALID_MG_DL[0]:g}-{CGM_VALID_MG_DL[1]:g}); mmol/L needs converting "
            "(x 18), 'Low' / 'High' name the sensor's limits, an empty cell is no reading")
    return value


def load_wfdb(path: str | os.PathLike) -> Signals:
    """A PhysioNet WFDB record (`name.hea` + its signal files): the first ECG lead (in mV)
    and a PPG ('PLETH', 'PPG', 'BVP') are replayed, each at its own rate (a multi-frequency
    record, e.g. PPG at 124.9 Hz and ECG at 249.8 Hz, is not averaged down to its frame
    rate); other signals are skipped."""
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
        # smooth_frames=False: every signal at its own rate (samples per frame x frame rate)
        record = wfdb.rdrecord(base, smooth_frames=False)
    except (OSError, ValueError) as err:
        raise RecordingError(f"cannot read WFDB record {base!r} ({err}); give the record's "
                             "path without extension, next to its .hea and .dat files") \
            from None
    names = [n.strip().lower() for n in record.sig_name]
    per_frame = record.samps_per_frame or [1] * len(names)
    columns: dict[str, tuple[np.ndarray, float, str]] = {}  # signal, rate, its name
    for i, name in enumerate(names):
        unit = (record.units[i] or "").lower()
        values = np.asarray(record.e_p_signal[i], dtype=np.float64)
        rate = float(record.fs) * per_frame[i]
        if "ecg" not in columns and (name in ECG_NAMES or unit == "mv"):
            scale = {"mv": 1.0, "uv": 1e-3, "v": 1e3}.get(unit, 1.0)
            columns["ecg"] = (values * scale, rate, record.sig_name[i])
        elif "ppg" not in columns and name in PPG_NAMES:
            columns["ppg"] = (values, rate, record.sig_name[i])
    if not columns:
        raise RecordingError(f"WFDB record {base!r} has no ECG or PPG signal (signals: "
                             f"{', '.join(record.sig_name)}); name a signal e.g. 'II' or "
                             "'PLETH'")
    for _, rate, name in columns.values():
        if not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise RecordingError(f"WFDB record {base!r}: signal {name} at {rate:g} Hz is "
                                 f"outside {MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz, the rates the "
                                 "models can use; use a record sampled at 16 Hz or faster")
    ppg, ppg_rate, _ = columns.get("ppg", (np.zeros(0), 0.0, ""))
    ecg, ecg_rate, _ = columns.get("ecg", (None, 0.0, ""))
    channels = tuple(c for c in ("ppg", "ecg") if c in columns)
    duration = max(len(x) / rate for x, rate, _ in columns.values())
    rate = ppg_rate or ecg_rate  # an absent channel's rate: any valid one
    return Signals(ppg, ppg_rate or rate, np.zeros((0, 3)), rate, ecg, ecg_rate or rate,
                   None, None, channels, duration, ppg_scale=_ppg_scale(ppg))


def recording_kind(path: str | os.PathLike) -> str:
    """"csv", "wfdb" or "wire" (wire-protocol bytes, e.g. `wearable-sim run --out`).

    By extension first (.csv; .hea, or .dat / a record name with its .hea beside it), then by
    content: text whose first line names a `time_s` column is a CSV file. Anything else,
    including a file that does not exist, is "wire": whoever opens it reports what is wrong.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix == ".hea" or (not path.exists() and Path(f"{path}.hea").exists()):
        return "wfdb"
    if suffix == ".dat" and path.with_suffix(".hea").exists():
        return "wfdb"
    if path.is_file() and _looks_like_csv(path):
        return "csv"
    return "wire"


def _looks_like_csv(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False  # the reader of the file reports it
    if b"\x00" in head:  # every wire frame ends in 0x00; text never has one
        return False
    first = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return "time_s" in (cell.strip() for cell in first.split(","))


def load_recording(path: str | os.PathLike) -> Signals:
    """A CSV file or a WFDB record (see `recording_kind`)."""
    kind = recording_kind(path)
    if kind == "csv":
        return load_csv(path)
    if kind == "wfdb":
        return load_wfdb(path)
    raise RecordingError(f"{str(path)!r} is neither a .csv file nor a WFDB record (.hea); "
                         "see docs/recording-csv.md")


# --- channel arrays as wire frames --------------------------------------------------------


@dataclass(frozen=True)
class DeviceClock:
    """The device's clock: restarts at 0 on every (re)boot and may drift.

    `epochs` are (start, end) spans of true time during which the device runs; between them
    nothing is acquired. `drift` are (start, end, ppm) spans in which the clock runs fast
    (ppm > 0) or slow. The default: one epoch from t=0, no drift (a recording as it is).
    """

    epochs: tuple[tuple[float, float], ...] = ((0.0, math.inf),)
    drift: tuple[tuple[float, float, float], ...] = ()

    def _offset(self, t: float) -> float:
        """Seconds the drifting clock has gained by true time t."""
        return sum(ppm * 1e-6 * max(0.0, min(t, b) - a) for a, b, ppm in self.drift)

    def device_time(self, t: float, epoch_start: float) -> float:
        return t - epoch_start + self._offset(t) - self._offset(epoch_start)


T = TypeVar("T")
Piece = tuple[np.ndarray, "np.ndarray | None"]  # consecutive samples of a channel, lead-off


def _fan_out(items: Iterable[T], n: int) -> list[Iterator[T]]:
    """n iterators over `items`, like itertools.tee, but an item is let go as soon as every
    iterator has passed it (tee frees its buffer only 57 items at a time: 57 chunks of a
    simulation are most of two hours of samples)."""
    source, first, position = iter(items), 0, [0] * n
    held: collections.deque[T] = collections.deque()

    def reader(i: int) -> Iterator[T]:
        nonlocal first
        while True:
            if position[i] - first == len(held):
                try:
                    held.append(next(source))
                except StopIteration:
                    return
            item = held[position[i] - first]
            position[i] += 1
            while held and min(position) > first:
                held.popleft()
                first += 1
            yield item

    return [reader(i) for i in range(n)]


class _Samples:
    """A channel's samples arriving in consecutive pieces (values, lead_off), converted to
    the sample type piece by piece and read by index ranges that only move forward: a long
    recording passes through without being held whole."""

    def __init__(self, pieces: Iterable[Piece], dtype: np.dtype, scale: float,
                 saturated: np.ndarray | None = None) -> None:
        self._pieces = iter(pieces)
        self._dtype, self._scale, self._saturated = dtype, scale, saturated
        self._start = self._end = 0  # the samples held: [start, end)
        self._held: tuple[np.ndarray, ...] | None = None  # raw, missing, saturated, lead_off

    def _pull(self, keep_from: int) -> bool:
        """Convert the next piece and append it, dropping samples before `keep_from`."""
        piece = next(self._pieces, None)
        if piece is None:
            return False
        values, lead_off = piece
        if not len(values):
            return self._pull(keep_from)
        values = values.reshape(len(values), -1)
        n = len(values)
        info = np.iinfo(self._dtype)
        with np.errstate(invalid="ignore"):
            raw = np.round(values / self._scale)
        missing = np.isnan(raw).any(axis=1)
        saturated = ((raw < info.min) | (raw > info.max)).any(axis=1)
        if self._saturated is not None:
            saturated |= self._saturated[self._end:self._end + n]
        raw = np.clip(np.nan_to_num(raw), info.min, info.max).astype(self._dtype)
        lead = np.zeros(n, bool) if lead_off is None else np.asarray(lead_off, bool)
        new = tuple(np.asarray(x) for x in (raw, missing, saturated, lead))
        if self._held is not None:
            drop = max(0, min(keep_from, self._end) - self._start)
            new = tuple(np.concatenate([h[drop:], x]) for h, x in zip(self._held, new,
                                                                     strict=True))
            self._start += drop
        else:
            self._start = self._end
        self._held, self._end = new, self._end + n
        return True

    @property
    def columns(self) -> int:
        if self._held is None and not self._pull(0):
            return 1
        assert self._held is not None
        return self._held[0].shape[1]

    def take(self, a: int, b: int) -> tuple[np.ndarray, ...]:
        """(raw, missing, saturated, lead_off) of samples a..b-1, as far as they exist."""
        while self._end < b and self._pull(a):
            pass
        if self._held is None:
            return (np.zeros((0, 1), self._dtype), *(np.zeros(0, bool),) * 3)
        i, j = a - self._start, max(a, min(b, self._end)) - self._start
        return tuple(h[i:j] for h in self._held)


def channel_frames(
    channel: Channel,
    values: np.ndarray | None,
    rate: float,
    dtype: np.dtype,
    scale: float,
    device_id: int,
    frames_per_second: float = FRAMES_PER_SECOND,
    *,
    times: np.ndarray | None = None,
    lead_off: np.ndarray | None = None,
    clock: DeviceClock | None = None,
    saturated: np.ndarray | None = None,
    pieces: Iterable[Piece] | None = None,
) -> Iterator[tuple[float, int, Frame]]:
    """(send time, channel, Frame) for one channel, in order.

    Regular channels are sampled at `rate` from t=0, cut into blocks of about
    1/frames_per_second seconds; a block is sent once its last sample exists. Sparse ones
    (CGM, cuff) pass the `times` of their readings, one frame per reading, and skip readings
    that are NaN (the sensor had none, so no frame and no seq). Each epoch of the device clock
    restarts seq at 0 with Flag.BOOT; timestamp_us is the device clock at the block's first
    sample. Values beyond the sample type are clipped and the block flagged SATURATED.

    A regular channel may come as `pieces` instead of `values` and `lead_off`: consecutive
    (values, lead_off) arrays, read as the frames go, so a long stream is never held whole.
    """
    if pieces is None:
        pieces = [(values if values is not None else np.zeros(0), lead_off)]
    samples = _Samples(pieces, dtype, scale, saturated)
    clock = clock or DeviceClock()
    sparse = times is not None
    if times is not None:
        sparse_times = times

        def time_of(i: int) -> float:
            return float(sparse_times[i])

        def count_before(t: float) -> int:
            return int(np.searchsorted(sparse_times, t))
    else:
        def time_of(i: int) -> float:
            return i / rate  # = (np.arange(n) / rate)[i]

        def count_before(t: float) -> int:
            """How many samples i / rate come before t."""
            if t == math.inf:
                return sys.maxsize
            c = max(0, math.ceil(t * rate))
            while c > 0 and (c - 1) / rate >= t:
                c -= 1
            while c / rate < t:
                c += 1
            return c

    bytes_per_sample = dtype.itemsize * samples.columns
    block = 1 if sparse else max(1, min(round(rate / frames_per_second),
                                        MAX_PAYLOAD // bytes_per_sample))
    for epoch_start, epoch_end in clock.epochs:
        start, last = count_before(epoch_start), count_before(epoch_end)
        seq = 0
        while start < last:
            raw, missing, clipped, lead = samples.take(start, min(start + block, last))
            if not len(raw):
                break
            stop = start + len(raw)
            if not missing.all():
                flags = Flag.BOOT if seq == 0 else Flag.NONE
                if clipped.any():
                    flags |= Flag.SATURATED
                if lead.any():
                    flags |= Flag.LEAD_OFF
                frame = Frame(
                    device_id=device_id,
                    seq=seq,
                    timestamp_us=round(clock.device_time(time_of(start), epoch_start) * 1e6),
                    channel=channel,
                    sample_rate_hz=rate,
                    samples=raw,
                    scale=scale,
                    flags=flags,
                )
                seq += 1
                yield time_of(stop - 1), int(channel), frame
            start = stop


def frames(
    signals: ChannelArrays,
    device_id: int = 1,
    *,
    frames_per_second: float = FRAMES_PER_SECOND,
    clock: DeviceClock | None = None,
    cgm_rate_hz: float = CGM_RATE_HZ,
    cuff_rate_hz: float = CUFF_RATE_HZ,
    pieces: Iterable[ChannelArrays] | None = None,
) -> Iterator[tuple[float, Frame]]:
    """(send time s, Frame) for every channel `signals` streams, merged in send order.

    Ties in time go to the lower channel number, so the order never depends on anything else.
    `cgm_rate_hz` / `cuff_rate_hz` go in the header of sparse readings. With `pieces`, the
    regular channels (PPG, accelerometer, ECG and their lead-off) come from those consecutive
    parts of the recording instead of `signals` (a simulation streamed chunk by chunk).
    """
    s = signals
    frames_of = functools.partial(channel_frames, device_id=device_id,
                                  frames_per_second=frames_per_second, clock=clock)
    regular: list[tuple[str, Channel, float, np.dtype, float]] = []
    if "ppg" in s.channels:
        regular.append(("ppg", Channel.PPG, s.ppg_rate, np.dtype("<i4"), s.ppg_scale))
    if "acc" in s.channels:
        regular.append(("acc", Channel.ACCEL, s.acc_rate, np.dtype("<i2"), ACC_SCALE))
    if "ecg" in s.channels and (pieces is not None or s.ecg is not None):
        regular.append(("ecg", Channel.ECG, s.ecg_rate, np.dtype("<i2"), ECG_SCALE))

    def of(name: str, parts: Iterable[ChannelArrays]) -> Iterator[Piece]:
        for part in parts:
            yield getattr(part, name), part.lead_off.get(name)

    copies = _fan_out(pieces if pieces is not None else [s], len(regular))
    channels = [frames_of(channel, None, rate, dtype, scale, pieces=of(name, parts))
                for (name, channel, rate, dtype, scale), parts in zip(regular, copies,
                                                                        strict=True)]
    if s.cgm is not None and "cgm" in s.channels:
        times, readings = s.cgm
        channels.append(frames_of(Channel.CGM, readings, cgm_rate_hz, np.dtype("<i2"),
                                  CGM_SCALE, times=times,
                                  saturated=getattr(s, "saturated", {}).get("cgm")))
    if s.cuff is not None and "bp" in s.channels:
        times, readings = s.cuff
        channels.append(frames_of(Channel.BP_CUFF, readings, cuff_rate_hz, np.dtype("<i2"),
                                  CUFF_SCALE, times=times))
    for send_time, _, frame in heapq.merge(*channels, key=lambda item: item[:2]):
        yield send_time, frame


def stream(signals: ChannelArrays, device_id: int = 1, *,
           frames_per_second: float = FRAMES_PER_SECOND) -> Iterator[tuple[float, bytes]]:
    """(send time s, frame bytes) in send order: exactly what a wearable sends down the wire."""
    for send_time, frame in frames(signals, device_id, frames_per_second=frames_per_second):
        yield send_time, encode_frame(frame)
