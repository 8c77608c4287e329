/*
 * wearable_wire.c: wire protocol v1 in C99 (see wearable_wire.h and docs/protocol.md).
 * The reference is wire/protocol.py and wire/cobs.py: tests/test_wire_c.py checks that this
 * code produces the same bytes and accepts and rejects the same frames.
 */
#include "wearable_wire.h"

#include <string.h>

#ifndef WW_CRC32_METHOD
#define WW_CRC32_METHOD 2
#endif

/* float32 travels as its IEEE 754 bit pattern. */
typedef char ww_float_is_32_bits[(sizeof(float) == 4) ? 1 : -1];

/* ---- CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320, init/xorout 0xFFFFFFFF) ---------- */

#if WW_CRC32_METHOD == 2
static const uint32_t ww_crc_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du
};
#elif WW_CRC32_METHOD == 1
/* ww_crc_table[i] of the byte-wise table at i * 16: four shifts of the nibble i. */
static const uint32_t ww_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
    0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu
};
#elif WW_CRC32_METHOD != 0
#error "WW_CRC32_METHOD must be 0 (bitwise), 1 (16-entry table) or 2 (256-entry table)"
#endif

uint32_t ww_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < len; i++) {
#if WW_CRC32_METHOD == 2
        crc = (crc >> 8) ^ ww_crc_table[(crc ^ data[i]) & 0xFFu];
#elif WW_CRC32_METHOD == 1
        crc ^= data[i];
        crc = (crc >> 4) ^ ww_crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ ww_crc_nibble[crc & 0x0Fu];
#else
        int bit;
        crc ^= data[i];
        for (bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
#endif
    }
    return ~crc;
}

/* ---- Encoder --------------------------------------------------------------------------- */

size_t ww_sample_size(uint8_t sample_type)
{
    switch (sample_type) {
    case WW_INT16:
        return 2;
    case WW_INT32:
    case WW_FLOAT32:
        return 4;
    default:
        return 0;
    }
}

/* In 32 bits: where size_t has 16 (AVR), 65535 x 3 x 4 would wrap to a small, "valid" size. */
static uint32_t ww_payload_bytes(const ww_header *header)
{
    return (uint32_t)header->n_samples * header->axes *
           (uint32_t)ww_sample_size(header->sample_type);
}

size_t ww_payload_size(const ww_header *header)
{
    return (size_t)ww_payload_bytes(header);
}

/* COBS while serialising: bytes go straight to their encoded place, the CRC follows them. */
typedef struct {
    uint8_t *out;
    size_t cap;     /* room for encoded bytes (the delimiter's byte is kept aside) */
    size_t len;     /* bytes written, including the open block's code byte */
    size_t code_at; /* where the open block's code byte goes */
    uint8_t code;   /* 1 + data bytes in the open block */
    int open;       /* a block is open (not after a full 254-byte block) */
    uint32_t crc;   /* running CRC state (not inverted yet) */
    int overflow;
} ww_writer;

static void ww_open_block(ww_writer *w)
{
    if (w->len >= w->cap) {
        w->overflow = 1;
        return;
    }
    w->code_at = w->len++;
    w->code = 1;
    w->open = 1;
}

static void ww_put(ww_writer *w, uint8_t byte)
{
    if (w->overflow) {
        return;
    }
    if (!w->open) {
        ww_open_block(w); /* a block opens only when a byte needs it: canonical form */
        if (w->overflow) {
            return;
        }
    }
    if (byte == 0) { /* the code byte stands for this zero */
        w->out[w->code_at] = w->code;
        ww_open_block(w);
        return;
    }
    if (w->len >= w->cap) {
        w->overflow = 1;
        return;
    }
    w->out[w->len++] = byte;
    if (++w->code == 0xFF) { /* a block holds at most 254 data bytes */
        w->out[w->code_at] = 0xFF;
        w->open = 0;
    }
}

static void ww_put_body(ww_writer *w, uint8_t byte)
{
#if WW_CRC32_METHOD == 2
    w->crc = (w->crc >> 8) ^ ww_crc_table[(w->crc ^ byte) & 0xFFu];
#else
    uint32_t crc = ~ww_crc32(~w->crc, &byte, 1);
    w->crc = crc;
#endif
    ww_put(w, byte);
}

