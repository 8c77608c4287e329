"""Encode cost per frame of wire/c on this host, beside the Python encoder on the same frames.

    python wire/c/tools/bench.py            (from the repository root; needs `cc`)

Builds wire/c/tools/ww_bench.c with -O2 for each CRC method (256-entry table, 16-entry table,
bitwise) into a temporary directory, runs it, and times wire.encode_frame / decode_frame on
the same three frames (median of 15 repeats each). A benchmark, not a test: figures depend
on the machine and its load.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from wire import Channel, Frame, decode_frame, encode_frame  # noqa: E402

C_DIR = ROOT / "wire" / "c"
METHODS = {2: "table256", 1: "table16", 0: "bitwise"}


def python_frames() -> dict[str, Frame]:
    """The frames ww_bench.c encodes, built the same way."""
    i = np.arange(512)
    ppg = (100000 + (i * 7919) % 4000).astype("<i4")[:, None]
    j = np.arange(8)
    acc = np.stack([j * 13 - 40, -j * 7, 4096 + j], axis=1).astype("<i2")
    return {
        "ppg16": Frame(1, 1234, 19_250_000, Channel.PPG, 64.0, ppg[:16]),
        "accel8": Frame(1, 1234, 19_250_000, Channel.ACCEL, 32.0, acc, scale=1 / 4096),
        "max2048": Frame(1, 1234, 19_250_000, Channel.PPG, 64.0, ppg),
    }


def median_ns(fn: Callable[[], object], iterations: int) -> float:
    runs = []
    for _ in range(15):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            fn()
        runs.append((time.perf_counter_ns() - start) / iterations)
    return statistics.median(runs)


def main() -> int:
    cc = shutil.which("cc")
    if cc is None:
        print("bench.py: error: no C compiler (cc) on PATH; install gcc or clang", file=sys.stderr)
        return 2
    results: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method, name in METHODS.items():
            exe = Path(tmp) / f"ww_bench_{name}"
            subprocess.run([cc, "-std=c99", "-O2", f"-DWW_CRC32_METHOD={method}", f"-I{C_DIR}",
                            str(C_DIR / "wearable_wire.c"), str(C_DIR / "tools" / "ww_bench.c"),
                            "-o", str(exe)], check=True)
            for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                       text=True).stdout.splitlines():
                kind, size, enc, dec = line.split()
                results.setdefault(kind, {"bytes": size})[f"c_{name}"] = f"{enc} / {dec}"
    for kind, frame in python_frames().items():
        encoded = encode_frame(frame)
        assert str(len(encoded)) == results[kind]["bytes"], "bench frames differ from C's"
        n = 2000 if kind != "max2048" else 200
        enc_ns = median_ns(partial(encode_frame, frame), n)
        dec_ns = median_ns(partial(decode_frame, encoded[:-1]), n)
        results[kind]["python"] = f"{enc_ns:.0f} / {dec_ns:.0f}"
    columns = ["bytes", *(f"c_{n}" for n in METHODS.values()), "python"]
    print("encode / decode, ns per frame (median of 15 runs)")
    print(f"{'frame':<8} " + " ".join(f"{c:>16}" for c in columns))
    for kind, row in results.items():
        print(f"{kind:<8} " + " ".join(f"{row[c]:>16}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
