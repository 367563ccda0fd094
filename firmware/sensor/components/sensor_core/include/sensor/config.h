/*
 * config.json, the node's settings from its identity image.
 *
 * docs/node.md is the contract; firmware/identity (Go) writes the file
 * and its Config.Validate applies the same rules as sensor_config_parse.
 * The parser refuses to start on anything it does not understand rather
 * than guess: a node that runs with a wrong topic or broker is worse
 * than one that says why it will not run.
 */
#ifndef SENSOR_CONFIG_H
#define SENSOR_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SENSOR_CONFIG_FORMAT 1
/* config.json is a few hundred bytes; anything near this is not one. */
#define SENSOR_CONFIG_MAX_SIZE 8192
/* The OTA base URL's bound, so that every URL built from it fits. */
#define SENSOR_OTA_URL_MAX 200
#define SENSOR_INTERVAL_MIN_MS 1000u
#define SENSOR_INTERVAL_MAX_MS 86400000u

typedef enum {
	SENSOR_DHT11 = 11,
	SENSOR_DHT22 = 22,
} sensor_type;

typedef struct {
	char node[64];
	char firmware[33];
	char wifi_ssid[33];
	/* Never logged, never part of an error. */
	char wifi_psk[65];
	/* "" when config.json has none. */
	char wifi_country[3];
	char mqtt_host[254];
	uint16_t mqtt_port;
	char mqtt_topic[80];
	uint32_t interval_ms;
	sensor_type sensor;
	uint8_t sensor_pin;
	char ota_url[SENSOR_OTA_URL_MAX + 1];
	char time_server[254];
} sensor_config;

/*
 * sensor_config_parse reads config.json's bytes (len of them, no NUL
 * needed) into out. It returns 0, or -1 with a sentence in err naming
 * the field and what it must be.
 */
int sensor_config_parse(const char *json, size_t len, sensor_config *out, char *err, size_t errlen);

const char *sensor_type_name(sensor_type t);

#endif