static void ww_put_u16(ww_writer *w, uint16_t v)
{
    ww_put_body(w, (uint8_t)(v & 0xFFu));
    ww_put_body(w, (uint8_t)(v >> 8));
}

static void ww_put_u32(ww_writer *w, uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++) {
        ww_put_body(w, (uint8_t)((v >> (8 * i)) & 0xFFu));
    }
}

static void ww_put_u64(ww_writer *w, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++) {
        ww_put_body(w, (uint8_t)((v >> (8 * i)) & 0xFFu));
    }
}

static uint32_t ww_float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static int ww_header_ok(const ww_header *h)
{
    /* Only the channels a v1 receiver knows: it drops any other as malformed. */
    return h->channel >= WW_CH_PPG && h->channel <= WW_CH_BP_CUFF &&
           (h->flags & ~WW_FLAGS_KNOWN) == 0 &&
           ww_sample_size(h->sample_type) != 0 && h->axes != 0;
}

ww_status ww_encode(const ww_header *header, const void *samples, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
    ww_writer w;
    size_t i, count;
    uint32_t crc;

    if (header == NULL || out == NULL || out_len == NULL || !ww_header_ok(header) ||
        (samples == NULL && header->n_samples != 0)) {
        return WW_ERR_ARGUMENT;
    }
    if (ww_payload_bytes(header) > WW_MAX_PAYLOAD) {
        return WW_ERR_TOO_LARGE;
    }
    if (out_cap < 1) {
        return WW_ERR_BUFFER;
    }
    w.out = out;
    w.cap = out_cap - 1; /* keep room for the delimiter */
    w.len = 0;
    w.crc = 0xFFFFFFFFu;
    w.overflow = 0;
    ww_open_block(&w);

    ww_put_body(&w, (uint8_t)WW_PROTOCOL_VERSION);
    ww_put_body(&w, header->channel);
    ww_put_body(&w, header->flags);
    ww_put_body(&w, header->sample_type);
    ww_put_body(&w, header->axes);
    ww_put_u16(&w, header->device_id);
    ww_put_u32(&w, header->seq);
    ww_put_u64(&w, header->timestamp_us);
    ww_put_u32(&w, ww_float_bits(header->sample_rate_hz));
    ww_put_u32(&w, ww_float_bits(header->scale));
    ww_put_u16(&w, header->n_samples);

    count = (size_t)header->n_samples * header->axes;
    for (i = 0; i < count && !w.overflow; i++) {
        switch (header->sample_type) {
        case WW_INT16:
            ww_put_u16(&w, (uint16_t)((const int16_t *)samples)[i]);
            break;
        case WW_INT32:
            ww_put_u32(&w, (uint32_t)((const int32_t *)samples)[i]);
            break;
        default:
            ww_put_u32(&w, ww_float_bits(((const float *)samples)[i]));
            break;
        }
    }
    crc = ~w.crc;
    for (i = 0; i < 4; i++) {
        ww_put(&w, (uint8_t)((crc >> (8 * i)) & 0xFFu));
    }
    if (w.overflow) {
        return WW_ERR_BUFFER;
    }
    /* Close the last block. Canonical COBS (as wire/cobs.py): data ending in a full 254-byte
     * block gets no trailing empty block. */
    if (w.open) {
        w.out[w.code_at] = w.code;
    }
    out[w.len++] = 0x00;
    *out_len = w.len;
    return WW_OK;
}

/* ---- Decoder --------------------------------------------------------------------------- */

/* Two's complement from the wire without implementation-defined unsigned-to-signed casts. */
static int32_t ww_signed16(uint16_t v)
{
    return v < 0x8000u ? (int32_t)v : (int32_t)v - 65536;
}

static int32_t ww_signed32(uint32_t v)
{
    return v <= 0x7FFFFFFFu ? (int32_t)v : -(int32_t)(~v) - 1;
}

static uint16_t ww_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); /* no int overflow where int is 16 bits */
}

