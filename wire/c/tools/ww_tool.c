/*
 * ww_tool: a host tool around wearable_wire.c, for checking firmware output and for the tests
 * (tests/test_wire_c.py drives it). C99, standard library only.
 *
 *   ww_tool decode [CHUNK] < capture.bin
 *       Decode a byte stream (e.g. a board's serial output captured to a file), reading it in
 *       CHUNK-byte pieces (default 4096; any size gives the same result). One line per valid
 *       frame (duplicates dropped), then one `stats` line (wire.DecoderStats' counters):
 *         frame CH FLAGS TYPE AXES DEVICE SEQ TIMESTAMP_US RATE_BITS SCALE_BITS N SAMPLES_HEX
 *         stats BYTES_IN FRAMES_OK BYTES_DISCARDED CRC_ERRORS MALFORMED SEQ_GAPS FRAMES_LOST
 *               DUPLICATES DEVICE_RESETS SEQ_UNTRACKED
 *       (RATE_BITS / SCALE_BITS: the float32 bit patterns in hex; SAMPLES_HEX: the samples
 *       block as on the wire, little-endian, "-" when empty.)
 *
 *   ww_tool show [CHUNK] < capture.bin
 *       The same decoding for people: one line per frame with the channel's name, device,
 *       seq, device time in seconds, rate, scale, flags and the first values in physical
 *       units (raw x scale), then the decoder's counters by name.
 *
 *   ww_tool encode < frames.txt
 *       One frame per input line, fields separated by spaces:
 *         CH FLAGS TYPE AXES DEVICE SEQ TIMESTAMP_US RATE_BITS SCALE_BITS N V1 V2 ...
 *       (RATE_BITS, SCALE_BITS and float32 values as hex bit patterns, integers in decimal;
 *       N x AXES values.) Prints each frame's bytes in hex, delimiter included, one line per
 *       frame, or `error CODE` (the ww_status) for a frame the encoder refuses.
 *
 * Exit status: 0, or 2 for a usage or input error (one line on stderr says which).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../wearable_wire.h"

static void print_hex(const uint8_t *data, size_t len)
{
    size_t i;
    if (len == 0) {
        fputs("-", stdout);
    }
    for (i = 0; i < len; i++) {
        printf("%02x", data[i]);
    }
}

static uint32_t float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static void print_frame(void *context, const ww_frame *frame)
{
    const ww_header *h = &frame->header;
    (void)context;
    printf("frame %u %u %u %u %u %lu %llu %08lx %08lx %u ", (unsigned)h->channel,
           (unsigned)h->flags, (unsigned)h->sample_type, (unsigned)h->axes,
           (unsigned)h->device_id, (unsigned long)h->seq, (unsigned long long)h->timestamp_us,
           (unsigned long)float_bits(h->sample_rate_hz), (unsigned long)float_bits(h->scale),
           (unsigned)h->n_samples);
    print_hex(frame->samples, frame->samples_len);
    putchar('\n');
}

static void show_frame(void *context, const ww_frame *frame)
{
    static const char *const names[] = {"?", "PPG", "ACCEL", "ECG", "CGM", "BP_CUFF"};
    const ww_header *h = &frame->header;
    size_t i, count = (size_t)h->n_samples * h->axes;
    (void)context;
    char flags[32] = "";
    if (h->flags == 0) {
        strcat(flags, "-");
    }
    if (h->flags & WW_FLAG_BOOT) {
        strcat(flags, "BOOT,");
    }
    if (h->flags & WW_FLAG_LEAD_OFF) {
        strcat(flags, "LEAD_OFF,");
    }
    if (h->flags & WW_FLAG_SATURATED) {
        strcat(flags, "SATURATED,");
    }
    if (flags[strlen(flags) - 1] == ',') {
        flags[strlen(flags) - 1] = '\0';
    }
    printf("%-7s device=%u seq=%lu t=%llu.%06llu s rate=%g Hz scale=%g samples=%ux%u flags=%s",
           names[h->channel <= WW_CH_BP_CUFF ? h->channel : 0], (unsigned)h->device_id,
           (unsigned long)h->seq, (unsigned long long)(h->timestamp_us / 1000000u),
           (unsigned long long)(h->timestamp_us % 1000000u), (double)h->sample_rate_hz,
           (double)h->scale, (unsigned)h->n_samples, (unsigned)h->axes, flags);
    printf(" values=");
    for (i = 0; i < count && i < 6; i++) {
        printf("%s%g", i ? "," : "", (double)ww_sample_float(frame, i) * (double)h->scale);
    }
    printf("%s\n", count > 6 ? ",..." : "");
}

static int decode(size_t chunk, int show)
{
    static ww_decoder decoder; /* 4 KB: static, not on the stack */
    static uint8_t buffer[65536];
    size_t n;
    ww_decoder_init(&decoder);
    while ((n = fread(buffer, 1, chunk, stdin)) > 0) {
        ww_decoder_feed(&decoder, buffer, n, show ? show_frame : print_frame, NULL);
    }
    if (show) {
        ww_decoder_stats *st = &decoder.stats;
        printf("bytes_in=%llu frames_ok=%llu bytes_discarded=%llu crc_errors=%llu malformed=%llu "
               "seq_gaps=%llu frames_lost=%llu duplicates=%llu device_resets=%llu\n",
               (unsigned long long)st->bytes_in, (unsigned long long)st->frames_ok,
               (unsigned long long)st->bytes_discarded, (unsigned long long)st->crc_errors,
               (unsigned long long)st->malformed, (unsigned long long)st->seq_gaps,
               (unsigned long long)st->frames_lost, (unsigned long long)st->duplicates,
               (unsigned long long)st->device_resets);
        return 0;
    }
    printf("stats %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu\n",
           (unsigned long long)decoder.stats.bytes_in, (unsigned long long)decoder.stats.frames_ok,
           (unsigned long long)decoder.stats.bytes_discarded,
           (unsigned long long)decoder.stats.crc_errors,
           (unsigned long long)decoder.stats.malformed, (unsigned long long)decoder.stats.seq_gaps,
           (unsigned long long)decoder.stats.frames_lost,
           (unsigned long long)decoder.stats.duplicates,
           (unsigned long long)decoder.stats.device_resets,
           (unsigned long long)decoder.stats.seq_untracked);
    return 0;
}

