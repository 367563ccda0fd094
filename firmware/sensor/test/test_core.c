/*
 * The core's unit tests (cmocka), run under AddressSanitizer and UBSan
 * by `make test`, from this folder: the manifest vectors in vectors/
 * were signed by firmware/ota (go test ./firmware/sensor -run
 * TestManifestVectors -update).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/backoff.h"
#include "sensor/config.h"
#include "sensor/crypto.h"
#include "sensor/dht.h"
#include "sensor/node.h"
#include "sensor/ota.h"
#include "sensor/reading.h"

/* --- config.json --- */

static const char *const good_config =
	"{\"format\":1,\"node\":\"bench-1\",\"firmware\":\"sensor\","
	"\"wifi\":{\"ssid\":\"greenhouse\",\"psk\":\"secret passphrase\",\"country\":\"DE\"},"
	"\"mqtt\":{\"host\":\"greenhouse-gw\",\"port\":8883,\"topic\":\"sensors/bench-1/reading\"},"
	"\"interval_ms\":30000,\"sensor\":{\"type\":\"dht22\",\"pin\":4},"
	"\"ota\":{\"url\":\"https://greenhouse-gw/ota\"},\"time_server\":\"greenhouse-gw\",\"tags\":{\"room\":\"north\"}}";

static int parse_config(const char *json, sensor_config *c, char *err)
{
	return sensor_config_parse(json, strlen(json), c, err, 256);
}

static void config_valid(void **state)
{
	(void)state;
	sensor_config c;
	char err[256];
	assert_int_equal(parse_config(good_config, &c, err), 0);
	assert_string_equal(c.node, "bench-1");
	assert_string_equal(c.firmware, "sensor");
	assert_string_equal(c.wifi_ssid, "greenhouse");
	assert_string_equal(c.wifi_psk, "secret passphrase");
	assert_string_equal(c.wifi_country, "DE");
	assert_string_equal(c.mqtt_host, "greenhouse-gw");
	assert_int_equal(c.mqtt_port, 8883);
	assert_string_equal(c.mqtt_topic, "sensors/bench-1/reading");
	assert_int_equal(c.interval_ms, 30000);
	assert_int_equal(c.sensor, SENSOR_DHT22);
	assert_int_equal(c.sensor_pin, 4);
	assert_string_equal(c.ota_url, "https://greenhouse-gw/ota");
	assert_string_equal(c.time_server, "greenhouse-gw");
}

/* edit returns good_config with the item at path (a.b) replaced by
 * value (JSON), or removed when value is NULL. */
static char *edit(const char *path, const char *value)
{
	cJSON *root = cJSON_Parse(good_config), *parent = root;
	char p[64];
	snprintf(p, sizeof p, "%s", path);
	char *dot = strchr(p, '.'), *name = p;
	if (dot) {
		*dot = 0;
		parent = cJSON_GetObjectItemCaseSensitive(root, p);
		name = dot + 1;
	}
	if (value)
		cJSON_ReplaceItemInObjectCaseSensitive(parent, name, cJSON_Parse(value));
	else
		cJSON_DeleteItemFromObjectCaseSensitive(parent, name);
	char *out = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return out;
}

static void expect_refused(const char *path, const char *value, const char *mention)
{
	char *json = edit(path, value);
	sensor_config c;
	char err[256];
	int rc = parse_config(json, &c, err);
	if (rc == 0 || !strstr(err, mention) || strstr(err, "secret passphrase"))
		fail_msg("%s = %s: rc %d, error \"%s\" (want one naming %s)", path, value ? value : "(missing)", rc, err, mention);
	/* nothing half-read is left behind */
	assert_int_equal(c.wifi_psk[0], 0);
	assert_int_equal(c.node[0], 0);
	cJSON_free(json);
}

static void config_missing_fields(void **state)
{
	(void)state;
	const char *required[] = {"format",   "node",	     "firmware",    "wifi",	  "wifi.ssid",	"wifi.psk",
				  "mqtt",     "mqtt.host",   "mqtt.port",   "mqtt.topic", "interval_ms", "sensor",
				  "sensor.type", "sensor.pin", "ota",	      "ota.url",	  "time_server"};
	for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
		const char *mention = strchr(required[i], '.') ? required[i] : required[i];
		expect_refused(required[i], NULL, mention);
	}
	/* optional ones */
	sensor_config c;
	char err[256];
	char *json = edit("wifi.country", NULL);
	assert_int_equal(parse_config(json, &c, err), 0);
	assert_string_equal(c.wifi_country, "");
	cJSON_free(json);
	json = edit("tags", NULL);
	assert_int_equal(parse_config(json, &c, err), 0);
	cJSON_free(json);
}

