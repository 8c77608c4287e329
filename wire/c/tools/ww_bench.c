/*
 * ww_bench: encode (and decode) cost per frame on this host, for three frames a wearable
 * sends: 16 PPG int32 samples (64 Hz, 4 frames/s), 8 accelerometer samples (3 x int16,
 * 32 Hz), and the largest frame (2048 B of int32). Prints one line per frame kind:
 *     KIND BYTES_ON_WIRE ENCODE_NS_MEDIAN DECODE_NS_MEDIAN
 * (median over 15 repeats of a timed loop). Run it through wire/c/tools/bench.py, which
 * builds it for every CRC method and times the Python encoder on the same frames.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../wearable_wire.h"

#define REPEATS 15

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static volatile size_t sink; /* keeps the loops from being optimised away */

static void bench(const char *kind, const ww_header *h, const void *samples, long iterations)
{
    static uint8_t out[WW_MAX_ENCODED], work[WW_MAX_ENCODED];
    double enc[REPEATS], dec[REPEATS];
    size_t len = 0;
    ww_frame frame;
    int r;
    long i;
    for (r = 0; r < REPEATS; r++) {
        double t0 = now_ns();
        for (i = 0; i < iterations; i++) {
            ww_encode(h, samples, out, sizeof out, &len);
            sink += len;
        }
        enc[r] = (now_ns() - t0) / (double)iterations;
        t0 = now_ns();
        for (i = 0; i < iterations; i++) {
            sink += (size_t)ww_decode_frame(out, len - 1, work, &frame);
        }
        dec[r] = (now_ns() - t0) / (double)iterations;
    }
    qsort(enc, REPEATS, sizeof enc[0], by_value);
    qsort(dec, REPEATS, sizeof dec[0], by_value);
    printf("%s %lu %.0f %.0f\n", kind, (unsigned long)len, enc[REPEATS / 2], dec[REPEATS / 2]);
}

int main(void)
{
    static int32_t ppg[512];
    static int16_t acc[24];
    ww_header h;
    int i;
    for (i = 0; i < 512; i++) {
        ppg[i] = 100000 + (i * 7919) % 4000;
    }
    for (i = 0; i < 8; i++) {
        acc[3 * i] = (int16_t)(i * 13 - 40);
        acc[3 * i + 1] = (int16_t)(-i * 7);
        acc[3 * i + 2] = (int16_t)(4096 + i);
    }
    memset(&h, 0, sizeof h);
    h.channel = WW_CH_PPG;
    h.sample_type = WW_INT32;
    h.axes = 1;
    h.device_id = 1;
    h.seq = 1234;
    h.timestamp_us = 19250000u;
    h.sample_rate_hz = 64.0f;
    h.scale = 1.0f;
    h.n_samples = 16;
    bench("ppg16", &h, ppg, 200000);
    h.channel = WW_CH_ACCEL;
    h.sample_type = WW_INT16;
    h.axes = 3;
    h.sample_rate_hz = 32.0f;
    h.scale = 1.0f / 4096.0f;
    h.n_samples = 8;
    bench("accel8", &h, acc, 200000);
    h.channel = WW_CH_PPG;
    h.sample_type = WW_INT32;
    h.axes = 1;
    h.n_samples = 512;
    bench("max2048", &h, ppg, 10000);
    return 0;
}
