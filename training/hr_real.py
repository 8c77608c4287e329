"""Real, labelled PPG recordings for the heart-rate model: reading them, their training
windows, and scoring the runtime on them beside two peers (`wearable-train evaluate hr`).

Sources:
- the IEEE Signal Processing Cup 2015 training set (TROIKA, Zhang et al. 2015): 12 wrist
  recordings at 125 Hz (two PPG channels, a 3-axis accelerometer in g), an ECG-derived
  reference per 8-s window with a 2-s step (window k ends at 8 + 2k s);
- the user's own recordings (CSV or WFDB, docs/recording-csv.md) with an ECG: the reference
  is the ECG's heart rate per runtime window (`training.recordings.ecg_heart_rate`).

Scoring runs every recording through the runtime's own `HeartRateRunner` (frames in,
estimates out, the belief tracking and quality included) and scores EVERY reference window
with the value the runtime published for it, whatever its quality. The peers see the same
windows: the conditioned PPG spectrum's highest bin, and HeartPy's beat detector on the raw
PPG of the window (a window HeartPy cannot read carries its previous reading).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import TrainingError

SPC_RATE_HZ = 125.0
SPC_WINDOW_S, SPC_STEP_S = 8.0, 2.0
_SPC_FILE = re.compile(r"DATA_(\d+)_TYPE0\d\.mat$")
RESTING_G = 0.05  # a reference window whose band-passed acceleration RMS is below: at rest


@dataclass(frozen=True)
class Recording:
    name: str
    ppg: np.ndarray  # (n,) raw PPG (the first channel)
    ppg_rate: float
    acc: np.ndarray | None  # (m, 3) g
    acc_rate: float
    ref_end_s: np.ndarray  # (k,) end of each reference window, s from the recording start
    ref_bpm: np.ndarray  # (k,) reference heart rate (NaN: no reference for that window)
    ppg_extra: tuple[np.ndarray, ...] = ()  # further PPG channels of the same wrist


def load_spc2015(folder: Path) -> list[Recording]:
    """The 12 SP Cup 2015 training recordings of `folder` (or its Training_data/)."""
    import scipy.io

    folder = Path(folder)
    if (folder / "Training_data").is_dir():
        folder = folder / "Training_data"
    files = sorted(p for p in folder.glob("DATA_*.mat") if _SPC_FILE.search(p.name))
    if not files:
        raise TrainingError(f"{folder}: no SP Cup 2015 recordings (DATA_xx_TYPE0y.mat); "
                            "give the folder of the IEEE SPC 2015 training set")
    out = []
    for path in files:
        trace = path.with_name(path.stem + "_BPMtrace.mat")
        if not trace.exists():
            raise TrainingError(f"{path}: its reference {trace.name} is missing")
        try:
            sig = np.asarray(scipy.io.loadmat(path)["sig"], np.float64)
            bpm = np.asarray(scipy.io.loadmat(trace)["BPM0"], np.float64).reshape(-1)
        except (KeyError, ValueError, OSError) as err:
            raise TrainingError(f"{path}: not an SP Cup recording ({err})") from None
        acc = sig[-3:].T
        # The accelerometer rows should already be in g: gravity reads ~1 at rest. Check it
        # rather than trust it (median magnitude of the first 8 s, the resting start).
        gravity = float(np.median(np.linalg.norm(acc[: int(8 * SPC_RATE_HZ)], axis=1)))
        if not 0.5 < gravity < 2.0:
            acc = acc / gravity
        ppgs = sig[1:3] if sig.shape[0] == 6 else sig[1:2]
        out.append(Recording(
            name=path.stem, ppg=ppgs[0], ppg_rate=SPC_RATE_HZ, acc=acc, acc_rate=SPC_RATE_HZ,
            ref_end_s=SPC_WINDOW_S + SPC_STEP_S * np.arange(len(bpm)), ref_bpm=bpm,
            ppg_extra=tuple(ppgs[1:])))
    return out


def load_user(paths: Sequence[Path]) -> list[Recording]:
    """The user's CSV/WFDB recordings with PPG and ECG; the reference is the ECG's heart
    rate per runtime window."""
    from training import hr
    from training.recordings import ecg_heart_rate, find_recordings, read

    pre = hr.PREPROCESSING
    out = []
    for path in find_recordings(paths):
        sig = read(path)
        if "ppg" not in sig.channels or sig.ecg is None:
            raise TrainingError(f"{path}: evaluating heart rate needs a 'ppg' column and an "
                                "'ecg' column (the reference); add the ECG recorded alongside")
        end = pre.window_s + pre.hop_s * np.arange(
            max(int((sig.duration_s - pre.window_s) // pre.hop_s) + 1, 0))
        ref = ecg_heart_rate(sig.ecg, sig.ecg_rate, end, pre.window_s)
        has_acc = "acc" in sig.channels
        out.append(Recording(path.stem, np.asarray(sig.ppg, np.float64).reshape(-1),
                             sig.ppg_rate, sig.acc if has_acc else None,
                             sig.acc_rate if has_acc else 0.0, end, ref))
    return out


def recording_windows(rec: Recording, pre: Any, *, stretch: float = 1.0,
                      ppg: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """(features, reference bpm, motion_g) of a recording's labelled windows, cut by the
    runtime's own conditioning (`training.windows.extract_windows`). `stretch` > 1 plays the
    recording slower (a lower heart rate: augmentation); labels are interpolated in time."""
    from training.data import _stretch
    from training.windows import extract_windows

    x = rec.ppg if ppg is None else ppg
    acc = rec.acc
    if stretch != 1.0:
        x = _stretch(x, stretch)
        acc = None if acc is None else _stretch(acc, stretch)
    win = extract_windows(pre, x, rec.ppg_rate, acc, rec.acc_rate if acc is not None else None)
    # The window ending at e (stretched clock) is the original window ending at e / stretch.
    centre = (win.end_s - pre.window_s / 2) / stretch
    ref_centre = rec.ref_end_s - SPC_WINDOW_S / 2
    ref = np.interp(centre, ref_centre, rec.ref_bpm, left=np.nan, right=np.nan) / stretch
    keep = np.isfinite(ref)
    return win.features[keep], ref[keep], win.motion_g[keep]


# --- the runtime on a recording -------------------------------------------------------------

@dataclass(frozen=True)
class Track:
    """What the runtime published for each reference window of one recording."""

    end_s: np.ndarray
    value: np.ndarray
    quality: np.ndarray  # str
    ci_low: np.ndarray
    ci_high: np.ndarray
    motion_g: np.ndarray
    alarms: list[Any]  # AlarmEvent raised by the default alarm rules


def _frames(x: np.ndarray, rate: float, channel: Any, block_s: float = 0.5):
    from wire import Frame

    block = max(int(rate * block_s), 1)
    x = np.asarray(x, np.float32)
    x = x[:, None] if x.ndim == 1 else x
    for seq, i in enumerate(range(0, len(x), block)):
        yield Frame(device_id=1, seq=seq, timestamp_us=round(i * 1e6 / rate), channel=channel,
                    sample_rate_hz=rate, samples=x[i:i + block])


def run_runtime(rec: Recording, manifest_path: Path) -> Track:
    """Feed the recording to a HeartRateRunner as wire frames (PPG and accelerometer
    interleaved in time) and the estimates to the default alarm rules."""
    from edge.alarm import AlarmEngine
    from edge.config import AlarmsConfig
    from edge.estimate import HeartRateRunner
    from edge.infer import load_model
    from wire import Channel

    runner = HeartRateRunner("eval", load_model(manifest_path))
    engine = AlarmEngine(AlarmsConfig())
    streams = [(f.timestamp_us, k, f) for k, f in enumerate(
        _frames(rec.ppg, rec.ppg_rate, Channel.PPG))]
    if rec.acc is not None:
        streams += [(f.timestamp_us, 10**9 + k, f) for k, f in enumerate(
            _frames(rec.acc, rec.acc_rate, Channel.ACCEL))]
    estimates = []
    alarms = []
    for _, _, frame in sorted(streams, key=lambda s: (s[0], s[1])):
        for e in runner.add(frame):
            estimates.append(e)
            alarms += [a for a in engine.update(e) if a.event == "raised"]
    if not estimates:
        raise TrainingError(f"{rec.name}: the runtime produced no heart-rate estimate "
                            "(recording shorter than one window?)")
    ends = np.array([e.device_time_s for e in estimates])
    # Each reference window: the estimate of the runtime window ending at the same time.
    idx = np.clip(np.searchsorted(ends, rec.ref_end_s - 1e-6), 0, len(ends) - 1)
    pick = [estimates[i] for i in idx]
    return Track(rec.ref_end_s, np.array([e.value for e in pick]),
                 np.array([e.quality for e in pick]),
                 np.array([e.details.get("hr_ci_low", np.nan) for e in pick], np.float64),
                 np.array([e.details.get("hr_ci_high", np.nan) for e in pick], np.float64),
                 np.array([np.nan if e.motion_g is None else e.motion_g for e in pick]),
                 alarms)


def spectral_peak(rec: Recording, pre: Any) -> np.ndarray:
    """Peer 1: the highest bin of the conditioned PPG's spectrum, per reference window."""
    from training.hr import classes_bpm
    from training.windows import extract_windows

    win = extract_windows(pre, rec.ppg, rec.ppg_rate, None, None)
    peak = classes_bpm()[win.features[:, :, 0].argmax(axis=1)]
    idx = np.clip(np.searchsorted(win.end_s, rec.ref_end_s - 1e-6), 0, len(peak) - 1)
    return peak[idx]


