"""A simulation computed chunk by chunk (what `wearable-sim run` streams) is the recording
computed at once, bit for bit, and is the same signal the simulator made before it was
chunked, so the committed models' training data is unchanged. A long simulation never holds
its duration's samples: looked for in every array the simulation and its streams reach."""

from __future__ import annotations

import gc
import hashlib
import itertools
import types

import numpy as np
import pytest

from device_sim import get_scenario, parse_fault, physiology, simulate, stream
from device_sim.physiology import Arteries, simulation
from device_sim.scenarios import CHANNELS, Scenario, Segment
from wire import recordings as shared
from wire.protocol import encode_frame

ALL_FAULTS = ("detach@10:5", "lead_off@20:5", "motion@30:6,level=2",
              "detach@50:3,mode=saturated", "cgm_gap@0:400", "reboot@60:5",
              "drift@0,ppm=500", "drop@70:2", "corrupt@75:1")

# (scenario, seed, duration s or None, keyword arguments, faults) -> digest of signals, truth
# and stream bytes, computed with the simulator before it was chunked (commit aca5d28).
# A change here means every seed's recording changed: the shipped models' training data with
# it. numpy's sin/exp/log differ in the last bit between CPUs (AVX-512 or not, Intel or AMD),
# so the float arrays are hashed as float32: the same digests with and without AVX-512, on
# the pre-chunking simulator and today's. The stream bytes are hashed as they are.
BEFORE_CHUNKING = {
    ("tachycardia", 1, None, (), ()): "0da7e131907cce2b99554d91",
    ("atrial-fibrillation", 2, None, (("channels", ("ppg", "acc", "ecg")),), ()):
        "bf816d3c7ac629f72bb6ed6e",
    ("hypertensive-crisis", 5, None,
     (("channels", ("ppg", "acc", "ecg", "bp")), ("ppg_rate", 100.0), ("ecg_rate", 117.0),
      ("arteries", Arteries(0.8, 1.2))), ()): "704032ac7701f6408981fc66",
    ("normal", 4, 90, (("channels", CHANNELS),), ALL_FAULTS): "fff54aa23ef572016d9b87d7",
    ("exercise", 7, 200, (("ppg_rate", 124.9), ("acc_rate", 25.0), ("noise", 2.0)), ()):
        "a208f82487ac09d6be909f45",
    ("rest", 9, 30, (("noise", 0.0),), ()): "6984e19e20dfd0882d132d52",
}


def _scenario(name: str, duration: float | None) -> Scenario:
    scenario = get_scenario(name)
    return scenario.with_duration(duration) if duration else scenario


def _digest(rec: physiology.Recording, data: bytes) -> str:
    h = hashlib.sha256()
    for a in (rec.ppg, rec.acc, rec.ecg, rec.truth.hr_bpm, rec.truth.resp_rate_bpm,
              rec.truth.beat_times, rec.truth.pat_ms, rec.truth.glucose_mg_dl):
        h.update(b"-" if a is None else np.ascontiguousarray(a, np.float32).tobytes())
    h.update(data)
    return h.hexdigest()[:24]


@pytest.mark.parametrize("case", list(BEFORE_CHUNKING), ids=lambda c: f"{c[0]}-{c[1]}")
def test_same_signals_and_bytes_as_before_chunking(case):
    name, seed, duration, kwargs, faults = case
    rec = simulate(_scenario(name, duration), seed, faults=[parse_fault(f) for f in faults],
                   **dict(kwargs))
    data = b"".join(b for _, b in stream(rec, 3))
    assert _digest(rec, data) == BEFORE_CHUNKING[case]
    # Streamed as a simulation, chunk by chunk: the same bytes.
    lazy = simulation(_scenario(name, duration), seed,
                      faults=[parse_fault(f) for f in faults], **dict(kwargs))
    assert b"".join(b for _, b in stream(lazy, 3)) == data