static void config_wrong_fields(void **state)
{
	(void)state;
	expect_refused("format", "2", "format 2");
	expect_refused("format", "\"1\"", "format");
	expect_refused("node", "\"Bench\"", "node");
	expect_refused("node", "7", "node must be a string");
	expect_refused("wifi", "[]", "wifi must be an object");
	expect_refused("wifi.psk", "\"short\"", "wifi.psk");
	expect_refused("wifi.psk", "12345678", "wifi.psk");
	expect_refused("wifi.country", "\"Germany\"", "wifi.country");
	expect_refused("mqtt.port", "0", "mqtt.port is 0");
	expect_refused("mqtt.port", "8883.5", "mqtt.port must be a whole number");
	expect_refused("mqtt.port", "\"8883\"", "mqtt.port must be a number");
	expect_refused("mqtt.topic", "\"sensors/bench-2/reading\"", "sensors/bench-1/reading");
	expect_refused("interval_ms", "999", "interval_ms");
	expect_refused("interval_ms", "1e9", "interval_ms");
	expect_refused("sensor.type", "\"dht33\"", "dht33");
	expect_refused("sensor.pin", "-1", "sensor.pin");
	expect_refused("ota.url", "\"http://gw/ota\"", "ota.url");
	expect_refused("ota.url", "\"https://gw/ota/\"", "ota.url");
	expect_refused("time_server", "\"\"", "time_server");
	expect_refused("tags", "{\"room\":1}", "tags.room");

	sensor_config c;
	char err[256];
	assert_int_not_equal(parse_config("", &c, err), 0);
	assert_int_not_equal(parse_config("[]", &c, err), 0);
	assert_int_not_equal(sensor_config_parse(good_config, strlen(good_config) - 1, &c, err, sizeof err), 0);
	char twice[2048];
	snprintf(twice, sizeof twice, "{\"node\":\"x\",%s", good_config + 1);
	assert_int_not_equal(parse_config(twice, &c, err), 0);
	assert_non_null(strstr(err, "twice"));
	snprintf(twice, sizeof twice, "%s {}", good_config);
	assert_int_not_equal(parse_config(twice, &c, err), 0);
}

/* --- DHT frames --- */

static dht_status frame(sensor_type t, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3, dht_reading *r)
{
	uint8_t f[5] = {b0, b1, b2, b3, (uint8_t)(b0 + b1 + b2 + b3)};
	return dht_decode_frame(t, f, r);
}

static void dht_frames(void **state)
{
	(void)state;
	dht_reading r;
	/* DHT22: 65.2 %RH, 35.1 °C; and -10.1 °C with the sign bit */
	assert_int_equal(frame(SENSOR_DHT22, 0x02, 0x8C, 0x01, 0x5F, &r), DHT_OK);
	assert_int_equal(r.hum_dc, 652);
	assert_int_equal(r.temp_dc, 351);
	assert_int_equal(frame(SENSOR_DHT22, 0x02, 0x8C, 0x80, 0x65, &r), DHT_OK);
	assert_int_equal(r.temp_dc, -101);
	/* edges: -40.0 and 80.0 °C, 0 and 100 %RH; one tenth past each */
	assert_int_equal(frame(SENSOR_DHT22, 0x00, 0x00, 0x81, 0x90, &r), DHT_OK);
	assert_int_equal(r.temp_dc, -400);
	assert_int_equal(frame(SENSOR_DHT22, 0x03, 0xE8, 0x03, 0x20, &r), DHT_OK);
	assert_int_equal(r.temp_dc, 800);
	assert_int_equal(r.hum_dc, 1000);
	assert_int_equal(frame(SENSOR_DHT22, 0x00, 0x00, 0x81, 0x91, &r), DHT_ERR_RANGE);
	assert_int_equal(frame(SENSOR_DHT22, 0x00, 0x00, 0x03, 0x21, &r), DHT_ERR_RANGE);
	assert_int_equal(frame(SENSOR_DHT22, 0x03, 0xE9, 0x00, 0x10, &r), DHT_ERR_RANGE);
	/* 3276.7: the sign misread */
	assert_int_equal(frame(SENSOR_DHT22, 0x01, 0x00, 0x7F, 0xFF, &r), DHT_ERR_RANGE);
	/* DHT11: integer and tenths bytes, negative in bit 7 of the tenths */
	assert_int_equal(frame(SENSOR_DHT11, 45, 0, 23, 4, &r), DHT_OK);
	assert_int_equal(r.hum_dc, 450);
	assert_int_equal(r.temp_dc, 234);
	assert_int_equal(frame(SENSOR_DHT11, 45, 0, 20, 0x80, &r), DHT_OK);
	assert_int_equal(r.temp_dc, -200);
	assert_int_equal(frame(SENSOR_DHT11, 45, 0, 20, 0x81, &r), DHT_ERR_RANGE);
	assert_int_equal(frame(SENSOR_DHT11, 45, 0, 60, 0, &r), DHT_OK);
	assert_int_equal(frame(SENSOR_DHT11, 45, 0, 60, 1, &r), DHT_ERR_RANGE);
	assert_int_equal(frame(SENSOR_DHT11, 100, 0, 20, 0, &r), DHT_OK);
	assert_int_equal(frame(SENSOR_DHT11, 100, 1, 20, 0, &r), DHT_ERR_RANGE);
	assert_int_equal(frame(SENSOR_DHT11, 45, 10, 20, 0, &r), DHT_ERR_RANGE);
	/* bad checksums, including the all-ones of a floating line */
	uint8_t bad[5] = {0x02, 0x8C, 0x01, 0x5F, 0xEF};
	assert_int_equal(dht_decode_frame(SENSOR_DHT22, bad, &r), DHT_ERR_CHECKSUM);
	uint8_t ones[5] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
	assert_int_equal(dht_decode_frame(SENSOR_DHT22, ones, &r), DHT_ERR_CHECKSUM);
}

