"""Window -> model input. The one code path shared by training and the runtime.

A feature set is chosen by name in the model manifest; unknown names are rejected with the
list of valid ones. Each function takes windows already conditioned by edge.signal (band-passed,
at the model rate) and returns a float32 array shaped like the model input without the batch
axis. Normalisation is per window, so the model sees pulse shape and rhythm, not the sensor's
amplitude or offset (the BP pulse amplitude reaches its model only as a ratio to the
amplitude at calibration: `bp_relative_amplitude`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

_EPS = 1e-9


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=0)
    return x / (x.std(axis=0) + _EPS)


def spectrum_bins(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """Indices of the rFFT bins inside [f_lo, f_hi] Hz."""
    return _spectrum_bins(fs, nfft, f_lo, f_hi).copy()


@functools.lru_cache(maxsize=32)
def _spectrum_bins(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """spectrum_bins, computed once per parameter set (read-only: shared between calls)."""
    freqs = np.fft.rfftfreq(nfft, 1.0 / fs)
    bins = np.flatnonzero((freqs >= f_lo) & (freqs <= f_hi))
    bins.flags.writeable = False
    return bins


@functools.lru_cache(maxsize=32)
def _hanning(n: int) -> np.ndarray:
    """np.hanning(n), built once per window length (read-only: shared between calls)."""
    taper = np.hanning(n)
    taper.flags.writeable = False
    return taper


def spectrum_frequencies(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """Centre frequency in Hz of each feature bin (also the HR classes of a binned model)."""
    return np.fft.rfftfreq(nfft, 1.0 / fs)[spectrum_bins(fs, nfft, f_lo, f_hi)]


def ppg_acc_spectrum(ppg: np.ndarray, acc: np.ndarray | None, *, fs: float, nfft: int,
                     f_lo: float, f_hi: float) -> np.ndarray:
    """Magnitude spectra of the PPG and of the accelerometer over the heart-rate band.

    ppg: (W,) band-passed PPG; acc: (W, 3) band-passed acceleration in g, or None (no
    accelerometer: the motion column is zero and the model relies on the PPG alone).
    Returns (n_bins, 2) float32 in [0, 1]. Column 0: PPG spectrum scaled to a maximum of 1 (the
    sensor's amplitude does not matter). Column 1: motion spectrum shape scaled by how strong
    the motion is (tanh of its RMS over MOTION_REF_G), so "no motion" and "a little noise"
    look different. Axes are summed in power: the wearable's orientation does not matter.
    """
    taper = _hanning(len(ppg))
    bins = _spectrum_bins(fs, nfft, f_lo, f_hi)
    ppg_spec = np.abs(np.fft.rfft(_zscore(ppg) * taper, nfft))[bins]
    ppg_spec /= ppg_spec.max() + _EPS
    if acc is None:
        acc_spec = np.zeros_like(ppg_spec)
    else:
        acc = acc - acc.mean(axis=0)
        acc_power = np.abs(np.fft.rfft(acc * taper[:, None], nfft, axis=0)) ** 2
        acc_spec = np.sqrt(acc_power.sum(axis=1))[bins]
        acc_spec *= np.tanh(motion_rms_g(acc) / MOTION_REF_G) / (acc_spec.max() + _EPS)
    return np.stack([ppg_spec, acc_spec], axis=1).astype(np.float32)


MOTION_REF_G = 0.1  # RMS band-passed acceleration at which motion counts as strong


def motion_rms_g(acc: np.ndarray) -> float:
    """RMS of the (band-passed) acceleration vector, in g: the window's motion level."""
    acc = acc - acc.mean(axis=0)
    return float(np.sqrt((acc**2).sum(axis=1).mean()))


def ppg_acc_spectrum_acf(ppg: np.ndarray, acc: np.ndarray | None, *, fs: float, nfft: int,
                         f_lo: float, f_hi: float) -> np.ndarray:
    """`ppg_acc_spectrum` plus a third column: the PPG's autocorrelation at the lag of each
    bin's beat interval (60 / bpm s).

    A sharp pulse (finger clip, low heart rate) puts more power in its 2nd and 3rd harmonics
    than in the fundamental, so the spectrum alone shows a 60 bpm heart as peaks at 60, 120
    and 180 bpm. The autocorrelation is highest at the true beat interval whatever the
    harmonic balance (every harmonic lines up again after one period), and low at half of it;
    its own error, a peak at twice the interval (30 bpm), is where the spectrum has nothing.
    The model sees both, so 60/120/180 read as one heart at 60.
    Returns (n_bins, 3) float32; column 2 is the normalised autocorrelation clipped to [0, 1].
    """
    spec = ppg_acc_spectrum(ppg, acc, fs=fs, nfft=nfft, f_lo=f_lo, f_hi=f_hi)
    n = len(ppg)
    lags = _acf_lags(fs, nfft, f_lo, f_hi)
    z = _zscore(np.asarray(ppg, dtype=np.float64))
    size = 1 << int(np.ceil(np.log2(2 * n)))  # zero-padded: no circular wrap-around
    power = np.abs(np.fft.rfft(z, size)) ** 2
    acf = np.fft.irfft(power, size)[:n]
    acf = acf / (acf[0] + _EPS) * n / (n - np.arange(n))  # unbiased: each lag's overlap
    at = np.interp(lags, np.arange(n), acf, right=0.0)
    return np.concatenate([spec, np.clip(at, 0.0, 1.0)[:, None].astype(np.float32)], axis=1)


@functools.lru_cache(maxsize=32)
def _acf_lags(fs: float, nfft: int, f_lo: float, f_hi: float) -> np.ndarray:
    """The beat interval of each feature bin, in samples (read-only: shared between calls)."""
    lags = fs / spectrum_frequencies(fs, nfft, f_lo, f_hi)
    lags.flags.writeable = False
    return lags


FEATURES: dict[str, Callable[..., np.ndarray]] = {
    "ppg_acc_spectrum": ppg_acc_spectrum,
    "ppg_acc_spectrum_acf": ppg_acc_spectrum_acf,
}


def get_feature(name: str) -> Callable[..., np.ndarray]:
    try:
        return FEATURES[name]
    except KeyError:
        raise ValueError(
            f"unknown feature set {name!r}; valid: {', '.join(sorted(FEATURES))}"
        ) from None


def cgm_history(cgm: np.ndarray, *, fs: float, center_mg_dl: float,
                scale_mg_dl: float) -> np.ndarray:
    """The last N CGM readings as the glucose forecaster's input.

    cgm: (N,) or (N, 1) readings in mg/dL, oldest first, 1/fs s apart (5 min) and contiguous
    (the runtime calls this only when the last N readings have no gap). Returns (N,) float32:
    element k < N-1 is (reading k − newest reading) / scale_mg_dl, the shape of the recent
    course relative to now; the last element is (newest reading − center_mg_dl) /
    scale_mg_dl, the level. Differences, not raw levels, carry the trend: the int8 model then
    never has to subtract two large quantised numbers to find a slope. `fs` is accepted like
    every feature function's; the readings are used as they come.
    """
    g = np.asarray(cgm, dtype=np.float64).reshape(-1)
    if g.size < 2 or not np.all(np.isfinite(g)):
        raise ValueError(f"cgm_history needs at least 2 finite readings, got {g.size} "
                         f"({int(np.sum(~np.isfinite(g)))} missing)")
    last = g[-1]
    return np.append((g[:-1] - last) / scale_mg_dl,
                     (last - center_mg_dl) / scale_mg_dl).astype(np.float32)


FEATURES["cgm_history"] = cgm_history

# CGM readings further apart than this are never bridged: a 15-min CGM (with some jitter), or
# two missed 5-min readings, is interpolated; a longer silence is a gap.
CGM_MAX_GAP_S = 1000.0
CGM_EDGE_S = 60.0  # a grid point this close before the first reading takes its value


def cgm_on_grid(times_s: np.ndarray, mg_dl: np.ndarray, at_s: np.ndarray, *,
                max_gap_s: float = CGM_MAX_GAP_S, edge_s: float = CGM_EDGE_S) -> np.ndarray:
    """CGM readings (increasing times) put on grid points `at_s` by linear interpolation;
    NaN at a point inside a gap longer than `max_gap_s` or outside the readings (beyond
    `edge_s`). The runtime (any CGM spacing onto the model's grid) and training (real traces
    onto the same grid) both call this: one code path."""
    ts, gs = np.asarray(times_s, np.float64), np.asarray(mg_dl, np.float64)
    at = np.asarray(at_s, np.float64)
    out = np.full(at.shape, np.nan)
    if ts.size == 0:
        return out
    # np.minimum/maximum, not np.clip: this runs on every CGM reading, clip's overhead is 10x
    after = np.minimum(np.searchsorted(ts, at, side="left"), ts.size - 1)
    before = np.maximum(after - 1, 0)
    on = ts[after] == at
    span = np.where(on, 0.0, ts[after] - ts[before])
    ok = (at >= ts[0] - edge_s) & (at <= ts[-1]) & (span <= max_gap_s)
    out[ok] = np.interp(at[ok], ts, gs)
    return out


# --- Blood pressure: pulse arrival time + heart rate + pulse morphology (ECG + PPG) ---------

# No model input is in the sensor's units: timings, rates, the pulse shape scaled to [0, 1]
# and the pulse amplitude relative to this person's at calibration (`bp_relative_amplitude`).
# bp 2.0.0 had the log pulse amplitude in PPG units; a real sensor's units put it far outside
# training and the model at its floor for every window.
BP_SCALARS = ("pat_beats", "pat_mean_pulse", "pat_foot", "rise_time", "hr", "rr_cv",
              "pat_spread", "amplitude", "valid")
_PAT_REF_S, _PAT_SPAN_S = 0.3, 0.15  # PAT features: (pat - ref) / span
_AMP_SPAN = 0.5  # relative amplitude: ln(amplitude / amplitude at calibration) / span
_AMPLITUDE = BP_SCALARS.index("amplitude")
_AMP_CLIP = 3.0  # the model's input is clipped here: it cannot tell a larger ratio apart
# The amplitude ratios (to the calibration's) the model can take: 0.22-4.5.
BP_AMPLITUDE_RATIOS = (float(np.exp(-_AMP_CLIP * _AMP_SPAN)), float(np.exp(_AMP_CLIP * _AMP_SPAN)))


def _as_1d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(len(x), -1)[:, 0] if x.ndim > 1 else x.reshape(-1)
    if np.isfinite(x).all():  # the usual case: no copy needed (callers only read x)
        return x
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _sorted_median(ordered: np.ndarray) -> np.ndarray:
    """np.median of already sorted data (along axis 0): the middle, or the mean of the two
    middle values, computed as numpy computes it."""
    k = len(ordered) // 2
    return ordered[k] if len(ordered) % 2 else (ordered[k - 1] + ordered[k]) / 2


def _sorted_percentile(ordered: np.ndarray, q: float, shift: float = 0.0) -> float:
    """np.percentile(ordered - shift, q) (numpy's default "linear" method, its arithmetic
    step for step) of finite, sorted 1-D data: two elements and a lerp instead of a
    partition. Subtracting `shift` keeps the order, so it is applied to those two only."""
    v = (len(ordered) - 1) * (q / 100)
    i = min(int(v), len(ordered) - 1)
    if i == len(ordered) - 1:  # q = 100: the largest
        a = b = ordered[i] - shift
    else:
        a, b = ordered[i] - shift, ordered[i + 1] - shift
    t = v - i
    d = b - a
    return b - d * (1 - t) if t >= 0.5 else a + d * t


def r_peaks(ecg: np.ndarray, fs: float, *, min_rr_s: float = 0.25) -> np.ndarray:
    """R peaks of a band-passed ECG, in fractional samples (parabolic refinement).

    An inverted lead (deepest excursion much larger than the tallest) is flipped. A peak
    must reach half the window's 99.5th percentile and be `min_rr_s` from the previous one.
    A flat window gives no peaks.
    """
    from scipy.signal import find_peaks

    # One sort gives the median, both percentiles and the largest |ecg| (np.median and
    # np.percentile cost ~10x the sort in call overhead). Subtracting a constant keeps the
    # order, so the sorted x is the sorted ecg minus the median.
    ordered = np.sort(ecg)
    if len(ordered) == 0 or np.isnan(ordered[-1]):  # the NaN semantics of numpy's own
        med = np.median(ecg)
        low, top = np.percentile(ecg - med, [0.5, 99.5])
    else:
        med = _sorted_median(ordered)
        low = _sorted_percentile(ordered, 0.5, shift=med)
        top = _sorted_percentile(ordered, 99.5, shift=med)
    x = ecg - med
    if -low > 1.5 * top:
        x, top = -x, -low
    top = float(top)
    if not np.isfinite(top) or top <= 1e-12 * (1.0 + float(np.abs(ecg).max())):
        return np.zeros(0)
    peaks, _ = find_peaks(x, height=0.5 * top, distance=max(1, int(min_rr_s * fs)))
    peaks = peaks[(peaks > 0) & (peaks < len(x) - 1)]
    a, b, c = x[peaks - 1], x[peaks], x[peaks + 1]
    den = a - 2 * b + c
    frac = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    return peaks + np.clip(frac, -0.5, 0.5)


@functools.lru_cache(maxsize=8)
def _upsampling_fir(up: int) -> np.ndarray:
    """resample_poly's own default filter for (up, 1), built once instead of every call."""
    from scipy.signal import firwin

    h = firwin(2 * 10 * up + 1, 1.0 / up, window=("kaiser", 5.0))
    h.flags.writeable = False
    return h


@functools.lru_cache(maxsize=8)
def _upsampling_taps(up: int) -> tuple[np.ndarray, int]:
    """The filter as resample_poly(x, up, 1, window=_upsampling_fir(up)) hands it to
    upfirdn (scaled by up, one zero in front), and how many outputs it then drops."""
    h = _upsampling_fir(up)
    half_len = (len(h) - 1) // 2
    taps = np.concatenate([np.zeros(1), h * up, np.zeros(max(0, up - half_len - 1))])
    taps.flags.writeable = False
    return taps, half_len + 1


def _upsample_rows(x: np.ndarray, up: int) -> np.ndarray:
    """resample_poly(row, up, 1, window=_upsampling_fir(up)) of each row of x, in one
    upfirdn call: the same filter and arithmetic per row, without resample_poly's set-up
    (which cost more than the filtering)."""
    from scipy.signal import upfirdn

    taps, skip = _upsampling_taps(up)
    return upfirdn(taps, x, up, 1, axis=-1)[:, skip : skip + x.shape[1] * up]


def _parabolic_argmax_rows(y: np.ndarray) -> np.ndarray:
    """_parabolic_max(row)[0] for every row of y at once (same arithmetic, one numpy call
    per step instead of one Python call per beat)."""
    i = np.argmax(y, axis=1)
    rows = np.arange(len(y))
    j = np.clip(i, 1, y.shape[1] - 2)  # neighbours exist; edge maxima are masked out below
    a, b, c = y[rows, j - 1], y[rows, j], y[rows, j + 1]
    den = a - 2 * b + c
    refine = (i > 0) & (i < y.shape[1] - 1) & (np.abs(den) > 1e-12)
    d = np.clip(0.5 * (a - c) / np.where(refine, den, 1.0), -0.5, 0.5)
    return np.where(refine, i + d, i)


def _parabolic_max(y: np.ndarray) -> tuple[float, float]:
    """(fractional index, value) of the maximum of y, refined by a parabola."""
    i = int(np.argmax(y))
    if 0 < i < len(y) - 1:
        a, b, c = y[i - 1], y[i], y[i + 1]
        den = a - 2 * b + c
        if abs(den) > 1e-12:
            d = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
            return i + d, float(b - 0.25 * (a - c) * d)
    return float(i), float(y[i])


def ecg_ppg_pat(ecg: np.ndarray, ppg: np.ndarray, *, fs: float, upsample_hz: float = 256.0,
                pat_min_s: float = 0.04, shape_points: int = 32, shape_step_s: float = 0.025,
                min_beats: int = 3) -> np.ndarray:
    """Pulse arrival time, heart rate and PPG pulse shape from one ECG + PPG window.

    ecg, ppg: (W,) or (W, 1) band-passed windows at `fs` on one clock. Both are upsampled
    (polyphase) to about `upsample_hz` for timing finer than a model-rate sample. R peaks
    come from the ECG (`r_peaks`); the PPG is cut into one cardiac cycle per beat, from
    `pat_min_s` after its R peak for one median RR interval, so every segment holds exactly
    one pulse upstroke.

    Returns float32 (shape_points + 8,), the same for any gain and offset of either input:
    - the median cycle (the mean pulse, robust to artefacts) starting 50 ms before its foot,
      `shape_points` samples `shape_step_s` apart (periodic: a short RR wraps into the next
      pulse, as the signal does), scaled to [0, 1] over the cycle: amplitude and offset of
      the sensor do not matter;
    - BP_SCALARS: PAT to the steepest upslope, median over beats; the same on the mean
      pulse; PAT to the foot (intersecting tangents) on the mean pulse (all three as
      (PAT - 0.3 s) / 0.15 s); rise time foot -> systolic peak; heart rate ((HR - 80) / 40);
      RR coefficient of variation; inter-quartile spread of the per-beat PAT; amplitude: the
      natural log of the mean pulse's peak-to-peak amplitude in the PPG's own units (NOT a
      model input as it is: `bp_relative_amplitude` turns it into the ratio to this
      person's amplitude at calibration, which cancels the sensor's gain); valid (1, or 0
      when fewer than `min_beats` usable beats were found: then every feature is 0).
    Never raises for flat, noisy or beat-less windows; the output is always finite.
    """
    out = np.zeros(shape_points + len(BP_SCALARS), np.float32)
    e, p = _as_1d(ecg), _as_1d(ppg)
    n = min(len(e), len(p))
    if n < 8 or not (fs > 0) or np.ptp(e[:n]) <= 0 or np.ptp(p[:n]) <= 0:
        return out
    up = max(1, int(np.ceil(upsample_hz / fs)))
    fs_u = fs * up
    if up > 1:
        e_u, p_u = _upsample_rows(np.stack([e[:n], p[:n]]), up)
    else:
        e_u, p_u = e[:n], p[:n]
    p_sd = float(p_u.std())
    if not p_sd > 0:
        return out
    p_u = (p_u - p_u.mean()) / p_sd  # no epsilon: a PPG in volts (SD ~1e-6) is a pulse too
    r = r_peaks(e_u, fs_u)
    if len(r) < 2:
        return out
    rr = np.diff(r) / fs_u
    rr = rr[(rr > 0.25) & (rr < 2.5)]
    if len(rr) == 0:
        return out
    cycle = float(_sorted_median(np.sort(rr)))
    lo = pat_min_s * fs_u
    m = max(4, round(cycle * fs_u))
    starts = r + lo
    starts = starts[starts + m <= len(p_u) - 1]
    if len(starts) < min_beats:
        return out
    pos = starts[:, None] + np.arange(m)[None, :]
    seg = np.interp(pos, np.arange(len(p_u)), p_u)
    seg -= seg.mean(axis=1, keepdims=True)
    slope = np.gradient(seg, axis=1) * fs_u
    beat_pat = _parabolic_argmax_rows(slope) / fs_u + pat_min_s
    mean = _sorted_median(np.sort(seg, axis=0))  # np.median(seg, axis=0)
    dmean = np.gradient(mean) * fs_u
    i_max, d_max = _parabolic_max(dmean)
    t_slope = i_max / fs_u  # from the segment start (pat_min_s after R)
    grid = np.arange(m) / fs_u
    period = m / fs_u

    # np.interp(t % period, grid, mean, period=period), its periodic extension of the data
    # built once here instead of (with an argsort) on each of the calls below.
    xp = np.concatenate((grid[-1:] - period, grid, grid[:1] + period))
    fp = np.concatenate((mean[-1:], mean, mean[:1]))

    def at(t: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=np.float64) % period % period, xp, fp)

    y_max = float(at(t_slope))
    back = t_slope - np.arange(0, int(0.3 * fs_u)) / fs_u
    y_min = float(at(back).min())
    rise = (y_max - y_min) / d_max if d_max > _EPS else 0.0
    t_foot = t_slope - float(np.clip(rise, 0.0, 0.3))
    ahead = t_slope + np.arange(1, int(0.35 * fs_u)) / fs_u
    t_peak = float(ahead[int(np.argmax(at(ahead)))]) if len(ahead) else t_slope
    shape = at(t_foot - 0.05 + shape_step_s * np.arange(shape_points))
    span = float(mean.max() - mean.min())
    if not span > _EPS:
        return out
    shape = (shape - mean.min()) / span
    beat_pat.sort()
    q25, q75 = _sorted_percentile(beat_pat, 25), _sorted_percentile(beat_pat, 75)
    scalars = np.array([
        (float(_sorted_median(beat_pat)) - _PAT_REF_S) / _PAT_SPAN_S,
        (t_slope + pat_min_s - _PAT_REF_S) / _PAT_SPAN_S,
        (t_foot + pat_min_s - _PAT_REF_S) / _PAT_SPAN_S,
        (t_peak - t_foot - 0.15) / 0.1,
        (60.0 / cycle - 80.0) / 40.0,
        5.0 * float(rr.std() / rr.mean()),
        (q75 - q25) / 0.02,
        0.0,  # the log amplitude, set below: in sensor units, never clipped
        1.0,
    ])
    out[:shape_points] = np.clip(shape, 0.0, 1.0)
    out[shape_points:] = np.clip(np.nan_to_num(scalars), -3.0, 3.0)
    out[shape_points + _AMPLITUDE] = np.log(span * p_sd)
    return out


