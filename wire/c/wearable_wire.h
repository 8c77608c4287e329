/*
 * wearable_wire: the wearable wire protocol v1 (docs/protocol.md) in C99 for microcontrollers.
 *
 * On the wire:   COBS( header | samples | crc32 ) 0x00
 *
 * - Encoder (firmware): ww_encode() writes one complete frame, delimiter included, into a
 *   buffer the caller provides. It COBS-encodes while it serialises, so no second buffer is
 *   needed: a frame with P bytes of samples needs WW_ENCODED_SIZE(P) bytes of output.
 * - Decoder (host tools, or an MCU that receives frames): a streaming decoder fed byte by byte
 *   or in chunks of any size; it resynchronises at the next 0x00 after damage and, like the
 *   reference decoder (wire/protocol.py), recovers an intact frame that follows damage with
 *   no delimiter between them; it drops duplicates and counts gaps and resets, as wire.Decoder
 *   does. Its state is one struct of fixed size (about 4.4 KB).
 *
 * No malloc, no dependency beyond the C standard library (<stddef.h>, <stdint.h>,
 * <string.h>). Multi-byte fields are written byte by byte, so the code is correct on
 * little- and big-endian CPUs; float32 fields assume IEEE 754 single precision (every MCU
 * with a C99 compiler in practice).
 *
 * CRC-32 implementation, chosen at compile time with -DWW_CRC32_METHOD=N:
 *   2 (default) 256-entry table, 1 KB of const data (flash), fastest;
 *   1           16-entry table, 64 bytes, about 2x slower;
 *   0           bitwise, no table, about 8x slower.
 * All three give identical results (IEEE 802.3, the one in zlib).
 */
#ifndef WEARABLE_WIRE_H
#define WEARABLE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WW_PROTOCOL_VERSION 1u
#define WW_HEADER_SIZE 29u /* bytes, little-endian (docs/protocol.md) */
#define WW_CRC_SIZE 4u
#define WW_MAX_PAYLOAD 2048u /* bytes of samples in one frame */

/* Bytes on the wire for a frame with `payload` bytes of samples, worst case: COBS adds one
 * byte per 254 plus its first code byte; then the 0x00 delimiter. */
#define WW_ENCODED_SIZE(payload)                                                            \
    ((WW_HEADER_SIZE + (payload) + WW_CRC_SIZE) + (WW_HEADER_SIZE + (payload) + WW_CRC_SIZE) / \
     254u + 2u)
/* The largest frame the protocol allows (2091 bytes): size receive buffers with this. */
#define WW_MAX_ENCODED WW_ENCODED_SIZE(WW_MAX_PAYLOAD)

/* Channels (docs/protocol.md); physical value = raw sample x scale, in the channel's unit. */
enum {
    WW_CH_PPG = 1,    /* photoplethysmogram, arbitrary units (higher = more blood) */
    WW_CH_ACCEL = 2,  /* accelerometer, g, 3 axes */
    WW_CH_ECG = 3,    /* electrocardiogram, mV */
    WW_CH_CGM = 4,    /* interstitial glucose, mg/dL */
    WW_CH_BP_CUFF = 5 /* cuff reading, mmHg, 2 axes (systolic, diastolic) */
};

/* Flags (header byte 2). Other bits must be 0: the encoder refuses them. */
enum {
    WW_FLAG_BOOT = 0x01,     /* first frame of this channel after power-up; seq restarts at 0 */
    WW_FLAG_LEAD_OFF = 0x02, /* no skin / electrode contact during this block */
    WW_FLAG_SATURATED = 0x04 /* the front end clipped during this block */
};
#define WW_FLAGS_KNOWN 0x07u

/* Sample types: how each value is stored on the wire. */
enum { WW_INT16 = 1, WW_INT32 = 2, WW_FLOAT32 = 3 };

typedef enum {
    WW_OK = 0,
    WW_ERR_ARGUMENT = -1,   /* a NULL pointer, a channel or type v1 lacks, flag bits, axes 0 */
    WW_ERR_TOO_LARGE = -2,  /* n_samples x axes x size > WW_MAX_PAYLOAD: split the block */
    WW_ERR_BUFFER = -3      /* the output buffer is smaller than the frame */
} ww_status;

/* The header fields a sender chooses (version, lengths and CRC are filled in). */
typedef struct {
    uint8_t channel;      /* WW_CH_* */
    uint8_t flags;        /* WW_FLAG_* ORed */
    uint8_t sample_type;  /* WW_INT16, WW_INT32, WW_FLOAT32 */
    uint8_t axes;         /* values per sample instant: 3 ACCEL, 2 BP_CUFF, else 1 */
    uint16_t device_id;
    uint32_t seq;          /* per (device, channel): +1 per frame, wraps at 2^32 */
    uint64_t timestamp_us; /* device clock at the block's first sample, us since boot */
    float sample_rate_hz;  /* samples per second of this channel */
    float scale;           /* physical value = raw x scale */
    uint16_t n_samples;    /* sample instants in the block */
} ww_header;

/* Bytes of one value of `sample_type` (2 or 4), 0 if the type is unknown. */
size_t ww_sample_size(uint8_t sample_type);

