/*
 * OTA manifests: the device's rules of docs/ota.md, in the order
 * firmware/ota's Verify applies them, with the same outcome for every
 * input (the Go tests run both on the same signed files).
 *
 * The manifest's bytes are hashed and their signature checked before
 * anything reads them; only then does sensor_manifest_parse look at the
 * JSON. The reader is this file's own rather than cJSON because it must
 * read exactly what Go's encoding/json reads: keys matched exactly, each
 * known field present once with its JSON type, integers without
 * fraction or exponent, strings decoded as Go decodes them (invalid
 * UTF-8 and lone surrogates become U+FFFD), unknown fields skipped but
 * checked to be JSON.
 */
#ifndef SENSOR_OTA_H
#define SENSOR_OTA_H

#include <stddef.h>
#include <stdint.h>

#include "sensor/crypto.h"

#define SENSOR_MANIFEST_MAX 4096
/* A P-256 DER signature is 70–72 bytes; a longer file is not one. */
#define SENSOR_SIGNATURE_MAX 128
#define SENSOR_MANIFEST_VERSION_MAX 9007199254740991ull /* 2^53 − 1 */
/* The earliest clock reading that counts as set: 2025-01-01. */
#define SENSOR_CLOCK_FLOOR 1735689600ll

typedef struct {
	char firmware[33];
	char chip[16];
	char version[32];
	uint32_t secure_version;
	uint64_t manifest_version;
	int64_t size;
	char sha256[65];
	char path[128];
	int64_t expires;
} sensor_manifest;

/* The refusals, as firmware/ota's Err* values. */
typedef enum {
	SENSOR_OTA_OK = 0,
	SENSOR_OTA_TOO_LARGE,
	SENSOR_OTA_SIGNATURE,
	SENSOR_OTA_MALFORMED,
	SENSOR_OTA_FIRMWARE,
	SENSOR_OTA_CHIP,
	SENSOR_OTA_NO_CLOCK,
	SENSOR_OTA_EXPIRED,
	SENSOR_OTA_REPLAY,
	SENSOR_OTA_DOWNGRADE,
	SENSOR_OTA_UNCHANGED,
	/* After the manifest, what became of the check (sensor/node.h). */
	SENSOR_OTA_FETCH_FAILED, /* no manifest or signature from the server */
	SENSOR_OTA_DOWNLOAD_FAILED,
	SENSOR_OTA_IMAGE_MISMATCH, /* length or SHA-256 is not the manifest's */
	SENSOR_OTA_COMMIT_FAILED,  /* the platform refused the image */
	SENSOR_OTA_INSTALLED,
} sensor_ota_result;

/* What the device knows when it checks a manifest (ota.Device). */
typedef struct {
	const char *firmware;
	const char *chip;
	const char *version;
	uint32_t secure_version;
	uint64_t manifest_version;
} sensor_device;

typedef struct {
	const char *pem;
	size_t len;
} sensor_key;

/*
 * sensor_manifest_parse reads verified manifest bytes (ota.Parse): 0, or
 * -1 with the reason in err.
 */
int sensor_manifest_parse(const uint8_t *b, size_t len, sensor_manifest *m, char *err, size_t errlen);

/*
 * sensor_manifest_verify applies every rule of docs/ota.md at now (Unix
 * seconds) and fills m when it returns SENSOR_OTA_OK; detail (may be
 * NULL) gets a sentence for the log.
 */
sensor_ota_result sensor_manifest_verify(const uint8_t *manifest, size_t len, const uint8_t *sig, size_t sig_len,
					 const sensor_key *keys, size_t nkeys, const sensor_device *dev, int64_t now,
					 sensor_manifest *m, char *detail, size_t detail_len);

/* A short name for logs and the tests: "accepted", "signature", … */
const char *sensor_ota_result_name(sensor_ota_result r);

/* sensor_image_check compares a downloaded image's length and SHA-256
 * with the manifest's: 0 if they match. */
int sensor_image_check(const sensor_manifest *m, uint64_t len, const uint8_t sha[32]);

#endif
