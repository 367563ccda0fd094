/*
 * DHT11 and DHT22 (AM2302) frames, decoded from the line's pulse
 * timings.
 *
 * After the host's start signal the sensor pulls the line low for about
 * 80 µs and releases it for about 80 µs, then sends 40 bits, each a low
 * of about 50 µs followed by a high of 26–28 µs (0) or about 70 µs (1):
 * humidity (2 bytes), temperature (2 bytes), checksum (the low byte of
 * the sum of the four). The platform records the levels and their
 * durations (RMT, or a busy-wait with interrupts off) and hands them to
 * dht_decode, which is all the protocol knowledge there is; the host
 * build feeds it generated pulses, the tests hand-made ones.
 *
 * Values are kept in tenths (°C, %RH) as the sensors send them, so a
 * reading goes to the wire without a float in between.
 */
#ifndef SENSOR_DHT_H
#define SENSOR_DHT_H

#include <stddef.h>
#include <stdint.h>

#include "sensor/config.h"

typedef struct {
	uint8_t level; /* 0 low, 1 high */
	uint16_t us;   /* how long the line stayed at level */
} dht_pulse;

typedef struct {
	int16_t temp_dc; /* tenths of °C */
	int16_t hum_dc;  /* tenths of %RH */
} dht_reading;

typedef enum {
	DHT_OK = 0,
	DHT_ERR_NO_RESPONSE, /* no 80 µs low/high answer to the start signal */
	DHT_ERR_SHORT,       /* fewer than 40 bits */
	DHT_ERR_TIMING,      /* a pulse too short or too long to be a bit */
	DHT_ERR_CHECKSUM,
	DHT_ERR_RANGE, /* outside the sensor's range (docs/wire.md) */
} dht_status;

/* The most pulses a frame has: a leading high, the response, 40 bits
 * and the final low. */
#define DHT_MAX_PULSES 84

dht_status dht_decode(sensor_type t, const dht_pulse *p, size_t n, dht_reading *out);
dht_status dht_decode_frame(sensor_type t, const uint8_t frame[5], dht_reading *out);

/* dht_encode_frame is the inverse for a reading in range, for the host's
 * simulated sensor and the tests. */
void dht_encode_frame(sensor_type t, dht_reading r, uint8_t frame[5]);
/* dht_frame_pulses writes the pulses a sensor would send for frame,
 * with each duration moved by jitter(µs) (0 for none); it returns how
 * many (at most DHT_MAX_PULSES). */
size_t dht_frame_pulses(const uint8_t frame[5], dht_pulse *p, int (*jitter)(void *arg), void *arg);

/* dht_in_range applies docs/wire.md's ranges. */
int dht_in_range(sensor_type t, dht_reading r);

const char *dht_status_string(dht_status s);

#endif