static uint32_t ww_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static float ww_get_f32(const uint8_t *p)
{
    uint32_t bits = ww_get_u32(p);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* COBS-decode encoded[0..len) into out; returns the decoded length, or -1 if invalid. */
static long ww_cobs_decode(const uint8_t *encoded, size_t len, uint8_t *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        size_t code = encoded[i], end = i + code;
        if (code == 0 || end > len) {
            return -1; /* a zero inside the frame, or a block past its end */
        }
        memcpy(out + n, encoded + i + 1, code - 1);
        n += code - 1;
        i = end;
        if (code != 0xFF && i < len) {
            out[n++] = 0;
        }
    }
    return (long)n;
}

ww_decode_result ww_decode_frame(const uint8_t *encoded, size_t len, uint8_t *work,
                                 ww_frame *frame)
{
    long decoded = ww_cobs_decode(encoded, len, work);
    size_t body_len, value_size;
    uint32_t rate_bits;
    ww_header *h = &frame->header;

    if (decoded < (long)(WW_HEADER_SIZE + WW_CRC_SIZE)) {
        return WW_DECODE_MALFORMED; /* bad COBS, or shorter than header and CRC */
    }
    body_len = (size_t)decoded - WW_CRC_SIZE;
    if (ww_crc32(0, work, body_len) != ww_get_u32(work + body_len)) {
        return WW_DECODE_CRC;
    }
    if (work[0] != WW_PROTOCOL_VERSION) {
        return WW_DECODE_MALFORMED;
    }
    h->channel = work[1];
    h->flags = work[2];
    h->sample_type = work[3];
    h->axes = work[4];
    h->device_id = ww_get_u16(work + 5);
    h->seq = ww_get_u32(work + 7);
    h->timestamp_us = (uint64_t)ww_get_u32(work + 11) | ((uint64_t)ww_get_u32(work + 15) << 32);
    rate_bits = ww_get_u32(work + 19);
    h->sample_rate_hz = ww_get_f32(work + 19);
    h->scale = ww_get_f32(work + 23);
    h->n_samples = ww_get_u16(work + 27);
    value_size = ww_sample_size(h->sample_type);
    if (h->channel < WW_CH_PPG || h->channel > WW_CH_BP_CUFF || value_size == 0) {
        return WW_DECODE_MALFORMED;
    }
    if (h->axes == 0 || (uint32_t)(body_len - WW_HEADER_SIZE) != ww_payload_bytes(h)) {
        return WW_DECODE_MALFORMED;
    }
    /* rate > 0 and finite, on the bits: sign clear, not +0, exponent not all ones. */
    if ((rate_bits >> 31) != 0 || rate_bits == 0 || (rate_bits & 0x7F800000u) == 0x7F800000u) {
        return WW_DECODE_MALFORMED;
    }
    frame->samples = work + WW_HEADER_SIZE;
    frame->samples_len = body_len - WW_HEADER_SIZE;
    return WW_DECODE_OK;
}

void ww_decoder_init(ww_decoder *decoder)
{
    memset(&decoder->stats, 0, sizeof decoder->stats);
    memset(decoder->seq, 0, sizeof decoder->seq);
    decoder->pending_len = 0;
}

/* Sequence accounting per (device, channel), as wire.Decoder._in_sequence: 1 = deliver the
 * frame, 0 = a repeated or late frame (already past it). */
static int ww_in_sequence(ww_decoder *d, const ww_header *h)
{
    ww_seq_slot *slot = NULL;
    uint32_t last, delta;
    size_t i;
    for (i = 0; i < WW_SEQ_SLOTS; i++) {
        ww_seq_slot *s = &d->seq[i];
        if (s->channel == h->channel && s->device_id == h->device_id) {
            slot = s;
            break;
        }
        if (s->channel == 0 && slot == NULL) {
            slot = s; /* the first free slot, used if the pair is not found */
        }
    }
    if (slot == NULL) {
        d->stats.seq_untracked++;
        return 1;
    }
    if (slot->channel == 0) { /* first frame of this pair */
        slot->channel = h->channel;
        slot->device_id = h->device_id;
        slot->last_seq = h->seq;
        return 1;
    }
    last = slot->last_seq;
    slot->last_seq = h->seq;
    if ((h->flags & WW_FLAG_BOOT) != 0 || (h->seq == 0 && last != 0xFFFFFFFFu)) {
        d->stats.device_resets++;
        return 1;
    }
    delta = h->seq - last; /* modulo 2^32 */
    if (delta == 1) {
        return 1;
    }
    if (delta == 0 || delta > 0x80000000u) { /* a repeat, or older than the last one */
        slot->last_seq = last;
        d->stats.duplicates++;
        return 0;
    }
    d->stats.seq_gaps++;
    d->stats.frames_lost += delta - 1;
    return 1;
}

