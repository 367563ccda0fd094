#include "sensor/dht.h"

/*
 * Timing bounds, wide around the datasheets' figures (80/80 µs answer,
 * 50 µs bit low, 26–28 µs or 70 µs bit high): parts and the measuring
 * loop differ, a pulse outside these is noise or a lost edge.
 */
enum {
	RESPONSE_MIN_US = 40,
	RESPONSE_MAX_US = 200,
	BIT_LOW_MIN_US = 20,
	BIT_LOW_MAX_US = 120,
	BIT_HIGH_MIN_US = 8,
	BIT_HIGH_MAX_US = 110,
	/* A 0 is 26–28 µs high, a 1 about 70 µs: the threshold sits in
	 * between, away from both. */
	BIT_ONE_US = 48,
};

static int between(uint16_t v, int lo, int hi) { return v >= lo && v <= hi; }

dht_status dht_decode(sensor_type t, const dht_pulse *p, size_t n, dht_reading *out)
{
	size_t i = 0;
	/* The line floats high between the host's release and the answer. */
	while (i < n && p[i].level == 1)
		i++;
	if (i + 1 >= n || p[i].level != 0 || p[i + 1].level != 1 || !between(p[i].us, RESPONSE_MIN_US, RESPONSE_MAX_US) ||
	    !between(p[i + 1].us, RESPONSE_MIN_US, RESPONSE_MAX_US))
		return DHT_ERR_NO_RESPONSE;
	i += 2;
	uint8_t frame[5] = {0};
	for (int bit = 0; bit < 40; bit++, i += 2) {
		if (i + 1 >= n)
			return DHT_ERR_SHORT;
		const dht_pulse *lo = &p[i], *hi = &p[i + 1];
		if (lo->level != 0 || hi->level != 1)
			return DHT_ERR_TIMING;
		if (!between(lo->us, BIT_LOW_MIN_US, BIT_LOW_MAX_US) || !between(hi->us, BIT_HIGH_MIN_US, BIT_HIGH_MAX_US))
			return DHT_ERR_TIMING;
		if (hi->us > BIT_ONE_US)
			frame[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
	}
	return dht_decode_frame(t, frame, out);
}

dht_status dht_decode_frame(sensor_type t, const uint8_t f[5], dht_reading *out)
{
	if ((uint8_t)(f[0] + f[1] + f[2] + f[3]) != f[4])
		return DHT_ERR_CHECKSUM;
	dht_reading r;
	if (t == SENSOR_DHT11) {
		/* Integer and tenths bytes; newer parts (ASAIR DHT11) set bit 7
		 * of the temperature's tenths for below zero. */
		uint8_t hum_tenths = f[1], temp_tenths = f[3] & 0x7F;
		if (hum_tenths > 9 || temp_tenths > 9)
			return DHT_ERR_RANGE;
		r.hum_dc = (int16_t)(f[0] * 10 + hum_tenths);
		r.temp_dc = (int16_t)(f[2] * 10 + temp_tenths);
		if (f[3] & 0x80)
			r.temp_dc = (int16_t)-r.temp_dc;
	} else if (t == SENSOR_DHT22) {
		/* Tenths as 16 bits, the temperature in sign and magnitude:
		 * 0x7FFF there is the famous 3276.7 of a misread sign. */
		unsigned hum = (unsigned)f[0] << 8 | f[1];
		unsigned temp = (unsigned)(f[2] & 0x7F) << 8 | f[3];
		if (hum > 1000 || temp > 1000)
			return DHT_ERR_RANGE;
		r.hum_dc = (int16_t)hum;
		r.temp_dc = (int16_t)((f[2] & 0x80) ? -(int)temp : (int)temp);
	} else {
		return DHT_ERR_RANGE;
	}
	if (!dht_in_range(t, r))
		return DHT_ERR_RANGE;
	*out = r;
	return DHT_OK;
}

int dht_in_range(sensor_type t, dht_reading r)
{
	/* docs/wire.md: dht11 −20…60 °C, dht22 −40…80 °C, both 0…100 %RH. */
	int tmin = t == SENSOR_DHT22 ? -400 : -200, tmax = t == SENSOR_DHT22 ? 800 : 600;
	return r.temp_dc >= tmin && r.temp_dc <= tmax && r.hum_dc >= 0 && r.hum_dc <= 1000;
}

void dht_encode_frame(sensor_type t, dht_reading r, uint8_t f[5])
{
	unsigned hum = r.hum_dc < 0 ? 0u : (unsigned)r.hum_dc;
	unsigned temp = r.temp_dc < 0 ? (unsigned)-r.temp_dc : (unsigned)r.temp_dc;
	if (t == SENSOR_DHT11) {
		f[0] = (uint8_t)(hum / 10);
		f[1] = (uint8_t)(hum % 10);
		f[2] = (uint8_t)(temp / 10);
		f[3] = (uint8_t)(temp % 10 | (r.temp_dc < 0 ? 0x80u : 0u));
	} else {
		f[0] = (uint8_t)(hum >> 8);
		f[1] = (uint8_t)hum;
		f[2] = (uint8_t)((temp >> 8 & 0x7F) | (r.temp_dc < 0 ? 0x80u : 0u));
		f[3] = (uint8_t)temp;
	}
	f[4] = (uint8_t)(f[0] + f[1] + f[2] + f[3]);
}

static uint16_t jittered(int us, int (*jitter)(void *), void *arg)
{
	if (jitter)
		us += jitter(arg);
	return (uint16_t)(us < 1 ? 1 : us);
}

size_t dht_frame_pulses(const uint8_t f[5], dht_pulse *p, int (*jitter)(void *), void *arg)
{
	size_t n = 0;
	p[n++] = (dht_pulse){1, jittered(30, jitter, arg)};
	p[n++] = (dht_pulse){0, jittered(80, jitter, arg)};
	p[n++] = (dht_pulse){1, jittered(80, jitter, arg)};
	for (int bit = 0; bit < 40; bit++) {
		int one = f[bit / 8] & (0x80 >> (bit % 8));
		p[n++] = (dht_pulse){0, jittered(50, jitter, arg)};
		p[n++] = (dht_pulse){1, jittered(one ? 70 : 27, jitter, arg)};
	}
	p[n++] = (dht_pulse){0, jittered(50, jitter, arg)};
	return n;
}

const char *dht_status_string(dht_status s)
{
	switch (s) {
	case DHT_OK:
		return "ok";
	case DHT_ERR_NO_RESPONSE:
		return "no answer from the sensor (check its wiring and the configured pin)";
	case DHT_ERR_SHORT:
		return "the frame ended before 40 bits";
	case DHT_ERR_TIMING:
		return "a pulse of the frame had an impossible length";
	case DHT_ERR_CHECKSUM:
		return "the frame's checksum does not match";
	case DHT_ERR_RANGE:
		return "the value is outside the sensor's range";
	}
	return "unknown";
}
