/*
 * The node's identity, read from the files of its identity image
 * (docs/node.md): on the device the LittleFS partition mounted at a
 * VFS path, on the host a folder with the same layout. Only standard C
 * I/O is used, so both read it with the same code.
 */
#ifndef SENSOR_IDENTITY_H
#define SENSOR_IDENTITY_H

#include <stddef.h>

#include "sensor/config.h"
#include "sensor/ota.h"

#define SENSOR_MAX_OTA_KEYS 4
/* The largest identity file read; a PEM certificate is about 1 KB. */
#define SENSOR_IDENTITY_FILE_MAX 16384

typedef struct {
	sensor_config config;
	/* PEM, NUL-terminated; len excludes the NUL. */
	char *ca, *cert, *key;
	size_t ca_len, cert_len, key_len;
	sensor_key ota_keys[SENSOR_MAX_OTA_KEYS];
	size_t n_ota_keys;
} sensor_identity;

/* The files, relative to the image's root. */
#define SENSOR_CONFIG_PATH "/config.json"
#define SENSOR_CA_PATH "/ca.pem"
#define SENSOR_CERT_PATH "/node.crt"
#define SENSOR_KEY_PATH "/node.key"
#define SENSOR_OTA_KEY_PATH "/ota/key-%u.pem"

/*
 * sensor_identity_load reads every file under base: 0, or -1 with err
 * naming the file and the fix. The private key is never quoted.
 */
int sensor_identity_load(const char *base, sensor_identity *id, char *err, size_t errlen);
/* sensor_identity_free wipes the secrets and frees the buffers. */
void sensor_identity_free(sensor_identity *id);

#endif