/* Bytes of samples of a frame with this header (n_samples x axes x value size). */
size_t ww_payload_size(const ww_header *header);

/* CRC-32 (IEEE 802.3, zlib's): crc = ww_crc32(0, data, n); continue with the previous value. */
uint32_t ww_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* Encode one frame into out[0..out_cap): COBS(header | samples | crc32) followed by 0x00.
 * `samples` points to n_samples x axes values of the header's type in the CPU's own layout
 * (int16_t[], int32_t[] or float[]), interleaved per instant (x0 y0 z0 x1 y1 z1 ...).
 * On WW_OK *out_len is the frame's length, delimiter included; write exactly those bytes.
 * out_cap >= WW_ENCODED_SIZE(ww_payload_size(header)) always suffices. */
ww_status ww_encode(const ww_header *header, const void *samples, uint8_t *out, size_t out_cap,
                    size_t *out_len);

/* ---- Decoder --------------------------------------------------------------------------- */

/* A decoded frame. `samples` points into the decoder's buffer and stays valid until the next
 * call to ww_decoder_push / ww_decoder_feed; the values there are little-endian wire bytes:
 * read them with ww_sample_int / ww_sample_float. */
typedef struct {
    ww_header header;
    const uint8_t *samples;
    size_t samples_len; /* bytes = n_samples x axes x ww_sample_size(sample_type) */
} ww_frame;

/* Sequence numbers are tracked per (device_id, channel) in a table of this many entries, 8
 * bytes each; frames of further pairs are delivered without sequence accounting (counted in
 * seq_untracked). Override with -DWW_SEQ_SLOTS=N. */
#ifndef WW_SEQ_SLOTS
#define WW_SEQ_SLOTS 16
#endif

/* What the decoder saw; the same counters, with the same meaning, as wire.DecoderStats
 * (docs/protocol.md), plus seq_untracked. */
typedef struct {
    uint64_t bytes_in;
    uint64_t frames_ok;       /* passed COBS, CRC and header checks */
    uint64_t bytes_discarded; /* bytes that did not end up in a valid frame */
    uint64_t crc_errors;      /* CRC did not match: bit errors, truncation */
    uint64_t malformed;       /* bad COBS, unknown version/channel/type, length, oversize */
    uint64_t seq_gaps;        /* gap events */
    uint64_t frames_lost;     /* frames missing according to sequence numbers */
    uint64_t duplicates;      /* frames repeated or late (not delivered) */
    uint64_t device_resets;   /* sequence restarted: BOOT flag, or seq back to 0 */
    uint64_t seq_untracked;   /* frames of pairs beyond WW_SEQ_SLOTS (delivered, not checked) */
} ww_decoder_stats;

typedef struct {
    uint32_t last_seq;
    uint16_t device_id;
    uint8_t channel; /* 0: slot unused */
    uint8_t reserved;
} ww_seq_slot;

typedef struct {
    ww_decoder_stats stats;
    size_t pending_len;              /* bytes since the last delimiter */
    ww_seq_slot seq[WW_SEQ_SLOTS];   /* last seq per (device, channel) */
    uint8_t pending[WW_MAX_ENCODED]; /* the chunk being received (COBS form) */
    uint8_t raw[WW_MAX_ENCODED];     /* a chunk after COBS decoding */
} ww_decoder;

/* Start (or restart) a decoder. No other set-up, nothing to free. */
void ww_decoder_init(ww_decoder *decoder);

/* Feed one byte. Returns 1 and fills *frame when this byte (a 0x00) completed a valid frame
 * that is not a duplicate, else 0. Never fails on bad input: damage, gaps, duplicates and
 * resets are counted in decoder->stats, as wire.Decoder does. */
int ww_decoder_push(ww_decoder *decoder, uint8_t byte, ww_frame *frame);

/* Feed a chunk of any size; calls on_frame(context, frame) for each valid frame in order.
 * Returns the number of frames delivered. */
typedef void (*ww_frame_handler)(void *context, const ww_frame *frame);
size_t ww_decoder_feed(ww_decoder *decoder, const uint8_t *data, size_t len,
                       ww_frame_handler on_frame, void *context);

/* Decode one COBS-encoded frame without its delimiter (a whole chunk between two 0x00).
 * `work` must hold len bytes; the frame's samples point into it. Returns WW_DECODE_OK or why
 * the chunk is not a valid v1 frame. */
typedef enum {
    WW_DECODE_OK = 0,
    WW_DECODE_CRC = 1,      /* CRC mismatch: damaged on the wire */
    WW_DECODE_MALFORMED = 2 /* bad COBS, too short, unknown version/channel/type, length */
} ww_decode_result;
ww_decode_result ww_decode_frame(const uint8_t *encoded, size_t len, uint8_t *work,
                                 ww_frame *frame);

/* Value i (0 <= i < n_samples x axes) of a decoded frame, as int32 (INT16/INT32 frames) or
 * as float (any type: integers are converted). Raw values: multiply by header.scale. */
int32_t ww_sample_int(const ww_frame *frame, size_t i);
float ww_sample_float(const ww_frame *frame, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* WEARABLE_WIRE_H */