FEATURES["ecg_ppg_pat"] = ecg_ppg_pat


def bp_log_amplitude(features: np.ndarray, shape_points: int = 32) -> np.ndarray:
    """The log pulse amplitude (PPG units) of `ecg_ppg_pat` windows (..., shape_points + 9)."""
    return np.asarray(features)[..., shape_points + _AMPLITUDE]


def bp_amplitude_reference(features: np.ndarray, shape_points: int = 32) -> float | None:
    """The reference a calibration fixes: the median log pulse amplitude of the valid
    `ecg_ppg_pat` windows (rows) it is made against; None when none is valid."""
    x = np.asarray(features).reshape(-1, shape_points + len(BP_SCALARS))
    valid = x[:, -1] > 0.5
    return float(np.median(bp_log_amplitude(x[valid], shape_points))) if valid.any() else None


def bp_relative_amplitude(features: np.ndarray, reference: float | None,
                          shape_points: int = 32) -> np.ndarray:
    """`ecg_ppg_pat` windows as the model takes them: the amplitude column becomes
    ln(amplitude / amplitude at calibration) / 0.5, clipped to [-3, 3] (BP_AMPLITUDE_RATIOS;
    a gain of the PPG cancels in the ratio); 0 without a reference (before a calibration: as
    if at it) and on invalid windows. Training and the runtime both call this (one code
    path)."""
    x = np.array(features, dtype=np.float32)
    col = x[..., shape_points + _AMPLITUDE]
    rel = (0.0 if reference is None
           else np.clip((col - reference) / _AMP_SPAN, -_AMP_CLIP, _AMP_CLIP))
    x[..., shape_points + _AMPLITUDE] = np.where(x[..., -1] > 0.5, rel, 0.0)
    return x


