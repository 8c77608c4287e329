"""Clinical-style accuracy metrics for a regression estimate against the simulator's truth."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def error_summary(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, bias and Bland–Altman 95% limits of agreement of pred - true."""
    err = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    if err.size == 0:
        return {"n": 0}
    sd = float(err.std(ddof=1)) if err.size > 1 else 0.0
    bias = float(err.mean())
    return {
        "n": int(err.size),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "bias": bias,
        "loa_low": bias - 1.96 * sd,
        "loa_high": bias + 1.96 * sd,
        "p95_abs": float(np.percentile(np.abs(err), 95)),
    }


def regression_metrics(pred: np.ndarray, true: np.ndarray, subject: np.ndarray,
                       moving: np.ndarray, *, tolerance: float) -> dict[str, Any]:
    """Overall, rest and motion errors, the share within `tolerance`, and the spread of the
    per-subject MAE (a model can look good on average and fail some people badly)."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    err = np.abs(pred - true)
    per_subject = np.array([err[subject == s].mean() for s in np.unique(subject)])
    return {
        "all": error_summary(pred, true),
        "rest": error_summary(pred[~moving], true[~moving]),
        "motion": error_summary(pred[moving], true[moving]),
        "within_tolerance_pct": float(100.0 * (err <= tolerance).mean()),
        "tolerance": tolerance,
        "per_subject_mae": {
            "n_subjects": int(per_subject.size),
            "median": float(np.median(per_subject)),
            "p90": float(np.percentile(per_subject, 90)),
            "max": float(per_subject.max()),
        },
    }


def runtime_estimates(manifest_path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Every window through the runtime's own path (`edge.infer.Model.estimates`: one row of
    estimates per window), and the median latency of one call, in ms."""
    from edge.infer import load_model

    model = load_model(manifest_path)
    estimates = np.stack([model.estimates(w) for w in x])
    times = []
    for i in range(2000):
        t0 = time.perf_counter()
        model.estimates(x[i % len(x)])
        times.append(time.perf_counter() - t0)
    return estimates, float(np.median(times) * 1e3)
