#include "sensor/node.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const sensor_options sensor_default_options = {
	.ota_interval_ms = 6u * 3600u * 1000u,
	.ota_first_delay_ms = 30u * 1000u,
	/* Long enough for Wi-Fi, DHCP and a broker that is restarting. */
	.rollback_after_ms = 10u * 60u * 1000u,
	.connect_timeout_ms = 30u * 1000u,
	.backoff_base_ms = 1000u,
	.backoff_cap_ms = 5u * 60u * 1000u,
	.inflight = 8,
};

#define NEVER UINT64_MAX

static void say(sensor_node *n, sensor_log_level lvl, const char *fmt, ...)
{
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	n->p->log(n->p->ctx, lvl, msg);
}

static uint64_t now_ms(sensor_node *n) { return n->p->uptime_ms(n->p->ctx); }

/* wall_ms is the clock, or -1 while it cannot be trusted. */
static int64_t wall_ms(sensor_node *n)
{
	int64_t t = n->p->unix_ms(n->p->ctx);
	return t >= SENSOR_CLOCK_FLOOR * 1000 ? t : -1;
}

static uint64_t kv(sensor_node *n, const char *key)
{
	uint64_t v = 0;
	if (n->p->kv_get(n->p->ctx, key, &v) != 0)
		v = 0;
	return v;
}

static void kv_put(sensor_node *n, const char *key, uint64_t v)
{
	if (n->p->kv_set(n->p->ctx, key, v) != 0)
		say(n, SENSOR_LOG_ERROR, "storing %s failed", key);
}

void sensor_node_start(sensor_node *n, const sensor_platform *p, const sensor_identity *id, const sensor_options *opt,
		       sensor_queue_entry *storage, size_t cap)
{
	memset(n, 0, sizeof *n);
	n->p = p;
	n->id = id;
	n->opt = opt ? *opt : sensor_default_options;
	if (n->opt.inflight == 0)
		n->opt.inflight = 1;
	sensor_queue_init(&n->q, storage, cap);
	sensor_backoff_init(&n->backoff, n->opt.backoff_base_ms, n->opt.backoff_cap_ms);
	p->app(p->ctx, &n->app);

	uint64_t boot = 0;
	if (p->kv_get(p->ctx, SENSOR_KV_BOOT, &boot) < 0 || p->kv_set(p->ctx, SENSOR_KV_BOOT, (uint32_t)(boot + 1)) != 0) {
		/* docs/wire.md: a random boot number works too. */
		n->boot = p->random(p->ctx);
		say(n, SENSOR_LOG_WARN, "the boot counter cannot be kept; this boot is number %" PRIu32 " at random", n->boot);
	} else {
		n->boot = (uint32_t)(boot + 1);
	}

	n->manifest_version = kv(n, SENSOR_KV_MANIFEST_VERSION);
	uint64_t pending = kv(n, SENSOR_KV_PENDING);
	if (pending && !n->app.pending_verify) {
		/* The update was installed and did not stay: the bootloader or
		 * this firmware rolled it back (or it was marked valid and the
		 * record was cut short). Either way it is not taken again. */
		if (pending > n->manifest_version)
			n->manifest_version = pending;
		kv_put(n, SENSOR_KV_MANIFEST_VERSION, n->manifest_version);
		kv_put(n, SENSOR_KV_PENDING, 0);
		say(n, SENSOR_LOG_WARN, "running %s; the update of manifest version %" PRIu64 " did not stay and will not be tried again",
		    n->app.version, pending);
	}

	uint64_t now = now_ms(n);
	n->next_reading = now;
	n->next_connect = now;
	n->next_ota = NEVER;
	n->rollback_deadline = n->app.pending_verify ? now + n->opt.rollback_after_ms : NEVER;
	const sensor_config *c = &id->config;
	say(n, SENSOR_LOG_INFO, "node %s: firmware %s %s (secure version %" PRIu32 ") on %s, boot %" PRIu32 ", %s on GPIO %u every %" PRIu32 " ms%s",
	    c->node, c->firmware, n->app.version, n->app.secure_version, n->app.chip, n->boot, sensor_type_name(c->sensor),
	    c->sensor_pin, c->interval_ms, n->app.pending_verify ? "; a new app, valid once the broker is reached" : "");
}

