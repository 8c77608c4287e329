"""Glucose forecast from CGM history: the readings 20 and 30 min ahead, and the risk of an
urgent low within 30 min ("urgent low soon").

The model sees the last WINDOW_READINGS CGM readings (5 min apart) as `cgm_history` features
(differences to the newest reading, plus its level). One branch predicts the change to the
reading 20 and 30 min after the newest one; a fixed residual connection adds the newest level
back, so those outputs are absolute forecasts in mg/dL (output kind "affine", one
scale/offset per output). Over-forecasts of low readings weigh more (`low_weighted_mse`).
A second branch gives `urgent_low_risk`, the probability of a reading <= 55 mg/dL now or
within the next 30 min, trained with cross-entropy for exactly what the alert must say: on
real held-out people it raised about a third fewer false alerts than the 20-min forecast as
the alarm (glucose 1.x's rule) at a similar recall (the model card). The runtime raises
"urgent low soon" when it is above a limit tuned on real validation people.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest, sha256_file
from training import glucose_data as gdata
from training import glucose_metrics as gm
from training import steps
from training.bundle import publish, staging, tensor_specs
from training.evaluate import runtime_estimates
from training.windows import Preprocessing

NAME = "glucose"
# 1.1: real CGM people + the simulator; 1.2: low weights, a third simulated; 2.0: the urgent-low
# risk output (the alarm reads it; 1.x bundles lack it and are refused)
VERSION = "2.0.0"
WINDOW_READINGS = 12  # 1 h of readings; the runtime needs this many without a gap
CENTER_MG_DL = 140.0
SCALE_MG_DL = 100.0
PREPROCESSING = Preprocessing(
    channels=("CGM",),
    sample_rate_hz=1.0 / 300.0,
    window_s=WINDOW_READINGS * 300.0,
    hop_s=300.0,
    bandpass_hz=(),
    filter_order=0,
    features="cgm_history",
    feature_params={"center_mg_dl": CENTER_MG_DL, "scale_mg_dl": SCALE_MG_DL},
)
OUTPUT_NAMES = (*gdata.HORIZONS, gm.RISK)  # ("glucose_20min", "glucose_30min", "urgent_low_risk")
# Output k in its unit = net output k * scale + offset (mg/dL; the risk is a probability).
OUTPUT_SCALE = [SCALE_MG_DL] * len(gdata.HORIZONS) + [1.0]
OUTPUT_OFFSET = [CENTER_MG_DL] * len(gdata.HORIZONS) + [0.0]
# Acceptance targets on held-out subjects (int8, +30 min); the report marks each met or missed.
TARGETS = {"rmse_30": 18.0, "improvement_vs_last_pct": 25.0, "clarke_ab_pct": 99.0,
           "urgent_low_sensitivity_pct": 90.0}
LINEAR_FITS = {"linear extrapolation (15 min)": 4, "linear extrapolation (30 min)": 7}


@dataclass(frozen=True)
class Plan:
    """How much data and training; `quick` trades accuracy for a CI-sized run."""

    train_subjects: int
    val_subjects: int
    test_subjects: int  # random free-living subjects; scenario subjects are added on top
    scenario_seeds: int  # per device_sim scenario: half as written, half jittered
    train_days: tuple[float, float]
    test_days: tuple[float, float]
    epochs: int
    width: int = 32  # each branch's hidden layers
    batch: int = 256
    learning_rate: float = 3e-3
    patience: int = 6
    # Asymmetric loss: an over-forecast when the actual reading is low (a missed low) costs
    # 1 + low_weight * sigmoid((low_center - reading) / low_width) times the squared error,
    # per output (+20, +30 min). +20 min drives the "urgent low soon" alert, so it weighs most.
    low_weight: tuple[float, float] = (32.0, 4.0)
    low_center_mg_dl: float = 70.0
    low_width_mg_dl: float = 8.0

    @staticmethod
    def for_run(quick: bool) -> Plan:
        if quick:
            return Plan(train_subjects=24, val_subjects=4, test_subjects=6, scenario_seeds=2,
                        train_days=(1.0, 1.0), test_days=(1.0, 1.0), epochs=8)
        return Plan(train_subjects=240, val_subjects=24, test_subjects=48, scenario_seeds=8,
                    train_days=(1.0, 3.0), test_days=(2.0, 2.0), epochs=40)


def plan_splits(plan: Plan, seed: int) -> dict[str, list[gdata.CgmSubject]]:
    """Subjects per split; ids and seeds never repeat across splits (split by subject).

    Test: random free-living subjects at typical sensor noise, plus subjects built like each
    device_sim scenario file (new seeds; half exactly as written, half with meals, boluses,
    times and basal glucose varied)."""
    test = gdata.plan_subjects("test", plan.test_subjects, seed, days=plan.test_days,
                               noise_range=(0.5, 1.5))
    for kind in gdata.SCENARIOS:
        for jitter in (False, True):
            half = plan.scenario_seeds // 2
            n = half if jitter else plan.scenario_seeds - half
            test += gdata.plan_subjects("test", n, seed, kind=kind, noise_range=(0.5, 1.5),
                                        jitter=jitter, first_index=len(test))
    return {
        "train": gdata.plan_subjects("train", plan.train_subjects, seed, days=plan.train_days),
        "val": gdata.plan_subjects("val", plan.val_subjects, seed, days=plan.train_days),
        "test": test,
    }


def train(out: Path, *, quick: bool = False, seed: int = 0,
          log: Callable[[str], None] = print, recordings: Any = None,
          real_data: Path | None = None) -> list[Path]:
    """Simulate, train, quantise, evaluate and write the bundle into `out`; returns the
    files written. `recordings`: the user's recordings (`training.recordings.Prepared`),
    added to (or, --data-only, instead of) the simulated training and validation subjects.
    `real_data`: a folder of real CGM traces (training.glucose_real): split by person; their
    training and validation people join the simulated ones (which keep the rare deep lows,
    rescue carbohydrate and sensor noise real traces have few of), their test people are
    scored per dataset in the model card."""
    started = time.monotonic()
    plan = Plan.for_run(quick)
    real = None
    if real_data is not None:
        from training import glucose_real

        real_data = glucose_real.cgm_folder(real_data)
        real = glucose_real.prepare(real_data, PREPROCESSING, seed, log)
        # Real people's falls to the low 60s cost Clarke A+B (forecast at ~85): +30 min low
        # weight 6 (1.1.0: 2) meets it on held-out people. A third of the simulated subjects
        # (the rare deep lows, rescue carbohydrate real traces lack): all of them pull the
        # forecast away from real people (RMSE 85.9 % of the last value's at weight 6). With
        # a third, +20 min weight 8 forecast the simulator's fast falls late (an urgent-low-
        # soon after true glucose reached 55 in a scenario); 16 does not (docs/models.md).
        plan = replace(plan, low_weight=(16.0, 6.0), train_subjects=plan.train_subjects // 3,
                       width=64, batch=512)
    subjects, sets, series = steps.windows_per_split(
        NAME, plan_splits(plan, seed),
        lambda members: gdata.build(members, PREPROCESSING, workers=2), log, recordings)
    if real is not None:
        n_train = 20_000 if quick else glucose_real.MAX_TRAIN_WINDOWS
        n_val = 5_000 if quick else glucose_real.MAX_VAL_WINDOWS
        sets = {**sets,
                "train": gdata.GlucoseWindows.concat(
                    [sets["train"], real["train"].windows.sample(n_train, seed)]),
                "val": gdata.GlucoseWindows.concat(
                    [sets["val"], real["val"].windows.sample(n_val, seed + 1)])}
        log(f"{NAME}: training windows {len(sets['train'])}, validation {len(sets['val'])} "
            "(simulated + real)")

    # TensorFlow only now: the simulation workers above are spawned without it.
    model = _fit(plan, sets, seed, log)
    tflite = steps.int8_tflite(NAME, model, _representative(sets["train"].x, seed), seed, log)
    with staging(out) as stage:
        manifest = _manifest(stage, tflite)
        test = sets["test"]
        int8_pred, latency_ms = runtime_estimates(stage / f"{NAME}.json", test.x)
        float_pred = float_estimates(model, test.x)
        predictions = {"float": float_pred, "int8": int8_pred, **baselines(test)}
        test_cgm = {sid: s.cgm for sid, s in series["test"].items()}
        results = {k: evaluate(v, test, test_cgm) for k, v in predictions.items()}
        last_rmse = results["last value"]["h30"]["rmse"]
        for r in results.values():
            r["improvement_vs_last_pct"] = 100.0 * (1.0 - r["h30"]["rmse"] / last_rmse)
        q, f = results["int8"], results["float"]
        sens = q["urgent_low"]["sensitivity_pct"]
        log(f"{NAME}: +30 min RMSE int8 {q['h30']['rmse']:.2f} (float {f['h30']['rmse']:.2f}, "
            f"last value {last_rmse:.2f}) mg/dL; Clarke A+B {q['clarke_30']['A+B']:.2f}%; "
            f"urgent-low sensitivity {'–' if sens is None else f'{sens:.1f}'}% "
            f"({q['urgent_low']['detected']}/{q['urgent_low']['events']} events)")
        manifest = replace(
            manifest,
            metrics={
                "float": results["float"],
                "int8": results["int8"] | {"latency_ms_median": latency_ms,
                                           "tflite_bytes": len(tflite)},
                "baselines": {k: v for k, v in results.items() if k not in ("float", "int8")},
                "targets": TARGETS,
                "test_set": {"subjects": test.n_subjects, "windows": len(test),
                             "kinds": _kinds(subjects["test"])},
            },
            training=steps.run_record(seed=seed, quick=quick, subjects=subjects, sets=sets,
                                      plan=plan, started=started),
        )
        from training import glucose_report

        glucose_report.write(stage, manifest, results, test, predictions, series["test"],
                             subjects["test"], TARGETS, log)
        if real is not None:
            real_result = glucose_real.evaluate_bundle(
                stage / f"{NAME}.json", real, log,
                extra={"float": lambda x: float_estimates(model, x)})
            # Real people first, right after the card's title and introduction.
            report = stage / f"{NAME}_report.md"
            head, sep, rest = report.read_text().partition("\n## ")
            report.write_text(head + "\n" + glucose_real.markdown(real_result, TARGETS) + "\n"
                              + sep.lstrip("\n") + rest)
            manifest = replace(manifest, metrics={**manifest.metrics, "real": {
                k: v for k, v in real_result.items() if k != "tuning"}},
                training={**manifest.training, "real_data": {
                    "folder": str(real_data), "seed": seed,
                    "people": {k: len(v) for k, v in real_result["people"].items()},
                    "windows": {k: len(v.windows) for k, v in real.items()}}},
                output_params={**manifest.output_params, "urgent_low_soon": {
                    "threshold": real_result["urgent_low_soon"]["threshold"],
                    "persistence_readings":
                        real_result["urgent_low_soon"]["persistence_readings"]}})
            manifest.write(stage / f"{NAME}.json")
        if recordings is not None:
            manifest = recordings.finish(stage, manifest,
                                         lambda x: float_estimates(model, x))
        return publish(stage, out, manifest)


def _kinds(subjects: list[gdata.CgmSubject]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for s in subjects:
        key = s.kind + (" (varied)" if s.jitter else "")
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def baselines(w: gdata.GlucoseWindows) -> dict[str, np.ndarray]:
    """Last value, and least-squares lines over the last 15 and 30 min, at +20 and +30 min."""
    out = {"last value": np.stack([w.last, w.last], axis=1)}
    for name, k in LINEAR_FITS.items():
        out[name] = np.stack([gm.linear_extrapolation(w.history, 5.0 * h, k)
                              for h in gdata.HORIZONS.values()], axis=1)
    return out


def evaluate(pred: np.ndarray, w: gdata.GlucoseWindows,
             series_cgm: dict[int, np.ndarray]) -> dict[str, Any]:
    """Every held-out metric of one forecast against the future CGM readings: (n, 3) for the
    model (its urgent-low risk drives the alert), (n, 2) for a baseline (an alert at its
    20-min forecast <= 55 mg/dL)."""
    risk = pred.shape[1] > len(gdata.HORIZONS)
    return {
        "h20": gm.forecast_summary(pred[:, 0], w.y[:, 0]),
        "h30": gm.forecast_summary(pred[:, 1], w.y[:, 1]),
        "clarke_30": gm.clarke_summary(w.y[:, 1], pred[:, 1]),
        "per_subject_rmse_30": gm.per_subject_rmse(pred[:, 1], w.y[:, 1], w.subject),
        "urgent_low": gm.urgent_low(series_cgm, w.subject, w.end, pred[:, 2 if risk else 0],
                                    window_readings=WINDOW_READINGS, forecast=not risk),
    }


def build_net(n_inputs: int, width: int) -> Any:
    """Forecast branch: two small dense layers predict the change at +20/+30 min; a fixed
    (non-trainable) selection of the level input adds the newest reading back (residual), so
    its outputs are absolute forecasts in (mg/dL − CENTER) / SCALE. Risk branch: two more
    dense layers and a sigmoid, the probability of an urgent low within 30 min. Separate
    branches: neither objective bends the other's features."""
    import keras
    from keras import layers

    horizons = len(gdata.HORIZONS)
    inputs = keras.Input((n_inputs,), name="cgm_history")
    h = layers.Dense(width, activation="relu", name="hidden_1")(inputs)
    h = layers.Dense(width, activation="relu", name="hidden_2")(h)
    change = layers.Dense(horizons, kernel_initializer="zeros", name="change")(h)
    select = np.zeros((n_inputs, horizons), np.float32)
    select[-1, :] = 1.0  # the last feature is the newest reading's level
    level = layers.Dense(horizons, use_bias=False, trainable=False, name="level",
                         kernel_initializer=keras.initializers.Constant(select))(inputs)
    forecast = layers.Add(name="forecast")([level, change])
    r = layers.Dense(width, activation="relu", name="risk_hidden_1")(inputs)
    r = layers.Dense(width, activation="relu", name="risk_hidden_2")(r)
    risk = layers.Dense(1, activation="sigmoid", name="risk")(r)
    outputs = layers.Concatenate(name="outputs")([forecast, risk])
    return keras.Model(inputs, outputs, name="glucose_forecaster")


