#include "sensor/reading.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

bool sensor_fw_ok(const char *fw)
{
	size_t n = strlen(fw);
	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = fw[i];
		int alnum = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
		if (!alnum && (i == 0 || (c != '.' && c != '+' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

/* tenths writes a value kept in tenths as a JSON number with one
 * decimal: exact, never "nan" or an exponent. */
static void tenths(char *out, size_t cap, int v)
{
	unsigned a = v < 0 ? (unsigned)-v : (unsigned)v;
	snprintf(out, cap, "%s%u.%u", v < 0 ? "-" : "", a / 10, a % 10);
}

int sensor_payload(char *buf, size_t cap, const sensor_reading *r, const char *fw)
{
	char temp[16], hum[16], t[32] = "", rssi[24] = "", fwf[48] = "";
	tenths(temp, sizeof temp, r->temp_dc);
	tenths(hum, sizeof hum, r->hum_dc);
	if (r->t_ms >= 0)
		snprintf(t, sizeof t, ",\"t\":%" PRId64, r->t_ms);
	if (r->has_rssi)
		snprintf(rssi, sizeof rssi, ",\"rssi\":%d", r->rssi);
	if (fw && sensor_fw_ok(fw))
		snprintf(fwf, sizeof fwf, ",\"fw\":\"%s\"", fw);
	int n = snprintf(buf, cap, "{\"boot\":%" PRIu32 ",\"seq\":%" PRIu32 "%s,\"temperature\":%s,\"humidity\":%s%s%s}", r->boot,
			 r->seq, t, temp, hum, rssi, fwf);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

void sensor_queue_init(sensor_queue *q, sensor_queue_entry *storage, size_t cap)
{
	q->e = storage;
	q->cap = cap;
	q->head = q->len = 0;
	q->dropped = 0;
}

sensor_queue_entry *sensor_queue_at(sensor_queue *q, size_t i) { return &q->e[(q->head + i) % q->cap]; }

static void pop(sensor_queue *q)
{
	q->head = (q->head + 1) % q->cap;
	q->len--;
}

int sensor_queue_push(sensor_queue *q, const sensor_reading *r)
{
	int dropped = 0;
	if (q->len == q->cap) {
		/* The newest readings are worth more than the oldest, and an
		 * in-flight one dropped here is simply not acknowledged. */
		pop(q);
		q->dropped++;
		dropped = 1;
	}
	sensor_queue_entry *e = &q->e[(q->head + q->len) % q->cap];
	e->r = *r;
	e->mid = 0;
	e->state = SENSOR_Q_UNSENT;
	q->len++;
	return dropped;
}

sensor_queue_entry *sensor_queue_next(sensor_queue *q)
{
	for (size_t i = 0; i < q->len; i++) {
		sensor_queue_entry *e = sensor_queue_at(q, i);
		if (e->state == SENSOR_Q_UNSENT)
			return e;
	}
	return NULL;
}

void sensor_queue_sent(sensor_queue *q, sensor_queue_entry *e, int mid)
{
	(void)q;
	e->state = SENSOR_Q_INFLIGHT;
	e->mid = mid;
}

int sensor_queue_ack(sensor_queue *q, int mid)
{
	int found = 0;
	for (size_t i = 0; i < q->len; i++) {
		sensor_queue_entry *e = sensor_queue_at(q, i);
		if (e->state == SENSOR_Q_INFLIGHT && e->mid == mid) {
			e->state = SENSOR_Q_ACKED;
			found = 1;
			break;
		}
	}
	/* PUBACKs come in order (MQTT 4.6), but an acknowledged reading
	 * behind one still in flight waits for it rather than leave a hole. */
	while (q->len > 0 && sensor_queue_at(q, 0)->state == SENSOR_Q_ACKED)
		pop(q);
	return found;
}

void sensor_queue_unsend(sensor_queue *q)
{
	for (size_t i = 0; i < q->len; i++) {
		sensor_queue_entry *e = sensor_queue_at(q, i);
		if (e->state == SENSOR_Q_INFLIGHT)
			e->state = SENSOR_Q_UNSENT;
	}
}

size_t sensor_queue_inflight(const sensor_queue *q)
{
	size_t n = 0;
	for (size_t i = 0; i < q->len; i++)
		if (q->e[(q->head + i) % q->cap].state == SENSOR_Q_INFLIGHT)
			n++;
	return n;
}

size_t sensor_queue_len(const sensor_queue *q) { return q->len; }
