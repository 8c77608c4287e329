"""Keras model -> full-integer int8 TFLite flatbuffer."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from training.errors import TrainingError


def to_int8_tflite(model: Any, representative: np.ndarray, *, max_samples: int = 500,
                   seed: int = 0) -> bytes:
    """Quantise weights and activations to int8, input and output included.

    `representative` holds training windows (n, *input shape); the converter runs a random
    `max_samples` of them through the float model to calibrate every activation's range, so
    they must look like what the device will see.
    """
    import tensorflow as tf

    if len(representative) == 0:
        raise TrainingError("no representative windows to calibrate the int8 model")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(representative), min(max_samples, len(representative)),
                       replace=False)

    def dataset() -> Iterator[list[np.ndarray]]:
        for i in picks:
            yield [representative[i : i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # The Keras export step prints its SavedModel signature to stdout, and the converter warns
    # that input statistics are missing although int8 input calibration comes from the
    # representative dataset; keep the progress output readable.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        return converter.convert()
