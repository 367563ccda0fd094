/*
 * The core's platform on ESP-IDF 5.1+. Everything that decides lives in
 * the core; this file only does what sensor_platform asks. TLS trusts
 * the identity's site CA alone and checks the server's name (no common
 * name skip, no insecure option anywhere), and presents the identity's
 * client certificate, for MQTT and HTTPS alike.
 */
#include <string.h>
#include <sys/time.h>

#include "esp_app_desc.h"
#include "esp_event.h"
#include "esp_http_client.h"
#include "esp_https_ota.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_netif_sntp.h"
#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "sdkconfig.h"

#include "platform_esp.h"

static const char *TAG = "sensor";

static struct {
	sensor_platform p;
	const sensor_identity *id;
	nvs_handle_t nvs;
	QueueHandle_t events;
	esp_mqtt_client_handle_t mqtt;
	esp_https_ota_handle_t ota;
	volatile bool wifi_up, clock_set;
} g;

/* --- time, randomness, logs --- */

static uint64_t e_uptime(void *ctx) { return (uint64_t)esp_timer_get_time() / 1000u; }

static int64_t e_unix_ms(void *ctx)
{
	if (!g.clock_set)
		return -1;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static uint32_t e_random(void *ctx) { return esp_random(); }

static void e_log(void *ctx, sensor_log_level lvl, const char *msg)
{
	switch (lvl) {
	case SENSOR_LOG_DEBUG:
		ESP_LOGD(TAG, "%s", msg);
		break;
	case SENSOR_LOG_INFO:
		ESP_LOGI(TAG, "%s", msg);
		break;
	case SENSOR_LOG_WARN:
		ESP_LOGW(TAG, "%s", msg);
		break;
	default:
		ESP_LOGE(TAG, "%s", msg);
	}
}

static dht_status e_read(void *ctx, sensor_type t, int pin, dht_reading *out) { return dht_gpio_read(t, pin, out); }

static bool e_rssi(void *ctx, int *dbm)
{
	wifi_ap_record_t ap;
	if (!g.wifi_up || esp_wifi_sta_get_ap_info(&ap) != ESP_OK)
		return false;
	*dbm = ap.rssi;
	return true;
}

/* --- NVS --- */

static int e_kv_get(void *ctx, const char *key, uint64_t *v)
{
	esp_err_t err = nvs_get_u64(g.nvs, key, v);
	return err == ESP_OK ? 0 : err == ESP_ERR_NVS_NOT_FOUND ? 1 : -1;
}

static int e_kv_set(void *ctx, const char *key, uint64_t v)
{
	return nvs_set_u64(g.nvs, key, v) == ESP_OK && nvs_commit(g.nvs) == ESP_OK ? 0 : -1;
}

/* --- the app and its OTA state --- */

static void e_app(void *ctx, sensor_app *out)
{
	const esp_app_desc_t *d = esp_app_get_description();
	memset(out, 0, sizeof *out);
	strlcpy(out->version, d->version, sizeof out->version);
	out->secure_version = d->secure_version;
	strlcpy(out->chip, CONFIG_IDF_TARGET, sizeof out->chip);
	esp_ota_img_states_t st;
	out->pending_verify = esp_ota_get_state_partition(esp_ota_get_running_partition(), &st) == ESP_OK &&
			      st == ESP_OTA_IMG_PENDING_VERIFY;
}

static int e_mark_valid(void *ctx) { return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK ? 0 : -1; }

static void e_rollback(void *ctx)
{
	esp_ota_mark_app_invalid_rollback_and_reboot();
	esp_restart(); /* no previous app to go back to: start again */
}

static void e_restart(void *ctx) { esp_restart(); }

/* --- MQTT: esp-mqtt's events go to the core's loop through a queue --- */

static void push(sensor_event_kind kind, int mid, const char *detail)
{
	sensor_event ev = {.kind = kind, .mid = mid};
	if (detail)
		strlcpy(ev.detail, detail, sizeof ev.detail);
	xQueueSend(g.events, &ev, 0);
}

static void on_mqtt(void *arg, esp_event_base_t base, int32_t id, void *data)
{
	esp_mqtt_event_handle_t e = data;
	char why[96];
	switch ((esp_mqtt_event_id_t)id) {
	case MQTT_EVENT_CONNECTED:
		push(SENSOR_EV_CONNECTED, 0, NULL);
		break;
	case MQTT_EVENT_DISCONNECTED:
		push(SENSOR_EV_DISCONNECTED, 0, "disconnected");
		break;
	case MQTT_EVENT_PUBLISHED:
		push(SENSOR_EV_PUBACK, e->msg_id, NULL);
		break;
	case MQTT_EVENT_ERROR:
		snprintf(why, sizeof why, "error type %d, TLS 0x%x/0x%x, certificate flags 0x%x, CONNACK %d, errno %d",
			 e->error_handle->error_type, e->error_handle->esp_tls_last_esp_err, e->error_handle->esp_tls_stack_err,
			 e->error_handle->esp_tls_cert_verify_flags, e->error_handle->connect_return_code,
			 e->error_handle->esp_transport_sock_errno);
		push(SENSOR_EV_DISCONNECTED, 0, why);
		break;
	default:
		break;
	}
}

static void e_mqtt_disconnect(void *ctx)
{
	if (g.mqtt) {
		/* A client per connection: esp-mqtt's own outbox would resend
		 * what the core already resends. */
		esp_mqtt_client_stop(g.mqtt);
		esp_mqtt_client_destroy(g.mqtt);
		g.mqtt = NULL;
	}
	xQueueReset(g.events);
}

static int e_mqtt_connect(void *ctx)
{
	const sensor_config *c = &g.id->config;
	e_mqtt_disconnect(ctx);
	if (!g.wifi_up) {
		push(SENSOR_EV_DISCONNECTED, 0, "Wi-Fi is not connected");
		return 0;
	}
	/* PEM, NUL-terminated: lengths 0. */
	esp_mqtt_client_config_t cfg = {
		.broker.address.hostname = c->mqtt_host,
		.broker.address.port = c->mqtt_port,
		.broker.address.transport = MQTT_TRANSPORT_OVER_SSL,
		.broker.verification.certificate = g.id->ca,
		.credentials.client_id = c->node,
		.credentials.authentication.certificate = g.id->cert,
		.credentials.authentication.key = g.id->key,
		.session.protocol_ver = MQTT_PROTOCOL_V_5,
		.session.keepalive = 60,
		.network.disable_auto_reconnect = true,
		.network.timeout_ms = 10000,
	};
	g.mqtt = esp_mqtt_client_init(&cfg);
	if (!g.mqtt)
		return -1;
	esp_mqtt_client_register_event(g.mqtt, ESP_EVENT_ANY_ID, on_mqtt, NULL);
	return esp_mqtt_client_start(g.mqtt) == ESP_OK ? 0 : -1;
}

static int e_mqtt_publish(void *ctx, const char *topic, const char *payload, size_t len, int *mid)
{
	if (!g.mqtt)
		return -1;
	int id = esp_mqtt_client_publish(g.mqtt, topic, payload, (int)len, 1, 0);
	if (id < 0)
		return -1;
	*mid = id;
	return 0;
}

static void e_wait(void *ctx, uint32_t timeout, sensor_event *ev)
{
	/* pdMS_TO_TICKS overflows past an hour or so; the loop comes back */
	if (timeout > 60000)
		timeout = 60000;
	if (xQueueReceive(g.events, ev, pdMS_TO_TICKS(timeout)) != pdTRUE)
		ev->kind = SENSOR_EV_TIMEOUT;
}

/* --- HTTPS and OTA --- */

static esp_http_client_config_t http_config(const char *url)
{
	return (esp_http_client_config_t){
		.url = url,
		.cert_pem = g.id->ca,
		.client_cert_pem = g.id->cert,
		.client_key_pem = g.id->key,
		.timeout_ms = 15000,
		.disable_auto_redirect = true,
		.keep_alive_enable = true,
	};
}

static int e_https_get(void *ctx, const char *url, uint8_t *buf, size_t cap, size_t *len, char *err, size_t errlen)
{
	esp_http_client_config_t cfg = http_config(url);
	esp_http_client_handle_t c = esp_http_client_init(&cfg);
	int rc = SENSOR_HTTP_ERROR;
	*len = 0;
	if (!c) {
		snprintf(err, errlen, "esp_http_client_init failed");
		return rc;
	}
	esp_err_t e = esp_http_client_open(c, 0);
	if (e != ESP_OK) {
		snprintf(err, errlen, "%s", esp_err_to_name(e));
		goto out;
	}
	esp_http_client_fetch_headers(c);
	int status = esp_http_client_get_status_code(c);
	if (status != 200) {
		snprintf(err, errlen, "HTTP status %d", status);
		goto out;
	}
	for (;;) {
		uint8_t probe;
		int n = *len < cap ? esp_http_client_read(c, (char *)buf + *len, (int)(cap - *len)) : esp_http_client_read(c, (char *)&probe, 1);
		if (n < 0) {
			snprintf(err, errlen, "reading the body failed");
			goto out;
		}
		if (n == 0)
			break;
		if (*len == cap) {
			rc = SENSOR_HTTP_TOO_LARGE;
			goto out;
		}
		*len += (size_t)n;
	}
	rc = SENSOR_HTTP_OK;
out:
	esp_http_client_close(c);
	esp_http_client_cleanup(c);
	return rc;
}

static void e_ota_abort(void *ctx)
{
	if (g.ota) {
		esp_https_ota_abort(g.ota);
		g.ota = NULL;
	}
}

/*
 * esp_https_ota writes the image into the next OTA partition itself;
 * the core's hash is then taken over what the partition holds, which
 * with flash encryption esp_partition_read decrypts.
 */
static int e_ota_download(void *ctx, const char *url, uint64_t max, sensor_sha256 *sum, uint64_t *len, char *err, size_t errlen)
{
	esp_http_client_config_t http = http_config(url);
	esp_https_ota_config_t cfg = {.http_config = &http};
	*len = 0;
	esp_err_t e = esp_https_ota_begin(&cfg, &g.ota);
	if (e != ESP_OK) {
		g.ota = NULL;
		snprintf(err, errlen, "esp_https_ota_begin: %s", esp_err_to_name(e));
		return -1;
	}
	while ((e = esp_https_ota_perform(g.ota)) == ESP_ERR_HTTPS_OTA_IN_PROGRESS) {
		if ((uint64_t)esp_https_ota_get_image_len_read(g.ota) > max) {
			snprintf(err, errlen, "the image is larger than the manifest's %llu bytes", (unsigned long long)max);
			return -1;
		}
	}
	if (e != ESP_OK || !esp_https_ota_is_complete_data_received(g.ota)) {
		snprintf(err, errlen, "esp_https_ota_perform: %s", esp_err_to_name(e));
		return -1;
	}
	uint64_t n = (uint64_t)esp_https_ota_get_image_len_read(g.ota);
	const esp_partition_t *part = esp_ota_get_next_update_partition(NULL);
	static uint8_t chunk[4096];
	for (uint64_t off = 0; off < n; off += sizeof chunk) {
		size_t k = n - off < sizeof chunk ? (size_t)(n - off) : sizeof chunk;
		if (esp_partition_read(part, (size_t)off, chunk, k) != ESP_OK || sensor_sha256_update(sum, chunk, k) != 0) {
			snprintf(err, errlen, "reading the image back failed");
			return -1;
		}
	}
	*len = n;
	return 0;
}

static int e_ota_commit(void *ctx, const sensor_manifest *m, char *err, size_t errlen)
{
	/* checks the image and its Secure Boot V2 signature, then sets the
	 * boot partition */
	esp_err_t e = esp_https_ota_finish(g.ota);
	g.ota = NULL;
	if (e != ESP_OK) {
		snprintf(err, errlen, "esp_https_ota_finish: %s", esp_err_to_name(e));
		return -1;
	}
	return 0;
}

/* --- Wi-Fi and SNTP --- */

static void on_wifi(void *arg, esp_event_base_t base, int32_t id, void *data)
{
	if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
		g.wifi_up = false;
		esp_wifi_connect();
	} else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
		g.wifi_up = true;
	}
}

