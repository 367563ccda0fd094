#define _GNU_SOURCE
#include "host.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The app's OTA record, the host's otadata partition. */
typedef enum { APP_VALID, APP_NEW, APP_PENDING } app_state;

typedef struct {
	char version[32];
	uint32_t secure_version;
} app_version;

struct host {
	sensor_platform p;
	const sensor_identity *id;
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	char state[PATH_MAX], slot[PATH_MAX], part[PATH_MAX], otadata[PATH_MAX];
	char chip[16];
	bool verbose;
	char **argv;

	app_version running, previous;
	app_state app;
	bool restart;

	struct mosquitto *mosq;
	/* Set once a DISCONNECTED is queued for the current connection. */
	bool down_reported;
	char last_tls_error[128];
	sensor_event events[64];
	size_t ev_head, ev_len;

	FILE *download;
	uint64_t rng;
	double temp, hum;
};

static volatile sig_atomic_t stopping;

void host_stop(void) { stopping = 1; }

static void logf_(host *h, sensor_log_level lvl, const char *fmt, ...);

/* --- time, randomness, logging --- */

static uint64_t h_uptime(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t h_unix_ms(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t h_random(void *ctx)
{
	host *h = ctx;
	/* xorshift64*, seeded from getrandom */
	h->rng ^= h->rng >> 12;
	h->rng ^= h->rng << 25;
	h->rng ^= h->rng >> 27;
	return (uint32_t)((h->rng * 2685821657736338717ull) >> 32);
}

static void h_log(void *ctx, sensor_log_level lvl, const char *msg)
{
	host *h = ctx;
	if (lvl == SENSOR_LOG_DEBUG && !h->verbose)
		return;
	static const char *const names[] = {"debug", "info", "warn", "error"};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, names[lvl], msg);
	fflush(stderr);
}

static void logf_(host *h, sensor_log_level lvl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	h_log(h, lvl, msg);
}

/* --- the simulated DHT --- */

static int jitter(void *arg)
{
	host *h = arg;
	return (int)(h_random(h) % 11) - 5;
}

/* h_read makes a plausible reading (a slow random walk), sends it
 * through the DHT's wire format and decodes it as the device would. */
static dht_status h_read(void *ctx, sensor_type type, int pin, dht_reading *out)
{
	host *h = ctx;
	(void)pin;
	double step = ((double)h_random(h) / UINT32_MAX - 0.5) * 0.4;
	h->temp = fmin(fmax(h->temp + step, 10.0), 35.0);
	step = ((double)h_random(h) / UINT32_MAX - 0.5) * 1.0;
	h->hum = fmin(fmax(h->hum + step, 20.0), 80.0);
	dht_reading r = {(int16_t)lround(h->temp * 10), (int16_t)lround(h->hum * 10)};
	if (type == SENSOR_DHT11)
		r.hum_dc = (int16_t)(r.hum_dc / 10 * 10);
	uint8_t frame[5];
	dht_pulse pulses[DHT_MAX_PULSES];
	dht_encode_frame(type, r, frame);
	size_t n = dht_frame_pulses(frame, pulses, jitter, h);
	return dht_decode(type, pulses, n, out);
}

static bool h_rssi(void *ctx, int *dbm)
{
	(void)ctx;
	(void)dbm;
	return false; /* no radio */
}

/* --- the store: one small file per key, replaced atomically --- */

static int write_file(const char *path, const char *data, size_t len)
{
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, len);
	if (w < 0 || (size_t)w != len || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	return rename(tmp, path);
}

static void key_path(host *h, const char *key, char *out, size_t cap) { snprintf(out, cap, "%s/%s", h->state, key); }

static int h_kv_get(void *ctx, const char *key, uint64_t *v)
{
	char path[PATH_MAX + 32], buf[32] = {0};
	key_path(ctx, key, path, sizeof path);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 1 : -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	char *end;
	errno = 0;
	unsigned long long x = strtoull(buf, &end, 10);
	if (n == 0 || errno || (*end && *end != '\n'))
		return -1;
	*v = x;
	return 0;
}

static int h_kv_set(void *ctx, const char *key, uint64_t v)
{
	char path[PATH_MAX + 32], buf[32];
	key_path(ctx, key, path, sizeof path);
	int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v);
	return write_file(path, buf, (size_t)n);
}

