/*
 * mbedTLS behind sensor/crypto.h. Every call here exists, with the same
 * arguments, in mbedTLS 2.28 (Debian bookworm) and 3.x (ESP-IDF 5):
 * mbedtls_md_setup/starts/update/finish rather than mbedtls_sha256_*
 * (renamed between them), and mbedtls_pk_verify, which takes the DER
 * signature as docs/ota.md specifies it.
 */
#include "sensor/crypto.h"

#include <stdlib.h>
#include <string.h>

#include <mbedtls/md.h>
#include <mbedtls/pk.h>

int sensor_sha256_begin(sensor_sha256 *h)
{
	mbedtls_md_context_t *ctx = malloc(sizeof *ctx);
	h->impl = ctx;
	if (!ctx)
		return -1;
	mbedtls_md_init(ctx);
	if (mbedtls_md_setup(ctx, mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), 0) != 0 || mbedtls_md_starts(ctx) != 0) {
		sensor_sha256_abort(h);
		return -1;
	}
	return 0;
}

int sensor_sha256_update(sensor_sha256 *h, const void *data, size_t len)
{
	if (!h->impl)
		return -1;
	return mbedtls_md_update(h->impl, data, len) == 0 ? 0 : -1;
}

int sensor_sha256_finish(sensor_sha256 *h, uint8_t out[32])
{
	if (!h->impl)
		return -1;
	int rc = mbedtls_md_finish(h->impl, out) == 0 ? 0 : -1;
	sensor_sha256_abort(h);
	return rc;
}

void sensor_sha256_abort(sensor_sha256 *h)
{
	if (h->impl) {
		mbedtls_md_free(h->impl);
		free(h->impl);
		h->impl = NULL;
	}
}

int sensor_sha256_digest(const void *data, size_t len, uint8_t out[32])
{
	return mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), data, len, out) == 0 ? 0 : -1;
}

/* parse reads a PEM public key; mbedTLS wants PEM NUL-terminated with
 * the NUL counted. */
static int parse(mbedtls_pk_context *pk, const char *pem, size_t len)
{
	mbedtls_pk_init(pk);
	char *z = malloc(len + 1);
	if (!z)
		return -1;
	memcpy(z, pem, len);
	z[len] = 0;
	int rc = mbedtls_pk_parse_public_key(pk, (const unsigned char *)z, len + 1);
	free(z);
	if (rc != 0 || mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY || mbedtls_pk_get_bitlen(pk) != 256)
		return -1;
	return 0;
}

int sensor_p256_key_check(const char *pem, size_t len)
{
	mbedtls_pk_context pk;
	int rc = parse(&pk, pem, len);
	mbedtls_pk_free(&pk);
	return rc;
}

/*
 * der_integer reads one DER INTEGER as Go's crypto/ecdsa does
 * (cryptobyte's ReadASN1Integer): short length, minimal, positive.
 */
static int der_integer(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *q = *p;
	if (end - q < 3 || q[0] != 0x02 || q[1] >= 0x80 || q[1] == 0 || end - q - 2 < q[1])
		return -1;
	size_t n = q[1];
	const uint8_t *v = q + 2;
	if (v[0] & 0x80)
		return -1;
	if (n > 1 && v[0] == 0 && !(v[1] & 0x80))
		return -1;
	*p = v + n;
	return 0;
}

/*
 * der_signature_ok accepts exactly the encodings Go's ecdsa.VerifyASN1
 * accepts (one SEQUENCE of two INTEGERs in DER, nothing after), so the
 * device and ota.Verify agree on every signature file, not only on the
 * ones the build writes. mbedTLS alone tolerates some non-DER forms.
 */
static int der_signature_ok(const uint8_t *sig, size_t len)
{
	if (len < 2 || len > 127 + 2 || sig[0] != 0x30 || sig[1] >= 0x80 || (size_t)sig[1] != len - 2)
		return 0;
	const uint8_t *p = sig + 2, *end = sig + len;
	if (der_integer(&p, end) != 0 || der_integer(&p, end) != 0)
		return 0;
	return p == end;
}

int sensor_p256_verify(const char *pem, size_t len, const uint8_t digest[32], const uint8_t *sig, size_t sig_len)
{
	mbedtls_pk_context pk;
	int rc = parse(&pk, pem, len);
	if (rc == 0 && (!der_signature_ok(sig, sig_len) || mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, digest, 32, sig, sig_len) != 0))
		rc = -1;
	mbedtls_pk_free(&pk);
	return rc;
}
