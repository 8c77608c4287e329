"""wire/c, the wire protocol in C99, against the Python reference: the shipped vectors byte
for byte, a seeded random sweep of frames byte-equal to wire.encode_frame, a damaged stream
decoded exactly as wire.Decoder does, the example firmware loop, and a C-encoded stream
through a real pty into `python -m edge run` with a private mosquitto.

Compiled with the system C compiler (`cc`, strict C99, warnings are errors) into a temporary
directory; skipped with one line when there is none (CI has gcc)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import tty
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from e2e import ROOT, edge_config, validate

import wire
from wire import Channel, Decoder, Flag, Frame, ProtocolError, SampleType, encode_frame
from wire.protocol import MAX_ENCODED, MAX_PAYLOAD

C_DIR = ROOT / "wire" / "c"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
VECTORS = json.loads((Path(wire.__file__).parent / "vectors.json").read_text())
DTYPES = {SampleType.INT16: np.dtype("<i2"), SampleType.INT32: np.dtype("<i4"),
          SampleType.FLOAT32: np.dtype("<f4")}


def _compiler() -> list[str]:
    """$CC (e.g. "ccache gcc") or cc."""
    cc = shlex.split(os.environ.get("CC", "")) or ([found] if (found := shutil.which("cc")) else [])
    if not cc:
        pytest.skip("no C compiler (cc) on PATH: install gcc or clang to test wire/c")
    return cc


def compile_c(out: Path, *sources: Path, flags: tuple[str, ...] = (), libs: tuple[str, ...] = (),
              ) -> Path:
    """Compile and link `sources` into the executable `out`; the compiler's output on failure."""
    cmd = [*_compiler(), *CFLAGS, *flags, f"-I{C_DIR}", *map(str, sources), "-o", str(out), *libs]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, f"{' '.join(cmd)}\n{built.stderr}"
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wire_c")


@pytest.fixture(scope="module")
def ww_tool(build: Path) -> Path:
    return compile_c(build / "ww_tool", C_DIR / "wearable_wire.c", C_DIR / "tools" / "ww_tool.c")


@pytest.fixture(scope="module")
def host_stream(build: Path) -> Path:
    return compile_c(build / "host_stream", C_DIR / "wearable_wire.c",
                     C_DIR / "examples" / "host_stream.c", libs=("-lm",))


# ---- the ww_tool text protocol (see wire/c/tools/ww_tool.c) -----------------------------

def _bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