static int next_field(char **cursor, unsigned long long *value, int base)
{
    char *end;
    *value = strtoull(*cursor, &end, base);
    if (end == *cursor) {
        return 0;
    }
    *cursor = end;
    return 1;
}

static int next_signed(char **cursor, long long *value)
{
    char *end;
    *value = strtoll(*cursor, &end, 10);
    if (end == *cursor) {
        return 0;
    }
    *cursor = end;
    return 1;
}

static float bits_float(unsigned long long bits)
{
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static int encode(void)
{
    static char line[65536];
    static int16_t i16[WW_MAX_PAYLOAD / 2];
    static int32_t i32[WW_MAX_PAYLOAD / 4];
    static float f32[WW_MAX_PAYLOAD / 4];
    static uint8_t out[WW_MAX_ENCODED];
    unsigned long lineno = 0;

    while (fgets(line, sizeof line, stdin) != NULL) {
        unsigned long long f[10];
        char *cursor = line;
        ww_header h;
        size_t i, count, out_len = 0;
        const void *samples;
        ww_status status;
        lineno++;
        for (i = 0; i < 10; i++) {
            if (!next_field(&cursor, &f[i], (i == 7 || i == 8) ? 16 : 10)) {
                fprintf(stderr, "ww_tool: error: stdin:%lu: field %u missing or not a number\n",
                        lineno, (unsigned)i + 1);
                return 2;
            }
        }
        h.channel = (uint8_t)f[0];
        h.flags = (uint8_t)f[1];
        h.sample_type = (uint8_t)f[2];
        h.axes = (uint8_t)f[3];
        h.device_id = (uint16_t)f[4];
        h.seq = (uint32_t)f[5];
        h.timestamp_us = (uint64_t)f[6];
        h.sample_rate_hz = bits_float(f[7]);
        h.scale = bits_float(f[8]);
        h.n_samples = (uint16_t)f[9];
        count = (size_t)h.n_samples * h.axes;
        if (count > WW_MAX_PAYLOAD / 2) {
            printf("error %d\n", (int)WW_ERR_TOO_LARGE);
            continue;
        }
        for (i = 0; i < count; i++) {
            unsigned long long u = 0;
            long long s = 0;
            int ok = h.sample_type == WW_FLOAT32 ? next_field(&cursor, &u, 16)
                                                 : next_signed(&cursor, &s);
            if (!ok) {
                fprintf(stderr, "ww_tool: error: stdin:%lu: %lu values expected, found %lu\n",
                        lineno, (unsigned long)count, (unsigned long)i);
                return 2;
            }
            if (h.sample_type == WW_FLOAT32) {
                if (i < WW_MAX_PAYLOAD / 4) {
                    f32[i] = bits_float(u);
                }
            } else if (h.sample_type == WW_INT32) {
                if (i < WW_MAX_PAYLOAD / 4) {
                    i32[i] = (int32_t)s;
                }
            } else {
                i16[i] = (int16_t)s;
            }
        }
        samples = h.sample_type == WW_FLOAT32 ? (const void *)f32
                  : h.sample_type == WW_INT32 ? (const void *)i32
                                              : (const void *)i16;
        status = ww_encode(&h, samples, out, sizeof out, &out_len);
        if (status != WW_OK) {
            printf("error %d\n", (int)status);
            continue;
        }
        print_hex(out, out_len);
        putchar('\n');
    }
    return 0;
}

int main(int argc, char **argv)
{
    int show = argc >= 2 && strcmp(argv[1], "show") == 0;
    if (argc >= 2 && (show || strcmp(argv[1], "decode") == 0) && argc <= 3) {
        long chunk = argc == 3 ? strtol(argv[2], NULL, 10) : 4096;
        if (chunk < 1 || chunk > 65536) {
            fprintf(stderr, "ww_tool: error: CHUNK must be 1-65536 bytes, got %s\n", argv[2]);
            return 2;
        }
        return decode((size_t)chunk, show);
    }
    if (argc == 2 && strcmp(argv[1], "encode") == 0) {
        return encode();
    }
    fprintf(stderr,
            "usage: ww_tool decode|show [CHUNK] < capture.bin | ww_tool encode < frames.txt\n");
    return 2;
}