static int wobble(void *arg)
{
	unsigned *s = arg;
	*s = *s * 1103515245u + 12345u;
	return (int)(*s >> 16) % 15 - 7;
}

static void dht_pulses(void **state)
{
	(void)state;
	dht_pulse p[DHT_MAX_PULSES];
	dht_reading r, want = {-123, 567};
	uint8_t f[5];
	dht_encode_frame(SENSOR_DHT22, want, f);
	unsigned seed = 1;
	for (int i = 0; i < 200; i++) {
		size_t n = dht_frame_pulses(f, p, wobble, &seed);
		assert_int_equal(dht_decode(SENSOR_DHT22, p, n, &r), DHT_OK);
		assert_int_equal(r.temp_dc, want.temp_dc);
		assert_int_equal(r.hum_dc, want.hum_dc);
	}
	size_t n = dht_frame_pulses(f, p, NULL, NULL);
	/* without the leading high too */
	assert_int_equal(dht_decode(SENSOR_DHT22, p + 1, n - 1, &r), DHT_OK);
	/* the frame cut short, or its final low missing (still complete) */
	assert_int_equal(dht_decode(SENSOR_DHT22, p, n - 10, &r), DHT_ERR_SHORT);
	assert_int_equal(dht_decode(SENSOR_DHT22, p, n - 1, &r), DHT_OK);
	/* no answer: the line stays high */
	dht_pulse high[1] = {{1, 1000}};
	assert_int_equal(dht_decode(SENSOR_DHT22, high, 1, &r), DHT_ERR_NO_RESPONSE);
	assert_int_equal(dht_decode(SENSOR_DHT22, p, 0, &r), DHT_ERR_NO_RESPONSE);
	/* a glitch: a bit's high far too long, or a missed edge */
	dht_pulse g[DHT_MAX_PULSES];
	memcpy(g, p, sizeof g);
	g[20].us = 400;
	assert_int_equal(dht_decode(SENSOR_DHT22, g, n, &r), DHT_ERR_TIMING);
	memcpy(g, p, sizeof g);
	g[22].level = 0;
	assert_int_equal(dht_decode(SENSOR_DHT22, g, n, &r), DHT_ERR_TIMING);
	/* one bit flipped by timing: the checksum catches it */
	memcpy(g, p, sizeof g);
	g[4].us = g[4].us > 48 ? 27 : 70;
	assert_int_equal(dht_decode(SENSOR_DHT22, g, n, &r), DHT_ERR_CHECKSUM);
}

/* --- the wire payload --- */

static void payload_exact(void **state)
{
	(void)state;
	char buf[SENSOR_PAYLOAD_MAX];
	sensor_reading r = {17, 4211, 1767225600123, 214, 482, -61, true};
	const char *doc = "{\"boot\":17,\"seq\":4211,\"t\":1767225600123,\"temperature\":21.4,\"humidity\":48.2,\"rssi\":-61,\"fw\":\"1.4.0\"}";
	assert_int_equal(sensor_payload(buf, sizeof buf, &r, "1.4.0"), strlen(doc));
	assert_string_equal(buf, doc);
	sensor_reading cold = {4294967295u, 0, -1, -5, 0, 0, false};
	sensor_payload(buf, sizeof buf, &cold, "has space");
	assert_string_equal(buf, "{\"boot\":4294967295,\"seq\":0,\"temperature\":-0.5,\"humidity\":0.0}");
	sensor_reading edge = {1, 2, -1, -400, 1000, -127, true};
	sensor_payload(buf, sizeof buf, &edge, NULL);
	assert_string_equal(buf, "{\"boot\":1,\"seq\":2,\"temperature\":-40.0,\"humidity\":100.0,\"rssi\":-127}");
	assert_int_equal(sensor_payload(buf, 20, &r, "1.4.0"), -1);
	assert_true(sensor_fw_ok("1.4.0-rc.1+g1234_x"));
	assert_false(sensor_fw_ok(""));
	assert_false(sensor_fw_ok("-1.0"));
	assert_false(sensor_fw_ok("1.0\""));
	assert_false(sensor_fw_ok("123456789012345678901234567890123"));
}

