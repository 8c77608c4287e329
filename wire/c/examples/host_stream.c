/*
 * host_stream: a synthetic PPG + accelerometer wearable on the host, encoded by wearable_wire.c.
 * Writes wire-protocol v1 frames to stdout (or a file), paced like a real board or as fast as
 * possible. Pipe it into a pseudo-terminal or serial port and point `wearable-edge run` at
 * the other side, or save it and run `wearable-edge replay` on the file (docs/firmware.md).
 *
 *   host_stream [--seconds S] [--hr BPM] [--ppg-rate HZ] [--acc-rate HZ] [--speed X]
 *               [--device ID] [--out FILE]
 *
 * Defaults: 60 s at 72 bpm, PPG at 64 Hz (models/bp.json wants 64, hr.json 32), accelerometer
 * at 32 Hz (hr.json), 4 frames per second per channel, real time (--speed 1; 0 = no pacing),
 * device id 1.
 * A wrist at rest: PPG pulses with a dicrotic notch over a breathing baseline, the
 * accelerometer reads 1 g on z with a little sensor noise. Deterministic: same arguments,
 * same bytes.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../wearable_wire.h"

#define FRAMES_PER_SECOND 4
#define PI 3.14159265358979323846

typedef struct {
    double seconds, hr_bpm, ppg_rate, acc_rate, speed;
    unsigned device_id;
    const char *out;
} options;

static int parse(int argc, char **argv, options *o)
{
    int i;
    o->seconds = 60.0;
    o->hr_bpm = 72.0;
    o->ppg_rate = 64.0;
    o->acc_rate = 32.0;
    o->speed = 1.0;
    o->device_id = 1;
    o->out = NULL;
    for (i = 1; i < argc; i++) {
        char *end = NULL;
        double value;
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            o->out = argv[++i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "host_stream: error: %s needs a value\n", argv[i]);
            return 0;
        }
        value = strtod(argv[i + 1], &end);
        if (end == argv[i + 1] || *end != '\0') {
            fprintf(stderr, "host_stream: error: %s %s: not a number\n", argv[i], argv[i + 1]);
            return 0;
        }
        if (strcmp(argv[i], "--seconds") == 0 && value > 0 && value <= 86400) {
            o->seconds = value;
        } else if (strcmp(argv[i], "--hr") == 0 && value >= 30 && value <= 220) {
            o->hr_bpm = value;
        } else if (strcmp(argv[i], "--ppg-rate") == 0 && value >= 10 && value <= 1000) {
            o->ppg_rate = value;
        } else if (strcmp(argv[i], "--acc-rate") == 0 && value >= 10 && value <= 1000) {
            o->acc_rate = value;
        } else if (strcmp(argv[i], "--speed") == 0 && value >= 0 && value <= 1000) {
            o->speed = value;
        } else if (strcmp(argv[i], "--device") == 0 && value >= 0 && value <= 65535) {
            o->device_id = (unsigned)value;
        } else {
            fprintf(stderr,
                    "host_stream: error: %s %s is unknown or out of range (--seconds 0-86400, "
                    "--hr 30-220, --ppg-rate/--acc-rate 10-1000, --speed 0-1000, --device "
                    "0-65535)\n",
                    argv[i], argv[i + 1]);
            return 0;
        }
        i++;
    }
    return 1;
}

/* One PPG pulse over a beat, phase in [0, 1): systolic peak and a smaller dicrotic wave. */
static double pulse(double phase)
{
    double a = (phase - 0.18) / 0.07, b = (phase - 0.45) / 0.09;
    return exp(-0.5 * a * a) + 0.35 * exp(-0.5 * b * b);
}

/* Small deterministic noise in [-1, 1): a 32-bit LCG, so every platform gives the same bytes. */
static double noise(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (double)(*state >> 8) / 8388608.0 - 1.0;
}

