/*
 * The node: its loop and the platform it runs on.
 *
 * The core decides everything (when to read, what to send and resend,
 * when to reconnect, whether to take an update, when to mark it valid
 * or roll it back); a platform only does what it is told and reports
 * what happened. ESP-IDF's platform is main/platform_esp.c, Linux's is
 * host/platform_linux.c. Neither keeps state the core relies on besides
 * what sensor_platform names: the key-value store (NVS, or files), the
 * running app's description and OTA state, and the inactive slot.
 *
 * The loop is single-threaded: sensor_node_step does what is due, then
 * waits in the platform for the next event (the broker's CONNACK, a
 * PUBACK, a lost connection) or the next deadline. A platform whose
 * network runs in another task queues its events for wait to return.
 */
#ifndef SENSOR_NODE_H
#define SENSOR_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sensor/backoff.h"
#include "sensor/config.h"
#include "sensor/crypto.h"
#include "sensor/dht.h"
#include "sensor/identity.h"
#include "sensor/ota.h"
#include "sensor/reading.h"

typedef enum {
	SENSOR_LOG_DEBUG,
	SENSOR_LOG_INFO,
	SENSOR_LOG_WARN,
	SENSOR_LOG_ERROR,
} sensor_log_level;

typedef enum {
	SENSOR_EV_TIMEOUT = 0,
	/* The broker accepted the connection (CONNACK, success). */
	SENSOR_EV_CONNECTED,
	/* The connection, or the attempt at one, ended; detail says why. */
	SENSOR_EV_DISCONNECTED,
	/* A PUBACK for mid; reason is MQTT 5's (≥ 0x80 a refusal). */
	SENSOR_EV_PUBACK,
	/* The platform asks the loop to end (the host's SIGTERM). */
	SENSOR_EV_STOP,
} sensor_event_kind;

typedef struct {
	sensor_event_kind kind;
	int mid;
	int reason;
	char detail[128];
} sensor_event;

/* The running app, from its descriptor and the OTA data. */
typedef struct {
	char version[32];
	uint32_t secure_version;
	/* CONFIG_IDF_TARGET: "esp32s3" */
	char chip[16];
	/* The first boot after an update: not yet marked valid. */
	bool pending_verify;
} sensor_app;

/* Return values of https_get. */
enum {
	SENSOR_HTTP_OK = 0,
	SENSOR_HTTP_ERROR = -1,
	/* The body is longer than the buffer. */
	SENSOR_HTTP_TOO_LARGE = 1,
};

typedef struct sensor_platform {
	void *ctx;
	/* Milliseconds since boot, monotonic. */
	uint64_t (*uptime_ms)(void *ctx);
	/* Unix time in milliseconds; negative while the clock is not set. */
	int64_t (*unix_ms)(void *ctx);
	uint32_t (*random)(void *ctx);
	void (*log)(void *ctx, sensor_log_level level, const char *msg);

	dht_status (*read_sensor)(void *ctx, sensor_type type, int pin, dht_reading *out);
	/* The Wi-Fi signal; false when there is none to report. */
	bool (*rssi)(void *ctx, int *dbm);

	/* A persistent store of a few integers (NVS): kv_get returns 0, 1
	 * for a key never set, or -1. */
	int (*kv_get)(void *ctx, const char *key, uint64_t *value);
	int (*kv_set)(void *ctx, const char *key, uint64_t value);
	void (*app)(void *ctx, sensor_app *out);

	/* MQTT v5 over TLS with the identity's certificate, QoS 1. connect
	 * starts an attempt whose end is an event; publish queues one
	 * message and gives its id. */
	int (*mqtt_connect)(void *ctx);
	void (*mqtt_disconnect)(void *ctx);
	int (*mqtt_publish)(void *ctx, const char *topic, const char *payload, size_t len, int *mid);
	void (*wait)(void *ctx, uint32_t timeout_ms, sensor_event *ev);

	/* HTTPS GET with the identity's certificate, trusting only the site
	 * CA: at most cap bytes into buf. */
	int (*https_get)(void *ctx, const char *url, uint8_t *buf, size_t cap, size_t *len, char *err, size_t errlen);
	/* Writes the image at url into the inactive slot, refusing more than
	 * max_len bytes, and feeds exactly the bytes written to sum. */
	int (*ota_download)(void *ctx, const char *url, uint64_t max_len, sensor_sha256 *sum, uint64_t *len, char *err,
			    size_t errlen);
	/* Makes the downloaded slot the one to boot next (ESP-IDF checks
	 * the app's signature here). */
	int (*ota_commit)(void *ctx, const sensor_manifest *m, char *err, size_t errlen);
	void (*ota_abort)(void *ctx);
	/* esp_ota_mark_app_valid_cancel_rollback */
	int (*mark_valid)(void *ctx);
	/* esp_ota_mark_app_invalid_rollback_and_reboot */
	void (*rollback)(void *ctx);
	void (*restart)(void *ctx);
} sensor_platform;

typedef struct {
	/* Between OTA checks, and from the first connection to the first. */
	uint32_t ota_interval_ms, ota_first_delay_ms;
	/* How long a new app waits to reach the broker before it rolls back. */
	uint32_t rollback_after_ms;
	/* How long a connection attempt may take to its CONNACK. */
	uint32_t connect_timeout_ms;
	uint32_t backoff_base_ms, backoff_cap_ms;
	/* Readings in flight at once. */
	uint32_t inflight;
} sensor_options;

/* The device's defaults. */
extern const sensor_options sensor_default_options;

/* The keys of the platform's store. */
#define SENSOR_KV_BOOT "boot"
#define SENSOR_KV_MANIFEST_VERSION "ota_mv"
#define SENSOR_KV_PENDING "ota_pending"

typedef struct {
	const sensor_platform *p;
	const sensor_identity *id;
	sensor_options opt;
	sensor_app app;
	sensor_queue q;
	sensor_backoff backoff;
	enum { SENSOR_MQTT_DOWN, SENSOR_MQTT_CONNECTING, SENSOR_MQTT_UP } mqtt;
	uint32_t boot, seq;
	/* The highest manifest version accepted (NVS). */
	uint64_t manifest_version;
	uint64_t next_reading, next_connect, connect_deadline, next_ota, rollback_deadline;
	bool connected_once, stop;
	/* Counters, for the log. */
	uint32_t readings, read_failures, published, acked, refused, connections;
} sensor_node;

/*
 * sensor_node_start sets the node up: the boot counter goes up by one
 * (a random one if the store fails), an update that was rolled back is
 * recorded as tried. storage holds the offline queue.
 */
void sensor_node_start(sensor_node *n, const sensor_platform *p, const sensor_identity *id, const sensor_options *opt,
		       sensor_queue_entry *storage, size_t cap);
/* sensor_node_step does what is due and waits for the next thing; it
 * returns false once the node has stopped (or restarts). */
bool sensor_node_step(sensor_node *n);
void sensor_node_run(sensor_node *n);
/* sensor_node_ota_check runs one OTA check now (it is due on its own
 * schedule; the tests call it). */
sensor_ota_result sensor_node_ota_check(sensor_node *n);

#endif