/* --- the app and its OTA record --- */

static int save_otadata(host *h)
{
	static const char *const states[] = {"valid", "new", "pending"};
	char buf[256];
	int n = snprintf(buf, sizeof buf, "state=%s\nversion=%s\nsecure_version=%" PRIu32 "\nprevious_version=%s\nprevious_secure_version=%" PRIu32 "\n",
			 states[h->app], h->running.version, h->running.secure_version, h->previous.version,
			 h->previous.secure_version);
	return write_file(h->otadata, buf, (size_t)n);
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* load_otadata reads the record; 1 when there is none (the factory app). */
static int load_otadata(host *h)
{
	FILE *f = fopen(h->otadata, "re");
	if (!f)
		return errno == ENOENT ? 1 : -1;
	char line[128];
	int fields = 0;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		char *eq = strchr(line, '=');
		if (!eq)
			continue;
		*eq = 0;
		const char *k = line, *v = eq + 1;
		fields++;
		if (!strcmp(k, "state"))
			h->app = !strcmp(v, "new") ? APP_NEW : !strcmp(v, "pending") ? APP_PENDING : APP_VALID;
		else if (!strcmp(k, "version"))
			copy(h->running.version, sizeof h->running.version, v);
		else if (!strcmp(k, "secure_version"))
			h->running.secure_version = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(k, "previous_version"))
			copy(h->previous.version, sizeof h->previous.version, v);
		else if (!strcmp(k, "previous_secure_version"))
			h->previous.secure_version = (uint32_t)strtoul(v, NULL, 10);
		else
			fields--;
	}
	fclose(f);
	return fields == 5 ? 0 : -1;
}

/* boot does what the bootloader does with otadata: a new app boots
 * pending verification; one still pending from its last boot failed to
 * mark itself valid and is rolled back. */
static int boot(host *h, const host_options *o)
{
	copy(h->running.version, sizeof h->running.version, o->version);
	h->running.secure_version = o->secure_version;
	h->previous = h->running;
	h->app = APP_VALID;
	int rc = load_otadata(h);
	if (rc < 0)
		return -1;
	if (rc == 1)
		return 0;
	if (h->app == APP_NEW) {
		h->app = APP_PENDING;
		return save_otadata(h);
	}
	if (h->app == APP_PENDING) {
		logf_(h, SENSOR_LOG_WARN, "boot: app %s restarted before it was marked valid: rolling back to %s", h->running.version,
		      h->previous.version);
		h->running = h->previous;
		h->app = APP_VALID;
		return save_otadata(h);
	}
	return 0;
}

static void h_app(void *ctx, sensor_app *out)
{
	host *h = ctx;
	memset(out, 0, sizeof *out);
	copy(out->version, sizeof out->version, h->running.version);
	out->secure_version = h->running.secure_version;
	copy(out->chip, sizeof out->chip, h->chip);
	out->pending_verify = h->app == APP_PENDING;
}

static int h_mark_valid(void *ctx)
{
	host *h = ctx;
	h->app = APP_VALID;
	return save_otadata(h);
}

static void h_rollback(void *ctx)
{
	host *h = ctx;
	h->running = h->previous;
	h->app = APP_VALID;
	if (save_otadata(h) != 0)
		logf_(h, SENSOR_LOG_ERROR, "rollback: writing %s failed: %s", h->otadata, strerror(errno));
	h->restart = true;
}

static void h_restart(void *ctx) { ((host *)ctx)->restart = true; }

/* --- MQTT --- */

static void push(host *h, sensor_event ev)
{
	if (h->ev_len == sizeof h->events / sizeof h->events[0]) {
		logf_(h, SENSOR_LOG_ERROR, "mqtt: too many events; dropping one");
		return;
	}
	h->events[(h->ev_head + h->ev_len++) % (sizeof h->events / sizeof h->events[0])] = ev;
}

