/*
 * libFuzzer target: the OTA manifest reader on any bytes (make fuzz).
 * The signature check comes first on the device; this reaches the part
 * behind it, which only ever sees signed bytes, as if an attacker held
 * the key.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sensor/ota.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sensor_manifest m;
	char err[160];
	if (sensor_manifest_parse(data, size, &m, err, sizeof err) == 0) {
		/* an accepted manifest is one the device can act on */
		if (size > SENSOR_MANIFEST_MAX || m.size <= 0 || m.expires <= 0 || m.manifest_version == 0 ||
		    m.manifest_version > SENSOR_MANIFEST_VERSION_MAX || strlen(m.sha256) != 64 || strlen(m.version) == 0)
			__builtin_trap();
	}
	return 0;
}
