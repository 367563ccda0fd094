/*
 * Readings: the wire payload (docs/wire.md, decoded by ingest/wire) and
 * the bounded queue that holds them until the broker has acknowledged
 * them.
 *
 * The queue keeps readings in the order they were taken. A reading
 * leaves it only when its PUBACK arrives (or when the queue is full and
 * it is the oldest); a connection lost before the PUBACK puts every
 * reading in flight back to unsent, and they go again, in order, with
 * their boot and seq unchanged, which ingest's duplicate table expects.
 */
#ifndef SENSOR_READING_H
#define SENSOR_READING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* docs/wire.md: at most 1024 bytes; a reading is about 120. */
#define SENSOR_PAYLOAD_MAX 1024

typedef struct {
	uint32_t boot;
	uint32_t seq;
	/* Unix time in milliseconds, or -1 while the clock is not set. */
	int64_t t_ms;
	int16_t temp_dc;
	int16_t hum_dc;
	int8_t rssi;
	bool has_rssi;
} sensor_reading;

/*
 * sensor_payload writes r as the wire's JSON object, with fw (the
 * firmware's version) when it is one ingest accepts. It returns the
 * length, or -1 if cap is too small.
 */
int sensor_payload(char *buf, size_t cap, const sensor_reading *r, const char *fw);

/* sensor_fw_ok reports whether fw is a version ingest takes (docs/wire.md:
 * letters, digits and . + _ -, starting with a letter or digit, ≤ 32). */
bool sensor_fw_ok(const char *fw);

typedef enum {
	SENSOR_Q_UNSENT = 0,
	SENSOR_Q_INFLIGHT,
	SENSOR_Q_ACKED,
} sensor_queue_state;

typedef struct {
	sensor_reading r;
	int mid;
	uint8_t state;
} sensor_queue_entry;

typedef struct {
	sensor_queue_entry *e;
	size_t cap, head, len;
	/* How many readings were pushed out because the queue was full. */
	uint32_t dropped;
} sensor_queue;

/* sensor_queue_init uses the caller's storage for cap entries. */
void sensor_queue_init(sensor_queue *q, sensor_queue_entry *storage, size_t cap);
/* sensor_queue_push adds r as unsent; a full queue drops its oldest
 * reading first and returns 1, else 0. */
int sensor_queue_push(sensor_queue *q, const sensor_reading *r);
/* sensor_queue_next is the oldest unsent reading, or NULL. */
sensor_queue_entry *sensor_queue_next(sensor_queue *q);
/* sensor_queue_sent marks e in flight under message id mid. */
void sensor_queue_sent(sensor_queue *q, sensor_queue_entry *e, int mid);
/* sensor_queue_ack removes the reading in flight under mid; it returns
 * 1 if there was one. */
int sensor_queue_ack(sensor_queue *q, int mid);
/* sensor_queue_unsend puts every reading in flight back to unsent. */
void sensor_queue_unsend(sensor_queue *q);
size_t sensor_queue_inflight(const sensor_queue *q);
size_t sensor_queue_len(const sensor_queue *q);
/* sensor_queue_at is the i-th oldest entry (i < len). */
sensor_queue_entry *sensor_queue_at(sensor_queue *q, size_t i);

#endif