static void take_reading(sensor_node *n, uint64_t now)
{
	const sensor_config *c = &n->id->config;
	n->next_reading += c->interval_ms;
	if (n->next_reading <= now)
		n->next_reading = now + c->interval_ms;
	dht_reading d;
	dht_status st = n->p->read_sensor(n->p->ctx, c->sensor, c->sensor_pin, &d);
	if (st != DHT_OK) {
		n->read_failures++;
		say(n, SENSOR_LOG_WARN, "reading the %s failed: %s", sensor_type_name(c->sensor), dht_status_string(st));
		return;
	}
	int dbm = 0;
	bool has_rssi = n->p->rssi(n->p->ctx, &dbm) && dbm >= -127 && dbm <= 0;
	sensor_reading r = {
		.boot = n->boot,
		.seq = n->seq++,
		.t_ms = wall_ms(n),
		.temp_dc = d.temp_dc,
		.hum_dc = d.hum_dc,
		.rssi = (int8_t)(has_rssi ? dbm : 0),
		.has_rssi = has_rssi,
	};
	n->readings++;
	if (sensor_queue_push(&n->q, &r))
		say(n, SENSOR_LOG_WARN, "the offline queue is full (%zu readings): the oldest was dropped (%" PRIu32 " so far)",
		    n->q.cap, n->q.dropped);
	char line[SENSOR_PAYLOAD_MAX];
	if (sensor_payload(line, sizeof line, &r, NULL) > 0)
		say(n, SENSOR_LOG_DEBUG, "reading %s", line);
}

static void lost(sensor_node *n, uint64_t now, const char *why)
{
	bool was_up = n->mqtt == SENSOR_MQTT_UP;
	sensor_queue_unsend(&n->q);
	n->mqtt = SENSOR_MQTT_DOWN;
	uint32_t delay = sensor_backoff_next(&n->backoff, n->p->random(n->p->ctx));
	n->next_connect = now + delay;
	say(n, SENSOR_LOG_WARN, "%s the broker %s:%u: %s; %zu readings kept; next attempt in %" PRIu32 " ms",
	    was_up ? "lost" : "could not reach", n->id->config.mqtt_host, n->id->config.mqtt_port, why, sensor_queue_len(&n->q),
	    delay);
}

static void start_connect(sensor_node *n, uint64_t now)
{
	say(n, SENSOR_LOG_INFO, "connecting to mqtts://%s:%u as %s", n->id->config.mqtt_host, n->id->config.mqtt_port,
	    n->id->config.node);
	if (n->p->mqtt_connect(n->p->ctx) != 0) {
		lost(n, now, "the connection could not be started");
		return;
	}
	n->mqtt = SENSOR_MQTT_CONNECTING;
	n->connect_deadline = now + n->opt.connect_timeout_ms;
}

static void publish(sensor_node *n, uint64_t now)
{
	while (sensor_queue_inflight(&n->q) < n->opt.inflight) {
		sensor_queue_entry *e = sensor_queue_next(&n->q);
		if (!e)
			return;
		char buf[SENSOR_PAYLOAD_MAX];
		int len = sensor_payload(buf, sizeof buf, &e->r, n->app.version);
		int mid = 0;
		if (len < 0 || n->p->mqtt_publish(n->p->ctx, n->id->config.mqtt_topic, buf, (size_t)len, &mid) != 0) {
			n->p->mqtt_disconnect(n->p->ctx);
			lost(n, now, "publishing failed");
			return;
		}
		sensor_queue_sent(&n->q, e, mid);
		n->published++;
	}
}

static void validate_app(sensor_node *n)
{
	if (n->p->mark_valid(n->p->ctx) != 0) {
		say(n, SENSOR_LOG_ERROR, "marking the new app valid failed; it will be rolled back");
		return;
	}
	n->app.pending_verify = false;
	n->rollback_deadline = NEVER;
	uint64_t pending = kv(n, SENSOR_KV_PENDING);
	if (pending > n->manifest_version) {
		n->manifest_version = pending;
		kv_put(n, SENSOR_KV_MANIFEST_VERSION, pending);
	}
	if (pending)
		kv_put(n, SENSOR_KV_PENDING, 0);
	say(n, SENSOR_LOG_INFO, "the broker was reached: app %s marked valid (manifest version %" PRIu64 ")", n->app.version,
	    n->manifest_version);
}

