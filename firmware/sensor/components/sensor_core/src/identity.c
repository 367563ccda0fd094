#include "sensor/identity.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/crypto.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* slurp reads a whole file, NUL-terminated; 1 if it does not exist. */
static int slurp(const char *base, const char *rel, char **buf, size_t *len, char *err, size_t errlen)
{
	char path[256];
	snprintf(path, sizeof path, "%s%s", base, rel);
	*buf = NULL;
	*len = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		if (errno == ENOENT)
			return 1;
		return fail(err, errlen, "%s: %s", path, strerror(errno));
	}
	char *b = malloc(SENSOR_IDENTITY_FILE_MAX + 1);
	if (!b) {
		fclose(f);
		return fail(err, errlen, "%s: out of memory", path);
	}
	size_t n = fread(b, 1, SENSOR_IDENTITY_FILE_MAX + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > SENSOR_IDENTITY_FILE_MAX) {
		free(b);
		return fail(err, errlen, "%s: %s", path, bad ? "cannot be read" : "larger than any identity file");
	}
	b[n] = 0;
	*buf = b;
	*len = n;
	return 0;
}

static int need(const char *base, const char *rel, const char *what, char **buf, size_t *len, char *err, size_t errlen)
{
	int rc = slurp(base, rel, buf, len, err, errlen);
	if (rc == 1)
		return fail(err, errlen, "%s%s is missing: the identity image lacks %s; reflash the node's bundle from `appliance build`",
			    base, rel, what);
	if (rc == 0 && strstr(*buf, "-----BEGIN ") == NULL && strcmp(rel, SENSOR_CONFIG_PATH) != 0)
		return fail(err, errlen, "%s%s is not PEM; reflash the node's bundle from `appliance build`", base, rel);
	return rc;
}

int sensor_identity_load(const char *base, sensor_identity *id, char *err, size_t errlen)
{
	memset(id, 0, sizeof *id);
	char *conf = NULL;
	size_t conf_len = 0;
	if (need(base, SENSOR_CONFIG_PATH, "its settings", &conf, &conf_len, err, errlen))
		goto fail;
	int rc = sensor_config_parse(conf, conf_len, &id->config, err, errlen);
	memset(conf, 0, conf_len);
	free(conf);
	if (rc)
		goto fail;
	if (need(base, SENSOR_CA_PATH, "the site CA", &id->ca, &id->ca_len, err, errlen) ||
	    need(base, SENSOR_CERT_PATH, "the node certificate", &id->cert, &id->cert_len, err, errlen) ||
	    need(base, SENSOR_KEY_PATH, "the node key", &id->key, &id->key_len, err, errlen))
		goto fail;
	for (unsigned i = 0; i < SENSOR_MAX_OTA_KEYS; i++) {
		char rel[32], *pem;
		size_t len;
		snprintf(rel, sizeof rel, SENSOR_OTA_KEY_PATH, i);
		rc = slurp(base, rel, &pem, &len, err, errlen);
		if (rc == 1)
			break;
		if (rc)
			goto fail;
		id->ota_keys[i] = (sensor_key){pem, len};
		id->n_ota_keys++;
		if (sensor_p256_key_check(pem, len) != 0) {
			fail(err, errlen, "%s%s is not an ECDSA P-256 public key (PEM); reflash the node's bundle from `appliance build`",
			     base, rel);
			goto fail;
		}
	}
	if (id->n_ota_keys == 0) {
		fail(err, errlen, "%s/ota/key-0.pem is missing: the node would trust no update; reflash the node's bundle from `appliance build`",
		     base);
		goto fail;
	}
	return 0;
fail:
	sensor_identity_free(id);
	return -1;
}

static void wipe(char **p, size_t *len)
{
	if (*p) {
		memset(*p, 0, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

void sensor_identity_free(sensor_identity *id)
{
	wipe(&id->ca, &id->ca_len);
	wipe(&id->cert, &id->cert_len);
	wipe(&id->key, &id->key_len);
	for (size_t i = 0; i < id->n_ota_keys; i++) {
		char *p = (char *)id->ota_keys[i].pem;
		size_t n = id->ota_keys[i].len;
		wipe(&p, &n);
	}
	id->n_ota_keys = 0;
	memset(&id->config, 0, sizeof id->config);
}