static void pace(double device_s, double speed, const struct timespec *start)
{
    struct timespec now, wait;
    double elapsed, due;
    if (speed <= 0) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    elapsed = (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
    due = device_s / speed - elapsed;
    if (due > 0) {
        wait.tv_sec = (time_t)due;
        wait.tv_nsec = (long)((due - (double)wait.tv_sec) * 1e9);
        nanosleep(&wait, NULL);
    }
}

int main(int argc, char **argv)
{
    static uint8_t frame[WW_MAX_ENCODED];
    int32_t ppg[256];
    int16_t acc[256 * 3];
    options o;
    FILE *out = stdout;
    struct timespec start;
    uint32_t rng = 12345u, ppg_seq = 0, acc_seq = 0;
    double beat_phase = 0.0;
    long ppg_done = 0, acc_done = 0, ppg_total, acc_total;
    int ppg_block, acc_block;

    if (!parse(argc, argv, &o)) {
        return 2;
    }
    if (o.out != NULL && (out = fopen(o.out, "wb")) == NULL) {
        fprintf(stderr, "host_stream: error: cannot open %s for writing; check the path\n", o.out);
        return 2;
    }
    ppg_block = (int)(o.ppg_rate / FRAMES_PER_SECOND + 0.5);
    acc_block = (int)(o.acc_rate / FRAMES_PER_SECOND + 0.5);
    ppg_total = (long)(o.seconds * o.ppg_rate);
    acc_total = (long)(o.seconds * o.acc_rate);
    clock_gettime(CLOCK_MONOTONIC, &start);

    /* Send whichever channel's next block ends first, once its last sample "was acquired". */
    while (ppg_done < ppg_total || acc_done < acc_total) {
        double ppg_end = (double)(ppg_done + ppg_block) / o.ppg_rate;
        double acc_end = (double)(acc_done + acc_block) / o.acc_rate;
        int send_ppg = ppg_done < ppg_total && (acc_done >= acc_total || ppg_end <= acc_end);
        ww_header h;
        size_t len = 0;
        int i;
        ww_status status;

        memset(&h, 0, sizeof h);
        h.device_id = (uint16_t)o.device_id;
        if (send_ppg) {
            for (i = 0; i < ppg_block; i++) {
                double t = (double)(ppg_done + i) / o.ppg_rate;
                double breathing = 0.15 * sin(2.0 * PI * 0.25 * t);
                ppg[i] = (int32_t)(100000.0 + 2000.0 * (pulse(beat_phase) + breathing) +
                                   20.0 * noise(&rng));
                beat_phase += o.hr_bpm / 60.0 / o.ppg_rate;
                beat_phase -= floor(beat_phase);
            }
            h.channel = WW_CH_PPG;
            h.flags = ppg_seq == 0 ? WW_FLAG_BOOT : 0;
            h.sample_type = WW_INT32;
            h.axes = 1;
            h.seq = ppg_seq++;
            h.timestamp_us = (uint64_t)((double)ppg_done * 1e6 / o.ppg_rate + 0.5);
            h.sample_rate_hz = (float)o.ppg_rate;
            h.scale = 1.0f;
            h.n_samples = (uint16_t)ppg_block;
            status = ww_encode(&h, ppg, frame, sizeof frame, &len);
            ppg_done += ppg_block;
            pace(ppg_end, o.speed, &start);
        } else {
            for (i = 0; i < acc_block; i++) {
                acc[3 * i] = (int16_t)(8.0 * noise(&rng));
                acc[3 * i + 1] = (int16_t)(8.0 * noise(&rng));
                acc[3 * i + 2] = (int16_t)(4096.0 + 8.0 * noise(&rng)); /* 1 g at 1/4096 g */
            }
            h.channel = WW_CH_ACCEL;
            h.flags = acc_seq == 0 ? WW_FLAG_BOOT : 0;
            h.sample_type = WW_INT16;
            h.axes = 3;
            h.seq = acc_seq++;
            h.timestamp_us = (uint64_t)((double)acc_done * 1e6 / o.acc_rate + 0.5);
            h.sample_rate_hz = (float)o.acc_rate;
            h.scale = 1.0f / 4096.0f;
            h.n_samples = (uint16_t)acc_block;
            status = ww_encode(&h, acc, frame, sizeof frame, &len);
            acc_done += acc_block;
            pace(acc_end, o.speed, &start);
        }
        if (status != WW_OK) {
            fprintf(stderr, "host_stream: error: encoder refused a frame (status %d)\n",
                    (int)status);
            return 1;
        }
        if (fwrite(frame, 1, len, out) != len || fflush(out) != 0) {
            fprintf(stderr, "host_stream: error: write failed (reader gone?)\n");
            return 1;
        }
    }
    if (out != stdout) {
        fclose(out);
    }
    return 0;
}
