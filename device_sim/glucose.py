"""Glucose-insulin-meal physiology of a person with type 1 diabetes, and the CGM that reads it.

Plasma glucose follows the Hovorka model (Hovorka et al., Physiol Meas 2004;25:905-920, with
the parameters of its Table 1 for a 70 kg adult): two glucose compartments, three remote
insulin actions (on glucose transport, disposal and endogenous production), subcutaneous
insulin absorption and gut absorption of carbohydrate through two compartments each. A basal
insulin infusion is solved for so that fasting glucose sits at `basal_mg_dl`; meals and
boluses then move it. It is integrated on a 1-minute grid with 15-s Euler sub-steps (the
fastest time constant is ~7 min), which is exact enough and fast: a day takes ~30 ms.

The CGM measures interstitial glucose, which follows plasma glucose through a first-order lag
(Rebrin et al., Am J Physiol 1999: tau ~ 10 min), every 5 minutes, with a per-sensor
calibration error (gain +-4 %, offset +-5 mg/dL), autocorrelated noise (AR(1), SD ~5 mg/dL,
as in Facchinetti's CGM noise models) and the 40-400 mg/dL reporting range of real sensors.
simglucose (UVA/Padova) was the first choice but needs gym and pandas; this has no deps.
"""

from __future__ import annotations

import numpy as np

MG_PER_MMOL = 18.016  # glucose, mg/dL per mmol/L
CGM_PERIOD_S = 300.0
CGM_RANGE_MG_DL = (40.0, 400.0)
CGM_LAG_MIN = 10.0

# Hovorka 2004, Table 1 (per kg where noted).
BW = 70.0  # kg
K12 = 0.066  # /min, transfer from non-accessible to accessible glucose compartment
KA = np.array([0.006, 0.06, 0.03])  # /min, deactivation of the three insulin actions
SI = np.array([51.2e-4, 8.2e-4, 520e-4])  # /min per mU/L: transport, disposal, EGP
KE = 0.138  # /min, insulin elimination from plasma
VI = 0.12 * BW  # L, insulin distribution volume
VG = 0.16 * BW  # L, glucose distribution volume
F01 = 0.0097 * BW  # mmol/min, non-insulin-dependent glucose flux
EGP0 = 0.0161 * BW  # mmol/min, endogenous glucose production at zero insulin
T_MAX_I = 55.0  # min, subcutaneous insulin absorption
T_MAX_G = 40.0  # min, carbohydrate absorption
AG = 0.8  # carbohydrate bioavailability
MMOL_PER_G = 1000.0 / 180.16


def _f01c(g: float) -> float:
    return F01 if g >= 4.5 else F01 * g / 4.5  # brain uptake falls below 4.5 mmol/L


def _renal(g: float) -> float:
    return 0.003 * (g - 9.0) * VG if g >= 9.0 else 0.0  # glucosuria above 9 mmol/L


def _counter_regulation(g: float) -> float:
    """Glucagon and adrenaline release glucose below ~3.9 mmol/L (70 mg/dL). Not in Hovorka's
    model, which would otherwise let a large overdose drive glucose to zero; the size (up to
    EGP0 at 2.2 mmol/L) keeps severe hypoglycaemia in the 30-50 mg/dL range seen clinically."""
    return EGP0 * min(1.0, max(0.0, (3.9 - g) / 1.7))


def _dq1_at_rest(insulin: float, g: float) -> float:
    """dQ1/dt at steady state for plasma insulin `insulin` and glucose `g` (mmol/L)."""
    x1, x2, x3 = SI * insulin
    q1 = g * VG
    q2 = x1 * q1 / (K12 + x2)
    return -_f01c(g) - _renal(g) - x1 * q1 + K12 * q2 + EGP0 * max(0.0, 1.0 - x3)


def basal_insulin(basal_mg_dl: float) -> float:
    """Plasma insulin (mU/L) that holds glucose at `basal_mg_dl`, by bisection."""
    g = basal_mg_dl / MG_PER_MMOL
    lo, hi = 0.0, 1.0 / SI[2]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _dq1_at_rest(mid, g) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