static void handle(sensor_node *n, const sensor_event *ev, uint64_t now)
{
	switch (ev->kind) {
	case SENSOR_EV_CONNECTED:
		if (n->mqtt != SENSOR_MQTT_CONNECTING)
			return;
		n->mqtt = SENSOR_MQTT_UP;
		n->connections++;
		sensor_backoff_reset(&n->backoff);
		say(n, SENSOR_LOG_INFO, "connected to the broker; %zu readings to send", sensor_queue_len(&n->q));
		if (!n->connected_once) {
			n->connected_once = true;
			n->next_ota = now + n->opt.ota_first_delay_ms;
		}
		if (n->app.pending_verify)
			validate_app(n);
		return;
	case SENSOR_EV_DISCONNECTED:
		if (n->mqtt == SENSOR_MQTT_DOWN)
			return;
		n->p->mqtt_disconnect(n->p->ctx);
		lost(n, now, ev->detail[0] ? ev->detail : "the connection ended");
		return;
	case SENSOR_EV_PUBACK:
		if (ev->reason >= 0x80) {
			/* Sending it again would be refused again. */
			for (size_t i = 0; i < sensor_queue_len(&n->q); i++) {
				sensor_queue_entry *e = sensor_queue_at(&n->q, i);
				if (e->state == SENSOR_Q_INFLIGHT && e->mid == ev->mid)
					say(n, SENSOR_LOG_ERROR, "the broker refused reading %" PRIu32 " (reason 0x%02x)", e->r.seq,
					    ev->reason);
			}
			n->refused++;
		}
		if (sensor_queue_ack(&n->q, ev->mid))
			n->acked++;
		return;
	case SENSOR_EV_STOP:
		n->stop = true;
		return;
	case SENSOR_EV_TIMEOUT:
		return;
	}
}

static uint64_t earliest(uint64_t a, uint64_t b) { return a < b ? a : b; }

bool sensor_node_step(sensor_node *n)
{
	if (n->stop)
		return false;
	uint64_t now = now_ms(n);
	if (now >= n->next_reading)
		take_reading(n, now);
	if (n->mqtt == SENSOR_MQTT_DOWN && now >= n->next_connect)
		start_connect(n, now);
	if (n->mqtt == SENSOR_MQTT_CONNECTING && now >= n->connect_deadline) {
		n->p->mqtt_disconnect(n->p->ctx);
		lost(n, now, "no CONNACK in time");
	}
	if (n->mqtt == SENSOR_MQTT_UP)
		publish(n, now);
	if (n->app.pending_verify && now >= n->rollback_deadline) {
		say(n, SENSOR_LOG_ERROR, "the new app %s has not reached the broker in %" PRIu32 " ms: rolling back", n->app.version,
		    n->opt.rollback_after_ms);
		n->p->rollback(n->p->ctx);
		n->stop = true;
		return false;
	}
	if (n->mqtt == SENSOR_MQTT_UP && !n->app.pending_verify && now >= n->next_ota) {
		sensor_node_ota_check(n);
		if (n->stop)
			return false;
		now = now_ms(n);
	}

	uint64_t wake = n->next_reading;
	if (n->mqtt == SENSOR_MQTT_DOWN)
		wake = earliest(wake, n->next_connect);
	if (n->mqtt == SENSOR_MQTT_CONNECTING)
		wake = earliest(wake, n->connect_deadline);
	if (n->mqtt == SENSOR_MQTT_UP)
		wake = earliest(wake, n->next_ota);
	wake = earliest(wake, n->rollback_deadline);
	uint64_t wait = wake > now ? wake - now : 0;
	sensor_event ev;
	memset(&ev, 0, sizeof ev);
	n->p->wait(n->p->ctx, wait > UINT32_MAX ? UINT32_MAX : (uint32_t)wait, &ev);
	handle(n, &ev, now_ms(n));
	return !n->stop;
}

void sensor_node_run(sensor_node *n)
{
	while (sensor_node_step(n)) {
	}
}

/* fetch gets a small file of the OTA tree; TOO_LARGE passes through. */
static int fetch(sensor_node *n, const char *name, uint8_t *buf, size_t cap, size_t *len)
{
	char url[SENSOR_OTA_URL_MAX + 80], err[160] = "";
	snprintf(url, sizeof url, "%s/%s/%s", n->id->config.ota_url, n->id->config.firmware, name);
	int rc = n->p->https_get(n->p->ctx, url, buf, cap, len, err, sizeof err);
	if (rc == SENSOR_HTTP_ERROR)
		say(n, SENSOR_LOG_WARN, "OTA: fetching %s failed: %s", url, err);
	return rc;
}

