"""Sensor and device faults: what goes wrong on a real wearable, scriptable and reproducible.

A fault has a kind, a start time and a duration (seconds of device time from the start of
the recording). Where each kind acts:

- in the signals (`physiology.synthesize`): `detach` (PPG sensor off the skin: a flat
  ambient-light level flagged LEAD_OFF, or a saturated front end flagged SATURATED),
  `lead_off` (ECG electrodes off: flat trace flagged LEAD_OFF), `motion` (a burst of
  vigorous movement in the accelerometer and as artefact in the PPG and ECG), `cgm_gap`
  (CGM warm-up or signal loss: no readings);
- in the frames (`stream.frames`): `drop` (frames lost on the line; seq still advances),
  `reboot` (the device restarts: seq back to 0 with BOOT, the device clock restarts, nothing
  is acquired for `duration_s` while it boots), `drift` (the device clock runs fast by `ppm`);
- in the bytes (`stream.stream`): `corrupt` (one byte of every frame flipped);
- in the writer (`Writer.play`): `disconnect` (the serial line goes away: the writer closes
  the pty/port and opens it again after `duration_s`; frames meanwhile are lost).

On the command line: `--fault KIND@START[:DURATION][,key=value...]`, e.g. `detach@30:10`,
`detach@30:10,mode=saturated`, `drift@0,ppm=500`, `reboot@40`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from device_sim.errors import ScenarioError

# kind -> (default duration in s (inf = to the end), what it does)
FAULT_KINDS: dict[str, tuple[float, str]] = {
    "detach": (10.0, "PPG sensor off the skin: flat (LEAD_OFF) or mode=saturated (SATURATED)"),
    "lead_off": (10.0, "ECG electrodes off: flat trace, LEAD_OFF"),
    "motion": (5.0, "burst of vigorous movement (level= g, default 2)"),
    "drop": (1.0, "frames lost on the serial line"),
    "corrupt": (1.0, "one byte flipped in every frame"),
    "reboot": (2.0, "device restarts: seq reset + BOOT, clock restarts; duration = boot time"),
    "drift": (math.inf, "device clock runs fast by ppm= (default 200; negative = slow)"),
    "disconnect": (5.0, "serial line unplugged: writer closes and reopens the pty/port"),
    "cgm_gap": (1800.0, "CGM warm-up or signal loss: no readings"),
}
DETACH_MODES = ("flat", "saturated")


@dataclass(frozen=True)
class Fault:
    """One fault: `kind` from FAULT_KINDS, active over [start_s, start_s + duration_s)."""

    kind: str
    start_s: float
    duration_s: float | None = None  # None: the kind's default
    mode: str = "flat"  # detach: flat or saturated
    ppm: float = 200.0  # drift
    level: float = 2.0  # motion, g

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ScenarioError(
                f"unknown fault {self.kind!r}; use one of: {', '.join(FAULT_KINDS)}"
            )
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise ScenarioError(f"fault start {self.start_s} s must be zero or positive")
        if self.duration_s is None:
            object.__setattr__(self, "duration_s", FAULT_KINDS[self.kind][0])
        if not (self.duration_s > 0):
            raise ScenarioError(f"fault duration {self.duration_s} s must be positive")
        if self.mode not in DETACH_MODES:
            raise ScenarioError(
                f"unknown detach mode {self.mode!r}; use one of: {', '.join(DETACH_MODES)}"
            )
        if not (math.isfinite(self.ppm) and abs(self.ppm) <= 100_000):
            raise ScenarioError(f"clock drift {self.ppm} ppm is outside +-100000 ppm")
        if not (0 < self.level <= 16):
            raise ScenarioError(f"motion level {self.level} g is outside (0, 16] g")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s

    def overlaps(self, start: float, stop: float) -> bool:
        return self.start_s < stop and start < self.end_s


def parse_fault(spec: str) -> Fault:
    """`KIND@START[:DURATION][,key=value...]` -> Fault; ScenarioError shows the form."""
    usage = (f"fault {spec!r} is not KIND@START[:DURATION][,key=value], e.g. detach@30:10 "
             f"or drift@0,ppm=500; kinds: {', '.join(FAULT_KINDS)}")
    head, *options = spec.split(",")
    kind, at, when = head.partition("@")
    if not at:
        raise ScenarioError(usage)
    start, _, duration = when.partition(":")
    try:
        kwargs: dict[str, object] = {"start_s": float(start)}
        if duration:
            kwargs["duration_s"] = float(duration)
        for option in options:
            key, eq, value = option.partition("=")
            if not eq or key not in ("mode", "ppm", "level"):
                raise ScenarioError(f"{usage}; options are mode=, ppm=, level=")
            kwargs[key] = value if key == "mode" else float(value)
    except ValueError:
        raise ScenarioError(usage) from None
    return Fault(kind.strip(), **kwargs)  # type: ignore[arg-type]


def active_kinds(faults: Iterable[Fault], n_seconds: int) -> list[list[str]]:
    """Per second, the kinds of the faults active during any part of it (ground truth)."""
    faults = list(faults)
    return [sorted({f.kind for f in faults if f.overlaps(s, s + 1)}) for s in range(n_seconds)]


def windows(faults: Iterable[Fault], kind: str) -> list[tuple[float, float]]:
    """(start, end) of every fault of `kind`, in time order."""
    return sorted((f.start_s, f.end_s) for f in faults if f.kind == kind)


def in_windows(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(a <= t < b for a, b in spans)


def corrupt(data: bytes, salt: int) -> bytes:
    """Flip one byte inside the frame (never the delimiter, never to 0x00, which would split
    the frame in two), so each corrupted frame costs the receiver exactly one frame."""
    body = bytearray(data)
    i = 1 + (salt * 7919) % (len(body) - 2)
    mask = 0xAA if body[i] == 0x55 else 0x55
    body[i] ^= mask
    return bytes(body)