def plasma_glucose(n_seconds: int, meal_g: np.ndarray, bolus_u: np.ndarray,
                   basal_mg_dl: float) -> np.ndarray:
    """Per-minute plasma glucose (mg/dL) from t=0 to past `n_seconds`, on the minute grid.

    `meal_g[s]`, `bolus_u[s]`: carbohydrate and insulin given at the start of second s.
    """
    minutes = int(np.ceil(n_seconds / 60.0)) + 1
    meals = np.bincount(np.nonzero(meal_g)[0] // 60, meal_g[meal_g > 0], minutes)
    boluses = np.bincount(np.nonzero(bolus_u)[0] // 60, bolus_u[bolus_u > 0], minutes)
    i_b = basal_insulin(basal_mg_dl)
    u_basal = i_b * KE * VI  # mU/min
    g = basal_mg_dl / MG_PER_MMOL
    x = SI * KA * i_b / KA  # remote actions at steady state (= SI * I)
    q1 = g * VG
    q2 = x[0] * q1 / (K12 + x[1])
    s1 = s2 = u_basal * T_MAX_I
    insulin = i_b
    d1 = d2 = 0.0
    out = np.empty(minutes)
    dt, steps = 0.25, 4
    for m in range(minutes):
        out[m] = q1 / VG * MG_PER_MMOL
        d1 += AG * meals[m] * MMOL_PER_G
        s1 += boluses[m] * 1000.0
        for _ in range(steps):
            g = q1 / VG
            ug = d2 / T_MAX_G
            ds1 = u_basal - s1 / T_MAX_I
            ds2 = (s1 - s2) / T_MAX_I
            di = s2 / (T_MAX_I * VI) - KE * insulin
            dx = -KA * x + KA * SI * insulin
            dq1 = (-_f01c(g) - _renal(g) - x[0] * q1 + K12 * q2 + ug
                   + EGP0 * max(0.0, 1.0 - x[2]) + _counter_regulation(g))
            dq2 = x[0] * q1 - (K12 + x[1]) * q2
            dd1, dd2 = -d1 / T_MAX_G, (d1 - d2) / T_MAX_G
            s1, s2, insulin = s1 + dt * ds1, s2 + dt * ds2, insulin + dt * di
            x = x + dt * dx
            q1, q2 = max(q1 + dt * dq1, 0.1), max(q2 + dt * dq2, 0.0)
            d1, d2 = d1 + dt * dd1, d2 + dt * dd2
    return out


def per_second(per_minute: np.ndarray, n_seconds: int) -> np.ndarray:
    """Minute-grid values at the middle of each second."""
    return np.interp(np.arange(n_seconds) + 0.5, np.arange(len(per_minute)) * 60.0, per_minute)


def cgm_readings(per_minute: np.ndarray, n_seconds: int, rng: np.random.Generator,
                 noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(reading times s, readings mg/dL) every CGM_PERIOD_S from t=0: the sensor's view."""
    # Interstitial glucose: first-order lag behind plasma, on the minute grid.
    inter = np.empty_like(per_minute)
    inter[0] = per_minute[0]
    alpha = 1.0 - np.exp(-1.0 / CGM_LAG_MIN)
    for m in range(1, len(per_minute)):
        inter[m] = inter[m - 1] + alpha * (per_minute[m - 1] - inter[m - 1])
    times = np.arange(0.0, n_seconds, CGM_PERIOD_S)
    true = np.interp(times, np.arange(len(inter)) * 60.0, inter)
    gain = 1.0 + 0.04 * noise * rng.uniform(-1, 1)
    offset = 5.0 * noise * rng.uniform(-1, 1)
    ar = np.empty(len(times))
    e = rng.normal(0.0, 1.0, len(times))
    ar[0] = e[0]
    for k in range(1, len(times)):
        ar[k] = 0.7 * ar[k - 1] + np.sqrt(1 - 0.49) * e[k]
    readings = gain * true + offset + 5.0 * noise * ar
    return times, np.clip(np.round(readings), *CGM_RANGE_MG_DL)
