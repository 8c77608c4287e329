"""Model execution: the interpreter layer and a bundle wrapped as a callable estimator.

Interpreter order (design decision): ai_edge_litert (maintained, numpy 2), then tflite_runtime
(numpy < 2 only), then tensorflow.lite as a last resort. TensorFlow is imported lazily and only
if neither small runtime is installed: on a Pi it costs hundreds of MB and seconds of start-up.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import Manifest, load_manifest
from edge.errors import InterpreterError, ModelError

log = logging.getLogger(__name__)

BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)
_DTYPES = {"int8": np.int8, "uint8": np.uint8, "float32": np.float32}


def interpreter_class(preferred: str | None = None) -> tuple[type, str]:
    """The first importable interpreter class and its backend name."""
    names = [name for name, _ in BACKENDS]
    if preferred is not None and preferred not in names:
        raise InterpreterError(
            f"unknown interpreter backend {preferred!r}; valid: {', '.join(names)}")
    errors = []
    for name, module_name in BACKENDS:
        if preferred is not None and name != preferred:
            continue
        try:
            module = importlib.import_module(module_name)
            return module.Interpreter, name
        except ImportError as err:  # numpy-ABI failures of tflite_runtime also land here
            errors.append(f"{name}: {err}")
    raise InterpreterError(
        "no TFLite interpreter could be imported (" + "; ".join(errors) + "); install one: "
        "pip install 'wearable-edge[runtime]' (ai-edge-litert)"
    )


class Model:
    """A verified bundle on an interpreter: features in, estimate in the manifest's unit out."""

    def __init__(self, manifest: Manifest, model_path: Path, backend: str | None = None) -> None:
        self.manifest = manifest
        cls, self.backend = interpreter_class(backend)
        try:
            with _native_stderr_silenced():
                self._interpreter = cls(model_path=str(model_path), num_threads=1)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"model {model_path} cannot be loaded: {err}") from None
        (inp,) = self._interpreter.get_input_details()
        (out,) = self._interpreter.get_output_details()
        self._check(inp, manifest.input, "input", model_path)
        self._check(out, manifest.output, "output", model_path)
        self._in_index, self._out_index = inp["index"], out["index"]
        spec = manifest.input
        self._in_dtype = _DTYPES[spec.dtype]
        info = np.iinfo(self._in_dtype) if spec.dtype != "float32" else None
        self._in_range = (info.min, info.max) if info else None
        self._decode = _output_decoder(manifest)
        # One interpreter, one tensor arena: set-invoke-get must not interleave when several
        # device threads share the model (the interpreter raises or mixes inputs otherwise).
        self._lock = threading.Lock()

    @staticmethod
    def _check(detail: dict[str, Any], spec: Any, what: str, path: Path) -> None:
        scale, zero_point = detail["quantization"]
        actual = (list(detail["shape"]), np.dtype(detail["dtype"]).name)
        if actual != (list(spec.shape), spec.dtype) or (
            spec.dtype != "float32"
            and (not np.isclose(scale, spec.scale, rtol=1e-6) or zero_point != spec.zero_point)
        ):
            raise ModelError(
                f"model {path}: {what} tensor {actual[0]} {actual[1]} (scale {scale:g}, zero "
                f"point {zero_point}) does not match the manifest's {spec.shape} {spec.dtype} "
                f"(scale {spec.scale:g}, zero point {spec.zero_point}); the bundle is "
                "inconsistent: retrain or restore it"
            )

    def quantize(self, features: np.ndarray) -> np.ndarray:
        spec = self.manifest.input
        if self._in_range is None:
            return features.astype(np.float32)[None]
        q = np.round(features / spec.scale + spec.zero_point)
        return np.clip(q, *self._in_range).astype(self._in_dtype)[None]

    def raw(self, features: np.ndarray) -> np.ndarray:
        """Dequantised model output for one window of features (no batch axis)."""
        x = self.quantize(features)
        with self._lock:
            self._interpreter.set_tensor(self._in_index, x)
            self._interpreter.invoke()
            y = self._interpreter.get_tensor(self._out_index)[0]  # a copy, safe after release
        spec = self.manifest.output
        if spec.dtype == "float32":
            return y.astype(np.float64)
        return (y.astype(np.float64) - spec.zero_point) * spec.scale

    def estimates(self, features: np.ndarray) -> np.ndarray:
        """Every output of the model for one window, in the units of the manifest (named by
        its output_params["names"] when there are several)."""
        return self._decode(self.raw(features))

    def predict(self, features: np.ndarray) -> float:
        """The first (for most models, the only) estimate."""
        return float(self.estimates(features)[0])


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The default XNNPACK delegate runs the HR model ~4x faster than the builtin kernels, but
    its C++ code prints an INFO line straight to fd 2 (no environment variable or API turns it
    off). Park fd 2 on /dev/null for the few milliseconds of interpreter set-up; Python errors
    are raised, not printed, so none is hidden."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _output_decoder(manifest: Manifest):
    """Dequantised output -> the model's estimates, one per output (see Manifest)."""
    params, size = manifest.output_params, int(np.prod(manifest.output.shape))
    if manifest.output_kind == "affine":  # estimate_i = scale_i * y_i + offset_i
        scale = np.broadcast_to(np.asarray(params["scale"], dtype=np.float64), (size,))
        offset = np.broadcast_to(np.asarray(params["offset"], dtype=np.float64), (size,))
        return lambda y: y.reshape(-1) * scale + offset
    values = np.asarray(params["values"], dtype=np.float64)
    if values.shape != (size,):
        raise ModelError(f"{manifest.name}: {len(values)} output values for an output of shape "
                         f"{manifest.output.shape}")

    def expectation(p: np.ndarray) -> np.ndarray:
        """[expectation, standard deviation] of the output distribution: the estimate and
        how unsure the model is of it (a two-peaked posterior, e.g. heart vs arm swing, has
        a wide one)."""
        p = np.clip(p.reshape(-1), 0.0, None)
        p = p / max(p.sum(), 1e-9)
        mean = p @ values
        return np.array([mean, np.sqrt(max(p @ (values - mean) ** 2, 0.0))])

    return expectation


def load_model(manifest_path: Path, backend: str | None = None) -> Model:
    manifest = load_manifest(Path(manifest_path))
    model = Model(manifest, Path(manifest_path).with_name(manifest.tflite), backend)
    log.info("loaded model %s %s (sha256 %s…) on %s", manifest.name, manifest.version,
             manifest.sha256[:12], model.backend)
    return model