static void on_time(struct timeval *tv) { g.clock_set = true; }

static void wifi_start(const sensor_config *c)
{
	ESP_ERROR_CHECK(esp_netif_init());
	ESP_ERROR_CHECK(esp_event_loop_create_default());
	esp_netif_create_default_wifi_sta();
	wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
	ESP_ERROR_CHECK(esp_wifi_init(&init));
	ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi, NULL));
	ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi, NULL));
	wifi_config_t w = {
		.sta = {
			.threshold.authmode = WIFI_AUTH_WPA2_PSK,
			.sae_pwe_h2e = WPA3_SAE_PWE_BOTH,
		},
	};
	strlcpy((char *)w.sta.ssid, c->wifi_ssid, sizeof w.sta.ssid);
	/* 64 hex digits are taken as the raw PSK */
	memcpy(w.sta.password, c->wifi_psk, strnlen(c->wifi_psk, sizeof w.sta.password));
	ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
	ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &w));
	if (c->wifi_country[0])
		ESP_ERROR_CHECK(esp_wifi_set_country_code(c->wifi_country, true));
	ESP_ERROR_CHECK(esp_wifi_start());
	memset(&w, 0, sizeof w);

	esp_sntp_config_t sntp = ESP_NETIF_SNTP_DEFAULT_CONFIG(c->time_server);
	sntp.sync_cb = on_time;
	sntp.wait_for_sync = false;
	ESP_ERROR_CHECK(esp_netif_sntp_init(&sntp));
}

const sensor_platform *platform_esp_start(const sensor_identity *id)
{
	g.id = id;
	g.events = xQueueCreate(32, sizeof(sensor_event));
	ESP_ERROR_CHECK(nvs_open("sensor", NVS_READWRITE, &g.nvs));
	wifi_start(&id->config);
	g.p = (sensor_platform){
		.ctx = &g,
		.uptime_ms = e_uptime,
		.unix_ms = e_unix_ms,
		.random = e_random,
		.log = e_log,
		.read_sensor = e_read,
		.rssi = e_rssi,
		.kv_get = e_kv_get,
		.kv_set = e_kv_set,
		.app = e_app,
		.mqtt_connect = e_mqtt_connect,
		.mqtt_disconnect = e_mqtt_disconnect,
		.mqtt_publish = e_mqtt_publish,
		.wait = e_wait,
		.https_get = e_https_get,
		.ota_download = e_ota_download,
		.ota_commit = e_ota_commit,
		.ota_abort = e_ota_abort,
		.mark_valid = e_mark_valid,
		.rollback = e_rollback,
		.restart = e_restart,
	};
	return &g.p;
}