/* A chunk between two delimiters: a frame, or damage. After damage an intact frame may still
 * follow with no delimiter between (a truncated frame, line noise before a frame): try each
 * suffix, as wire.Decoder does. CRC-32 makes a false match about one in 2^32. */
static int ww_decode_chunk(ww_decoder *d, ww_frame *frame)
{
    const uint8_t *chunk = d->pending;
    size_t len = d->pending_len, start;
    ww_decode_result result = ww_decode_frame(chunk, len, d->raw, frame);

    if (result == WW_DECODE_OK) {
        d->stats.frames_ok++;
        return 1;
    }
    if (result == WW_DECODE_CRC) {
        d->stats.crc_errors++;
    } else {
        d->stats.malformed++;
    }
    for (start = 1; start + WW_HEADER_SIZE + WW_CRC_SIZE <= len; start++) {
        if (ww_decode_frame(chunk + start, len - start, d->raw, frame) == WW_DECODE_OK) {
            d->stats.bytes_discarded += start;
            d->stats.frames_ok++;
            return 1;
        }
    }
    d->stats.bytes_discarded += len + 1; /* the chunk and its delimiter */
    return 0;
}

int ww_decoder_push(ww_decoder *decoder, uint8_t byte, ww_frame *frame)
{
    int got = 0;
    decoder->stats.bytes_in++;
    if (byte == 0x00) {
        if (decoder->pending_len > 0) {
            got = ww_decode_chunk(decoder, frame) && ww_in_sequence(decoder, &frame->header);
        }
        decoder->pending_len = 0;
        return got;
    }
    if (decoder->pending_len == sizeof decoder->pending) {
        /* No delimiter within the longest frame: not our protocol, or a lost delimiter. Drop
         * it all (the reference decoder does the same when fed byte by byte). */
        decoder->stats.bytes_discarded += decoder->pending_len + 1;
        decoder->stats.malformed++;
        decoder->pending_len = 0;
        return 0;
    }
    decoder->pending[decoder->pending_len++] = byte;
    return 0;
}

size_t ww_decoder_feed(ww_decoder *decoder, const uint8_t *data, size_t len,
                       ww_frame_handler on_frame, void *context)
{
    size_t i, frames = 0;
    ww_frame frame;
    for (i = 0; i < len; i++) {
        if (ww_decoder_push(decoder, data[i], &frame)) {
            frames++;
            if (on_frame != NULL) {
                on_frame(context, &frame);
            }
        }
    }
    return frames;
}

int32_t ww_sample_int(const ww_frame *frame, size_t i)
{
    float f;
    switch (frame->header.sample_type) {
    case WW_INT16:
        return ww_signed16(ww_get_u16(frame->samples + 2 * i));
    case WW_INT32:
        return ww_signed32(ww_get_u32(frame->samples + 4 * i));
    default: /* float: rounded toward zero and clamped (a cast out of range is undefined) */
        f = ww_get_f32(frame->samples + 4 * i);
        if (!(f == f)) {
            return 0;
        }
        if (f >= 2147483647.0f) {
            return 2147483647;
        }
        if (f <= -2147483648.0f) {
            return -2147483647 - 1;
        }
        return (int32_t)f;
    }
}

float ww_sample_float(const ww_frame *frame, size_t i)
{
    if (frame->header.sample_type == WW_FLOAT32) {
        return ww_get_f32(frame->samples + 4 * i);
    }
    return (float)ww_sample_int(frame, i);
}
