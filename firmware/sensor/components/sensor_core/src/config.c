/*
 * config.json with cJSON (ESP-IDF's json component; Debian's
 * libcjson-dev). The rules are firmware/identity's Config.Validate.
 */
#include "sensor/config.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cJSON.h"

typedef struct {
	char *err;
	size_t errlen;
} ctx;

static int fail(ctx *c, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		int n = snprintf(c->err, c->errlen, "config.json: ");
		va_list ap;
		va_start(ap, fmt);
		if (n >= 0 && (size_t)n < c->errlen)
			vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* unique refuses an object with a key twice: cJSON would take the
 * first, encoding/json the last. */
static bool unique(const cJSON *obj, const char **dup)
{
	for (const cJSON *a = obj->child; a; a = a->next)
		for (const cJSON *b = a->next; b; b = b->next)
			if (a->string && b->string && strcmp(a->string, b->string) == 0) {
				*dup = a->string;
				return false;
			}
	return true;
}

static const cJSON *object(ctx *c, const cJSON *parent, const char *name, const char *path, bool required, int *rc)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, name);
	const char *dup;
	if (!o || cJSON_IsNull(o)) {
		if (required)
			*rc = fail(c, "%s is missing; rebuild the node's identity with `appliance build`", path);
		return NULL;
	}
	if (!cJSON_IsObject(o)) {
		*rc = fail(c, "%s must be an object", path);
		return NULL;
	}
	if (!unique(o, &dup)) {
		*rc = fail(c, "%s has the key \"%s\" twice", path, dup);
		return NULL;
	}
	return o;
}

/* str copies a required (or optional) string of 1…cap-1 bytes. */
static int str(ctx *c, const cJSON *parent, const char *name, const char *path, char *dst, size_t cap, bool required)
{
	dst[0] = 0;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, name);
	if (!v || cJSON_IsNull(v))
		return required ? fail(c, "%s is missing; rebuild the node's identity with `appliance build`", path) : 0;
	if (!cJSON_IsString(v) || !v->valuestring)
		return fail(c, "%s must be a string", path);
	size_t n = strlen(v->valuestring);
	if (n == 0 || n >= cap)
		return fail(c, "%s has %zu bytes; it has 1 to %zu", path, n, cap - 1);
	memcpy(dst, v->valuestring, n + 1);
	return 0;
}

static int integer(ctx *c, const cJSON *parent, const char *name, const char *path, double lo, double hi, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, name);
	if (!v || cJSON_IsNull(v))
		return fail(c, "%s is missing; rebuild the node's identity with `appliance build`", path);
	if (!cJSON_IsNumber(v))
		return fail(c, "%s must be a number", path);
	double d = v->valuedouble;
	if (!isfinite(d) || d != floor(d))
		return fail(c, "%s must be a whole number", path);
	if (d < lo || d > hi)
		return fail(c, "%s is %.0f; it is %.0f to %.0f", path, d, lo, hi);
	*out = d;
	return 0;
}

static bool is(const char *s, bool (*ok)(char c))
{
	for (; *s; s++)
		if (!ok(*s))
			return false;
	return true;
}

static bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static bool node_char(char c) { return lower_alnum(c) || c == '-'; }
static bool firmware_char(char c) { return (c >= 'A' && c <= 'Z') || lower_alnum(c) || c == '_' || c == '-'; }
static bool printable(char c) { return c >= 0x20 && c <= 0x7E; }
static bool hex_char(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
static bool upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool name_char(char c) { return (c >= 'A' && c <= 'Z') || lower_alnum(c) || c == '.' || c == '-'; }
static bool v6_char(char c) { return hex_char(c) || c == ':'; }
static bool url_char(char c) { return c > 0x20 && c < 0x7F && c != '?' && c != '#' && c != '\\'; }

/* host_ok: a host name, or an IPv6 address (identity's hostRE). */
static bool host_ok(const char *h)
{
	size_t n = strlen(h);
	return (n >= 1 && n <= 253 && is(h, name_char)) || (n >= 2 && n <= 39 && is(h, v6_char));
}

/* ota_url_ok: https://host[:port][/path], no trailing slash, query or
 * fragment. */
static bool ota_url_ok(const char *u)
{
	const char *scheme = "https://";
	size_t n = strlen(u);
	if (strncmp(u, scheme, strlen(scheme)) != 0 || !is(u, url_char) || u[n - 1] == '/')
		return false;
	const char *host = u + strlen(scheme);
	return *host && *host != '/' && *host != ':';
}

static int tags(ctx *c, const cJSON *root)
{
	int rc = 0;
	const cJSON *t = object(c, root, "tags", "tags", false, &rc);
	if (!t)
		return rc;
	for (const cJSON *v = t->child; v; v = v->next) {
		size_t k = v->string ? strlen(v->string) : 0;
		if (k == 0 || k > 64)
			return fail(c, "tags: a tag name has %zu bytes; names have 1 to 64", k);
		if (!cJSON_IsString(v) || strlen(v->valuestring) > 256)
			return fail(c, "tags.%s must be a string of at most 256 bytes", v->string);
	}
	return 0;
}

static int parse(ctx *c, const cJSON *root, sensor_config *o)
{
	double d;
	int rc = 0;
	if (integer(c, root, "format", "format", -1e15, 1e15, &d))
		return -1;
	if (d != SENSOR_CONFIG_FORMAT)
		return fail(c, "format %.0f; this firmware reads format %d: flash a firmware that matches the build", d,
			    SENSOR_CONFIG_FORMAT);
	if (str(c, root, "node", "node", o->node, sizeof o->node, true))
		return -1;
	size_t n = strlen(o->node);
	if (!is(o->node, node_char) || o->node[0] == '-' || o->node[n - 1] == '-')
		return fail(c, "node \"%s\": 1 to 63 lower-case letters, digits and inner hyphens", o->node);
	if (str(c, root, "firmware", "firmware", o->firmware, sizeof o->firmware, true))
		return -1;
	if (!is(o->firmware, firmware_char))
		return fail(c, "firmware \"%s\": 1 to 32 letters, digits, '-' or '_'", o->firmware);

	const cJSON *wifi = object(c, root, "wifi", "wifi", true, &rc);
	if (!wifi)
		return -1;
	if (str(c, wifi, "ssid", "wifi.ssid", o->wifi_ssid, sizeof o->wifi_ssid, true))
		return -1;
	/* Never echo the passphrase. */
	const cJSON *psk = cJSON_GetObjectItemCaseSensitive(wifi, "psk");
	if (!psk || !cJSON_IsString(psk) || !psk->valuestring)
		return fail(c, "wifi.psk is missing or not a string");
	n = strlen(psk->valuestring);
	bool passphrase = n >= 8 && n <= 63 && is(psk->valuestring, printable);
	bool raw = n == 64 && is(psk->valuestring, hex_char);
	if (!passphrase && !raw)
		return fail(c, "wifi.psk must be 8 to 63 printable ASCII characters or 64 hex digits (WPA2/WPA3-Personal)");
	memcpy(o->wifi_psk, psk->valuestring, n + 1);
	if (str(c, wifi, "country", "wifi.country", o->wifi_country, sizeof o->wifi_country, false))
		return fail(c, "wifi.country: two capital letters (ISO 3166-1)");
	if (o->wifi_country[0] && (strlen(o->wifi_country) != 2 || !is(o->wifi_country, upper)))
		return fail(c, "wifi.country \"%s\": two capital letters (ISO 3166-1)", o->wifi_country);

	const cJSON *mqtt = object(c, root, "mqtt", "mqtt", true, &rc);
	if (!mqtt)
		return -1;
	if (str(c, mqtt, "host", "mqtt.host", o->mqtt_host, sizeof o->mqtt_host, true))
		return -1;
	if (!host_ok(o->mqtt_host))
		return fail(c, "mqtt.host \"%s\" is not a host name or address", o->mqtt_host);
	if (integer(c, mqtt, "port", "mqtt.port", 1, 65535, &d))
		return -1;
	o->mqtt_port = (uint16_t)d;
	if (str(c, mqtt, "topic", "mqtt.topic", o->mqtt_topic, sizeof o->mqtt_topic, true))
		return -1;
	char want[sizeof o->mqtt_topic];
	snprintf(want, sizeof want, "sensors/%s/reading", o->node);
	if (strcmp(o->mqtt_topic, want) != 0)
		return fail(c, "mqtt.topic \"%s\"; the broker lets this node write only %s", o->mqtt_topic, want);

	if (integer(c, root, "interval_ms", "interval_ms", SENSOR_INTERVAL_MIN_MS, SENSOR_INTERVAL_MAX_MS, &d))
		return -1;
	o->interval_ms = (uint32_t)d;

	const cJSON *sensor = object(c, root, "sensor", "sensor", true, &rc);
	if (!sensor)
		return -1;
	char type[8];
	if (str(c, sensor, "type", "sensor.type", type, sizeof type, true))
		return fail(c, "sensor.type must be \"dht11\" or \"dht22\"");
	if (strcmp(type, "dht11") == 0)
		o->sensor = SENSOR_DHT11;
	else if (strcmp(type, "dht22") == 0)
		o->sensor = SENSOR_DHT22;
	else
		return fail(c, "sensor.type \"%s\"; this firmware reads dht11 and dht22", type);
	if (integer(c, sensor, "pin", "sensor.pin", 0, 48, &d))
		return -1;
	o->sensor_pin = (uint8_t)d;

	const cJSON *ota = object(c, root, "ota", "ota", true, &rc);
	if (!ota)
		return -1;
	if (str(c, ota, "url", "ota.url", o->ota_url, sizeof o->ota_url, true))
		return -1;
	if (!ota_url_ok(o->ota_url))
		return fail(c, "ota.url \"%s\": an https URL without a trailing slash, query or fragment", o->ota_url);
	if (str(c, root, "time_server", "time_server", o->time_server, sizeof o->time_server, true))
		return -1;
	if (!host_ok(o->time_server))
		return fail(c, "time_server \"%s\" is not a host name or address", o->time_server);
	return tags(c, root);
}

int sensor_config_parse(const char *json, size_t len, sensor_config *out, char *err, size_t errlen)
{
	ctx c = {err, errlen};
	if (err && errlen)
		err[0] = 0;
	memset(out, 0, sizeof *out);
	if (len > SENSOR_CONFIG_MAX_SIZE)
		return fail(&c, "%zu bytes; a node's settings are at most %d", len, SENSOR_CONFIG_MAX_SIZE);
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
	if (!root)
		return fail(&c, "not JSON (near byte %zu)", end ? (size_t)(end - json) : (size_t)0);
	/* Only white space may follow the object. */
	for (; end && end < json + len; end++)
		if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
			cJSON_Delete(root);
			return fail(&c, "data after the JSON object");
		}
	const char *dup;
	int rc;
	if (!cJSON_IsObject(root))
		rc = fail(&c, "not a JSON object");
	else if (!unique(root, &dup))
		rc = fail(&c, "the key \"%s\" appears twice", dup);
	else
		rc = parse(&c, root, out);
	cJSON_Delete(root);
	if (rc != 0) {
		/* Leave nothing half-read, the passphrase least of all. */
		memset(out, 0, sizeof *out);
	}
	return rc;
}

const char *sensor_type_name(sensor_type t) { return t == SENSOR_DHT22 ? "dht22" : "dht11"; }