/* --- the offline queue --- */


static void queue_full_and_draining(void **state)
{
	(void)state;
	sensor_queue_entry st[8];
	sensor_queue q;
	sensor_queue_init(&q, st, 8);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(sensor_queue_push(&q, &(sensor_reading){.seq = i}), 0);
	/* full: each new reading pushes out the oldest */
	for (uint32_t i = 8; i < 13; i++)
		assert_int_equal(sensor_queue_push(&q, &(sensor_reading){.seq = i}), 1);
	assert_int_equal(q.dropped, 5);
	assert_int_equal(sensor_queue_len(&q), 8);
	/* draining goes in order, 5 … 12 */
	for (uint32_t want = 5; want < 13; want++) {
		sensor_queue_entry *e = sensor_queue_next(&q);
		assert_non_null(e);
		assert_int_equal(e->r.seq, want);
		sensor_queue_sent(&q, e, (int)want + 100);
		assert_int_equal(sensor_queue_ack(&q, (int)want + 100), 1);
	}
	assert_null(sensor_queue_next(&q));
	assert_int_equal(sensor_queue_len(&q), 0);
	assert_int_equal(sensor_queue_ack(&q, 105), 0);
}

static void queue_lost_puback(void **state)
{
	(void)state;
	sensor_queue_entry st[16];
	sensor_queue q;
	sensor_queue_init(&q, st, 16);
	for (uint32_t i = 0; i < 6; i++)
		sensor_queue_push(&q, &(sensor_reading){.seq = i});
	for (int i = 0; i < 4; i++)
		sensor_queue_sent(&q, sensor_queue_next(&q), 10 + i);
	assert_int_equal(sensor_queue_inflight(&q), 4);
	/* 0 and 2 acknowledged, out of order; then the connection drops */
	assert_int_equal(sensor_queue_ack(&q, 12), 1);
	assert_int_equal(sensor_queue_ack(&q, 10), 1);
	assert_int_equal(sensor_queue_len(&q), 5);
	sensor_queue_unsend(&q);
	assert_int_equal(sensor_queue_inflight(&q), 0);
	/* resent in order: 1, 3 (2 is acknowledged), then 4, 5 */
	uint32_t want[] = {1, 3, 4, 5};
	for (int i = 0; i < 4; i++) {
		sensor_queue_entry *e = sensor_queue_next(&q);
		assert_non_null(e);
		assert_int_equal(e->r.seq, want[i]);
		sensor_queue_sent(&q, e, 20 + i);
	}
	assert_null(sensor_queue_next(&q));
	/* an acknowledgement for a message of the old connection is ignored */
	assert_int_equal(sensor_queue_ack(&q, 11), 0);
	for (int i = 0; i < 4; i++)
		sensor_queue_ack(&q, 20 + i);
	assert_int_equal(sensor_queue_len(&q), 0);
}

/* --- backoff --- */

static void backoff_bounds(void **state)
{
	(void)state;
	sensor_backoff b;
	sensor_backoff_init(&b, 1000, 60000);
	uint64_t d = 1000;
	for (int attempt = 0; attempt < 100; attempt++) {
		uint32_t lo = UINT32_MAX, hi = 0;
		for (uint32_t r = 0; r < 2000; r++) {
			sensor_backoff probe = b;
			uint32_t v = sensor_backoff_next(&probe, r * 2654435761u);
			lo = v < lo ? v : lo;
			hi = v > hi ? v : hi;
		}
		assert_true(lo >= d / 2 && hi <= d);
		/* the jitter spreads: at least a quarter of the window is used */
		assert_true(hi - lo >= d / 8);
		sensor_backoff_next(&b, 0);
		d = d * 2 > 60000 ? 60000 : d * 2;
	}
	sensor_backoff_reset(&b);
	uint32_t v = sensor_backoff_next(&b, UINT32_MAX);
	assert_true(v >= 500 && v <= 1000);
	/* the extremes of rnd */
	sensor_backoff_init(&b, 1, UINT32_MAX);
	for (int i = 0; i < 200; i++)
		assert_true(sensor_backoff_next(&b, UINT32_MAX) <= UINT32_MAX);
}

/* --- manifests signed by firmware/ota --- */

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("%s: cannot open", path);
	uint8_t *b = malloc(65536);
	*len = fread(b, 1, 65536, f);
	fclose(f);
	return b;
}

