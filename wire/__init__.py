"""Wire protocol v1 shared by the simulator (encoder) and the edge runtime (decoder).

Kept free of any dependency on `edge` or `device_sim` so both may import it; see
docs/protocol.md for the byte layout and wire/vectors.json for the test vectors.
"""

from wire.errors import ProtocolError, WearableError
from wire.protocol import (
    DELIMITER,
    PROTOCOL_VERSION,
    Channel,
    Decoder,
    DecoderStats,
    Flag,
    Frame,
    SampleType,
    decode_frame,
    encode_frame,
)

__all__ = [
    "DELIMITER",
    "PROTOCOL_VERSION",
    "Channel",
    "Decoder",
    "DecoderStats",
    "Flag",
    "Frame",
    "ProtocolError",
    "SampleType",
    "WearableError",
    "decode_frame",
    "encode_frame",
]