def heartpy_rate(rec: Recording, window_s: float = SPC_WINDOW_S) -> tuple[np.ndarray, int]:
    """Peer 2: HeartPy (van Gent et al.) on the raw PPG of each reference window (its own
    0.7-3.5 Hz band-pass first, as its docs advise). Returns (bpm per window, windows it
    could not read: those carry its previous reading, 75 bpm before the first)."""
    import warnings

    import heartpy as hp

    x = np.asarray(rec.ppg, np.float64)
    rate = rec.ppg_rate
    out = np.empty(len(rec.ref_end_s))
    last, failed = 75.0, 0
    for i, end in enumerate(rec.ref_end_s):
        a, b = round((end - window_s) * rate), round(end * rate)
        seg = x[max(a, 0):min(b, len(x))]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                filt = hp.filter_signal(seg, [0.7, 3.5], sample_rate=rate, order=3,
                                        filtertype="bandpass")
                _, m = hp.process(filt, sample_rate=rate)
            bpm = float(m["bpm"])
            if not np.isfinite(bpm) or not 25 <= bpm <= 250:
                raise ValueError(bpm)
            last = bpm
        except Exception:  # HeartPy signals an unreadable window in many ways
            failed += 1
        out[i] = last
    return out, failed


@dataclass(frozen=True)
class Scored:
    name: str
    windows: int
    mae: float  # runtime, every reference window
    good_pct: float
    mae_good: float
    mae_peak: float
    mae_heartpy: float
    heartpy_failed: int
    resting_windows: int
    false_alarms: int
    false_alarms_at_rest: int  # the wearer still (motion below RESTING_G) when raised
    alarms: int


