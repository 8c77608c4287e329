/*
 * check_buffers: the encoder's buffer contract, run by tests/test_wire_c.py (also under
 * AddressSanitizer). For thousands of pseudo-random frames, of every size up to the maximum:
 *  - the frame fits in WW_ENCODED_SIZE(payload) and WW_MAX_ENCODED;
 *  - an output buffer of exactly the frame's length suffices and gives the same bytes;
 *  - one byte less is refused with WW_ERR_BUFFER and nothing is written past it;
 *  - the decoder gives the header back.
 * Prints "ok" and exits 0, or names the first failure and exits 1.
 */
#include <stdio.h>
#include <string.h>

#include "../wearable_wire.h"

#define CANARY 0xA5u

static uint32_t rng_state = 1u;

static uint32_t next(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

static int fail(const char *what, unsigned long frame)
{
    printf("FAIL frame %lu: %s\n", frame, what);
    return 1;
}

int main(void)
{
    static int16_t v16[WW_MAX_PAYLOAD / 2];
    static int32_t v32[WW_MAX_PAYLOAD / 4];
    const void *values = v32;
    static uint8_t reference[WW_MAX_ENCODED];
    static uint8_t out[WW_MAX_ENCODED + 64];
    static uint8_t work[WW_MAX_ENCODED];
    unsigned long k;
    ww_header h;
    ww_frame frame;
    size_t len = 0, len2 = 0, i;

    if (WW_MAX_ENCODED != 2091u) {
        return fail("WW_MAX_ENCODED is not 2091 (wire/protocol.py MAX_ENCODED)", 0);
    }
    memset(&h, 0, sizeof h);
    if (ww_encode(NULL, values, out, sizeof out, &len) != WW_ERR_ARGUMENT ||
        ww_encode(&h, values, out, sizeof out, &len) != WW_ERR_ARGUMENT) {
        return fail("a NULL header or a zero header is not refused", 0);
    }
    for (k = 0; k < 4000; k++) {
        size_t max_n, payload;
        memset(&h, 0, sizeof h);
        h.channel = (uint8_t)(1 + next() % 5);
        h.flags = (uint8_t)(next() % 8);
        h.sample_type = (uint8_t)(1 + next() % 2); /* int16, int32: any bit pattern is fine */
        h.axes = (uint8_t)(1 + next() % 3);
        h.device_id = (uint16_t)next();
        h.seq = next();
        h.timestamp_us = ((uint64_t)next() << 40) ^ next();
        h.sample_rate_hz = 64.0f;
        h.scale = 1.0f;
        max_n = WW_MAX_PAYLOAD / (h.axes * ww_sample_size(h.sample_type));
        h.n_samples = (uint16_t)(k % 5 == 0 ? max_n : next() % (max_n + 1));
        for (i = 0; i < WW_MAX_PAYLOAD / 4; i++) {
            /* Mostly no zero bytes (254-byte COBS blocks), sometimes zeros. */
            uint32_t bits = k % 3 == 0 ? next() : (next() | 0x01010101u);
            v32[i] = (int32_t)(bits & 0x7FFFFFFFu) - (int32_t)(bits >> 31) * 0x40000000;
            v16[2 * i] = (int16_t)(bits & 0x7FFFu);
            v16[2 * i + 1] = (int16_t)(-(int32_t)((bits >> 16) & 0x7FFFu));
        }
        values = h.sample_type == WW_INT16 ? (const void *)v16 : (const void *)v32;
        payload = ww_payload_size(&h);
        if (ww_encode(&h, values, reference, sizeof reference, &len) != WW_OK) {
            return fail("a valid frame is refused", k);
        }
        if (len > WW_ENCODED_SIZE(payload) || len > WW_MAX_ENCODED) {
            return fail("the frame is longer than WW_ENCODED_SIZE(payload)", k);
        }
        memset(out, CANARY, sizeof out);
        if (ww_encode(&h, values, out, len, &len2) != WW_OK || len2 != len ||
            memcmp(out, reference, len) != 0) {
            return fail("a buffer of exactly the frame's length does not give the frame", k);
        }
        for (i = len; i < sizeof out; i++) {
            if (out[i] != CANARY) {
                return fail("the encoder wrote past the frame", k);
            }
        }
        memset(out, CANARY, sizeof out);
        if (ww_encode(&h, values, out, len - 1, &len2) != WW_ERR_BUFFER) {
            return fail("a buffer one byte short is not refused", k);
        }
        for (i = len - 1; i < sizeof out; i++) {
            if (out[i] != CANARY) {
                return fail("the encoder wrote past a short buffer", k);
            }
        }
        if (ww_decode_frame(reference, len - 1, work, &frame) != WW_DECODE_OK ||
            frame.header.seq != h.seq || frame.header.timestamp_us != h.timestamp_us ||
            frame.header.n_samples != h.n_samples || frame.samples_len != payload ||
            (h.n_samples > 0 &&
             ww_sample_int(&frame, h.n_samples - 1u) !=
                 (h.sample_type == WW_INT16 ? v16[h.n_samples - 1u] : v32[h.n_samples - 1u]))) {
            return fail("the decoder does not give the frame back", k);
        }
    }
    h.n_samples = (uint16_t)(WW_MAX_PAYLOAD / (h.axes * ww_sample_size(h.sample_type)) + 1);
    if (ww_encode(&h, values, out, sizeof out, &len) != WW_ERR_TOO_LARGE) {
        return fail("an oversize block is not refused", k);
    }
    printf("checked %lu frames: ok\n", k);
    return 0;
}
