/*
 * firmware_loop: an example firmware loop for a PPG + accelerometer wearable (e.g. an RP2040
 * or ESP32 with a MAX30102 PPG and a LIS3DH accelerometer) that streams wire-protocol v1
 * frames over a UART / USB-CDC port. See docs/firmware.md.
 *
 * The integrator implements the three board_* functions for their board; firmware_loop.c
 * does the rest (blocks, seq, BOOT, flags, timestamps, encoding).
 */
#ifndef FIRMWARE_LOOP_H
#define FIRMWARE_LOOP_H

#include <stddef.h>
#include <stdint.h>

/* Sensor settings this loop is written for; the header of every frame carries them. */
#define PPG_RATE_HZ 100     /* MAX30102: SPO2_SR = 100 sps (>= 64 Hz: models/bp.json) */
#define ACCEL_RATE_HZ 100   /* LIS3DH: ODR = 100 Hz (>= 32 Hz: models/hr.json) */
#define ACCEL_SCALE_G 0.004f /* LIS3DH +-8 g, high-resolution: 4 mg per count (>> 4) */
#define BLOCK_SAMPLES 25    /* samples per frame: 4 frames per second per channel */

/* ---- Implemented by the integrator ------------------------------------------------------ */

/* Copy up to `max` new PPG samples (raw ADC counts of the IR LED, oldest first; e.g. from the
 * MAX30102 FIFO) to `out` and return how many. Never block: return 0 when none are new.
 * OR WW_FLAG_LEAD_OFF into *flags when the sensor sees no skin (e.g. IR DC level below the
 * proximity threshold) and WW_FLAG_SATURATED when the ADC clipped. */
size_t board_read_ppg(int32_t *out, size_t max, uint8_t *flags);

/* Copy up to `max` new accelerometer samples to `xyz` (3 x max int16 values, x y z per
 * sample, raw counts of ACCEL_SCALE_G each, oldest first) and return how many. Never block.
 * OR WW_FLAG_SATURATED into *flags when an axis sat at full scale. */
size_t board_read_accel(int16_t *xyz, size_t max, uint8_t *flags);

/* Write `len` bytes to the serial port (UART or USB-CDC), all of them, in order. */
void board_serial_write(const uint8_t *data, size_t len);

/* ---- Provided by firmware_loop.c -------------------------------------------------------- */

/* Once after power-up: the next frames carry BOOT and seq 0. */
void wearable_init(uint16_t device_id);

/* From the main loop, every 100 ms or more often (the MAX30102 FIFO holds 0.32 s at 100 Hz):
 * reads what the sensors have, sends every full block as one frame. Returns the number of
 * frames sent by this call. */
int wearable_poll(void);

#endif /* FIRMWARE_LOOP_H */
