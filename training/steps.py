"""The steps every model's `train()` shares: the windows of each split (the user's recordings
folded in), the int8 flatbuffer within its size budget, and the manifest's record of the run.
Each model supplies what differs: its subjects, how a split becomes windows, its network."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from training import provenance
from training.errors import TrainingError

MAX_TFLITE_BYTES = 64 * 1024  # every model: the HR model's budget (<= 64 KB int8)


def windows_per_split(name: str, subjects: dict[str, list[Any]], build: Callable[[list], Any],
                      log: Callable[[str], None], recordings: Any = None
                      ) -> tuple[dict[str, list[Any]], dict[str, Any], dict[str, Any]]:
    """(subjects, windows, series) per split. `build(members)` returns a split's windows, or
    (series, windows) for a model that also scores whole series (glucose). `recordings`
    (`training.recordings.Prepared`) adds the user's training and validation recordings, or
    with --data-only replaces the simulated ones."""
    if recordings is not None:
        subjects = recordings.simulated(subjects)
    sets, series = {}, {}
    for split, members in subjects.items():
        t0 = time.monotonic()
        built = build(members)
        if isinstance(built, tuple):
            series[split], built = built
        sets[split] = built
        log(f"{name}: {split}: {len(members)} subjects, {len(built)} windows "
            f"({time.monotonic() - t0:.1f}s)")
    if recordings is not None:
        subjects, sets, series = recordings.merge(subjects, sets, series)
    return subjects, sets, series


def int8_tflite(name: str, model: Any, representative: np.ndarray, seed: int,
                log: Callable[[str], None], **options: Any) -> bytes:
    """The full-integer flatbuffer (`training.quantize.to_int8_tflite`), refused over budget."""
    from training import quantize  # TensorFlow only now

    log(f"{name}: quantising to int8")
    tflite = quantize.to_int8_tflite(model, representative, seed=seed, **options)
    if len(tflite) > MAX_TFLITE_BYTES:
        raise TrainingError(f"{name}: int8 model is {len(tflite)} bytes, over the "
                            f"{MAX_TFLITE_BYTES}-byte budget; shrink the network")
    return tflite


def run_record(*, seed: int, quick: bool, subjects: dict[str, list[Any]],
               sets: dict[str, Any], plan: Any, started: float, **extra: Any) -> dict[str, Any]:
    """The manifest's `training` block: what was trained on, how, by what code, how long."""
    return {"seed": seed, "quick": quick,
            "subjects": {k: len(v) for k, v in subjects.items()},
            "windows": {k: len(v) for k, v in sets.items()},
            "plan": asdict(plan), **extra,
            "duration_s": round(time.monotonic() - started, 1),
            **provenance.describe()}