def _same_recording(a: physiology.Recording, b: physiology.Recording) -> None:
    for name in ("ppg", "acc", "ecg"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.tobytes() == y.tobytes(), name
    assert a.lead_off.keys() == b.lead_off.keys()
    for key in a.lead_off:
        assert np.array_equal(a.lead_off[key], b.lead_off[key])


@pytest.fixture
def small_noise_blocks(monkeypatch):
    """Noise blocks of 40 s with a 10 s fade, so a few minutes cross several block
    boundaries: the chain of blocks that a day uses, at the cost of a short recording."""
    monkeypatch.setattr(physiology, "_BLOCK", 2000)
    monkeypatch.setattr(physiology, "_FADE", 500)


@pytest.mark.parametrize("seed, duration, kwargs", [
    (0, 61, {}),
    (3, 150, {"channels": CHANNELS, "ppg_rate": 117.3, "acc_rate": 25.0, "ecg_rate": 250.0}),
    (8, 97, {"channels": ("ppg", "acc", "ecg"), "noise": 0.0}),
])
@pytest.mark.parametrize("blocks", ["one noise block", "many noise blocks"])
def test_any_chunk_length_gives_the_recording_at_once(seed, duration, kwargs, blocks, request):
    if blocks == "many noise blocks":
        request.getfixturevalue("small_noise_blocks")
    scenario = Scenario.custom([Segment(duration / 3, 70, "rest"),
                                Segment(duration / 3, 120, "walk", rhythm="af"),
                                Segment(duration / 3, 150, "run", rhythm="sinus")])
    faults = [parse_fault(f) for f in ("detach@5:7", "motion@20:5", "lead_off@40:3")]
    whole = simulation(scenario, seed, faults=faults, **kwargs).recording(chunk_s=10_000)
    assert len(whole.ppg) == round(duration * whole.ppg_rate)
    for chunk_s in (1, 7, 60):
        _same_recording(simulation(scenario, seed, faults=faults, **kwargs).recording(chunk_s),
                        whole)


def test_chunks_cover_the_recording_in_order():
    sim = simulation(get_scenario("tachycardia"), 2, ppg_rate=100.0, acc_rate=33.3)
    chunks = list(sim.chunks(30))
    assert [(c.start_s, c.end_s) for c in chunks] == [(0, 30), (30, 60), (60, 70)]
    assert [len(c.ppg) for c in chunks] == [3000, 3000, 1000]
    assert sum(len(c.acc) for c in chunks) == round(70 * 33.3)


def test_a_noise_chain_reads_the_same_in_any_stretches():
    """The real block length (1 h + 5 min fade): read whole or in ragged stretches."""
    n = physiology._BLOCK * 2 + physiology._FADE + 777
    noise = physiology._Noise(np.random.default_rng(5), n, 0.0, 0.3)
    whole = noise[0:n]
    cuts = np.unique(np.r_[0, np.random.default_rng(1).integers(0, n, 40), n])
    again = physiology._Noise(np.random.default_rng(5), n, 0.0, 0.3)
    parts = np.concatenate([again[a:b] for a, b in itertools.pairwise(cuts)])
    assert parts.tobytes() == whole.tobytes()
    # Unit variance on both sides of a block boundary and across the fade.
    for a in (0, physiology._BLOCK - physiology._FADE, physiology._BLOCK):
        assert 0.6 < whole[a:a + physiology._FADE].std() < 1.4


def _arrays_reached(*roots: object) -> list[np.ndarray]:
    """Every numpy array reachable from `roots` through objects, containers and frames of
    generators (what a running stream holds)."""
    seen: set[int] = set()
    found: list[np.ndarray] = []
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType,
                                               str, bytes)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            found.append(obj)
            if obj.base is not None:
                todo.append(obj.base)
            continue
        todo.extend(gc.get_referents(obj))
    return found


def test_a_long_simulation_streams_without_holding_its_duration(small_noise_blocks):
    """20 min streamed (in the default chunks) across many noise blocks: no array reachable
    from the stream while it runs comes near the length of a channel's samples (only the
    per-second truth and per-beat parameters grow with duration, ~100 B/s)."""
    duration, rate = 1200, 64.0
    scenario = get_scenario("normal").with_duration(duration)
    sim = simulation(scenario, 1, ppg_rate=rate, channels=("ppg", "acc", "ecg"))
    n_samples = round(duration * rate)
    largest, sent_s = 0, 0.0
    frames = stream(sim, 1)
    for i, (device_time, _) in enumerate(frames):
        sent_s = device_time
        if i % 2000 == 0:
            largest = max(largest, max(a.size for a in _arrays_reached(sim, frames)))
    assert sent_s > duration - 1
    assert largest < n_samples / 2
    # The check finds a recording's samples when they are held.
    held = simulation(scenario.with_duration(60), 1, ppg_rate=rate).recording()
    assert max(a.size for a in _arrays_reached(held)) >= 60 * rate


def test_pieces_of_any_length_frame_like_the_whole_recording():
    rec = simulate(get_scenario("normal").with_duration(80), 6, channels=CHANNELS,
                   faults=[parse_fault(f) for f in ("reboot@20:3", "drift@0,ppm=800",
                                                    "detach@30:4", "lead_off@50:2")])
    clock = shared.DeviceClock(((0.0, 20.0), (23.0, float("inf"))), ((0.0, 80.0, 800.0),))
    whole = [(t, encode_frame(f)) for t, f in shared.frames(rec, 2, clock=clock)]
    rng = np.random.default_rng(0)

    def pieces() -> list[types.SimpleNamespace]:
        cuts = {k: np.unique(np.r_[0, rng.integers(0, len(getattr(rec, k)), 25),
                                   len(getattr(rec, k))]) for k in ("ppg", "acc", "ecg")}
        return [types.SimpleNamespace(**{
            k: getattr(rec, k)[c[i]:c[i + 1]] if i + 1 < len(c) else getattr(rec, k)[:0]
            for k, c in cuts.items()},
            lead_off={k: v[cuts[k][i]:cuts[k][i + 1]] if i + 1 < len(cuts[k]) else v[:0]
                      for k, v in rec.lead_off.items()})
            for i in range(max(len(c) for c in cuts.values()))]

    cut = [(t, encode_frame(f))
           for t, f in shared.frames(rec, 2, clock=clock, pieces=pieces())]
    assert cut == whole
    assert len(whole) > 2 * 80 * shared.FRAMES_PER_SECOND