def _fit(plan: Plan, sets: dict[str, gdata.GlucoseWindows], seed: int,
         log: Callable[[str], None]) -> Any:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    train, val = sets["train"], sets["val"]
    model = build_net(train.x.shape[1], plan.width)
    steps = plan.epochs * int(np.ceil(len(train) / plan.batch))
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(plan.learning_rate, steps)),
        loss=low_weighted_mse(plan),
    )
    log(f"{NAME}: model {model.count_params()} parameters; training up to {plan.epochs} epochs")

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            log(f"{NAME}: epoch {epoch + 1:3d}  loss train {logs.get('loss', 0):.4f}  "
                f"val {logs.get('val_loss', 0):.4f} (low-weighted MSE + cross-entropy)")

    model.fit(
        train.x, _target(train), validation_data=(val.x, _target(val)),
        batch_size=plan.batch, epochs=plan.epochs, shuffle=True, verbose=0,
        callbacks=[Progress(), keras.callbacks.EarlyStopping(
            "val_loss", mode="min", patience=plan.patience, restore_best_weights=True)],
    )
    return model


def low_weighted_mse(plan: Plan) -> Callable[[Any, Any], Any]:
    """Forecasts: squared error (in normalised units), weighted up where the forecast is above
    an actual low reading (plain MSE forecasts shrink towards the mean and reach a low late;
    the price is a small bias upwards of RMSE). Plus the risk's binary cross-entropy."""
    from keras import losses, ops

    weight = ops.convert_to_tensor(np.asarray(plan.low_weight, np.float32))
    h = len(gdata.HORIZONS)

    def loss(y_true: Any, y_pred: Any) -> Any:
        err = y_pred[:, :h] - y_true[:, :h]
        reading = y_true[:, :h] * SCALE_MG_DL + CENTER_MG_DL
        low = ops.sigmoid((plan.low_center_mg_dl - reading) / plan.low_width_mg_dl)
        over = ops.cast(err > 0, "float32")
        mse = ops.mean((1.0 + weight * low * over) * ops.square(err), axis=-1)
        return mse + losses.binary_crossentropy(y_true[:, h:], y_pred[:, h:])

    return loss


