#include "sensor/backoff.h"

void sensor_backoff_init(sensor_backoff *b, uint32_t base_ms, uint32_t cap_ms)
{
	b->base_ms = base_ms ? base_ms : 1;
	b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
	b->attempt = 0;
}

uint32_t sensor_backoff_next(sensor_backoff *b, uint32_t rnd)
{
	uint64_t d = b->base_ms;
	for (uint32_t i = 0; i < b->attempt && d < b->cap_ms; i++)
		d <<= 1;
	if (d > b->cap_ms)
		d = b->cap_ms;
	if (b->attempt < 64)
		b->attempt++;
	uint64_t half = d / 2;
	return (uint32_t)(d - half + rnd % (half + 1));
}

void sensor_backoff_reset(sensor_backoff *b) { b->attempt = 0; }
