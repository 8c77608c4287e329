"""Keras model builders and losses (TensorFlow is imported here, not by `training`)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import layers, ops


def spectral_classifier(n_bins: int, n_channels: int, *, width: int = 16,
                        dilations: Sequence[int] = (1, 2, 4, 8, 16),
                        kernel: int = 5) -> keras.Model:
    """Fully convolutional over frequency, one logit per frequency bin.

    Weights are shared across frequency, so a pulse peak is recognised wherever it sits, and
    the model has a few thousand parameters instead of the ~n_bins² a dense layer would need.
    Doubling dilations give a receptive field of ~2·Σdilations·(kernel-1) bins, wide enough to
    compare a peak with its harmonic (at twice the frequency) and with motion peaks in the
    accelerometer column. Halfway up, a summary of the whole spectrum (mean and max of every
    channel, through a small dense layer) is added to every bin, so each bin also knows how
    busy the spectrum is overall (how strong the motion, how many rival peaks). Residual
    connections keep the deep, narrow stack easy to train.
    """
    inputs = keras.Input((n_bins, n_channels), name="spectrum")
    x = layers.Conv1D(width, kernel, padding="same", activation="relu", name="embed")(inputs)
    for i, d in enumerate(dilations):
        y = layers.Conv1D(width, kernel, padding="same", dilation_rate=d, activation="relu",
                          name=f"dilated_{d}")(x)
        x = layers.Add(name=f"residual_{d}")([x, y])
        if i == len(dilations) // 2:
            summary = layers.Concatenate(name="summary")(
                [layers.GlobalAveragePooling1D()(x), layers.GlobalMaxPooling1D()(x)])
            context = layers.Dense(width, activation="relu", name="context")(summary)
            context = layers.Reshape((1, width))(context)
            x = layers.Add(name="with_context")([x, context])  # broadcast over bins
    logits = layers.Conv1D(1, 1, name="bin_logit")(x)
    logits = layers.Reshape((n_bins,), name="logits")(logits)
    return keras.Model(inputs, logits, name="spectral_classifier")


def with_softmax(logits_model: keras.Model) -> keras.Model:
    """The deployable model: class probabilities (trained on logits for numerical safety)."""
    probs = layers.Softmax(name="probabilities")(logits_model.output)
    return keras.Model(logits_model.input, probs, name=f"{logits_model.name}_softmax")


def gaussian_labels(target: np.ndarray, classes: np.ndarray, sigma: float) -> np.ndarray:
    """Soft class labels: a Gaussian of width `sigma` around each target, normalised.

    Neighbouring bins are nearly right, so they are not punished like far ones; the model
    learns a smooth posterior whose expectation lands between bins (sub-bin resolution).
    """
    z = (np.asarray(classes)[None, :] - np.asarray(target)[:, None]) / sigma
    p = np.exp(-0.5 * z**2)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def expectation_loss(classes: np.ndarray, weight: float, scale: float):
    """Cross-entropy on soft labels plus `weight`·|E[value] − target|/scale.

    Cross-entropy alone leaves probability on a distant harmonic unpunished beyond its log
    term; the runtime reports the expectation, so its error is trained directly as well.
    """
    values = ops.convert_to_tensor(np.asarray(classes, np.float32))

    def loss(y_true, logits):
        ce = keras.losses.categorical_crossentropy(y_true, logits, from_logits=True)
        p = ops.softmax(logits, axis=-1)
        err = ops.abs(ops.sum(p * values, axis=-1) - ops.sum(y_true * values, axis=-1))
        return ce + weight * err / scale

    return loss


def expectation_mae(classes: np.ndarray):
    """Metric: mean |E[value] − target| in the classes' unit."""
    values = ops.convert_to_tensor(np.asarray(classes, np.float32))

    def mae(y_true, logits):
        p = ops.softmax(logits, axis=-1)
        return ops.abs(ops.sum(p * values, axis=-1) - ops.sum(y_true * values, axis=-1))

    mae.__name__ = "mae"
    return mae