def float_estimates(model: Any, x: np.ndarray) -> np.ndarray:
    """The float (Keras) model's outputs in their units, as the int8 bundle gives them."""
    return model.predict(x, batch_size=4096, verbose=0) * OUTPUT_SCALE + OUTPUT_OFFSET


def _target(w: gdata.GlucoseWindows) -> np.ndarray:
    return np.column_stack([(w.y - CENTER_MG_DL) / SCALE_MG_DL, w.low_soon]).astype(np.float32)


def _representative(x: np.ndarray, seed: int, n: int = 500) -> np.ndarray:
    """Training windows to calibrate int8 ranges: the extremes of every feature (so the
    40-400 mg/dL range and the steepest courses are not clipped) plus a random rest."""
    extremes = np.unique(np.concatenate([x.argmin(axis=0), x.argmax(axis=0)]))
    rng = np.random.default_rng(seed)
    rest = rng.choice(len(x), min(n - len(extremes), len(x)), replace=False)
    return x[np.unique(np.concatenate([extremes, rest]))]


def _manifest(stage: Path, tflite: bytes) -> Manifest:
    path = stage / f"{NAME}.tflite"
    path.write_bytes(tflite)
    inp, out = tensor_specs(tflite)
    manifest = Manifest(
        name=NAME, version=VERSION, task="glucose_forecast", unit="mg/dL",
        **PREPROCESSING.manifest_fields(),
        input=inp, output=out, output_kind="affine",
        output_params={"names": list(OUTPUT_NAMES), "scale": OUTPUT_SCALE,
                       "offset": OUTPUT_OFFSET},
        sha256=sha256_file(path), tflite=path.name,
    )
    manifest.write(stage / f"{NAME}.json")
    return manifest