static void push_down(host *h, const char *why)
{
	if (h->down_reported)
		return;
	h->down_reported = true;
	sensor_event ev = {.kind = SENSOR_EV_DISCONNECTED};
	if (h->last_tls_error[0])
		snprintf(ev.detail, sizeof ev.detail, "%s (%s)", why, h->last_tls_error);
	else
		snprintf(ev.detail, sizeof ev.detail, "%s", why);
	push(h, ev);
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags, const mosquitto_property *props)
{
	(void)m;
	(void)flags;
	(void)props;
	host *h = obj;
	if (rc == 0) {
		push(h, (sensor_event){.kind = SENSOR_EV_CONNECTED});
		return;
	}
	char why[96];
	snprintf(why, sizeof why, "the broker refused the connection: %s", mosquitto_reason_string(rc));
	push_down(h, why);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
	(void)m;
	(void)props;
	char why[96];
	snprintf(why, sizeof why, "disconnected: %s", rc > 0 && rc < 0x80 ? mosquitto_strerror(rc) : mosquitto_reason_string(rc));
	push_down(obj, why);
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int reason, const mosquitto_property *props)
{
	(void)m;
	(void)props;
	push(obj, (sensor_event){.kind = SENSOR_EV_PUBACK, .mid = mid, .reason = reason});
}

/* libmosquitto reports TLS failures only through its log. */
static void on_log(struct mosquitto *m, void *obj, int level, const char *msg)
{
	(void)m;
	host *h = obj;
	if (level & MOSQ_LOG_ERR)
		copy(h->last_tls_error, sizeof h->last_tls_error, msg);
	if (h->verbose)
		logf_(h, SENSOR_LOG_DEBUG, "libmosquitto: %s", msg);
}

static void h_mqtt_disconnect(void *ctx)
{
	host *h = ctx;
	if (h->mosq) {
		mosquitto_disconnect_v5(h->mosq, 0, NULL);
		mosquitto_destroy(h->mosq);
		h->mosq = NULL;
	}
	/* Nothing of the old connection may reach the next one. */
	h->ev_len = 0;
	h->down_reported = false;
}