static sensor_ota_result verify_case(const char *line, char *name, char *want)
{
	char m[128], s[128], keys[256], fw[64], chip[32], ver[64];
	unsigned long sv;
	unsigned long long mv;
	long long now;
	if (sscanf(line, "%63s %127s %127s %255s %63s %31s %63s %lu %llu %lld %63s", name, m, s, keys, fw, chip, ver, &sv, &mv, &now,
		   want) != 11)
		fail_msg("vectors/cases.txt: %s", line);
	sensor_key k[4];
	size_t nk = 0;
	for (char *p = strtok(keys, ","); p && nk < 4; p = strtok(NULL, ",")) {
		char path[160];
		snprintf(path, sizeof path, "vectors/%s", p);
		size_t len;
		k[nk].pem = (char *)slurp(path, &len);
		k[nk++].len = len;
	}
	char mp[160], sp[160];
	snprintf(mp, sizeof mp, "vectors/%s", m);
	snprintf(sp, sizeof sp, "vectors/%s", s);
	size_t mlen, slen;
	uint8_t *mb = slurp(mp, &mlen), *sb = slurp(sp, &slen);
	sensor_device dev = {fw, chip, ver, (uint32_t)sv, mv};
	sensor_manifest out;
	sensor_ota_result r = sensor_manifest_verify(mb, mlen, sb, slen, k, nk, &dev, now, &out, NULL, 0);
	if (r == SENSOR_OTA_OK) {
		assert_string_equal(out.version, "1.4.0");
		assert_int_equal(out.secure_version, 2);
		assert_int_equal(out.size, 65000);
	}
	free(mb);
	free(sb);
	for (size_t i = 0; i < nk; i++)
		free((void *)k[i].pem);
	return r;
}

static void manifest_vectors(void **state)
{
	(void)state;
	FILE *f = fopen("vectors/cases.txt", "r");
	assert_non_null(f);
	char line[1024];
	int seen = 0;
	/* the outcome each named vector must have, whatever cases.txt says */
	static const char *const named[][2] = {
		{"accepted", "accepted"},      {"rotated-key", "accepted"}, {"tampered", "signature"},
		{"wrong-key", "signature"},    {"expired", "expired"},	    {"downgraded", "downgrade"},
		{"wrong-chip", "chip"},	       {"replayed", "replay"},	    {"unchanged", "unchanged"},
		{"other-firmware", "firmware"}, {"malformed", "malformed"},  {"too-large", "too_large"},
		{"no-clock", "no_clock"},      {"no-signature", "signature"},
	};
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#')
			continue;
		char name[64], want[64];
		sensor_ota_result r = verify_case(line, name, want);
		if (strcmp(sensor_ota_result_name(r), want) != 0)
			fail_msg("%s: %s, firmware/ota says %s", name, sensor_ota_result_name(r), want);
		for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
			if (strcmp(named[i][0], name) == 0) {
				assert_string_equal(want, named[i][1]);
				seen++;
			}
	}
	fclose(f);
	assert_int_equal(seen, sizeof named / sizeof named[0]);
}

/* --- the loop, on a platform whose clock and network the test drives --- */

typedef struct {
	uint64_t now;
	int64_t wall;
	uint32_t rnd;
	struct {
		char key[16];
		uint64_t v;
	} kv[8];
	size_t nkv;
	sensor_app app;
	bool broker_up, connected, auto_ack;
	int next_mid;
	sensor_event ev[64];
	size_t nev;
	char pub[512][160];
	size_t npub;
	uint64_t connects[64];
	size_t nconnects;
	int marked, rolled_back, restarted, committed, aborted;
	const uint8_t *manifest, *sig, *image;
	size_t mlen, slen, ilen;
} fake;

