/*
 * Reconnect delays: exponential with "equal jitter". The n-th delay in
 * a row is d/2 plus a random part of up to d/2, d = min(cap, base·2ⁿ),
 * so a broker that comes back after an outage is not met by every node
 * of the site in the same second, and no node waits longer than cap.
 */
#ifndef SENSOR_BACKOFF_H
#define SENSOR_BACKOFF_H

#include <stdint.h>

typedef struct {
	uint32_t base_ms, cap_ms;
	uint32_t attempt;
} sensor_backoff;

void sensor_backoff_init(sensor_backoff *b, uint32_t base_ms, uint32_t cap_ms);
/* sensor_backoff_next is the next delay; rnd is a uniform random number. */
uint32_t sensor_backoff_next(sensor_backoff *b, uint32_t rnd);
/* sensor_backoff_reset starts again from base (after a success). */
void sensor_backoff_reset(sensor_backoff *b);

#endif