def score(rec: Recording, track: Track, peak: np.ndarray, heartpy: np.ndarray,
          heartpy_failed: int) -> Scored:
    ok = np.isfinite(rec.ref_bpm)
    ref = rec.ref_bpm
    err = np.abs(track.value - ref)[ok]
    good = (track.quality == "good")[ok]
    false = false_rest = 0
    for a in track.alarms:
        # The reference at the alarm's time: a false alarm if it is not past the limit.
        r = float(np.interp(a.device_time_s, rec.ref_end_s[ok], ref[ok]))
        crossed = r > a.limit if a.condition == "hr_high" else r <= a.limit
        if a.condition in ("hr_high", "hr_low") and not crossed:
            false += 1
            i = min(int(np.searchsorted(track.end_s, a.device_time_s - 1e-6)),
                    len(track.end_s) - 1)
            false_rest += bool(np.nan_to_num(track.motion_g[i], nan=0.0) < RESTING_G)
    resting = int(np.sum(np.nan_to_num(track.motion_g[ok], nan=0.0) < RESTING_G))
    return Scored(rec.name, int(ok.sum()), float(err.mean()), float(100 * good.mean()),
                  float(err[good].mean()) if good.any() else float("nan"),
                  float(np.abs(peak - ref)[ok].mean()), float(np.abs(heartpy - ref)[ok].mean()),
                  heartpy_failed, resting, false, false_rest,
                  sum(a.condition in ("hr_high", "hr_low") for a in track.alarms))


def evaluate(recordings: Sequence[Recording], manifest_path: Path,
             log: Callable[[str], None] = print) -> list[Scored]:
    from edge.bundle import load_manifest

    pre = load_manifest(Path(manifest_path)).preprocessing
    out = []
    for rec in recordings:
        track = run_runtime(rec, manifest_path)
        hp_bpm, failed = heartpy_rate(rec)
        s = score(rec, track, spectral_peak(rec, pre), hp_bpm, failed)
        log(f"{s.name}: MAE {s.mae:.2f} bpm ({s.good_pct:.0f}% good), peak {s.mae_peak:.2f}, "
            f"HeartPy {s.mae_heartpy:.2f}, false HR alarms {s.false_alarms} "
            f"({s.false_alarms_at_rest} at rest)")
        out.append(s)
    return out