static fake *F(void *ctx) { return ctx; }
static uint64_t f_uptime(void *ctx) { return F(ctx)->now; }
static int64_t f_unix(void *ctx) { return F(ctx)->wall; }
static uint32_t f_random(void *ctx) { return F(ctx)->rnd++ * 2654435761u; }
static void f_log(void *ctx, sensor_log_level l, const char *msg)
{
	(void)ctx;
	if (getenv("TEST_LOG"))
		fprintf(stderr, "  log %d: %s\n", l, msg);
}
static dht_status f_read(void *ctx, sensor_type t, int pin, dht_reading *out)
{
	(void)ctx;
	(void)t;
	(void)pin;
	*out = (dht_reading){215, 480};
	return DHT_OK;
}
static bool f_rssi(void *ctx, int *dbm)
{
	(void)ctx;
	*dbm = -60;
	return true;
}
static int f_kv_get(void *ctx, const char *key, uint64_t *v)
{
	fake *f = ctx;
	for (size_t i = 0; i < f->nkv; i++)
		if (!strcmp(f->kv[i].key, key)) {
			*v = f->kv[i].v;
			return 0;
		}
	return 1;
}
static int f_kv_set(void *ctx, const char *key, uint64_t v)
{
	fake *f = ctx;
	for (size_t i = 0; i < f->nkv; i++)
		if (!strcmp(f->kv[i].key, key)) {
			f->kv[i].v = v;
			return 0;
		}
	snprintf(f->kv[f->nkv].key, sizeof f->kv[0].key, "%s", key);
	f->kv[f->nkv++].v = v;
	return 0;
}
static uint64_t kv_of(fake *f, const char *key)
{
	uint64_t v = 0;
	f_kv_get(f, key, &v);
	return v;
}
static void f_app(void *ctx, sensor_app *out) { *out = F(ctx)->app; }
static void f_push(fake *f, sensor_event e) { f->ev[f->nev++] = e; }
static int f_connect(void *ctx)
{
	fake *f = ctx;
	f->connects[f->nconnects++] = f->now;
	f->connected = f->broker_up;
	f_push(f, (sensor_event){.kind = f->broker_up ? SENSOR_EV_CONNECTED : SENSOR_EV_DISCONNECTED});
	return 0;
}
static void f_disconnect(void *ctx)
{
	F(ctx)->connected = false;
	F(ctx)->nev = 0;
}
static int f_publish(void *ctx, const char *topic, const char *payload, size_t len, int *mid)
{
	fake *f = ctx;
	assert_string_equal(topic, "sensors/bench-1/reading");
	if (!f->connected)
		return -1;
	snprintf(f->pub[f->npub++], sizeof f->pub[0], "%.*s", (int)len, payload);
	*mid = ++f->next_mid;
	if (f->auto_ack)
		f_push(f, (sensor_event){.kind = SENSOR_EV_PUBACK, .mid = *mid});
	return 0;
}
static void f_wait(void *ctx, uint32_t timeout, sensor_event *ev)
{
	fake *f = ctx;
	if (f->nev) {
		*ev = f->ev[0];
		memmove(f->ev, f->ev + 1, --f->nev * sizeof f->ev[0]);
		return;
	}
	f->now += timeout;
	ev->kind = SENSOR_EV_TIMEOUT;
}
static int f_get(void *ctx, const char *url, uint8_t *buf, size_t cap, size_t *len, char *err, size_t errlen)
{
	fake *f = ctx;
	(void)err;
	(void)errlen;
	const uint8_t *b = strstr(url, ".sig") ? f->sig : f->manifest;
	size_t n = strstr(url, ".sig") ? f->slen : f->mlen;
	assert_non_null(strstr(url, "https://greenhouse-gw/ota/sensor/manifest.json"));
	if (n > cap)
		return SENSOR_HTTP_TOO_LARGE;
	memcpy(buf, b, n);
	*len = n;
	return SENSOR_HTTP_OK;
}
static int f_download(void *ctx, const char *url, uint64_t max, sensor_sha256 *sum, uint64_t *len, char *err, size_t errlen)
{
	fake *f = ctx;
	(void)err;
	(void)errlen;
	assert_non_null(strstr(url, "https://greenhouse-gw/ota/sensor/"));
	if (f->ilen > max)
		return -1;
	sensor_sha256_update(sum, f->image, f->ilen);
	*len = f->ilen;
	return 0;
}
static int f_commit(void *ctx, const sensor_manifest *m, char *err, size_t errlen)
{
	(void)m;
	(void)err;
	(void)errlen;
	F(ctx)->committed++;
	return 0;
}
static void f_abort(void *ctx) { F(ctx)->aborted++; }
static int f_mark(void *ctx)
{
	F(ctx)->marked++;
	return 0;
}
static void f_rollback(void *ctx) { F(ctx)->rolled_back++; }
static void f_restart(void *ctx) { F(ctx)->restarted++; }

static sensor_platform platform(fake *f)
{
	return (sensor_platform){f,	     f_uptime, f_unix,	 f_random, f_log,      f_read,	    f_rssi,   f_kv_get,
				 f_kv_set, f_app,    f_connect, f_disconnect, f_publish, f_wait, f_get, f_download,
				 f_commit, f_abort,  f_mark,   f_rollback,   f_restart};
}

static sensor_identity ident;
static sensor_queue_entry storage[256];

static void setup_node(fake *f, sensor_platform *p, sensor_node *n)
{
	memset(f, 0, sizeof *f);
	f->wall = 1772366400000; /* 2026-03-01 12:00 UTC */
	f->auto_ack = true;
	snprintf(f->app.version, sizeof f->app.version, "1.3.0");
	snprintf(f->app.chip, sizeof f->app.chip, "esp32s3");
	f->app.secure_version = 2;
	memset(&ident, 0, sizeof ident);
	char err[256];
	assert_int_equal(parse_config(good_config, &ident.config, err), 0);
	ident.config.interval_ms = 1000;
	*p = platform(f);
	(void)n;
}

