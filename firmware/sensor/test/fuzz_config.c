/* libFuzzer target: config.json's parser on any bytes (make fuzz). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sensor/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sensor_config c;
	char err[256];
	if (sensor_config_parse((const char *)data, size, &c, err, sizeof err) == 0) {
		/* what it accepts is terminated and within its bounds */
		if (strlen(c.node) == 0 || strlen(c.mqtt_topic) >= sizeof c.mqtt_topic || c.interval_ms < SENSOR_INTERVAL_MIN_MS)
			__builtin_trap();
	} else if (memchr(err, 0, sizeof err) == NULL || c.wifi_psk[0] != 0) {
		__builtin_trap();
	}
	return 0;
}
