"""Markdown report and figures for one trained model (matplotlib, Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bland_altman_png(path: Path, pred: np.ndarray, true: np.ndarray, moving: np.ndarray,
                     *, unit: str, title: str) -> None:
    plt = _plt()
    mean, diff = (pred + true) / 2, pred - true
    bias, sd = diff.mean(), diff.std(ddof=1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    # Motion first: the many small rest errors stay visible on top.
    ax.scatter(mean[moving], diff[moving], s=4, alpha=0.4, color="tab:orange", label="motion")
    ax.scatter(mean[~moving], diff[~moving], s=4, alpha=0.4, color="tab:blue", label="rest")
    for y, style, label in ((bias, "-", f"bias {bias:+.2f}"),
                            (bias + 1.96 * sd, "--", f"+1.96 SD {bias + 1.96 * sd:+.2f}"),
                            (bias - 1.96 * sd, "--", f"−1.96 SD {bias - 1.96 * sd:+.2f}")):
        ax.axhline(y, color="k", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel(f"mean of estimate and truth ({unit})")
    ax.set_ylabel(f"estimate − truth ({unit})")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def error_vs_motion_png(path: Path, abs_err: np.ndarray, motion_g: np.ndarray, *, unit: str,
                        title: str, bin_g: float = 0.1) -> None:
    """Absolute error against measured motion, with the median, 90th percentile and mean per
    `bin_g`-wide motion bin (bins with fewer than 20 windows are left out)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    ax.scatter(motion_g, abs_err, s=4, alpha=0.25, color="tab:gray", label="window")
    idx = np.floor(motion_g / bin_g).astype(int)
    bins = [i for i in np.unique(idx) if (idx == i).sum() >= 20]
    centres = [(i + 0.5) * bin_g for i in bins]
    for stat, style, label in ((np.median, "k-o", "median"),
                               (lambda e: np.percentile(e, 90), "r--o", "90th percentile"),
                               (np.mean, "b-s", "mean")):
        ax.plot(centres, [stat(abs_err[idx == i]) for i in bins], style, markersize=3,
                label=f"{label} per {bin_g:g} g")
    ax.set_xlabel("motion: RMS band-passed acceleration (g)")
    ax.set_ylabel(f"|estimate − truth| ({unit})")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    return "–" if value is None else f"{value:.2f}"


def metrics_table(rows: dict[str, dict[str, Any]], unit: str) -> str:
    """One row per variant (float, int8, baselines): MAE rest/motion/all, bias, LoA, spread."""
    lines = [
        "| variant | MAE rest | MAE motion | MAE all | RMSE | bias | 95% LoA | "
        "per-subject MAE median / p90 / max | within tolerance |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for name, m in rows.items():
        a, spread = m["all"], m["per_subject_mae"]
        lines.append(
            f"| {name} | {_fmt(m['rest'], 'mae')} | {_fmt(m['motion'], 'mae')} | "
            f"{a['mae']:.2f} | {a['rmse']:.2f} | {a['bias']:+.2f} | "
            f"{a['loa_low']:+.1f} … {a['loa_high']:+.1f} | "
            f"{spread['median']:.2f} / {spread['p90']:.2f} / {spread['max']:.2f} | "
            f"{m['within_tolerance_pct']:.1f}% (±{m['tolerance']:g}) |"
        )
    return "\n".join(lines) + f"\n\nAll errors in {unit}."
