"""What real finger PPG says about blood pressure between people: `wearable-train evaluate bp`.

Data: PPG-BP (Y. Liang, Z. Chen, G. Liu et al., "A new, short-recorded photoplethysmogram
dataset for blood pressure monitoring in China", Sci Data 5:180020, 2018; CC BY 4.0), as kept
in `datasets/ppg_bp_liang2018`: one 2.1-s finger PPG segment at 1 kHz per person (filtered and
min-max normalised by its curators), one cuff SBP/DBP, HR, age, sex and BMI per person.

It has no ECG, so the shipped model (pulse arrival time needs the R peak) cannot run on it,
and one reading per person cannot show tracking after a calibration. What it can show: how
much of the between-person spread of BP the PPG's pulse morphology explains. The morphology
is the BP model's own, from `edge.features` (one code path): the mean pulse from its foot,
`shape_points` samples `shape_step_s` apart, scaled to [0, 1], and its rise time, plus the
heart rate. Each person is one row; regressions are scored by 10-fold cross-validation over
people (nobody is in their own training fold), beside peers on the same people: predicting the
training folds' mean, heart rate alone, and age + sex (what a clinician knows without a
sensor).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from edge.features import ppg_pulse_morphology
from training import bp
from training.errors import TrainingError

DATASET = Path("shared") / "datasets" / "ppg_bp_liang2018"


def default_dir() -> Path:
    """../shared/datasets/ppg_bp_liang2018 beside the repository (or beside a folder
    holding it, for a git worktree)."""
    here = Path(__file__).resolve().parents[1]
    for parent in here.parents:
        if (parent / DATASET).is_dir():
            return parent / DATASET
    return here.parent / DATASET


CITATION = ("Y. Liang, Z. Chen, G. Liu et al., A new, short-recorded photoplethysmogram "
            "dataset for blood pressure monitoring in China, Sci Data 5:180020 (2018), "
            "CC BY 4.0")
FOLDS = 10
RIDGE = 10.0  # L2 penalty on standardised features: 200 people, ~35 features
_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


def read_xlsx(path: Path) -> list[list[str]]:
    """The first sheet of an .xlsx file as rows of cell texts (no openpyxl: the format is
    zipped XML, and this is the one spreadsheet the project reads)."""
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t"))
                      for si in root.findall("m:si", _NS)]
        sheet = ElementTree.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{_NS['m']}}}row"):
        cells: dict[int, str] = {}
        for c in row.findall("m:c", _NS):
            col = re.match(r"[A-Z]+", c.get("r", "A")).group(0)  # type: ignore[union-attr]
            index = 0
            for ch in col:
                index = index * 26 + ord(ch) - 64
            v = c.find("m:v", _NS)
            text = "" if v is None or v.text is None else v.text
            if c.get("t") == "s" and text:
                text = shared[int(text)]
            elif c.get("t") == "inlineStr":
                text = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            cells[index - 1] = text
        if cells:
            rows.append([cells.get(i, "") for i in range(max(cells) + 1)])
    return rows


def load(folder: Path) -> dict[str, Any]:
    """Labels and PPG of every person with both, or TrainingError naming what is missing."""
    table = folder / "PPG-BP dataset.xlsx"
    signals = folder / "Perfect PPG Data"
    if not table.is_file() or not signals.is_dir():
        raise TrainingError(f"{folder} is not the PPG-BP dataset (needs 'PPG-BP dataset.xlsx' "
                            "and 'Perfect PPG Data/'); pass --data DIR")
    rows = read_xlsx(table)
    head = next(i for i, r in enumerate(rows) if any("subject_ID" in c for c in r))
    names = rows[head]

    def col(word: str) -> int:
        return next(i for i, n in enumerate(names) if word.lower() in n.lower())

    cols = {k: col(w) for k, w in (("id", "subject_ID"), ("sbp", "Systolic"),
                                   ("dbp", "Diastolic"), ("hr", "Heart Rate"),
                                   ("age", "Age"), ("sex", "Sex"))}
    files = {int(p.name.split("_")[0]): p for p in signals.glob("*_*.txt")}
    out: dict[str, list[Any]] = {k: [] for k in ("id", "sbp", "dbp", "hr", "age", "male",
                                                  "ppg")}
    for r in rows[head + 1:]:
        try:
            sid = int(float(r[cols["id"]]))
            values = [float(r[cols[k]]) for k in ("sbp", "dbp", "hr", "age")]
        except (ValueError, IndexError):
            continue
        text = files[sid].read_text().strip() if sid in files else ""
        if not text:  # no signal file, or an empty one (3_3.txt in the kept copy)
            continue
        ppg = np.array([float(v) for v in text.replace(",", " ").split()])
        out["id"].append(sid)
        for k, v in zip(("sbp", "dbp", "hr", "age"), values, strict=True):
            out[k].append(v)
        out["male"].append(1.0 if r[cols["sex"]].strip().lower().startswith("m") else 0.0)
        out["ppg"].append(ppg)
    if len(out["id"]) < 50:
        raise TrainingError(f"{folder}: only {len(out['id'])} people with a PPG and a label")
    return {k: (v if k == "ppg" else np.asarray(v)) for k, v in out.items()}


def _ridge_cv(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold predictions of a ridge regression (standardised on each training fold)."""
    pred = np.zeros_like(y)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        mu, sd = x[tr].mean(axis=0), x[tr].std(axis=0) + 1e-9
        a = (x[tr] - mu) / sd
        a1 = np.column_stack([a, np.ones(len(a))])
        penalty = RIDGE * np.eye(a1.shape[1])
        penalty[-1, -1] = 0.0  # no penalty on the intercept
        w = np.linalg.solve(a1.T @ a1 + penalty, a1.T @ y[tr])
        b = np.column_stack([(x[te] - mu) / sd, np.ones(int(te.sum()))])
        pred[te] = b @ w
    return pred


