"""`wearable-train`: train, quantise, evaluate and bundle the models the runtime ships."""

from __future__ import annotations

import argparse
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
# `wearable-train evaluate NAME`: a model checked on real data kept outside the repository
# (datasets/ in the shared folder; never needed by `make test`).
EVALUATORS: dict[str, str] = {
    "bp": "training.bp_real:evaluate",
}


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
                        f"({ALL} = every model)")
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
    parser.add_argument("--data-only", action="store_true",
                        help="train and validate on the --data recordings alone (at least 3 "
                        "files: train, validation and held-out test), no simulated training "
                        "subjects")
    return parser


def build_evaluate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wearable-train evaluate",
        description="Evaluate a model's task on real, labelled data (not needed by make "
        "test): bp = what finger PPG morphology says about BP between people, PPG-BP "
        "(Liang et al. 2018), person-level cross-validation beside simple peers.",
        epilog="Example: wearable-train evaluate bp --out models")
    parser.add_argument("model", help=f"what to evaluate: {', '.join(EVALUATORS)}")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset folder (default: ../shared/datasets/<set> beside "
                        "the repository)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write <model>_real_data.json and .md here (e.g. models)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds (default: 0)")
    return parser


def evaluate_main(argv: Sequence[str]) -> int:
    args = build_evaluate_parser().parse_args(argv)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", flush=True)

    try:
        if args.model not in EVALUATORS:
            raise TrainingError(f"no real-data evaluation for {args.model!r}; valid: "
                                f"{', '.join(EVALUATORS)}")
        import importlib

        module, func = EVALUATORS[args.model].split(":")
        getattr(importlib.import_module(module), func)(args.data, args.out, args.seed, log)
    except WearableError as err:
        print(f"wearable-train: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"wearable-train: error: {err}; check --data and --out", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["evaluate"]:
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
            extra = {"recordings": prepared[name]} if name in prepared else {}
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
