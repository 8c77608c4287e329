"""Would a pulse-polarity check ("a pulse rises faster than it falls") tell an inverted PPG
from a real one? On PPG-BP's real finger PPGs (Liang et al. 2018), band-passed as the BP
model does (0.5-16 Hz, order 2): how many fall more steeply than they rise, and in how many
the foot-to-peak share of the cycle exceeds one half. (docs/models.md: it is not kept.)

    python -m bench.ppg_polarity [DATASETS]   # default ../shared/datasets
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt

from training import bp_real

FS = 1000.0  # PPG-BP's rate


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/datasets")
    data = bp_real.load(root / "ppg_bp_liang2018")
    sos = butter(2, [0.5, 16.0], btype="band", fs=FS, output="sos")
    steeper_fall, rise_share = 0, []
    for raw in data["ppg"]:
        x = sosfiltfilt(sos, raw - raw.mean())
        slope = np.gradient(x)[200:-200]  # 0.2 s from each end: filter edges
        steeper_fall += int(-slope.min() > slope.max())
        prominence = 0.5 * np.ptp(x)
        peaks, _ = find_peaks(x, distance=300, prominence=prominence)
        troughs, _ = find_peaks(-x, distance=300, prominence=prominence)
        shares = [(p - troughs[troughs < p][-1]) / (troughs[troughs > p][0]
                                                   - troughs[troughs < p][-1])
                  for p in peaks if (troughs < p).any() and (troughs > p).any()]
        if shares:
            rise_share.append(float(np.median(shares)))
    n = len(data["ppg"])
    print(f"PPG-BP: {n} people; steepest fall steeper than the steepest rise: {steeper_fall}; "
          f"foot-to-peak share of the cycle > 0.5: {sum(s > 0.5 for s in rise_share)} of "
          f"{len(rise_share)} with a whole cycle")


if __name__ == "__main__":
    main()