def table(rows: Sequence[Scored]) -> str:
    """A Markdown table of per-recording results with the mean row (recordings weigh
    equally, as the SP Cup literature reports them)."""
    lines = ["| recording | windows | runtime MAE, every window (bpm) | good % | MAE on good "
             "| spectral peak MAE | HeartPy MAE (unreadable windows) "
             "| false HR alarms (at rest) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.windows} | {r.mae:.2f} | {r.good_pct:.1f} | "
                     f"{r.mae_good:.2f} | {r.mae_peak:.2f} | {r.mae_heartpy:.2f} "
                     f"({r.heartpy_failed}) | {r.false_alarms} ({r.false_alarms_at_rest}) |")
    if rows:
        def mean(f: str) -> float:
            return float(np.nanmean([getattr(r, f) for r in rows]))
        lines.append(f"| **mean** | {sum(r.windows for r in rows)} | **{mean('mae'):.2f}** | "
                     f"{mean('good_pct'):.1f} | {mean('mae_good'):.2f} | "
                     f"{mean('mae_peak'):.2f} | {mean('mae_heartpy'):.2f} "
                     f"({sum(r.heartpy_failed for r in rows)}) | "
                     f"{sum(r.false_alarms for r in rows)} "
                     f"({sum(r.false_alarms_at_rest for r in rows)}) |")
    return "\n".join(lines)


def evaluate_command(args: Any, log: Callable[[str], None]) -> int:
    """`wearable-train evaluate hr`: per-recording results on stdout (Markdown)."""
    from training import hr

    if args.out is not None:
        if args.real_data is None or not args.loso:
            raise TrainingError("--out writes the real-data card (hr_real_data.md), which "
                                "leads with leave-subject-out: give --real-data DIR --loso")
        from training import hr_loso

        return hr_loso.card_command(args, log)
    bundle = args.bundle or Path("models") / "hr.json"
    sections = []
    if args.real_data is not None:
        folder = hr.spc_folder(args.real_data)
        if args.loso:
            from training import hr_loso

            rows = hr_loso.loso(load_spc2015(folder), args.work,
                                hr_loso.LosoPlan.for_run(args.quick), seed=args.seed,
                                folds=args.folds, log=log)
            title = (f"IEEE SP Cup 2015, leave-subject-out ({args.folds} folds: each "
                     "recording scored by a model trained without it)")
        else:
            if not Path(bundle).exists():
                raise TrainingError(f"{bundle}: no such model manifest; give --bundle")
            rows = evaluate(load_spc2015(folder), bundle, log)
            title = f"IEEE SP Cup 2015, {bundle} (its training set: not held out)"
        sections.append((title, rows))
    if args.data:
        if not Path(bundle).exists():
            raise TrainingError(f"{bundle}: no such model manifest; give --bundle")
        sections.append((f"your recordings, {bundle}", evaluate(load_user(args.data), bundle,
                                                               log)))
    for title, rows in sections:
        print(f"\n### {title}\n\n{table(rows)}\n")
    return 0


def simulated_recording(seed: int, duration_s: float = 120.0) -> Recording:
    """A `training.hr_sim` recording as a Recording: reference per runtime window (8 s, 2 s
    step), the simulator's heart rate Hann-weighted over the window."""
    from training import hr_sim
    from training.data import _hann_mean

    r = hr_sim.simulate(seed, duration_s)
    end = SPC_WINDOW_S + SPC_STEP_S * np.arange(int((duration_s - SPC_WINDOW_S) // SPC_STEP_S))
    ref = np.array([_hann_mean(r.hr_bpm, e - SPC_WINDOW_S, e) for e in end])
    return Recording(f"sim{seed}", r.ppg, r.ppg_rate, r.acc, r.acc_rate, end, ref)


def ci_calibration(manifest_path: Path, seeds: Sequence[int],
                   edges: Sequence[float] = (0, 5, 10, 15, 20, 25, 30, 40, 60, 200)
                   ) -> list[dict[str, float]]:
    """How the runtime's credible-interval width predicts its error, on randomised simulated
    recordings never trained on (seeds outside the training streams): per width band, the
    windows, their MAE and the share more than 5 / 10 bpm off (`ci_table` prints it)."""
    width, err = [], []
    for seed in seeds:
        rec = simulated_recording(seed)
        track = run_runtime(rec, manifest_path)
        width.append(track.ci_high - track.ci_low)
        err.append(np.abs(track.value - rec.ref_bpm))
    w, e = np.concatenate(width), np.concatenate(err)
    rows = []
    for a, b in pairwise(edges):
        sel = (w >= a) & (w < b)
        if sel.any():
            rows.append({"low": float(a), "high": float(b), "windows": int(sel.sum()),
                         "mae": float(e[sel].mean()), "off5_pct": float(100 * (e[sel] > 5).mean()),
                         "off10_pct": float(100 * (e[sel] > 10).mean())})
    return rows


def ci_table(rows: Sequence[dict[str, float]]) -> str:
    """`ci_calibration`'s rows as Markdown."""
    lines = ["| 90 % CI width (bpm) | windows | MAE (bpm) | > 5 bpm off | > 10 bpm off |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['low']:g}-{r['high']:g} | {r['windows']} | {r['mae']:.2f} | "
              f"{r['off5_pct']:.0f} % | {r['off10_pct']:.0f} % |" for r in rows]
    return "\n".join(lines)
