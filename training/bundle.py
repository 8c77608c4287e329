"""Writing model bundles atomically: everything is built in a private staging directory
beside the destination and renamed into place only when complete, so a failed or
interrupted run never leaves a partial or mismatched bundle behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edge.bundle import Manifest, TensorSpec
from training.errors import TrainingError


def prepare_out_dir(out: Path) -> Path:
    """Create the output directory and prove it is writable before hours of training."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out} is a file; give a directory for the model bundle")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise TrainingError(f"cannot write to --out {out} ({err.strerror}); choose a "
                            "writable directory") from None
    return out


def tensor_specs(tflite: bytes) -> tuple[TensorSpec, TensorSpec]:
    """The input and output tensor specs of a single-input, single-output flatbuffer."""
    from edge.infer import interpreter_class

    cls, _ = interpreter_class()
    interpreter = cls(model_content=tflite)
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()

    def spec(detail: dict[str, Any]) -> TensorSpec:
        scale, zero_point = detail["quantization"]
        return TensorSpec(shape=[int(d) for d in detail["shape"]],
                          dtype=detail["dtype"].__name__, scale=float(scale),
                          zero_point=int(zero_point))

    return spec(inp), spec(out)


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A temporary directory inside `out`; removed, with whatever is in it, on error."""
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out: Path, manifest: Manifest) -> list[Path]:
    """Move every staged file into `out`, the manifest last: the runtime only finds a bundle
    through its manifest, and the manifest's sha256 refuses any tflite it does not describe."""
    manifest_name = f"{manifest.name}.json"
    manifest.write(stage / manifest_name)
    names = sorted(p.name for p in stage.iterdir() if p.name != manifest_name)
    published = []
    for name in [*names, manifest_name]:
        os.replace(stage / name, out / name)
        published.append(out / name)
    return published