static sensor_ota_result install(sensor_node *n, const sensor_manifest *m)
{
	const sensor_platform *p = n->p;
	char url[SENSOR_OTA_URL_MAX + 160], err[160] = "";
	snprintf(url, sizeof url, "%s/%s", n->id->config.ota_url, m->path);
	say(n, SENSOR_LOG_INFO, "OTA: downloading %s (%" PRId64 " bytes)", url, m->size);
	sensor_sha256 sum = {0};
	uint64_t len = 0;
	uint8_t sha[32];
	if (sensor_sha256_begin(&sum) != 0 || p->ota_download(p->ctx, url, (uint64_t)m->size, &sum, &len, err, sizeof err) != 0) {
		sensor_sha256_abort(&sum);
		p->ota_abort(p->ctx);
		say(n, SENSOR_LOG_WARN, "OTA: downloading %s failed: %s", url, err);
		return SENSOR_OTA_DOWNLOAD_FAILED;
	}
	if (sensor_sha256_finish(&sum, sha) != 0 || sensor_image_check(m, len, sha) != 0) {
		p->ota_abort(p->ctx);
		say(n, SENSOR_LOG_ERROR, "OTA: refused the image %s: %" PRIu64 " bytes whose SHA-256 is not the manifest's (%" PRId64 " bytes, %s)",
		    url, len, m->size, m->sha256);
		return SENSOR_OTA_IMAGE_MISMATCH;
	}
	kv_put(n, SENSOR_KV_PENDING, m->manifest_version);
	if (p->ota_commit(p->ctx, m, err, sizeof err) != 0) {
		/* The image is what the manifest names and still refused (its
		 * app signature, most likely): that build will not install. */
		n->manifest_version = m->manifest_version;
		kv_put(n, SENSOR_KV_MANIFEST_VERSION, m->manifest_version);
		kv_put(n, SENSOR_KV_PENDING, 0);
		say(n, SENSOR_LOG_ERROR, "OTA: the image of version %s was refused: %s; manifest version %" PRIu64 " will not be tried again",
		    m->version, err, m->manifest_version);
		return SENSOR_OTA_COMMIT_FAILED;
	}
	say(n, SENSOR_LOG_INFO, "OTA: installed version %s (manifest version %" PRIu64 "); restarting into it", m->version,
	    m->manifest_version);
	if (n->mqtt != SENSOR_MQTT_DOWN)
		p->mqtt_disconnect(p->ctx);
	n->stop = true;
	p->restart(p->ctx);
	return SENSOR_OTA_INSTALLED;
}

sensor_ota_result sensor_node_ota_check(sensor_node *n)
{
	n->next_ota = now_ms(n) + n->opt.ota_interval_ms;
	int64_t wall = wall_ms(n);
	if (wall < 0) {
		/* docs/ota.md: nothing is taken before the clock is set; look
		 * again soon rather than in hours. */
		n->next_ota = now_ms(n) + 60000u;
		say(n, SENSOR_LOG_INFO, "OTA: waiting for the clock (SNTP from %s)", n->id->config.time_server);
		return SENSOR_OTA_NO_CLOCK;
	}
	uint8_t *manifest = malloc(SENSOR_MANIFEST_MAX);
	uint8_t sig[SENSOR_SIGNATURE_MAX];
	size_t mlen = 0, slen = 0;
	if (!manifest)
		return SENSOR_OTA_FETCH_FAILED;
	sensor_ota_result r;
	int mrc = fetch(n, "manifest.json", manifest, SENSOR_MANIFEST_MAX, &mlen);
	int src = mrc == SENSOR_HTTP_ERROR ? SENSOR_HTTP_ERROR : fetch(n, "manifest.json.sig", sig, sizeof sig, &slen);
	if (mrc == SENSOR_HTTP_ERROR || src == SENSOR_HTTP_ERROR) {
		free(manifest);
		return SENSOR_OTA_FETCH_FAILED;
	}
	char detail[200];
	sensor_manifest m;
	if (mrc == SENSOR_HTTP_TOO_LARGE) {
		r = SENSOR_OTA_TOO_LARGE;
		snprintf(detail, sizeof detail, "the manifest is larger than %d bytes", SENSOR_MANIFEST_MAX);
	} else {
		sensor_device dev = {
			.firmware = n->id->config.firmware,
			.chip = n->app.chip,
			.version = n->app.version,
			.secure_version = n->app.secure_version,
			.manifest_version = n->manifest_version,
		};
		/* A signature file too large for the buffer is no signature. */
		r = sensor_manifest_verify(manifest, mlen, sig, src == SENSOR_HTTP_TOO_LARGE ? 0 : slen, n->id->ota_keys,
					   n->id->n_ota_keys, &dev, wall / 1000, &m, detail, sizeof detail);
	}
	free(manifest);
	if (r == SENSOR_OTA_UNCHANGED || r == SENSOR_OTA_REPLAY) {
		say(n, SENSOR_LOG_INFO, "OTA: no update: %s", detail);
		return r;
	}
	if (r != SENSOR_OTA_OK) {
		say(n, SENSOR_LOG_ERROR, "OTA: refused the manifest (%s): %s", sensor_ota_result_name(r), detail);
		return r;
	}
	say(n, SENSOR_LOG_INFO, "OTA: accepted the manifest: %s", detail);
	return install(n, &m);
}
