/*
 * firmware_loop.c: PPG + accelerometer samples -> wire-protocol v1 frames on a serial port.
 * C99, no malloc; about 0.5 KB of RAM (two sample blocks, one 185-byte frame buffer) plus
 * the CRC table (1 KB of flash; -DWW_CRC32_METHOD=1 or 0 for 64 B or none). See
 * firmware_loop.h for what the board provides, and docs/firmware.md.
 *
 * A main loop on the board looks like:
 *
 *     int main(void) {
 *         board_setup();            // clocks, I2C, sensors, UART at 115200 8N1 (yours)
 *         wearable_init(DEVICE_ID);
 *         for (;;) {
 *             wearable_poll();
 *             board_sleep_until_interrupt();   // optional: sensor FIFO / timer wakes you
 *         }
 *     }
 */
#include "firmware_loop.h"

#include <string.h>

#include "../wearable_wire.h"

typedef struct {
    uint32_t seq;          /* next frame's sequence number */
    uint64_t first_sample; /* index since boot of the block's first sample: its timestamp */
    size_t count;          /* samples in the block so far */
    uint8_t flags;         /* ORed over the block; BOOT until the first frame went out */
} channel_state;

static uint16_t device;
static channel_state ppg, accel;
static int32_t ppg_block[BLOCK_SAMPLES];
static int16_t accel_block[BLOCK_SAMPLES * 3];
/* The largest frame this loop sends: a block of 3-axis int16 (150 B of samples) -> 185 B. */
static uint8_t frame[WW_ENCODED_SIZE(BLOCK_SAMPLES * 3 * sizeof(int16_t))];

void wearable_init(uint16_t device_id)
{
    device = device_id;
    memset(&ppg, 0, sizeof ppg);
    memset(&accel, 0, sizeof accel);
    ppg.flags = accel.flags = WW_FLAG_BOOT;
}

/* Timestamp from the sample count, not from a clock read when the block was complete: the
 * sensor's own sample clock paces the data, and the runtime's windows follow it exactly. */
static uint64_t timestamp_us(uint64_t sample_index, uint32_t rate_hz)
{
    return sample_index * 1000000u / rate_hz;
}

static int send(channel_state *ch, uint8_t channel, uint8_t sample_type, uint8_t axes,
                uint32_t rate_hz, float scale, const void *samples)
{
    ww_header h;
    size_t len = 0;
    h.channel = channel;
    h.flags = ch->flags;
    h.sample_type = sample_type;
    h.axes = axes;
    h.device_id = device;
    h.seq = ch->seq;
    h.timestamp_us = timestamp_us(ch->first_sample, rate_hz);
    h.sample_rate_hz = (float)rate_hz;
    h.scale = scale;
    h.n_samples = (uint16_t)ch->count;
    ch->first_sample += ch->count;
    ch->count = 0;
    ch->flags = 0; /* BOOT only once; LEAD_OFF / SATURATED are per block */
    ch->seq++;     /* wraps at 2^32, as the protocol expects */
    if (ww_encode(&h, samples, frame, sizeof frame, &len) != WW_OK) {
        return 0; /* cannot happen with the sizes above; never stop sampling for it */
    }
    board_serial_write(frame, len);
    return 1;
}

int wearable_poll(void)
{
    int sent = 0;
    uint8_t flags;

    /* Drain each sensor into its block; a full block becomes one frame at once. */
    for (;;) {
        size_t got;
        flags = 0;
        got = board_read_ppg(ppg_block + ppg.count, BLOCK_SAMPLES - ppg.count, &flags);
        got = got > BLOCK_SAMPLES - ppg.count ? BLOCK_SAMPLES - ppg.count : got;
        ppg.flags |= flags;
        ppg.count += got;
        if (ppg.count == BLOCK_SAMPLES) {
            sent += send(&ppg, WW_CH_PPG, WW_INT32, 1, PPG_RATE_HZ, 1.0f, ppg_block);
        } else if (got == 0) {
            break;
        }
    }
    for (;;) {
        size_t got;
        flags = 0;
        got = board_read_accel(accel_block + 3 * accel.count, BLOCK_SAMPLES - accel.count,
                               &flags);
        got = got > BLOCK_SAMPLES - accel.count ? BLOCK_SAMPLES - accel.count : got;
        accel.flags |= flags;
        accel.count += got;
        if (accel.count == BLOCK_SAMPLES) {
            sent += send(&accel, WW_CH_ACCEL, WW_INT16, 3, ACCEL_RATE_HZ, ACCEL_SCALE_G,
                         accel_block);
        } else if (got == 0) {
            break;
        }
    }
    return sent;
}