static sensor_options test_options(void)
{
	sensor_options o = sensor_default_options;
	o.backoff_base_ms = 1000;
	o.backoff_cap_ms = 8000;
	o.ota_first_delay_ms = 0;
	return o;
}

static void run_until(sensor_node *n, fake *f, uint64_t until)
{
	while (f->now < until && sensor_node_step(n)) {
	}
}

static uint32_t seq_of(const char *payload)
{
	unsigned boot, seq;
	assert_int_equal(sscanf(payload, "{\"boot\":%u,\"seq\":%u", &boot, &seq), 2);
	return seq;
}

static void node_offline_then_drains(void **state)
{
	(void)state;
	fake f;
	sensor_platform p;
	sensor_node n;
	setup_node(&f, &p, &n);
	f_kv_set(&f, SENSOR_KV_BOOT, 41);
	sensor_options o = test_options();
	o.ota_first_delay_ms = 1u << 30;
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	assert_int_equal(n.boot, 42);
	assert_int_equal(kv_of(&f, SENSOR_KV_BOOT), 42);
	/* 20 s without the broker: readings wait, attempts back off */
	run_until(&n, &f, 20000);
	assert_int_equal(f.npub, 0);
	assert_true(sensor_queue_len(&n.q) >= 20);
	for (size_t i = 1; i < f.nconnects; i++) {
		uint64_t gap = f.connects[i] - f.connects[i - 1];
		uint64_t d = 1000u << (i - 1 < 3 ? i - 1 : 3);
		if (gap < d / 2 || gap > d + 1000) /* one reading's step of slack */
			fail_msg("attempt %zu came %" PRIu64 " ms after the last; want %" PRIu64 "…%" PRIu64, i, gap, d / 2, d);
	}
	/* the broker returns: everything goes, in order, and is acknowledged */
	f.broker_up = true;
	run_until(&n, &f, 40000);
	assert_true(f.npub >= 40);
	for (size_t i = 0; i < f.npub; i++)
		assert_int_equal(seq_of(f.pub[i]), i);
	assert_non_null(strstr(f.pub[0], "\"boot\":42,"));
	assert_non_null(strstr(f.pub[0], "\"t\":1772366400000,"));
	assert_non_null(strstr(f.pub[0], "\"fw\":\"1.3.0\""));
	assert_int_equal(sensor_queue_len(&n.q), 0);
}

static void node_resends_after_lost_puback(void **state)
{
	(void)state;
	fake f;
	sensor_platform p;
	sensor_node n;
	setup_node(&f, &p, &n);
	f.broker_up = true;
	f.auto_ack = false;
	sensor_options o = test_options();
	o.ota_first_delay_ms = 1u << 30;
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	run_until(&n, &f, 5500);
	size_t sent = f.npub;
	assert_true(sent >= 5);
	/* the connection drops before any PUBACK */
	f.connected = false;
	f_push(&f, (sensor_event){.kind = SENSOR_EV_DISCONNECTED});
	f.auto_ack = true;
	run_until(&n, &f, 12000);
	/* the unacknowledged readings go again first, same seq, in order */
	for (size_t i = 0; i < sent; i++)
		assert_int_equal(seq_of(f.pub[sent + i]), i);
	for (size_t i = 2 * sent; i < f.npub; i++)
		assert_int_equal(seq_of(f.pub[i]), i - sent);
	assert_int_equal(sensor_queue_len(&n.q), 0);
}

static void node_marks_update_valid(void **state)
{
	(void)state;
	fake f;
	sensor_platform p;
	sensor_node n;
	setup_node(&f, &p, &n);
	f.app.pending_verify = true;
	f_kv_set(&f, SENSOR_KV_MANIFEST_VERSION, 4);
	f_kv_set(&f, SENSOR_KV_PENDING, 7);
	sensor_options o = test_options();
	o.rollback_after_ms = 60000;
	o.ota_first_delay_ms = 1u << 30;
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	/* not valid before the broker is reached */
	run_until(&n, &f, 10000);
	assert_int_equal(f.marked, 0);
	assert_int_equal(kv_of(&f, SENSOR_KV_MANIFEST_VERSION), 4);
	f.broker_up = true;
	run_until(&n, &f, 30000);
	assert_int_equal(f.marked, 1);
	assert_int_equal(f.rolled_back, 0);
	assert_int_equal(kv_of(&f, SENSOR_KV_MANIFEST_VERSION), 7);
	assert_int_equal(kv_of(&f, SENSOR_KV_PENDING), 0);
	run_until(&n, &f, 120000);
	assert_int_equal(f.rolled_back, 0);
}

