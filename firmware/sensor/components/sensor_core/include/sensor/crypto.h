/*
 * The two cryptographic operations the core needs, SHA-256 and ECDSA
 * P-256 verification, over mbedTLS. This file's implementation
 * (crypto_mbedtls.c) is the only one that includes mbedTLS headers and
 * keeps to calls that Debian's mbedTLS 2.28 and ESP-IDF 5's 3.x both
 * have with the same meaning (docs/ota.md): mbedtls_md_* and
 * mbedtls_pk_parse_public_key / mbedtls_pk_verify.
 */
#ifndef SENSOR_CRYPTO_H
#define SENSOR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	void *impl;
} sensor_sha256;

/* Each returns 0 on success. finish and abort release the context;
 * abort is harmless on a finished or never begun one. */
int sensor_sha256_begin(sensor_sha256 *h);
int sensor_sha256_update(sensor_sha256 *h, const void *data, size_t len);
int sensor_sha256_finish(sensor_sha256 *h, uint8_t out[32]);
void sensor_sha256_abort(sensor_sha256 *h);
int sensor_sha256_digest(const void *data, size_t len, uint8_t out[32]);

/*
 * sensor_p256_key_check reports whether pem (len bytes, without the
 * NUL) is a PEM SubjectPublicKeyInfo of a 256-bit EC key: 0 if so.
 */
int sensor_p256_key_check(const char *pem, size_t len);

/*
 * sensor_p256_verify checks an ASN.1 DER ECDSA signature over a SHA-256
 * digest with a PEM public key: 0 if it verifies.
 */
int sensor_p256_verify(const char *pem, size_t len, const uint8_t digest[32], const uint8_t *sig, size_t sig_len);

#endif
