"""NEWS2 (Royal College of Physicians, 2017) sub-scores for the vitals this runtime measures.

NEWS2 aggregates seven parameters; a wearable measures some of them (pulse now, systolic BP
when a BP model runs). Each vitals message carries its parameter's sub-score so a nurse
station can add the parameters it has from elsewhere (respiration, SpO2, temperature,
consciousness) into the full score.
"""

from __future__ import annotations

import math

# (highest value in the band, score), readings rounded to whole units as charted.
_BANDS = {
    "heart_rate": ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (math.inf, 3)),  # pulse
    "systolic_bp": ((90, 3), (100, 2), (110, 1), (219, 0), (math.inf, 3)),
}


def news2_score(vital: str, value: float) -> int | None:
    """The NEWS2 sub-score of one reading; None for a vital NEWS2 does not score."""
    bands = _BANDS.get(vital)
    if bands is None:
        return None
    reading = round(value)
    return next(score for upper, score in bands if reading <= upper)