static int h_mqtt_connect(void *ctx)
{
	host *h = ctx;
	const sensor_config *c = &h->id->config;
	h_mqtt_disconnect(h);
	h->last_tls_error[0] = 0;
	h->mosq = mosquitto_new(c->node, true, h);
	if (!h->mosq)
		return -1;
	mosquitto_int_option(h->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	/* Only the site CA; the server must be the configured host. No
	 * insecure switch exists in this program. */
	if (mosquitto_tls_set(h->mosq, h->ca, NULL, h->cert, h->key, NULL) != MOSQ_ERR_SUCCESS ||
	    mosquitto_tls_opts_set(h->mosq, 1, "tlsv1.2", NULL) != MOSQ_ERR_SUCCESS) {
		mosquitto_destroy(h->mosq);
		h->mosq = NULL;
		return -1;
	}
	mosquitto_connect_v5_callback_set(h->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(h->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(h->mosq, on_publish);
	mosquitto_log_callback_set(h->mosq, on_log);
	int rc = mosquitto_connect_bind_v5(h->mosq, c->mqtt_host, c->mqtt_port, 30, NULL, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		char why[96];
		snprintf(why, sizeof why, "%s", rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		push_down(h, why);
	}
	return 0;
}

static int h_mqtt_publish(void *ctx, const char *topic, const char *payload, size_t len, int *mid)
{
	host *h = ctx;
	if (!h->mosq)
		return -1;
	return mosquitto_publish_v5(h->mosq, mid, topic, (int)len, payload, 1, false, NULL) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static bool pop(host *h, sensor_event *ev)
{
	if (h->ev_len == 0)
		return false;
	*ev = h->events[h->ev_head];
	h->ev_head = (h->ev_head + 1) % (sizeof h->events / sizeof h->events[0]);
	h->ev_len--;
	return true;
}

static void h_wait(void *ctx, uint32_t timeout, sensor_event *ev)
{
	host *h = ctx;
	uint64_t deadline = h_uptime(h) + timeout;
	for (;;) {
		if (pop(h, ev))
			return;
		if (stopping) {
			ev->kind = SENSOR_EV_STOP;
			return;
		}
		uint64_t now = h_uptime(h);
		if (now >= deadline) {
			ev->kind = SENSOR_EV_TIMEOUT;
			return;
		}
		int slice = deadline - now > 200 ? 200 : (int)(deadline - now);
		if (h->mosq && !h->down_reported) {
			int rc = mosquitto_loop(h->mosq, slice, 1);
			if (rc != MOSQ_ERR_SUCCESS)
				push_down(h, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		} else {
			poll(NULL, 0, slice);
		}
	}
}

/* --- HTTPS --- */

typedef struct {
	host *h;
	uint8_t *buf;
	size_t cap, len;
	bool too_large;
	/* for the download */
	FILE *f;
	sensor_sha256 *sum;
	uint64_t max, written;
	bool failed;
} sink;

static size_t to_buffer(char *data, size_t size, size_t n, void *arg)
{
	sink *s = arg;
	size_t len = size * n;
	if (s->len + len > s->cap) {
		s->too_large = true;
		return 0;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return len;
}

static size_t to_slot(char *data, size_t size, size_t n, void *arg)
{
	sink *s = arg;
	size_t len = size * n;
	if (s->written + len > s->max) {
		s->too_large = true;
		return 0;
	}
	if (fwrite(data, 1, len, s->f) != len || sensor_sha256_update(s->sum, data, len) != 0) {
		s->failed = true;
		return 0;
	}
	s->written += len;
	return len;
}

/* get runs one GET with the node's certificate, trusting the site CA
 * and nothing else: no system CAs, no proxy, no redirects, HTTPS only. */
static int get(host *h, const char *url, curl_write_callback cb, sink *s, char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "curl_easy_init failed");
		return SENSOR_HTTP_ERROR;
	}
	char cerr[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_CAINFO, h->ca);
	curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(c, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(c, CURLOPT_SSLCERT, h->cert);
	curl_easy_setopt(c, CURLOPT_SSLKEY, h->key);
	curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (s->too_large)
		return SENSOR_HTTP_TOO_LARGE;
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s", cerr[0] ? cerr : curl_easy_strerror(rc));
		return SENSOR_HTTP_ERROR;
	}
	if (status != 200) {
		snprintf(err, errlen, "HTTP status %ld", status);
		return SENSOR_HTTP_ERROR;
	}
	return SENSOR_HTTP_OK;
}

static int h_https_get(void *ctx, const char *url, uint8_t *buf, size_t cap, size_t *len, char *err, size_t errlen)
{
	sink s = {.h = ctx, .buf = buf, .cap = cap};
	int rc = get(ctx, url, to_buffer, &s, err, errlen);
	*len = s.len;
	return rc;
}

static int h_ota_download(void *ctx, const char *url, uint64_t max, sensor_sha256 *sum, uint64_t *len, char *err, size_t errlen)
{
	host *h = ctx;
	h->download = fopen(h->part, "wbe");
	if (!h->download) {
		snprintf(err, errlen, "%s: %s", h->part, strerror(errno));
		return -1;
	}
	sink s = {.h = h, .f = h->download, .sum = sum, .max = max};
	int rc = get(h, url, to_slot, &s, err, errlen);
	*len = s.written;
	if (rc == SENSOR_HTTP_TOO_LARGE)
		snprintf(err, errlen, "the image is larger than the manifest's %" PRIu64 " bytes", max);
	if (rc == SENSOR_HTTP_OK && s.failed) {
		snprintf(err, errlen, "writing %s failed", h->part);
		rc = -1;
	}
	if (rc == SENSOR_HTTP_OK && (fflush(h->download) != 0 || fsync(fileno(h->download)) != 0)) {
		snprintf(err, errlen, "writing %s: %s", h->part, strerror(errno));
		rc = -1;
	}
	return rc == SENSOR_HTTP_OK ? 0 : -1;
}

static void h_ota_abort(void *ctx)
{
	host *h = ctx;
	if (h->download) {
		fclose(h->download);
		h->download = NULL;
	}
	unlink(h->part);
}

static int h_ota_commit(void *ctx, const sensor_manifest *m, char *err, size_t errlen)
{
	host *h = ctx;
	if (!h->download) {
		snprintf(err, errlen, "nothing was downloaded");
		return -1;
	}
	fclose(h->download);
	h->download = NULL;
	if (rename(h->part, h->slot) != 0) {
		snprintf(err, errlen, "%s: %s", h->slot, strerror(errno));
		return -1;
	}
	h->previous = h->running;
	copy(h->running.version, sizeof h->running.version, m->version);
	h->running.secure_version = m->secure_version;
	h->app = APP_NEW;
	if (save_otadata(h) != 0) {
		snprintf(err, errlen, "%s: %s", h->otadata, strerror(errno));
		return -1;
	}
	return 0;
}

/* --- set-up --- */

host *host_new(const host_options *o, const sensor_identity *id, char *err, size_t errlen)
{
	host *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* Every path below is one of these plus a short suffix. */
	if (strlen(o->identity) > PATH_MAX / 2 || strlen(o->state) > PATH_MAX / 2 || (o->slot && strlen(o->slot) > PATH_MAX / 2)) {
		snprintf(err, errlen, "a path given is too long");
		free(h);
		return NULL;
	}
	h->id = id;
	h->verbose = o->verbose;
	h->argv = o->argv;
	copy(h->chip, sizeof h->chip, o->chip);
	snprintf(h->ca, sizeof h->ca, "%s%s", o->identity, SENSOR_CA_PATH);
	snprintf(h->cert, sizeof h->cert, "%s%s", o->identity, SENSOR_CERT_PATH);
	snprintf(h->key, sizeof h->key, "%s%s", o->identity, SENSOR_KEY_PATH);
	copy(h->state, sizeof h->state, o->state);
	if (o->slot)
		copy(h->slot, sizeof h->slot, o->slot);
	else
		snprintf(h->slot, sizeof h->slot, "%s/slot.bin", o->state);
	snprintf(h->part, sizeof h->part, "%s.part", h->slot);
	snprintf(h->otadata, sizeof h->otadata, "%s/otadata", o->state);
	if (mkdir(h->state, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", h->state, strerror(errno));
		free(h);
		return NULL;
	}
	if (getrandom(&h->rng, sizeof h->rng, 0) != sizeof h->rng || h->rng == 0)
		h->rng = (uint64_t)time(NULL) | 1;
	h->temp = 19.0 + h_random(h) % 50 / 10.0;
	h->hum = 40.0 + h_random(h) % 100 / 10.0;
	if (boot(h, o) != 0) {
		snprintf(err, errlen, "%s is damaged; remove it to boot the factory app", h->otadata);
		free(h);
		return NULL;
	}
	h->p = (sensor_platform){
		.ctx = h,
		.uptime_ms = h_uptime,
		.unix_ms = h_unix_ms,
		.random = h_random,
		.log = h_log,
		.read_sensor = h_read,
		.rssi = h_rssi,
		.kv_get = h_kv_get,
		.kv_set = h_kv_set,
		.app = h_app,
		.mqtt_connect = h_mqtt_connect,
		.mqtt_disconnect = h_mqtt_disconnect,
		.mqtt_publish = h_mqtt_publish,
		.wait = h_wait,
		.https_get = h_https_get,
		.ota_download = h_ota_download,
		.ota_commit = h_ota_commit,
		.ota_abort = h_ota_abort,
		.mark_valid = h_mark_valid,
		.rollback = h_rollback,
		.restart = h_restart,
	};
	return h;
}

const sensor_platform *host_platform(host *h) { return &h->p; }

bool host_restart_requested(const host *h) { return h->restart; }

void host_free(host *h)
{
	if (!h)
		return;
	h_mqtt_disconnect(h);
	h_ota_abort(h);
	free(h);
}

void host_restart(host *h)
{
	char **argv = h->argv;
	host_free(h);
	execv("/proc/self/exe", argv);
}
