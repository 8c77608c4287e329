"""`wearable-train`: train, quantise, evaluate and bundle the models the runtime ships."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from training.errors import TrainingError, WearableError

# Each model's trainer: (out_dir, quick, seed, log) -> paths written. Imported lazily so that
# `--help` and argument errors do not wait for TensorFlow.
MODELS: dict[str, str] = {
    "hr": "training.hr:train",
    "glucose": "training.glucose:train",
    "bp": "training.bp:train",
}
ALL = "all"
# `wearable-train evaluate MODEL`: each model's evaluation on real, labelled recordings,
# (args, log) -> exit status. Other models add theirs here.
EVALUATORS: dict[str, str] = {
    "hr": "training.hr_real:evaluate_command",
    "glucose": "training.glucose_real:evaluate_command",
    "bp": "training.bp_real:evaluate_command",
}
EVALUATE = "evaluate"


def _trainer(name: str) -> Callable[..., list[Path]]:
    import importlib

    module, func = MODELS[name].split(":")
    return getattr(importlib.import_module(module), func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-train",
        description="Train a model on simulated subjects, quantise it to full-integer int8, "
        "evaluate float and int8 on held-out subjects and write the bundle "
        "(<name>.tflite + <name>.json manifest) with a Markdown report and plots.",
        epilog="Example: wearable-train hr --out models   (make models = wearable-train all "
        "--out models). Same --seed, same data, same model. Your own device's data: "
        "wearable-train hr --data recordings/ --out mymodels (docs/models.md, 'Training on "
        "your own recordings').",
    )
    parser.add_argument("model", help=f"model to train: {', '.join([*MODELS, ALL])} "
                        f"({ALL} = every model); or '{EVALUATE} MODEL ...' to score a model on "
                        "real recordings (wearable-train evaluate --help)")
    parser.add_argument("--out", type=Path, required=True,
                        help="directory for the bundle; created if missing")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for the simulated data, augmentation and weights "
                        "(default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help="few subjects and epochs (about a minute): for CI and smoke "
                        "tests, not for shipping")
    parser.add_argument("--data", type=Path, nargs="+", metavar="PATH",
                        help="your own recordings: CSV files or WFDB records (.hea), or "
                        "folders of them (docs/recording-csv.md); one file = one subject. "
                        "Labels come from the file: hr from the ECG's R peaks, glucose from "
                        "the glucose column, bp from the sbp/dbp cuff readings. Added to the "
                        "simulated training data; 20%% of the files (at least 1 of 3) are "
                        "held out and scored in the report's 'Your recordings' section")
    parser.add_argument("--real-data", type=Path, metavar="DIR",
                        help="the shared real datasets folder (../shared/datasets/README.md); "
                        "models that train on real recordings read theirs from it (hr: the "
                        "IEEE SP Cup 2015 set in ieee_spc2015/; glucose: the CGM traces in "
                        "cgm/, split by person). make models passes it")
    parser.add_argument("--data-only", action="store_true",
                        help="train and validate on the --data recordings alone (at least 3 "
                        "files: train, validation and held-out test), no simulated training "
                        "subjects")
    return parser


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-train evaluate",
        description="Score a shipped model on real, labelled recordings through the runtime's "
        "own code path, per recording, beside simple peers on the same windows.",
        epilog="Examples: wearable-train evaluate hr --real-data ../shared/datasets ; "
        "wearable-train evaluate hr --data my_recordings/ ; make eval. hr: every reference "
        "window is scored with the value the runtime published for it, whatever its quality; "
        "peers: the PPG spectrum's highest bin and HeartPy's beat detector. bp: what finger "
        "PPG morphology says about BP between people (PPG-BP, person-level cross-validation "
        "beside simple peers).",
    )
    parser.add_argument("model", help=f"model to evaluate: {', '.join(EVALUATORS)}")
    parser.add_argument("--bundle", type=Path, default=None, metavar="MANIFEST",
                        help="the model's manifest (default: models/<model>.json)")
    parser.add_argument("--data", type=Path, nargs="+", metavar="PATH",
                        help="your own recordings: CSV files or WFDB records, or folders of "
                        "them (docs/recording-csv.md); hr needs a ppg and an ecg column (the "
                        "reference is the ECG's heart rate)")
    parser.add_argument("--real-data", type=Path, metavar="DIR",
                        help="the shared datasets folder (or the dataset's own folder): hr "
                        "reads the IEEE SP Cup 2015 training set (ieee_spc2015/), glucose the "
                        "held-out people of the CGM traces (cgm/), bp the PPG-BP set "
                        "(ppg_bp_liang2018/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the real-data card here (e.g. models): bp "
                        "bp_real_data.json and .md; hr (with --real-data and --loso) "
                        "hr_real_data.json and .md: leave-subject-out, the shipped model on "
                        "the same recordings, credible-interval calibration")
    parser.add_argument("--loso", action="store_true",
                        help="with --real-data: leave-subject-out instead of the shipped "
                        "model: a simulation-only stage shared by the folds, then per fold "
                        "the shipped training on the other recordings, the held-out ones "
                        "scored (needs TensorFlow; ~40 min for 12 folds on 2 shared cores)")
    parser.add_argument("--folds", type=int, default=12,
                        help="--loso folds (12 = one per SP Cup recording; fewer groups them)")
    parser.add_argument("--work", type=Path, default=Path("build/loso"),
                        help="--loso: where the fold models are written (default build/loso)")
    parser.add_argument("--quick", action="store_true",
                        help="--loso with few subjects and epochs (smoke test, not figures)")
    parser.add_argument("--seed", type=int, default=0, help="--loso training seed")
    return parser


def evaluate_main(argv: Sequence[str]) -> int:
    import importlib

    args = build_evaluate_parser().parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    try:
        if args.model not in EVALUATORS:
            raise TrainingError(f"no evaluation for model {args.model!r}; valid: "
                                f"{', '.join(EVALUATORS)}")
        if not args.data and not args.real_data:
            raise TrainingError("nothing to evaluate on: give --data PATH ... (your labelled "
                                "recordings) and/or --real-data DIR (e.g. ../shared/datasets)")
        if args.loso and not args.real_data:
            raise TrainingError("--loso retrains on the --real-data recordings; give "
                                "--real-data DIR")
        if not 1 <= args.folds <= 12:
            raise TrainingError(f"--folds {args.folds}: give 1 to 12")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        module, func = EVALUATORS[args.model].split(":")
        return int(getattr(importlib.import_module(module), func)(args, log))
    except WearableError as err:
        print(f"wearable-train evaluate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wearable-train evaluate: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [EVALUATE]:
        return evaluate_main(argv[1:])
    args = build_parser().parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    started = time.monotonic()
    try:
        names = list(MODELS) if args.model == ALL else [args.model]
        if args.model != ALL and args.model not in MODELS:
            raise TrainingError(f"unknown model {args.model!r}; valid: "
                                f"{', '.join([*MODELS, ALL])}")
        if not 0 <= args.seed < 2**32:
            raise TrainingError(f"--seed {args.seed} is out of range; give an integer from 0 "
                                f"to {2**32 - 1}")
        if args.data_only and not args.data:
            raise TrainingError("--data-only needs --data PATH ...: the recordings to train on")
        prepared = {}
        if args.data:
            # Read and label every recording for every model before training anything, so a
            # bad file is reported in seconds, not after the first model.
            from training.recordings import UserData

            user = UserData.load(args.data, only=args.data_only, seed=args.seed)
            log(f"--data: {len(user.files)} recordings")
            prepared = {name: user.prepare(name, log) for name in names}
        from training.bundle import prepare_out_dir

        out = prepare_out_dir(args.out)
        # TensorFlow's C++ start-up chatter would drown the progress lines.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for name in names:
            extra: dict[str, object] = {"recordings": prepared[name]} if name in prepared else {}
            if args.real_data is not None and "real_data" in inspect.signature(
                    _trainer(name)).parameters:
                extra["real_data"] = args.real_data
            for path in _trainer(name)(out, quick=args.quick, seed=args.seed, log=log,
                                       **extra):
                log(f"wrote {path}")
    except WearableError as err:
        print(f"wearable-train: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wearable-train: interrupted; the bundle in progress was not written",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