def bp_pat_s(features: np.ndarray, shape_points: int = 32) -> np.ndarray:
    """The median per-beat pulse arrival time in seconds, read back from `ecg_ppg_pat`
    features (..., shape_points + 9): for PAT-only baselines and diagnostics."""
    return np.asarray(features)[..., shape_points] * _PAT_SPAN_S + _PAT_REF_S


def bp_hr_bpm(features: np.ndarray, shape_points: int = 32) -> np.ndarray:
    """The heart rate in bpm read back from `ecg_ppg_pat` features (the runtime's check that
    a step in BP came with a steady heart)."""
    return np.asarray(features)[..., shape_points + BP_SCALARS.index("hr")] * 40.0 + 80.0


def bp_feature_name(index: int, shape_points: int = 32) -> str:
    """What feature `index` of `ecg_ppg_pat` is, for messages."""
    if index < shape_points:
        return f"pulse shape point {index}"
    return BP_SCALARS[index - shape_points]


def ppg_pulse_morphology(ppg: np.ndarray, *, fs: float, shape_points: int = 32,
                         shape_step_s: float = 0.025) -> np.ndarray:
    """The pulse shape of a PPG alone (no ECG), as `ecg_ppg_pat` describes it: for real PPG
    sets without an ECG (training.bp_real), not a model input.

    Each systolic peak's steepest upslope (in the 0.35 s before it) and its foot (tangents
    intersecting, as in `ecg_ppg_pat`) give one pulse; the shape is `shape_points` samples
    `shape_step_s` apart from 50 ms before the foot, scaled to [0, 1] over those samples, and
    the rise time foot -> peak in s. Returns float32 (shape_points + 2,): the shapes and rise
    times averaged over every complete pulse, then valid (1, or 0 with all zeros when no
    complete pulse was found). Gain and offset of the PPG do not matter."""
    from scipy.signal import find_peaks

    out = np.zeros(shape_points + 2, np.float32)
    p = _as_1d(ppg)
    if len(p) < 8 or not fs > 0 or not np.ptp(p) > 0:
        return out
    p = (p - p.mean()) / p.std()
    slope = np.gradient(p) * fs
    t = np.arange(len(p)) / fs
    peaks, _ = find_peaks(p, distance=max(1, int(0.3 * fs)), prominence=0.5 * np.ptp(p))
    span = 0.05 + shape_step_s * (shape_points - 1)
    shapes, rises = [], []
    for pk in peaks:
        lo = max(0, pk - int(0.35 * fs))
        if pk - lo < 3:
            continue
        i_s = lo + int(np.argmax(slope[lo:pk]))
        if slope[i_s] <= 0:
            continue
        y_min = float(p[max(0, i_s - int(0.3 * fs)) : i_s + 1].min())
        t_foot = t[i_s] - float(np.clip((p[i_s] - y_min) / slope[i_s], 0.0, 0.3))
        if t_foot - 0.05 < 0 or t_foot - 0.05 + span > t[-1]:
            continue
        shape = np.interp(t_foot - 0.05 + shape_step_s * np.arange(shape_points), t, p)
        if np.ptp(shape) <= 0:
            continue
        shapes.append((shape - shape.min()) / np.ptp(shape))
        rises.append(t[pk] - t_foot)
    if not shapes:
        return out
    out[:shape_points] = np.mean(shapes, axis=0)
    out[shape_points] = float(np.mean(rises))
    out[-1] = 1.0
    return out
