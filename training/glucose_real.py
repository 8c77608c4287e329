"""Real CGM traces for the glucose forecaster: reading, splitting by person, gridding, windows.

A trace is a CSV with the header `timestamp,glucose_value_mg_dl` (the Glucose-ML harmonised
layout of /work/shared/datasets/cgm: `<dataset>/extracted/<dataset>-extracted-glucose-files/
<person>.csv`). Timestamps are `YYYY-MM-DD HH:MM:SS`, or `HH:MM:SS` alone (Colas_2019: a day
is added each time the clock wraps). Readings are put on the model's 5-min grid by the runtime's
own `edge.features.cgm_on_grid` (short gaps interpolated, long ones split the trace into
segments), so training, evaluation and the runtime see the same history.

What is refused or dropped, per file (counted, never silently): a row that is not
`time,value` (TrainingError naming file and line), text "Low"/"High" (mapped to the sensor
limits 40/400 mg/dL, like the runtime's SATURATED readings), values outside 20-600 mg/dL
(dropped), repeated or backwards times (the trace is sorted; duplicates keep the first).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import ThresholdAlarmConfig
from edge.features import cgm_on_grid
from training import glucose_data as gdata
from training.errors import TrainingError

HEADER = ("timestamp", "glucose_value_mg_dl")
TEXT_LIMITS = {"low": 40.0, "high": 400.0}  # a sensor's LOW/HIGH: its range limits
VALID_MG_DL = (20.0, 600.0)
GRID_S = 300.0
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train, validation, test people per dataset


@dataclass
class Trace:
    dataset: str
    person: str
    times_s: np.ndarray  # increasing, s
    mg_dl: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def days(self) -> float:
        return float((self.times_s[-1] - self.times_s[0]) / 86400.0) if len(self.times_s) else 0.0

    @property
    def spacing_min(self) -> float:
        return float(np.median(np.diff(self.times_s)) / 60.0) if len(self.times_s) > 1 else 0.0


def _seconds(stamp: str) -> float | None:
    stamp = stamp.strip()
    try:
        if len(stamp) <= 8 and stamp.count(":") == 2:  # time of day only
            h, m, s = (int(x) for x in stamp.split(":"))
            return float(h * 3600 + m * 60 + s)
        return float(np.datetime64(stamp.replace(" ", "T"), "s").astype(np.int64))
    except ValueError:
        return None


def read_trace(path: Path, dataset: str = "") -> Trace:
    """One person's CGM trace; TrainingError naming file and line for what cannot be read."""
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as err:
        raise TrainingError(f"cannot read {str(path)!r} ({err.strerror}); check the path") \
            from None
    times: list[float] = []
    values: list[float] = []
    dropped = {"out_of_range": 0, "text_low_high": 0, "not_a_number": 0, "duplicate": 0,
               "backwards": 0}
    time_only = False
    with handle:
        rows = csv.reader(handle)
        header = tuple(h.strip() for h in next(rows, []))
        if header[:2] != HEADER:
            raise TrainingError(f"{path}:1: header {','.join(header)!r}; a CGM trace needs "
                                f"{','.join(HEADER)}")
        day = 0.0
        for line, row in enumerate(rows, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < 2:
                raise TrainingError(f"{path}:{line}: expected 'timestamp,value'; fix the row")
            t = _seconds(row[0])
            if t is None:
                raise TrainingError(f"{path}:{line}: timestamp {row[0]!r} is neither "
                                    "'YYYY-MM-DD HH:MM:SS' nor 'HH:MM:SS'; fix the row")
            if len(row[0].strip()) <= 8:
                time_only = True
                if times and t + day < times[-1] - 12 * 3600:  # the clock wrapped: a new day
                    day += 86400.0
                t += day
            cell = row[1].strip()
            if cell.lower() in TEXT_LIMITS:
                value = TEXT_LIMITS[cell.lower()]
                dropped["text_low_high"] += 1  # counted, but kept at the limit
            else:
                try:
                    value = float(cell)
                except ValueError:
                    dropped["not_a_number"] += 1
                    continue
                if not np.isfinite(value) or not VALID_MG_DL[0] <= value <= VALID_MG_DL[1]:
                    dropped["out_of_range"] += 1
                    continue
            times.append(t)
            values.append(value)
    t_arr, g_arr = np.asarray(times), np.asarray(values)
    dropped["backwards"] = int(np.sum(np.diff(t_arr) < 0))
    order = np.argsort(t_arr, kind="stable")
    t_arr, g_arr = t_arr[order], g_arr[order]
    keep = np.concatenate([[True], np.diff(t_arr) > 0]) if len(t_arr) else np.zeros(0, bool)
    dropped["duplicate"] = int(np.sum(~keep))
    del time_only
    return Trace(dataset or path.parent.name, path.stem.strip(), t_arr[keep], g_arr[keep],
                 {k: v for k, v in dropped.items() if v})


def find_traces(root: Path) -> list[Path]:
    """Every CGM trace CSV under `root` (a folder of datasets, or one dataset), sorted."""
    if not root.is_dir():
        raise TrainingError(f"--real-data {str(root)!r} is not a folder; give the folder of "
                            "CGM datasets (e.g. ../shared/datasets/cgm)")
    found = []
    for path in sorted(root.rglob("*.csv")):
        try:
            with open(path, encoding="utf-8-sig") as f:
                first = f.readline().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if tuple(h.strip() for h in first.split(","))[:2] == HEADER:
            found.append(path)
    if not found:
        raise TrainingError(f"no CGM trace (a CSV with header {','.join(HEADER)}) under "
                            f"{root}; check --real-data")
    return found


def dataset_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else root.name


def load(root: Path) -> list[Trace]:
    root = Path(root)
    return [t for t in (read_trace(p, dataset_of(p, root)) for p in find_traces(root))
            if len(t.times_s) >= 2]


def split_people(traces: Sequence[Trace], seed: int = 0) -> dict[str, list[Trace]]:
    """Train/validation/test people per dataset (SPLIT_FRACTIONS), by a seeded hash of the
    person's id: a person is in exactly one split, and adding people does not move others."""
    out: dict[str, list[Trace]] = {"train": [], "val": [], "test": []}
    by_dataset: dict[str, list[Trace]] = {}
    for t in traces:
        by_dataset.setdefault(t.dataset, []).append(t)
    for _, people in sorted(by_dataset.items()):
        ranked = sorted(people, key=lambda t: hashlib.sha256(
            f"{seed}:{t.dataset}:{t.person}".encode()).hexdigest())
        n = len(ranked)
        n_test = max(1, round(SPLIT_FRACTIONS[2] * n)) if n >= 3 else 0
        n_val = max(1, round(SPLIT_FRACTIONS[1] * n)) if n >= 3 else 0
        out["test"] += ranked[:n_test]
        out["val"] += ranked[n_test:n_test + n_val]
        out["train"] += ranked[n_test + n_val:]
    return out


def segments(trace: Trace, min_points: int) -> list[np.ndarray]:
    """The trace on a 5-min grid, cut at every gap the runtime would not bridge: runs of at
    least `min_points` grid values."""
    t = trace.times_s
    grid = np.arange(t[0], t[-1] + 1e-6, GRID_S)
    g = cgm_on_grid(t, trace.mg_dl, grid)
    ok = np.isfinite(g)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    return [g[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= min_points]


@dataclass
class RealSet:
    """Windows of real people, one segment = one series (its own id in `windows.subject`)."""

    windows: gdata.GlucoseWindows
    series: dict[int, np.ndarray]  # segment id -> its gridded CGM
    dataset: dict[int, str]  # segment id -> dataset
    person: dict[int, str]  # segment id -> "dataset/person"
    days: dict[str, float] = field(default_factory=dict)  # per dataset, covered by windows


def windows(traces: Sequence[Trace], pre, first_id: int = 1_000_000,
            log: Callable[[str], None] | None = None) -> RealSet:
    """Every window with both targets, through the same SlidingWindow/feature code as the
    simulated subjects (gdata.series_windows)."""
    need = pre.window_samples + max(gdata.HORIZONS.values())
    parts, series, dataset, person = [], {}, {}, {}
    sid = first_id
    for trace in traces:
        for seg in segments(trace, need):
            s = gdata.Series(np.arange(len(seg)) * GRID_S, seg, seg, (), ())
            parts.append(gdata.series_windows(s, pre, sid))
            series[sid], dataset[sid] = seg, trace.dataset
            person[sid] = f"{trace.dataset}/{trace.person}"
            sid += 1
    if not parts:
        raise TrainingError("no real CGM segment long enough for a window (1 h 30 min "
                            "without a gap longer than 16.7 min)")
    w = gdata.GlucoseWindows.concat(parts)
    if log:
        log(f"real CGM: {len(traces)} people, {len(series)} segments, {len(w)} windows")
    return RealSet(w, series, dataset, person)


def ar_forecast(history: np.ndarray, steps: int, order: int = 2) -> np.ndarray:
    """An AR(`order`) model with intercept fitted by least squares to each window's own
    readings (5 min apart), iterated `steps` readings ahead; per window, in one batch.
    Forecasts are clipped to 40-400 mg/dL (a fit on one flat hour can be unstable)."""
    h = np.asarray(history, np.float64)
    n, m = h.shape
    rows = m - order
    design = np.ones((n, rows, order + 1))
    for k in range(order):
        design[:, :, k + 1] = h[:, order - 1 - k: m - 1 - k]
    target = h[:, order:]
    gram = np.einsum("nij,nik->njk", design, design) + 1e-3 * np.eye(order + 1)
    coef = np.linalg.solve(gram, np.einsum("nij,ni->nj", design, target)[..., None])[..., 0]
    recent = list(h[:, -order:].T[::-1])  # newest first
    for _ in range(steps):
        nxt = coef[:, 0] + sum(coef[:, k + 1] * recent[k] for k in range(order))
        nxt = np.clip(nxt, 40.0, 400.0)
        recent = [nxt, *recent[:-1]]
    return recent[0]


# --- evaluation on held-out real people: per dataset and pooled -------------------------------

def baselines(w: gdata.GlucoseWindows) -> dict[str, np.ndarray]:
    """The classical forecasts on the same windows: last value, a least-squares line over the
    last 15 min, an AR(2) fitted to each window's own hour."""
    from training import glucose_metrics as gm

    steps = list(gdata.HORIZONS.values())
    return {
        "last value": np.stack([w.last, w.last], axis=1),
        "linear trend (15 min)": np.stack([gm.linear_extrapolation(w.history, 5.0 * h, 4)
                                           for h in steps], axis=1),
        "AR(2) per history": np.stack([ar_forecast(w.history, h) for h in steps], axis=1),
    }


def forecast_metrics(pred: np.ndarray, real: RealSet) -> dict[str, dict[str, float]]:
    """+20/+30 min RMSE and Clarke A+B (+30 min), per dataset and pooled ("all")."""
    from training import glucose_metrics as gm

    w = real.windows
    ds = np.array([real.dataset[s] for s in w.subject])
    out = {}
    for name in [*sorted(set(ds)), "all"]:
        sel = np.ones(len(ds), bool) if name == "all" else ds == name
        out[name] = {
            "windows": int(sel.sum()),
            "people": len({real.person[s] for s in np.unique(w.subject[sel])}),
            "rmse_20": float(np.sqrt(np.mean((pred[sel, 0] - w.y[sel, 0]) ** 2))),
            "rmse_30": float(np.sqrt(np.mean((pred[sel, 1] - w.y[sel, 1]) ** 2))),
            "clarke_ab_30": gm.clarke_summary(w.y[sel, 1], pred[sel, 1])["A+B"],
        }
    return out


RISK_LIMITS = tuple(round(0.1 + 0.05 * k, 2) for k in range(11))  # 0.1 ... 0.6
FORECAST_LIMITS_MG_DL = tuple(float(t) for t in range(54, 63))


def urgent_low_metrics(score: np.ndarray, real: RealSet, alarm: ThresholdAlarmConfig,
                       window_readings: int, *, forecast: bool = False) -> dict[str, dict]:
    """The urgent-low-soon alarm with these settings, driven by the risk (or a 20-min
    `forecast`: training.glucose_metrics.urgent_low), per dataset and pooled."""
    from training import glucose_metrics as gm

    w = real.windows
    order = np.argsort(w.subject, kind="stable")
    ids, starts = np.unique(w.subject[order], return_index=True)
    per_series = {s: gm.urgent_low({s: real.series[s]}, w.subject[k], w.end[k], score[k],
                                   window_readings=window_readings, alarm=alarm,
                                   forecast=forecast)
                  for s, k in zip(ids.tolist(), np.split(order, starts[1:]), strict=True)}
    out = {}
    datasets = sorted(set(real.dataset.values()))
    for name in [*datasets, "all"]:
        out[name] = gm.pooled([m for s, m in per_series.items()
                               if name in ("all", real.dataset[s])])
    return out


def trade_off(score: np.ndarray, real: RealSet, window_readings: int, *,
              forecast: bool = False, persistences: Sequence[int] = (1,)) -> list[dict]:
    """Recall and false alerts (pooled, worst dataset) at every limit and persistence."""
    from training import glucose_metrics as gm

    rows = []
    for p in persistences:
        for t in FORECAST_LIMITS_MG_DL if forecast else RISK_LIMITS:
            m = urgent_low_metrics(score, real, gm.urgent_low_alarm(t, p, forecast=forecast),
                                   window_readings, forecast=forecast)
            rows.append({"threshold": t, "persistence": p,
                         "recall_pct": m["all"]["sensitivity_pct"] or 0.0,
                         "worst_dataset_false_per_day": max(
                             (v["false_alerts_per_day"] or 0.0) for k, v in m.items()
                             if k != "all"),
                         "pooled_false_per_day": m["all"]["false_alerts_per_day"] or 0.0})
    return rows


def tune_urgent_low(score: np.ndarray, real: RealSet, window_readings: int, *,
                    forecast: bool = False,
                    min_recall_pct: float = 90.0) -> tuple[float, int, list[dict]]:
    """Limit and persistence (1 or 2 readings) of the urgent-low-soon alarm, chosen on
    validation people (its clear delay and hysteresis as configured).

    Recall first: among the settings that anticipate at least `min_recall_pct` of the urgent
    lows (pooled), the one with the fewest false alerts per day on its worst dataset (ties:
    pooled). A predictive alert that misses lows is what the reading-based urgent low alarm
    already is; on real people no setting also kept every dataset within 0.3 false alerts a
    day (model card: the whole trade-off). If none reaches the recall, the highest recall."""
    rows = trade_off(score, real, window_readings, forecast=forecast, persistences=(1, 2))
    reach = [r for r in rows if r["recall_pct"] >= min_recall_pct]
    best = (min(reach, key=lambda r: (r["worst_dataset_false_per_day"],
                                      r["pooled_false_per_day"])) if reach
            else max(rows, key=lambda r: (r["recall_pct"], -r["worst_dataset_false_per_day"])))
    return best["threshold"], best["persistence"], rows


# --- the training run's and `wearable-train evaluate glucose`'s use of the above --------------

# Real windows drawn for training and validation (evenly at random: a month-long trace would
# otherwise swamp a two-day one less than it does already).
MAX_TRAIN_WINDOWS, MAX_VAL_WINDOWS = 600_000, 60_000


def prepare(root: Path, pre, seed: int, log: Callable[[str], None]) -> dict[str, RealSet]:
    traces = load(Path(root))
    log(f"real CGM: {len(traces)} traces under {root} "
        f"({', '.join(sorted({t.dataset for t in traces}))})")
    people = split_people(traces, seed)
    return {split: windows(people[split], pre, first_id=1_000_000 * (i + 1), log=log)
            for i, split in enumerate(("train", "val", "test"))}


def evaluate_bundle(manifest_path: Path, real: dict[str, RealSet], log: Callable[[str], None],
                    extra: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                    tuned: tuple[float, int] | None = None) -> dict:
    """The bundle (int8, through the runtime's Model.estimates) and the classical baselines on
    held-out real people. The urgent-low-soon alert on the model's risk is tuned on
    validation people (or `tuned`), and so is its peer, the same alert on the 20-min
    forecast (glucose 1.x's rule), scored on the same windows."""
    from edge.infer import load_model

    model = load_model(manifest_path)
    n_win = model.manifest.preprocessing.window_samples

    def run(x: np.ndarray) -> np.ndarray:
        return np.stack([model.estimates(row) for row in x])

    val_pred, val = run(real["val"].windows.x), real["val"]
    grid = {}
    if tuned is None:
        threshold, persistence, grid["risk"] = tune_urgent_low(val_pred[:, 2], val, n_win)
    else:
        threshold, persistence = tuned
    peer_threshold, peer_persistence, grid["forecast"] = tune_urgent_low(
        val_pred[:, 0], val, n_win, forecast=True)
    log(f"urgent low soon, tuned on {len(val.person)} validation segments: risk >= "
        f"{threshold:g} on {persistence} reading(s) in a row (the 20-min forecast's peer: "
        f"<= {peer_threshold:g} mg/dL on {peer_persistence})")
    test = real["test"]
    preds = {"int8": run(test.windows.x)}
    for name, f in (extra or {}).items():
        preds[name] = f(test.windows.x)
    preds |= baselines(test.windows)

    def alert(score: np.ndarray, forecast: bool) -> dict[str, dict]:
        from training import glucose_metrics as gm

        limit, p = (peer_threshold, peer_persistence) if forecast else (threshold, persistence)
        return urgent_low_metrics(score, test, gm.urgent_low_alarm(limit, p, forecast=forecast),
                                  n_win, forecast=forecast)

    int8 = preds["int8"]
    result = {"forecast": {k: forecast_metrics(v[:, :2], test) for k, v in preds.items()},
              "urgent_low_soon": {
                  "threshold": threshold, "persistence_readings": persistence,
                  "forecast_threshold_mg_dl": peer_threshold,
                  "forecast_persistence_readings": peer_persistence,
                  "alerts": {
                      "int8 risk": alert(int8[:, 2], False),
                      "int8 20-min forecast": alert(int8[:, 0], True),
                      "linear trend (15 min)": alert(preds["linear trend (15 min)"][:, 0],
                                                     True)},
                  "trade_off": {"int8 risk": trade_off(int8[:, 2], test, n_win),
                                "int8 20-min forecast": trade_off(int8[:, 0], test, n_win,
                                                                  forecast=True)}},
              "tuning": grid,
              "people": {s: sorted(set(r.person.values())) for s, r in real.items()}}
    q, last = result["forecast"]["int8"]["all"], result["forecast"]["last value"]["all"]
    log(f"real held-out people: +30 min RMSE int8 {q['rmse_30']:.2f}, last value "
        f"{last['rmse_30']:.2f} mg/dL ({100 * q['rmse_30'] / last['rmse_30']:.1f} %); "
        f"Clarke A+B {q['clarke_ab_30']:.2f} %")
    return result


_SOURCE_ROWS = (
    ("AZT1D", "25 (T1D)", "Dexcom G6 Pro, 5 min", "CC BY 4.0",
     "Khamesian et al. 2025, IEEE BSN; doi:10.17632/gk9m674wcx.1"),
    ("Bris-T1D_Open", "20 (T1D, young adults)",
     "Dexcom G6 / One, Libre 2 (15 min), Medtronic Guardian 4", "CC BY 4.0",
     "James et al. 2025, arXiv:2507.17757; doi:10.5523/bris.33z5jc8fa6tob21ptrugzqog08"),
    ("Colas_2019", "208 (mostly no diabetes, some T2D)", "Medtronic iPro, 5 min, 1-2 days",
     "CC BY 4.0", "Colás et al. 2019, PLoS ONE 14(12):e0225817"),
    ("HUPA-UCM", "25 (T1D)", "FreeStyle Libre 2", "CC BY 4.0",
     "Hidalgo et al. 2024, Data in Brief 55:110559; doi:10.17632/3hbcscwz44.1"),
    ("PhysioCGM", "9 (T1D)", "Dexcom G6, irregular ~5 min", "CC0 1.0",
     "Quamer et al. 2025, Sci Data 12:1822; doi:10.6084/m9.figshare.28136294.v1"),
    ("T1D-UOM", "17 (T1D)", "5 min", "CC BY 4.0",
     "Alsuhaymi et al. 2025, Sci Data 12:1379; doi:10.5281/zenodo.15806142"),
)
SOURCES = ("Real CGM traces (Glucose-ML harmonised extracts, one CSV per person):\n\n"
           "| dataset | people | CGM | licence | source |\n|---|---|---|---|---|\n"
           + "".join(f"| {' | '.join(row)} |\n" for row in _SOURCE_ROWS))


def markdown(result: dict, targets: dict[str, float]) -> str:
    """The model card's real-data section."""
    f = result["forecast"]
    names = list(f)
    datasets = [d for d in f["int8"] if d != "all"] + ["all"]
    lines = ["## Real CGM, held-out people (per dataset and pooled)", "",
             "Split by person within each dataset (60 / 20 / 20 % train / validation / test, "
             "seeded hash of the person's id); every window of every test person (1 h of "
             "history on the 5-min grid, both targets inside the segment). Targets are the "
             "CGM 20 and 30 min after the window's newest grid point, interpolated like the "
             "history (15-min traces: 2 of 3 targets are interpolated). RMSE in mg/dL.", "",
             "| dataset | people | windows | " + " | ".join(f"{n} +30 RMSE" for n in names)
             + " | int8 / last value | int8 Clarke A+B |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|---:|"]
    for d in datasets:
        q = f["int8"][d]
        cells = " | ".join(f"{f[n][d]['rmse_30']:.2f}" for n in names)
        ratio = 100 * q["rmse_30"] / f["last value"][d]["rmse_30"]
        lines.append(f"| {'**pooled**' if d == 'all' else d} | {q['people']} | "
                     f"{q['windows']} | {cells} | {ratio:.1f} % | {q['clarke_ab_30']:.2f} % |")
    lines += ["", "+20 min RMSE: " + "; ".join(
        f"{n} {f[n]['all']['rmse_20']:.2f}" for n in names) + " (pooled).", ""]
    u = result["urgent_low_soon"]
    lines += ["### Urgent low soon on real people", "",
              "Scored through the runtime's own `glucose_urgent_low_soon` alarm (edge.alarm: "
              "its hysteresis and clear delay; one alarm is one alert however long its input "
              "chatters at the limit). The alarm reads the model's `urgent_low_risk`, the "
              "probability of a reading ≤ 55 mg/dL now or within 30 min. Its peers, through "
              "the same state machine: the same alarm on the model's 20-min forecast "
              "(glucose 1.x's rule; it clears 10 mg/dL above its limit) and on a 15-min "
              "linear trend. Limits and persistence chosen on validation people: risk ≥ "
              f"{u['threshold']:g} on {u['persistence_readings']} reading(s) in a row; "
              f"forecast ≤ {u['forecast_threshold_mg_dl']:g} mg/dL on "
              f"{u['forecast_persistence_readings']}. An urgent low is a reading ≤ 55 mg/dL "
              "after one above it (re-armed above 70); anticipated: the alarm is active 20, "
              "15, 10 or 5 min before it. A false alert: no reading ≤ 55 from its raise "
              "through the next 30 min (in brackets: of those, how many still reached "
              "≤ 70 mg/dL, near misses). Held-out people:", "",
              "| alert | dataset | urgent lows | anticipated | alerts | false alerts (≤ 70) "
              "| false alerts / day | days |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for alert, rows in u["alerts"].items():
        for d, m in rows.items():
            sens = "–" if m["sensitivity_pct"] is None else f"{m['sensitivity_pct']:.1f} %"
            lines.append(f"| {alert} | {'**pooled**' if d == 'all' else d} | {m['events']} | "
                         f"{sens} | {m['alert_episodes']} | {m['false_alert_episodes']} "
                         f"({m['false_alerts_reaching_70']}) | "
                         f"{m['false_alerts_per_day']:.2f} | {m['days']:.0f} |")
    lines += ["", "The whole trade-off on the held-out people (one reading; false alerts a "
              "day pooled, and on the worst dataset):", "",
              "| alert | limit | anticipated | false alerts / day | worst dataset |",
              "|---|---:|---:|---:|---:|"]
    for alert, rows in u["trade_off"].items():
        lines += [f"| {alert} | {r['threshold']:g} | {r['recall_pct']:.1f} % | "
                  f"{r['pooled_false_per_day']:.2f} | {r['worst_dataset_false_per_day']:.2f} |"
                  for r in rows]
    q, last = f["int8"]["all"], f["last value"]["all"]
    per_ds = [d for d in datasets if d != "all"]
    better_all = all(f["int8"][d]["rmse_30"] < f["last value"][d]["rmse_30"] for d in per_ds)
    ul = u["alerts"]["int8 risk"]
    worst_fa = max(ul[d]["false_alerts_per_day"] or 0.0 for d in per_ds)
    recall = ul["all"]["sensitivity_pct"] or 0.0
    checks = [
        ("pooled +30 min RMSE ≤ 85 % of last value's",
         f"{100 * q['rmse_30'] / last['rmse_30']:.1f} %", q["rmse_30"] <= 0.85 * last["rmse_30"]),
        ("better than last value on every dataset", "yes" if better_all else "no", better_all),
        ("Clarke A+B ≥ 99 % (pooled)", f"{q['clarke_ab_30']:.2f} %",
         q["clarke_ab_30"] >= targets.get("clarke_ab_pct", 99.0)),
        ("urgent lows anticipated ≥ 90 % (pooled)", f"{recall:.1f} %", recall >= 90.0),
        ("false alerts ≤ 0.3 / day on every dataset", f"worst {worst_fa:.2f}",
         worst_fa <= 0.3),
    ]
    lines += ["", "### Targets on real held-out people", "", "| target | result | met |",
              "|---|---|---|"]
    lines += [f"| {t} | {r} | {'yes' if ok else '**no**'} |" for t, r, ok in checks]
    return "\n".join(lines) + "\n\n" + SOURCES


def cgm_folder(path: Path) -> Path:
    """The CGM traces: `path` itself, or its cgm/ (the shared datasets folder)."""
    return path / "cgm" if (Path(path) / "cgm").is_dir() else Path(path)


def evaluate_command(args: Any, log: Callable[[str], None]) -> int:
    """`wearable-train evaluate glucose --real-data DIR [--bundle MANIFEST]`."""
    if not args.real_data:
        raise TrainingError("glucose is scored on real CGM traces: give --real-data DIR "
                            "(e.g. ../shared/datasets)")
    models = args.bundle.parent if args.bundle else Path("models")
    return evaluate_main(models, cgm_folder(args.real_data))


def evaluate_main(models: Path, root: Path) -> int:
    """`wearable-train evaluate glucose`: the shipped bundle on the real held-out people of
    its own training split (seed from its manifest), with the urgent-low-soon setting it
    was tuned to; prints the model card's real-data section."""
    import json
    import time

    from training.glucose import PREPROCESSING, TARGETS

    path = Path(models) / "glucose.json"
    if not path.is_file():
        raise TrainingError(f"no glucose bundle at {path}; give --bundle MANIFEST or run make "
                            "models")
    manifest = json.loads(path.read_text())
    seed = int(manifest.get("training", {}).get("seed", 0))
    tuned = manifest.get("output_params", {}).get("urgent_low_soon")
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    real = prepare(root, PREPROCESSING, seed, log)
    result = evaluate_bundle(path, real, log, tuned=None if tuned is None else (
        float(tuned["threshold"]), int(tuned["persistence_readings"])))
    print(markdown(result, TARGETS))
    return 0
