"""Wire protocol v1: frame layout, encoder and a streaming, resynchronising decoder.

On the wire:   COBS( header | samples | crc32 ) 0x00
header (29 B, little-endian): version u8, channel u8, flags u8, sample_type u8, axes u8,
    device_id u16, seq u32, timestamp_us u64, sample_rate_hz f32, scale f32, n_samples u16
samples: n_samples x axes values of sample_type, interleaved per sample (x0 y0 z0 x1 ...)
crc32: IEEE 802.3 (zlib.crc32) over header and samples.

Physical value = raw sample * scale, in the channel's unit (see Channel).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

import numpy as np

from wire import cobs
from wire.errors import CrcError, ProtocolError

PROTOCOL_VERSION = 1
DELIMITER = b"\x00"
HEADER = struct.Struct("<BBBBBHIQffH")
CRC = struct.Struct("<I")
MAX_PAYLOAD = 2048  # bytes of samples in one frame; bounds decoder memory
# Worst-case COBS overhead is one byte per 254, plus the code byte.
MAX_ENCODED = HEADER.size + MAX_PAYLOAD + CRC.size + (HEADER.size + MAX_PAYLOAD) // 254 + 2
_SEQ_MOD = 1 << 32


class Channel(IntEnum):
    """Channel type and its physical unit."""

    PPG = 1  # photoplethysmogram, arbitrary units (higher = more blood volume)
    ACCEL = 2  # 3-axis accelerometer, g
    ECG = 3  # electrocardiogram, mV
    CGM = 4  # interstitial glucose, mg/dL
    BP_CUFF = 5  # cuff reading, 2 axes (systolic, diastolic), mmHg


class Flag(IntFlag):
    NONE = 0
    BOOT = 0x01  # first frame after the device (re)started; seq restarts at 0
    LEAD_OFF = 0x02  # ECG electrode or PPG sensor reports no skin contact
    SATURATED = 0x04  # front end clipped during this block


class SampleType(IntEnum):
    INT16 = 1
    INT32 = 2
    FLOAT32 = 3


_DTYPES: dict[SampleType, np.dtype] = {
    SampleType.INT16: np.dtype("<i2"),
    SampleType.INT32: np.dtype("<i4"),
    SampleType.FLOAT32: np.dtype("<f4"),
}
_CHANNELS = {c.value: c for c in Channel}
# Per-frame lookups by the header's plain int: constructing an enum member costs ~1 us each.
_DTYPES_BY_CODE = {t.value: dtype for t, dtype in _DTYPES.items()}
_FLAGS = tuple(Flag(v) for v in range(256))  # flags is a u8: every value, built once
_BOOT = int(Flag.BOOT)


@dataclass(frozen=True)
class Frame:
    """One block of samples from one channel of one device."""

    device_id: int
    seq: int
    timestamp_us: int  # device clock at the first sample, microseconds since boot
    channel: Channel
    sample_rate_hz: float
    samples: np.ndarray  # raw values, shape (n_samples, axes)
    scale: float = 1.0
    flags: Flag = Flag.NONE

    @property
    def values(self) -> np.ndarray:
        """Samples in physical units, float64, shape (n_samples, axes)."""
        return self.samples.astype(np.float64) * self.scale

    @property
    def sample_type(self) -> SampleType:
        for sample_type, dtype in _DTYPES.items():
            if self.samples.dtype == dtype:
                return sample_type
        raise ProtocolError(f"samples dtype {self.samples.dtype} is not int16, int32 or float32")


def encode_frame(frame: Frame) -> bytes:
    """Frame -> bytes on the wire, delimiter included."""
    samples = np.asarray(frame.samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    sample_type = frame.sample_type
    payload = np.ascontiguousarray(samples, dtype=_DTYPES[sample_type]).tobytes()
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"frame payload {len(payload)} B exceeds {MAX_PAYLOAD} B; split it")
    header = HEADER.pack(
        PROTOCOL_VERSION,
        int(frame.channel),
        int(frame.flags),
        int(sample_type),
        samples.shape[1],
        frame.device_id,
        frame.seq % _SEQ_MOD,
        frame.timestamp_us,
        frame.sample_rate_hz,
        frame.scale,
        samples.shape[0],
    )
    body = header + payload
    return cobs.encode(body + CRC.pack(zlib.crc32(body))) + DELIMITER


def decode_frame(encoded: bytes) -> Frame:
    """COBS-encoded frame (without delimiter) -> Frame; ProtocolError says what is wrong."""
    raw = cobs.decode(encoded)
    if len(raw) < HEADER.size + CRC.size:
        raise ProtocolError(f"frame of {len(raw)} B is shorter than header and CRC")
    body, (crc,) = raw[: -CRC.size], CRC.unpack(raw[-CRC.size :])
    if zlib.crc32(body) != crc:
        raise CrcError("CRC mismatch")
    (version, channel, flags, sample_type, axes, device_id, seq, timestamp_us, rate, scale,
     n_samples) = HEADER.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version} is not supported (expected 1)")
    if channel not in _CHANNELS:
        raise ProtocolError(f"unknown channel type {channel}")
    dtype = _DTYPES_BY_CODE.get(sample_type)
    if dtype is None:
        raise ProtocolError(f"unknown sample type {sample_type}")
    if axes == 0 or len(body) - HEADER.size != n_samples * axes * dtype.itemsize:
        raise ProtocolError("sample block length does not match the header")
    if not (rate > 0 and math.isfinite(rate)):
        raise ProtocolError(f"invalid sample rate {rate}")
    samples = np.frombuffer(body, dtype=dtype, offset=HEADER.size).reshape(n_samples, axes)
    return Frame(device_id, seq, timestamp_us, _CHANNELS[channel], float(rate), samples,
                 float(scale), _FLAGS[flags])


@dataclass
class DecoderStats:
    """What the decoder saw; exported on the status topic per port."""

    bytes_in: int = 0
    frames_ok: int = 0
    bytes_discarded: int = 0  # bytes that did not end up in a valid frame
    crc_errors: int = 0
    malformed: int = 0  # bad COBS, header, length or oversize
    seq_gaps: int = 0  # gap events
    frames_lost: int = 0  # frames missing according to sequence numbers
    duplicates: int = 0  # frames repeated or out of order, dropped
    device_resets: int = 0  # sequence restarted (BOOT flag or seq went back to 0)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Decoder:
    """Streaming decoder: feed arbitrary byte chunks, get intact frames in order.

    Never raises on bad input: corrupt or truncated frames are dropped and counted, and
    decoding resumes at the next delimiter. Duplicated frames are dropped; sequence gaps,
    lost frames and device resets are counted per (device, channel).
    """

    stats: DecoderStats = field(default_factory=DecoderStats)
    _pending: bytearray = field(default_factory=bytearray)
    _last_seq: dict[tuple[int, int], int] = field(default_factory=dict)

    def feed(self, data: bytes) -> list[Frame]:
        self.stats.bytes_in += len(data)
        self._pending += data
        if DELIMITER not in data:
            if len(self._pending) > MAX_ENCODED:  # no delimiter in sight: not our protocol
                self.stats.bytes_discarded += len(self._pending)
                self.stats.malformed += 1
                self._pending.clear()
            return []
        *chunks, rest = self._pending.split(DELIMITER)
        self._pending = bytearray(rest)
        frames = []
        for chunk in chunks:
            if not chunk:
                continue
            frame = self._decode(bytes(chunk))
            if frame is not None and self._in_sequence(frame):
                frames.append(frame)
        return frames

    def _decode(self, chunk: bytes) -> Frame | None:
        try:
            if len(chunk) > MAX_ENCODED:
                raise ProtocolError("frame longer than the protocol allows")
            frame = decode_frame(chunk)
        except ProtocolError as err:
            if isinstance(err, CrcError):
                self.stats.crc_errors += 1
            else:
                self.stats.malformed += 1
            recovered, skipped = self._recover_tail(chunk)
            self.stats.bytes_discarded += skipped + (1 if recovered is None else 0)
            if recovered is None:
                return None
            frame = recovered
        self.stats.frames_ok += 1
        return frame

    @staticmethod
    def _recover_tail(chunk: bytes) -> tuple[Frame | None, int]:
        """An intact frame may follow damage with no delimiter between them (a truncated
        frame, line noise before it): try each suffix. CRC-32 makes a false match ~2^-32."""
        for start in range(1, len(chunk) - HEADER.size - CRC.size + 1):
            try:
                return decode_frame(chunk[start:]), start
            except ProtocolError:
                continue
        return None, len(chunk)

    def _in_sequence(self, frame: Frame) -> bool:
        key = (frame.device_id, int(frame.channel))
        last = self._last_seq.get(key)
        self._last_seq[key] = frame.seq
        if last is None:
            return True
        if int(frame.flags) & _BOOT or (frame.seq == 0 and last != _SEQ_MOD - 1):
            self.stats.device_resets += 1
            return True
        delta = (frame.seq - last) % _SEQ_MOD
        if delta == 1:
            return True
        if delta == 0 or delta > _SEQ_MOD // 2:  # repeat or late arrival: already past it
            self._last_seq[key] = last
            self.stats.duplicates += 1
            return False
        self.stats.seq_gaps += 1
        self.stats.frames_lost += delta - 1
        return True