def spec_line(frame: Frame) -> str:
    """A frame as one `ww_tool encode` input line."""
    samples = np.asarray(frame.samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.dtype == np.float32:
        values = [f"{v:x}" for v in samples.ravel().view("<u4")]
    else:
        values = [str(int(v)) for v in samples.ravel()]
    return " ".join([str(int(frame.channel)), str(int(frame.flags)), str(int(frame.sample_type)),
                     str(samples.shape[1]), str(frame.device_id), str(frame.seq),
                     str(frame.timestamp_us), f"{_bits(frame.sample_rate_hz):x}",
                     f"{_bits(frame.scale):x}", str(samples.shape[0]), *values])


def c_encode(tool: Path, frames: list[Frame]) -> list[str]:
    run = subprocess.run([str(tool), "encode"], input="".join(spec_line(f) + "\n" for f in frames),
                         capture_output=True, text=True, check=True)
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert len(lines) == len(frames)
    return lines


# The `ww_tool decode` stats line: wire.DecoderStats' counters, then seq_untracked.
STATS = ("bytes_in", "frames_ok", "bytes_discarded", "crc_errors", "malformed", "seq_gaps",
         "frames_lost", "duplicates", "device_resets", "seq_untracked")


@dataclass
class CDecoded:
    frames: list[tuple]
    stats: dict[str, int]
    stderr: str


def c_decode(tool: Path, data: bytes, chunk: int = 4096) -> CDecoded:
    run = subprocess.run([str(tool), "decode", str(chunk)], input=data, capture_output=True,
                         check=True)
    lines = run.stdout.decode().splitlines()
    assert lines and lines[-1].startswith("stats ")
    stats = dict(zip(STATS, map(int, lines[-1].split()[1:]), strict=True))
    frames = []
    for line in lines[:-1]:
        kind, *fields = line.split()
        assert kind == "frame"
        frames.append((*map(int, fields[:7]), int(fields[7], 16), int(fields[8], 16),
                       int(fields[9]), bytes.fromhex(fields[10]) if fields[10] != "-" else b""))
    return CDecoded(frames, stats, run.stderr.decode())


def as_tuple(frame: Frame) -> tuple:
    """A Python-decoded frame in the shape of a `ww_tool decode` line."""
    samples = np.ascontiguousarray(frame.samples)
    return (int(frame.channel), int(frame.flags), int(frame.sample_type), samples.shape[1],
            frame.device_id, frame.seq, frame.timestamp_us, _bits(frame.sample_rate_hz),
            _bits(frame.scale), samples.shape[0], samples.tobytes())


def python_reference(data: bytes) -> tuple[list[tuple], dict[str, int]]:
    """wire.Decoder fed byte by byte (the C decoder works byte by byte, so the same input
    gives the same result whatever the chunking)."""
    decoder, frames = Decoder(), []
    for i in range(len(data)):
        frames += decoder.feed(data[i:i + 1])
    return [as_tuple(f) for f in frames], {**decoder.stats.as_dict(), "seq_untracked": 0}


def vector_frame(vector: dict) -> Frame:
    spec = vector["frame"]
    sample_type = SampleType[spec["sample_type"]]
    return Frame(device_id=spec["device_id"], seq=spec["seq"], timestamp_us=spec["timestamp_us"],
                 channel=Channel[spec["channel"]], sample_rate_hz=spec["sample_rate_hz"],
                 samples=np.array(spec["samples"], dtype=DTYPES[sample_type]),
                 scale=spec["scale"], flags=Flag(spec["flags"]))


# ---- the shipped vectors ----------------------------------------------------------------

@pytest.mark.parametrize("method", [0, 1, 2], ids=["crc-bitwise", "crc-table16", "crc-table256"])
def test_vectors_encode_byte_for_byte_with_every_crc_method(build, method):
    tool = compile_c(build / f"ww_tool_crc{method}", C_DIR / "wearable_wire.c",
                     C_DIR / "tools" / "ww_tool.c", flags=(f"-DWW_CRC32_METHOD={method}",))
    valid = VECTORS["valid"]
    assert c_encode(tool, [vector_frame(v) for v in valid]) == [v["wire_hex"] for v in valid]
    # The decoder's CRC (same method) accepts them all.
    decoded = c_decode(tool, b"".join(bytes.fromhex(v["wire_hex"]) for v in valid))
    assert decoded.stats["frames_ok"] == len(valid)


def test_vectors_decode_to_their_fields_and_invalid_ones_are_rejected_by_class(ww_tool):
    for vector in VECTORS["valid"]:
        decoded = c_decode(ww_tool, bytes.fromhex(vector["wire_hex"]))
        assert decoded.frames == [as_tuple(vector_frame(vector))], vector["name"]
        assert decoded.stats["frames_ok"] == 1
    counter = {"crc": "crc_errors", "malformed": "malformed"}
    for vector in VECTORS["invalid"]:
        data = bytes.fromhex(vector["wire_hex"])
        decoded = c_decode(ww_tool, data)
        assert decoded.frames == [], vector["name"]
        assert decoded.stats == {**dict.fromkeys(STATS, 0), "bytes_in": len(data),
                                 "bytes_discarded": len(data), counter[vector["error"]]: 1}, (
            vector["name"])


def test_show_prints_frames_for_people_and_usage_errors_exit_2(ww_tool):
    data = b"".join(bytes.fromhex(v["wire_hex"]) for v in VECTORS["valid"][:3])
    shown = subprocess.run([str(ww_tool), "show"], input=data, capture_output=True, check=True)
    assert shown.stdout.decode().splitlines() == [
        "PPG     device=1 seq=0 t=0.000000 s rate=64 Hz scale=1 samples=4x1 flags=BOOT "
        "values=100000,100250,-5,0",
        "ACCEL   device=513 seq=41 t=1.250000 s rate=32 Hz scale=0.000244141 samples=2x3 "
        "flags=- values=0,0,1,-0.00292969,0.0732422,0.998535",
        "ECG     device=2 seq=7 t=2.000000 s rate=250 Hz scale=1 samples=3x1 flags=LEAD_OFF "
        "values=0,0.5,-0.25",
        f"bytes_in={len(data)} frames_ok=3 bytes_discarded=0 crc_errors=0 malformed=0 "
        "seq_gaps=0 frames_lost=0 duplicates=0 device_resets=0"]
    for args in (["bogus"], ["decode", "0"], []):
        refused = subprocess.run([str(ww_tool), *args], capture_output=True, text=True)
        assert refused.returncode == 2 and refused.stdout == ""
        assert len(refused.stderr.splitlines()) == 1, refused.stderr


# ---- a random sweep: C frames byte-equal to Python's ------------------------------------

RATES = (0.0033333333333333335, 1 / 60, 25.0, 32.0, 50.0, 64.0, 100.0, 125.0, 250.0, 500.0)


def random_frame(rng: np.random.Generator) -> Frame:
    sample_type = SampleType(int(rng.integers(1, 4)))
    dtype = DTYPES[sample_type]
    axes = int(rng.integers(1, 4))
    max_n = MAX_PAYLOAD // (axes * dtype.itemsize)
    # Mostly small blocks as a wearable sends them; sometimes up to the 2048-byte limit.
    n = int(rng.integers(0, 40)) if rng.random() < 0.7 else int(rng.integers(0, max_n + 1))
    raw = rng.integers(0, 256, size=n * axes * dtype.itemsize, dtype=np.uint8)
    style = rng.random()
    if style < 0.15:
        raw[:] = 0  # long zero runs: one COBS block per byte
    elif style < 0.45:
        raw[raw == 0] = 1  # no zeros: 254-byte COBS blocks
    samples = raw.view(dtype).reshape(n, axes).copy()
    if sample_type is SampleType.FLOAT32:  # any finite or infinite value; NaN bits may not
        samples[np.isnan(samples)] = np.float32(np.inf)  # survive a float register
    rate = float(np.float32(RATES[int(rng.integers(len(RATES)))] if rng.random() < 0.6
                            else rng.uniform(1e-3, 1e4)))
    scale = float(np.float32(rng.choice([1.0, 1 / 4096, 1e-3, 0.004]) if rng.random() < 0.5
                             else rng.uniform(-1e3, 1e3)))
    return Frame(device_id=int(rng.integers(0, 1 << 16)),
                 seq=int(rng.choice([0, 1, (1 << 32) - 1, int(rng.integers(0, 1 << 32))])),
                 timestamp_us=int(rng.integers(0, 1 << 64, dtype=np.uint64)),
                 channel=Channel(int(rng.integers(1, 6))), sample_rate_hz=rate,
                 samples=samples, scale=scale, flags=Flag(int(rng.integers(0, 8))))


def canonical_tail_frames(rng: np.random.Generator, count: int) -> list[Frame]:
    """Frames whose body ends in a zero-free run of exactly k x 254 bytes: canonical COBS
    sends no trailing empty block there (the easiest place for an encoder to differ)."""
    found: list[Frame] = []
    while len(found) < count:
        frame = random_frame(rng)
        body = encode_frame(frame)
        raw = wire.cobs.decode(body[:-1])
        tail = len(raw) - (raw.rfind(b"\x00") + 1)
        if tail and tail % 254 == 0:
            found.append(frame)
    return found


def test_random_sweep_c_frames_are_byte_equal_to_python(ww_tool):
    rng = np.random.default_rng(20261130)
    frames = [random_frame(rng) for _ in range(3000)] + canonical_tail_frames(rng, 5)
    expected = [encode_frame(f).hex() for f in frames]
    assert c_encode(ww_tool, frames) == expected
    # The sweep reached what it is for: 254-byte COBS blocks (more than the one code byte of
    # overhead), maximal frames, empty frames.
    raw_lengths = [29 + f.samples.nbytes + 4 for f in frames]
    overheads = [len(e) // 2 - 1 - raw for e, raw in zip(expected, raw_lengths, strict=True)]
    assert sum(overhead > 1 for overhead in overheads) > 100
    assert max(len(e) // 2 for e in expected) >= MAX_ENCODED - 10
    assert any(f.samples.shape[0] == 0 for f in frames)
    # And the C decoder gives back every frame exactly (one device id each, so that no frame
    # is a repeat of another's sequence number).
    distinct = [Frame(i, f.seq, f.timestamp_us, f.channel, f.sample_rate_hz, f.samples, f.scale,
                      f.flags) for i, f in enumerate(frames)]
    decoded = c_decode(ww_tool, b"".join(encode_frame(f) for f in distinct))
    assert decoded.frames == [as_tuple(f) for f in distinct]
    assert decoded.stats["frames_ok"] == len(frames) and decoded.stats["duplicates"] == 0


def test_encoder_refuses_what_the_protocol_forbids(ww_tool, build):
    ok = Frame(device_id=1, seq=0, timestamp_us=0, channel=Channel.PPG, sample_rate_hz=64.0,
               samples=np.zeros((512, 1), dtype="<i4"))
    line = spec_line(ok).split()
    too_big = Frame(device_id=1, seq=0, timestamp_us=0, channel=Channel.PPG, sample_rate_hz=64.0,
                    samples=np.zeros((513, 1), dtype="<i4"))
    with pytest.raises(ProtocolError):
        encode_frame(too_big)

    def variant(index: int, value: str) -> str:
        fields = list(line)
        fields[index] = value
        return " ".join(fields) + "\n"

    cases = [" ".join(line) + "\n", spec_line(too_big) + "\n",
             variant(1, "8"),   # flag bit 3: reserved, must be 0
             variant(0, "0"),   # channel 0
             variant(0, "6"),   # no such channel in v1: a receiver would drop the frame
             variant(2, "4")]   # sample type 4
    run = subprocess.run([str(ww_tool), "encode"], input="".join(cases), capture_output=True,
                         text=True, check=True)
    assert run.stdout.splitlines() == [encode_frame(ok).hex(), "error -2", "error -1",
                                       "error -1", "error -1", "error -1"]
    # Output buffers: exactly the frame's length suffices, one byte less is refused and
    # nothing is written past the buffer (wire/c/tools/check_buffers.c).
    checker = compile_c(build / "check_buffers", C_DIR / "wearable_wire.c",
                        C_DIR / "tools" / "check_buffers.c")
    checked = subprocess.run([str(checker)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.split()[-1] == "ok"


# ---- the decoder on a damaged stream: the same frames and counters as wire.Decoder ------

def damaged_stream(rng: np.random.Generator) -> tuple[bytes, int, int]:
    """Frames of 3 devices (15 device/channel pairs: within WW_SEQ_SLOTS) with every kind of
    damage a serial line does, and the sequence events a wearable causes (repeats, late
    frames, resets, gaps). Returns the bytes, the frames sent, and how many of them arrive
    intact right after a delimiter (what a decoder without tail recovery would find)."""
    seqs: dict[tuple[int, int], int] = {}
    sent_frames: list[bytes] = []
    chunks = [b"\x00"]  # a sender may start with a delimiter
    clean, after_delimiter = 0, True
    for _ in range(500):
        frame = random_frame(rng)
        key = (frame.device_id % 3, int(frame.channel))
        event = rng.random()
        if event < 0.03 and sent_frames:  # the same frame twice, or an old one late
            chunks.append(sent_frames[-1] if event < 0.015 else
                          sent_frames[int(rng.integers(len(sent_frames)))])
        flags = frame.flags & ~Flag.BOOT
        if event < 0.06 and key in seqs:  # lost frames
            seqs[key] += int(rng.integers(1, 5))
        elif event < 0.08:  # the device restarted
            seqs[key], flags = 0, flags | Flag.BOOT
        seq = seqs.get(key, 0)
        seqs[key] = seq + 1
        data = bytearray(encode_frame(Frame(key[0], seq, frame.timestamp_us, frame.channel,
                                            frame.sample_rate_hz, frame.samples, frame.scale,
                                            flags)))
        sent_frames.append(bytes(data))
        intact, next_after_delimiter = True, True
        damage = rng.random()
        if damage < 0.08:  # bit flip
            pos = int(rng.integers(len(data) - 1))
            data[pos] ^= 1 << int(rng.integers(8))
            intact = False
        elif damage < 0.14:  # cable pull: truncated, delimiter lost, next frame follows
            data = data[: int(rng.integers(1, len(data) - 1))]
            intact = next_after_delimiter = False
        elif damage < 0.20:  # a dropped byte
            del data[int(rng.integers(len(data) - 1))]
            intact = False
        elif damage < 0.26:  # line noise before the frame, no delimiter between
            data[:0] = rng.integers(1, 256, size=int(rng.integers(1, 60)), dtype=np.uint8).tobytes()
            intact = False
        elif damage < 0.30:  # noise with zeros in it
            noise = rng.integers(0, 256, size=int(rng.integers(1, 80)), dtype=np.uint8).tobytes()
            chunks.append(noise)
            intact = noise.endswith(b"\x00")
        elif damage < 0.32:  # a long burst with no delimiter: more than any frame
            chunks.append(rng.integers(1, 256, size=MAX_ENCODED + int(rng.integers(1, 3000)),
                                       dtype=np.uint8).tobytes())
            intact = False
        elif damage < 0.35:  # extra delimiters
            chunks.append(b"\x00" * int(rng.integers(1, 4)))
        clean += intact and after_delimiter
        after_delimiter = next_after_delimiter
        chunks.append(bytes(data))
    return b"".join(chunks), len(sent_frames), clean


def test_decoder_matches_python_on_a_damaged_stream_in_any_chunking(ww_tool):
    data, sent, clean = damaged_stream(np.random.default_rng(7))
    frames, stats = python_reference(data)
    # The damage is real: every counter moved, and frames were recovered from the tail of a
    # damaged chunk (more than the frames that arrived intact after a delimiter).
    assert all(stats[key] > 3 for key in STATS if key not in ("seq_untracked",)), stats
    assert clean < stats["frames_ok"] < sent
    for chunk in (1, 7, 4096):
        decoded = c_decode(ww_tool, data, chunk)
        assert decoded.stats == stats, chunk
        assert decoded.frames == frames, chunk


def test_pairs_beyond_the_sequence_table_are_delivered_unchecked(build):
    tool = compile_c(build / "ww_tool_1slot", C_DIR / "wearable_wire.c",
                     C_DIR / "tools" / "ww_tool.c", flags=("-DWW_SEQ_SLOTS=1",))
    stream = b""
    for seq in (0, 1, 1, 3):  # a repeat and a gap on each channel
        for channel in (Channel.PPG, Channel.ACCEL):
            stream += encode_frame(Frame(1, seq, seq * 250_000, channel, 32.0,
                                         np.zeros((8, 1), dtype="<i4")))
    decoded = c_decode(tool, stream)
    # PPG (the first pair) takes the one slot: its repeat is dropped, its gap counted.
    assert [(f[0], f[5]) for f in decoded.frames] == [(1, 0), (2, 0), (1, 1), (2, 1), (2, 1),
                                                      (1, 3), (2, 3)]
    assert {k: decoded.stats[k] for k in ("frames_ok", "duplicates", "seq_gaps", "frames_lost",
                                          "seq_untracked")} == {
        "frames_ok": 8, "duplicates": 1, "seq_gaps": 1, "frames_lost": 1, "seq_untracked": 4}


def test_decoder_matches_python_on_a_simulated_wearable_with_line_faults(ww_tool, tmp_path):
    """The simulator's own stream, with the faults it injects on the line (corrupt bytes,
    dropped frames, a reboot, a detached sensor), decodes in C as in wire.Decoder."""
    recording = tmp_path / "sim.bin"
    subprocess.run([sys.executable, "-m", "device_sim", "run", "--scenario", "tachycardia",
                    "--seed", "1", "--speed", "0", "--out", str(recording),
                    "--fault", "corrupt@10", "--fault", "drop@20", "--fault", "reboot@30",
                    "--fault", "detach@40"], check=True, cwd=ROOT, capture_output=True)
    data = recording.read_bytes()
    frames, stats = python_reference(data)
    assert stats["crc_errors"] + stats["malformed"] > 0 and stats["frames_lost"] > 0
    assert stats["device_resets"] == 2  # PPG and accelerometer restart
    assert any(f[1] & Flag.LEAD_OFF for f in frames)
    decoded = c_decode(ww_tool, data, 4096)
    assert (decoded.frames, decoded.stats) == (frames, stats)


# ---- sanitizers ------------------------------------------------------------------------

def test_under_address_and_undefined_behaviour_sanitizers(build):
    probe = build / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    cmd = [*_compiler(), *SANITIZE, str(probe), "-o", str(build / "probe")]
    if subprocess.run(cmd, capture_output=True).returncode != 0:
        pytest.skip("the C compiler cannot build with -fsanitize=address,undefined")
    tool = compile_c(build / "ww_tool_asan", C_DIR / "wearable_wire.c",
                     C_DIR / "tools" / "ww_tool.c", flags=tuple(SANITIZE))
    rng = np.random.default_rng(99)
    frames = [random_frame(rng) for _ in range(400)] + canonical_tail_frames(rng, 2)
    assert c_encode(tool, frames) == [encode_frame(f).hex() for f in frames]
    data, _, _ = damaged_stream(np.random.default_rng(8))
    expected_frames, expected_stats = python_reference(data)
    decoded = c_decode(tool, data, 1)
    assert decoded.stderr == ""
    assert (decoded.frames, decoded.stats) == (expected_frames, expected_stats)
    checker = compile_c(build / "check_buffers_asan", C_DIR / "wearable_wire.c",
                        C_DIR / "tools" / "check_buffers.c", flags=tuple(SANITIZE))
    checked = subprocess.run([str(checker)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    harness = firmware_harness(build, flags=tuple(SANITIZE), name="firmware_asan")
    run = subprocess.run([str(harness)], capture_output=True, check=True)
    assert run.stderr == b""
    assert len(run.stdout) > 0


# ---- the example firmware loop, with stub sensors ---------------------------------------

HARNESS = r"""
/* Stub board for wire/c/examples/firmware_loop.c with stdout as the serial port. Sensor FIFOs
 * deliver 0-5 samples per read. Default: deterministic test values, a lead-off stretch on the
 * PPG, a clipped stretch on the accelerometer. -DPULSE: a 72 bpm pulse at rest for 60 s. */
#include <math.h>
#include <stdio.h>
#include "examples/firmware_loop.h"
#include "wearable_wire.h"

#ifdef PULSE
#define TOTAL 6000
#else
#define TOTAL 1000
#endif
static unsigned long ppg_i, acc_i, reads;

static size_t burst(size_t max, unsigned long done)
{
    static const size_t pattern[] = {0, 1, 3, 0, 5, 2, 4};
    size_t n = pattern[reads++ % 7];
    if (n > max) n = max;
    if (n > TOTAL - done) n = TOTAL - done;
    return n;
}

static int32_t ppg_value(unsigned long i)
{
#ifdef PULSE
    double phase = fmod(i * 72.0 / 60.0 / PPG_RATE_HZ, 1.0);
    double a = (phase - 0.18) / 0.07, b = (phase - 0.45) / 0.09;
    return (int32_t)(100000.0 + 2000.0 * (exp(-0.5 * a * a) + 0.35 * exp(-0.5 * b * b)));
#else
    return (int32_t)(100000 + (i * 37) % 1000) - (int32_t)(i % 2) * 200000;
#endif
}

size_t board_read_ppg(int32_t *out, size_t max, uint8_t *flags)
{
    size_t i, n = burst(max, ppg_i);
    for (i = 0; i < n; i++, ppg_i++) {
        out[i] = ppg_value(ppg_i);
#ifdef PULSE
        (void)flags;
#else
        if (ppg_i >= 200 && ppg_i < 260) *flags |= WW_FLAG_LEAD_OFF;
#endif
    }
    return n;
}

size_t board_read_accel(int16_t *xyz, size_t max, uint8_t *flags)
{
    size_t i, n = burst(max, acc_i);
    for (i = 0; i < n; i++, acc_i++) {
        xyz[3 * i] = (int16_t)(acc_i % 7);
        xyz[3 * i + 1] = (int16_t)(-(long)(acc_i % 5));
        xyz[3 * i + 2] = (int16_t)(250 + acc_i % 3); /* about 1 g at 4 mg per count */
#ifdef PULSE
        (void)flags;
#else
        if (acc_i >= 500 && acc_i < 510) *flags |= WW_FLAG_SATURATED;
#endif
    }
    return n;
}

void board_serial_write(const uint8_t *data, size_t len)
{
    fwrite(data, 1, len, stdout);
}

int main(void)
{
    wearable_init(7);
    while (ppg_i < TOTAL || acc_i < TOTAL) {
        wearable_poll();
    }
    wearable_poll();
    return 0;
}
"""


def firmware_harness(build: Path, flags: tuple[str, ...] = (), name: str = "firmware") -> Path:
    source = build / f"{name}_harness.c"
    source.write_text(HARNESS)
    return compile_c(build / name, C_DIR / "wearable_wire.c",
                     C_DIR / "examples" / "firmware_loop.c", source, flags=flags, libs=("-lm",))


def test_firmware_loop_sends_valid_frames_with_seq_boot_and_flags(build):
    harness = firmware_harness(build)
    out = subprocess.run([str(harness)], capture_output=True, check=True).stdout
    decoder = Decoder()
    frames = decoder.feed(out)
    assert decoder.stats.frames_ok == len(frames) == 80  # 1000 samples / 25 per block, x 2
    assert decoder.stats.bytes_discarded == 0 and decoder.stats.seq_gaps == 0
    for channel, rate, scale in ((Channel.PPG, 100.0, 1.0),
                                 (Channel.ACCEL, 100.0, float(np.float32(0.004)))):
        mine = [f for f in frames if f.channel is channel]
        assert [f.seq for f in mine] == list(range(40))
        assert [bool(f.flags & Flag.BOOT) for f in mine] == [True] + [False] * 39
        assert {f.device_id for f in mine} == {7}
        assert {(f.sample_rate_hz, f.scale, f.samples.shape[0]) for f in mine} == {
            (rate, scale, 25)}
        assert [f.timestamp_us for f in mine] == [k * 250_000 for k in range(40)]
    i = np.arange(1000)
    ppg = np.concatenate([f.samples[:, 0] for f in frames if f.channel is Channel.PPG])
    np.testing.assert_array_equal(ppg, 100000 + (i * 37) % 1000 - (i % 2) * 200000)
    acc = np.concatenate([f.samples for f in frames if f.channel is Channel.ACCEL])
    np.testing.assert_array_equal(acc, np.stack([i % 7, -(i % 5), 250 + i % 3], axis=1))
    # Flags are per block: samples 200-259 lead off -> PPG blocks 8, 9, 10; 500-509 clipped
    # -> accelerometer block 20.
    lead_off = [f.seq for f in frames if f.channel is Channel.PPG and f.flags & Flag.LEAD_OFF]
    saturated = [f.seq for f in frames if f.channel is Channel.ACCEL and f.flags & Flag.SATURATED]
    assert (lead_off, saturated) == ([8, 9, 10], [20])


# ---- end to end: C-encoded frames -> edge replay, and -> pty -> edge run -> mosquitto -----

HR_BPM = 72.0
TOLERANCE_BPM = 5.0  # the hr model's published tolerance (models/hr.json metrics)


def heart_rates(vitals: list[dict]) -> list[float]:
    return [v["value"] for v in vitals if v["vital"] == "heart_rate" and v["quality"] == "good"]


def test_host_stream_recording_replays_to_its_heart_rate(host_stream, tmp_path):
    recording = tmp_path / "c_stream.bin"
    subprocess.run([str(host_stream), "--seconds", "40", "--hr", str(HR_BPM), "--speed", "0",
                    "--out", str(recording)], check=True)
    replayed = subprocess.run(
        [sys.executable, "-m", "edge", "replay", str(recording), "--models", str(ROOT / "models"),
         "--out", "-"], check=True, capture_output=True, text=True, cwd=ROOT)
    vitals = [m["payload"] for m in map(json.loads, replayed.stdout.splitlines())
              if m["topic"].endswith("/vitals")]
    for payload in vitals:
        validate("vitals", payload)
    rates = heart_rates(vitals)
    # 8 s windows every 2 s over 40 s: (40 - 8) / 2 + 1 estimates, every one usable.
    assert len(rates) == 17
    assert max(abs(r - HR_BPM) for r in rates) <= TOLERANCE_BPM, rates
    assert "0 CRC errors, 0 lost" in replayed.stderr


def test_firmware_loop_frames_at_100_hz_replay_to_heart_rate(build, tmp_path):
    """The example firmware's own rates and scales (100 Hz, 4 mg per count) feed the models."""
    harness = firmware_harness(build, flags=("-DPULSE",), name="firmware_pulse")
    recording = tmp_path / "firmware.bin"
    recording.write_bytes(subprocess.run([str(harness)], capture_output=True, check=True).stdout)
    replayed = subprocess.run(
        [sys.executable, "-m", "edge", "replay", str(recording), "--models", str(ROOT / "models"),
         "--out", "-"], check=True, capture_output=True, text=True, cwd=ROOT)
    vitals = [m["payload"] for m in map(json.loads, replayed.stdout.splitlines())
              if m["topic"].endswith("/vitals")]
    rates = heart_rates(vitals)
    # A window every 2 s from 8 s to 60 s, but perhaps the last: resampling 100 -> 32 Hz
    # needs a little signal past a window's end, and the recording ends at 60 s.
    assert len(rates) >= (60 - 8) // 2
    assert max(abs(r - HR_BPM) for r in rates) <= TOLERANCE_BPM, rates
    assert {v["motion_g"] for v in vitals} != {None}  # the accelerometer was used
    assert "0 CRC errors, 0 lost" in replayed.stderr


def test_host_stream_through_a_pty_into_edge_run_gives_heart_rate_over_mqtt(
        host_stream, broker, mqtt_subscriber, processes, tmp_path):
    master, slave = os.openpty()
    try:
        tty.setraw(slave)  # a serial line: no echo, no byte translated
        config = edge_config(tmp_path, os.ttyname(slave), broker.port)
        sub = mqtt_subscriber("wearable/#", broker=broker)
        processes.start("-m", "edge", "run", "--config", str(config))
        sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                     and m.json().get("devices", {}).get("wrist-1", {}).get("connected"),
                     timeout=60)
        # The runtime has the port open (pyserial flushes input while it opens): stream 8x
        # real time into the pty's other side.
        stream = subprocess.Popen([str(host_stream), "--seconds", "120", "--hr", str(HR_BPM),
                                   "--speed", "8"], stdout=master)
        processes.procs.append(stream)
        vitals = [m.json() for m in sub.wait_for_n(
            lambda m: m.topic == "wearable/ward-7/wrist-1/vitals"
            and m.json()["vital"] == "heart_rate" and m.json()["quality"] == "good", 5,
            timeout=90)]
        for payload in vitals:
            validate("vitals", payload)
        rates = heart_rates(vitals)
        assert max(abs(r - HR_BPM) for r in rates) <= TOLERANCE_BPM, rates
        status = sub.wait_for(lambda m: m.topic == "wearable/ward-7/status"
                              and m.json().get("devices", {}).get("wrist-1", {})
                              .get("frames", {}).get("frames_ok", 0) > 40, timeout=30).json()
        validate("status", status)
        assert status["devices"]["wrist-1"]["frames"]["crc_errors"] == 0
    finally:
        os.close(master)
        os.close(slave)
