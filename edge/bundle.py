"""Model bundles: `<name>.tflite` + `<name>.json` manifest.

The manifest says everything the runtime needs to feed the model exactly as it was trained
(channels, rate, window, hop, filter band, feature set) and to read its output, plus the
sha256 of the .tflite so an altered or swapped file is refused. Training writes it with
`Manifest.write`; the runtime reads it with `load_manifest`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.features import FEATURES

BUNDLE_FORMAT = "wearable-model-bundle/1"
OUTPUT_KINDS = ("affine", "expectation")
# Model outputs that alarm rules read, by task and meaning: a bundle of that task must declare
# each in output_params["names"] (checked at load, so a retrained model that renames or drops
# one is refused instead of silently disabling its alarm), and rules look them up here.
RULE_OUTPUTS: dict[str, dict[str, str]] = {
    "glucose_forecast": {"urgent_low_risk": "urgent_low_risk"},  # glucose_urgent_low_soon
}


def rule_output(task: str, meaning: str) -> str:
    """The output name an alarm rule reads (RULE_OUTPUTS)."""
    return RULE_OUTPUTS[task][meaning]


@dataclass(frozen=True)
class Preprocessing:
    """The manifest fields that say how raw samples become one model input. Training cuts its
    windows with it and the runtime reads it back from the manifest: one description."""

    channels: tuple[str, ...]
    sample_rate_hz: float
    window_s: float
    hop_s: float
    bandpass_hz: tuple[float, ...]  # (low, high) Hz; () for no filter (e.g. CGM readings)
    filter_order: int
    features: str
    feature_params: dict[str, Any] = field(default_factory=dict)
    # The slowest sensor the model takes, upsampled to sample_rate_hz (edge.signal: never
    # below 16 Hz); None: sample_rate_hz, no upsampling. A model whose features time events
    # finer than a slow sensor resolves (BP: pulse arrival) keeps it at its own rate.
    min_sensor_rate_hz: float | None = None

    @property
    def window_samples(self) -> int:
        return round(self.window_s * self.sample_rate_hz)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * self.sample_rate_hz)

    def manifest_fields(self) -> dict[str, Any]:
        optional = ({} if self.min_sensor_rate_hz is None
                    else {"min_sensor_rate_hz": self.min_sensor_rate_hz})
        return optional | {
            "channels": list(self.channels),
            "sample_rate_hz": self.sample_rate_hz,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "bandpass_hz": list(self.bandpass_hz),
            "filter_order": self.filter_order,
            "features": self.features,
            "feature_params": dict(self.feature_params),
        }


@dataclass(frozen=True)
class TensorSpec:
    shape: list[int]
    dtype: str  # "int8" for the shipped full-integer models
    scale: float
    zero_point: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    task: str  # e.g. "heart_rate"
    unit: str  # unit of the estimate, e.g. "bpm"
    channels: list[str]  # wire channel names the model consumes, e.g. ["PPG", "ACCEL"]
    sample_rate_hz: float  # model rate; sensor streams are band-passed and decimated to it
    window_s: float
    hop_s: float
    bandpass_hz: list[float]
    filter_order: int
    features: str  # a name in edge.features.FEATURES
    feature_params: dict[str, Any]
    input: TensorSpec
    output: TensorSpec
    # "affine": estimate_i = scale_i * y_i + offset_i (scale/offset a number or a list, one
    # per output); "expectation": estimate = sum(p_i * values_i). output_params["names"]
    # names the estimates of a model with several outputs (e.g. ["systolic", "diastolic"]).
    output_kind: str
    output_params: dict[str, Any]
    sha256: str
    tflite: str  # file name of the model beside the manifest
    metrics: dict[str, Any] = field(default_factory=dict)  # {"float": {...}, "int8": {...}}
    training: dict[str, Any] = field(default_factory=dict)  # seed, data, dates, versions
    # What the training data covered, for the runtime's plausibility checks (BP):
    # "input_low"/"input_high" per feature, "output_low"/"output_high" per output. Empty: none.
    plausibility: dict[str, Any] = field(default_factory=dict)
    # Not validated on real people well enough to act on: the vitals carry "experimental".
    experimental: bool = False
    format: str = BUNDLE_FORMAT
    min_sensor_rate_hz: float | None = None  # Preprocessing.min_sensor_rate_hz

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing(tuple(self.channels), self.sample_rate_hz, self.window_s,
                             self.hop_s, tuple(self.bandpass_hz),
                             self.filter_order, self.features, dict(self.feature_params),
                             self.min_sensor_rate_hz)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["min_sensor_rate_hz"] is None:  # the default: manifests without it stay as-is
            del data["min_sensor_rate_hz"]
        return data

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_from_dict(data: dict[str, Any], source: str = "manifest") -> Manifest:
    if data.get("format") != BUNDLE_FORMAT:
        raise ModelError(
            f"{source}: format {data.get('format')!r} is not {BUNDLE_FORMAT!r}; "
            "retrain or re-export the model with this version of wearable-train"
        )
    try:
        values = dict(data)
        values["input"] = TensorSpec(**values["input"])
        values["output"] = TensorSpec(**values["output"])
        manifest = Manifest(**values)
    except (KeyError, TypeError) as err:
        raise ModelError(f"{source}: invalid manifest ({err}); re-export the bundle") from None
    if manifest.features not in FEATURES:
        raise ModelError(
            f"{source}: unknown feature set {manifest.features!r}; this runtime knows "
            f"{', '.join(sorted(FEATURES))}: upgrade the runtime or retrain"
        )
    low = manifest.min_sensor_rate_hz
    if low is not None and (not isinstance(low, int | float) or not low > 0):
        raise ModelError(f"{source}: min_sensor_rate_hz {low!r} must be a positive rate in "
                         "Hz (or absent: the model rate); re-export the bundle")
    if manifest.output_kind not in OUTPUT_KINDS:
        raise ModelError(f"{source}: unknown output kind {manifest.output_kind!r}; "
                         f"valid: {', '.join(OUTPUT_KINDS)}")
    _check_outputs(manifest, source)
    return manifest


def _check_outputs(manifest: Manifest, source: str) -> None:
    names = manifest.output_params.get("names") or [manifest.task]
    size = 2 if manifest.output_kind == "expectation" else math.prod(manifest.output.shape)
    if "names" in manifest.output_params and (
            not isinstance(names, list) or len(names) != size
            or not all(isinstance(n, str) for n in names)):
        raise ModelError(f"{source}: output_params.names {names!r} does not name the model's "
                         f"{size} output(s); re-export the bundle")
    missing = [n for n in RULE_OUTPUTS.get(manifest.task, {}).values() if n not in names]
    if missing:
        raise ModelError(f"{source}: a {manifest.task} model must declare the output(s) "
                         f"{', '.join(missing)} in output_params.names (an alarm rule reads "
                         f"them; it declares {', '.join(map(str, names))}); re-export or "
                         "retrain the bundle with this version of wearable-train")


def load_manifest(path: Path) -> Manifest:
    """Read `<name>.json` and check that the .tflite beside it is the one it describes."""
    path = Path(path)
    if path.suffix == ".tflite":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise ModelError(f"model manifest {path} not found; check models_dir in the config "
                         "or run 'make models'")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ModelError(f"model manifest {path} is not valid JSON ({err})") from None
    manifest = manifest_from_dict(data, str(path))
    model_path = path.parent / manifest.tflite
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} named by {path} not found")
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise ModelError(
            f"model file {model_path} does not match its manifest (sha256 {actual[:12]}… "
            f"expected {manifest.sha256[:12]}…): it was altered or replaced; restore the "
            "bundle from models/ or retrain"
        )
    return manifest