static void node_rolls_back_unreachable_update(void **state)
{
	(void)state;
	fake f;
	sensor_platform p;
	sensor_node n;
	setup_node(&f, &p, &n);
	f.app.pending_verify = true;
	f_kv_set(&f, SENSOR_KV_PENDING, 7);
	sensor_options o = test_options();
	o.rollback_after_ms = 60000;
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	run_until(&n, &f, 59000);
	assert_int_equal(f.rolled_back, 0);
	while (sensor_node_step(&n)) {
	}
	assert_int_equal(f.rolled_back, 1);
	assert_int_equal(f.marked, 0);
	assert_true(f.now >= 60000 && f.now < 62000);

	/* the old app, booted again, records the update as tried */
	f.app.pending_verify = false;
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	assert_int_equal(kv_of(&f, SENSOR_KV_MANIFEST_VERSION), 7);
	assert_int_equal(kv_of(&f, SENSOR_KV_PENDING), 0);
	assert_int_equal(n.manifest_version, 7);
}

static void node_installs_signed_update(void **state)
{
	(void)state;
	fake f;
	sensor_platform p;
	sensor_node n;
	setup_node(&f, &p, &n);
	f.broker_up = true;
	size_t mlen, slen, klen;
	uint8_t *m = slurp("vectors/good.json", &mlen), *s = slurp("vectors/good.json.sig", &slen);
	char *key = (char *)slurp("vectors/key-0.pem", &klen);
	ident.ota_keys[0] = (sensor_key){key, klen};
	ident.n_ota_keys = 1;
	/* the image firmware/ota's vectors name: "signed image " × 5000 */
	uint8_t *img = malloc(65000);
	for (int i = 0; i < 5000; i++)
		memcpy(img + 13 * i, "signed image ", 13);
	f.manifest = m, f.mlen = mlen, f.sig = s, f.slen = slen, f.image = img, f.ilen = 65000;
	sensor_options o = test_options();
	sensor_node_start(&n, &p, &ident, &o, storage, 256);

	/* a tampered image is refused, nothing installed, tried again later */
	img[100] ^= 1;
	assert_int_equal(sensor_node_ota_check(&n), SENSOR_OTA_IMAGE_MISMATCH);
	assert_int_equal(f.committed, 0);
	assert_int_equal(f.aborted, 1);
	assert_int_equal(kv_of(&f, SENSOR_KV_PENDING), 0);
	/* a clock that is not set: nothing fetched */
	f.wall = -1;
	assert_int_equal(sensor_node_ota_check(&n), SENSOR_OTA_NO_CLOCK);
	f.wall = 1772366400000;
	/* a manifest signed by another key is refused before it is read */
	size_t olen;
	uint8_t *other = slurp("vectors/good.json.sig-1", &olen);
	f.sig = other, f.slen = olen;
	assert_int_equal(sensor_node_ota_check(&n), SENSOR_OTA_SIGNATURE);
	free(other);
	/* the real one installs, and the node restarts into it */
	img[100] ^= 1;
	f.sig = s, f.slen = slen;
	assert_int_equal(sensor_node_ota_check(&n), SENSOR_OTA_INSTALLED);
	assert_int_equal(f.committed, 1);
	assert_int_equal(f.restarted, 1);
	assert_int_equal(kv_of(&f, SENSOR_KV_PENDING), 1);
	assert_false(sensor_node_step(&n));
	/* the same manifest once running it: unchanged */
	f.app.pending_verify = true;
	snprintf(f.app.version, sizeof f.app.version, "1.4.0");
	sensor_node_start(&n, &p, &ident, &o, storage, 256);
	run_until(&n, &f, 5000);
	assert_int_equal(f.marked, 1);
	assert_int_equal(kv_of(&f, SENSOR_KV_MANIFEST_VERSION), 1);
	assert_int_equal(sensor_node_ota_check(&n), SENSOR_OTA_REPLAY);
	free(m);
	free(s);
	free(key);
	free(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_valid),
		cmocka_unit_test(config_missing_fields),
		cmocka_unit_test(config_wrong_fields),
		cmocka_unit_test(dht_frames),
		cmocka_unit_test(dht_pulses),
		cmocka_unit_test(payload_exact),
		cmocka_unit_test(queue_full_and_draining),
		cmocka_unit_test(queue_lost_puback),
		cmocka_unit_test(backoff_bounds),
		cmocka_unit_test(manifest_vectors),
		cmocka_unit_test(node_offline_then_drains),
		cmocka_unit_test(node_resends_after_lost_puback),
		cmocka_unit_test(node_marks_update_valid),
		cmocka_unit_test(node_rolls_back_unreachable_update),
		cmocka_unit_test(node_installs_signed_update),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