def _summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    err = pred - true
    r = float(np.corrcoef(pred, true)[0, 1]) if np.std(pred) > 0 else 0.0
    return {"mae": float(np.abs(err).mean()), "mean": float(err.mean()),
            "sd": float(err.std(ddof=1)), "r": r}


def evaluate_command(args: Any, log: Callable[[str], None]) -> int:
    """`wearable-train evaluate bp [--real-data DIR | --data FOLDER] [--out DIR]`."""
    folder = args.real_data or (args.data[0] if args.data else None)
    if folder is not None and (Path(folder) / DATASET.name).is_dir():  # the datasets folder
        folder = Path(folder) / DATASET.name
    evaluate(folder, args.out, args.seed, log)
    return 0


def evaluate(folder: Path | None = None, out: Path | None = None, seed: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Correlations and person-level cross-validated regressions (module docstring); writes
    `bp_real_data.json` and `bp_real_data.md` into `out` when given."""
    folder = Path(folder) if folder is not None else default_dir()
    data = load(folder)
    params = bp.PREPROCESSING.feature_params
    fs = 1000.0
    morph = np.stack([ppg_pulse_morphology(p, fs=fs, shape_points=params["shape_points"],
                                           shape_step_s=params["shape_step_s"])
                      for p in data["ppg"]])
    ok = morph[:, -1] > 0.5  # a complete pulse was found
    n_all = len(ok)
    log(f"bp: PPG-BP: {n_all} people, {int(ok.sum())} with a complete pulse in 2.1 s")
    shape, rise = morph[ok, :-2], morph[ok, -2]
    hr, age, male = data["hr"][ok], data["age"][ok], data["male"][ok]
    folds = np.random.default_rng(seed).permutation(np.arange(int(ok.sum())) % FOLDS)
    results: dict[str, Any] = {"dataset": CITATION, "people": n_all,
                               "people_scored": int(ok.sum()), "folds": FOLDS,
                               "ridge": RIDGE, "seed": seed}
    step = params["shape_step_s"]
    for target in ("sbp", "dbp"):
        y = data[target][ok]
        corr = {"rise_time_s": float(np.corrcoef(rise, y)[0, 1]),
                "heart_rate": float(np.corrcoef(hr, y)[0, 1]),
                "age": float(np.corrcoef(age, y)[0, 1])}
        shape_r = [float(np.corrcoef(shape[:, i], y)[0, 1]) if shape[:, i].std() > 0 else 0.0
                   for i in range(shape.shape[1])]
        best = int(np.argmax(np.abs(shape_r)))
        corr["strongest_shape_point"] = {"t_from_foot_s": round(best * step - 0.05, 3),
                                         "r": shape_r[best]}
        mean_pred = np.zeros_like(y)
        for k in range(FOLDS):
            mean_pred[folds == k] = y[folds != k].mean()
        ppg_x = np.column_stack([shape, rise, hr])
        results[target] = {
            "truth": {"mean": float(y.mean()), "sd": float(y.std(ddof=1))},
            "correlation": corr,
            "cross_validated": {
                "training-fold mean": _summary(mean_pred, y),
                "heart rate": _summary(_ridge_cv(hr[:, None], y, folds), y),
                "PPG morphology + heart rate": _summary(_ridge_cv(ppg_x, y, folds), y),
                "age + sex": _summary(_ridge_cv(np.column_stack([age, male]), y, folds), y),
                "PPG morphology + heart rate + age + sex": _summary(
                    _ridge_cv(np.column_stack([ppg_x, age, male]), y, folds), y),
            },
        }
        cv = results[target]["cross_validated"]
        log(f"bp: {target.upper()} MAE by person-level {FOLDS}-fold CV: " + ", ".join(
            f"{k} {v['mae']:.2f}" for k, v in cv.items()))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bp_real_data.json").write_text(json.dumps(results, indent=2) + "\n")
        (out / "bp_real_data.md").write_text(report(results))
        log(f"bp: wrote {out / 'bp_real_data.json'} and {out / 'bp_real_data.md'}")
    return results


def report(r: dict[str, Any]) -> str:
    lines = [
        "# bp: what real PPG says about blood pressure between people (PPG-BP)",
        "",
        "Written by `wearable-train evaluate bp --real-data ../shared/datasets --out models` "
        "(training/bp_real.py). Data: "
        f"{r['dataset']}: one 2.1-s finger PPG per person at 1 kHz and one cuff reading. "
        f"{r['people']} people with both; {r['people_scored']} have a complete pulse in the "
        "segment and are scored.",
        "",
        "**What this can and cannot show.** The set has no ECG, so the shipped model (its "
        "main input is the pulse arrival time from the ECG's R peak) cannot run on it, and one "
        "reading per person cannot show tracking after a calibration. It shows how much of the "
        "between-person spread of BP the PPG pulse shape explains, with the model's own shape "
        "feature (`edge.features.ppg_pulse_morphology`: the same pulse shape and rise time as "
        "`ecg_ppg_pat`, aligned on the PPG foot instead of the R peak).",
        "",
        f"Person-level {r['folds']}-fold cross-validation (ridge, penalty {r['ridge']:g}, "
        f"seed {r['seed']}); error = estimate − cuff, mmHg; r = correlation with the cuff.",
        "",
        "| target | predictor | MAE | mean ± SD | r |",
        "|---|---|---|---|---|",
    ]
    for target in ("sbp", "dbp"):
        for name, s in r[target]["cross_validated"].items():
            lines.append(f"| {target.upper()} | {name} | {s['mae']:.2f} | {s['mean']:+.2f} ± "
                         f"{s['sd']:.2f} | {s['r']:.2f} |")
    lines += ["", "Single-feature correlations with the cuff reading (all people scored):", "",
              "| target | truth mean ± SD | rise time | heart rate | age | strongest shape "
              "point |", "|---|---|---|---|---|---|"]
    for target in ("sbp", "dbp"):
        t = r[target]
        c = t["correlation"]
        sp = c["strongest_shape_point"]
        lines.append(f"| {target.upper()} | {t['truth']['mean']:.1f} ± {t['truth']['sd']:.1f} "
                     f"| {c['rise_time_s']:+.2f} | {c['heart_rate']:+.2f} | {c['age']:+.2f} | "
                     f"{sp['r']:+.2f} at {sp['t_from_foot_s']:+.3f} s from the foot |")
    lines.append("")
    return "\n".join(lines)
