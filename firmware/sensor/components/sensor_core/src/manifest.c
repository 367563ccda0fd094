/*
 * The manifest reader and the device's rules (sensor/ota.h). The reader
 * follows Go's encoding/json as firmware/ota's Parse uses it: a JSON
 * object whose known keys each appear once, matched exactly, with the
 * type encoding/json would store in the Go field.
 */
#include "sensor/ota.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct {
	const uint8_t *p, *end;
} scan;

static int peek(const scan *s) { return s->p < s->end ? *s->p : -1; }

static void ws(scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool eat(scan *s, int c)
{
	if (peek(s) != c)
		return false;
	s->p++;
	return true;
}

static int hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static long u4(const scan *s, const uint8_t *at)
{
	if (s->end - at < 4)
		return -1;
	long v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hex(at[i]);
		if (h < 0)
			return -1;
		v = v << 4 | h;
	}
	return v;
}

/* out collects a decoded string: up to cap bytes kept, len counts all. */
typedef struct {
	char *buf;
	size_t cap, len;
} out;

static void put(out *o, unsigned char c)
{
	if (o && o->len < o->cap)
		o->buf[o->len] = (char)c;
	if (o)
		o->len++;
}

static void put_rune(out *o, unsigned long r)
{
	if (r < 0x80) {
		put(o, (unsigned char)r);
	} else if (r < 0x800) {
		put(o, (unsigned char)(0xC0 | r >> 6));
		put(o, (unsigned char)(0x80 | (r & 0x3F)));
	} else if (r < 0x10000) {
		put(o, (unsigned char)(0xE0 | r >> 12));
		put(o, (unsigned char)(0x80 | (r >> 6 & 0x3F)));
		put(o, (unsigned char)(0x80 | (r & 0x3F)));
	} else {
		put(o, (unsigned char)(0xF0 | r >> 18));
		put(o, (unsigned char)(0x80 | (r >> 12 & 0x3F)));
		put(o, (unsigned char)(0x80 | (r >> 6 & 0x3F)));
		put(o, (unsigned char)(0x80 | (r & 0x3F)));
	}
}

/*
 * string reads a JSON string at s->p (a '"') as Go's scanner checks it
 * and its unquote decodes it: no raw control characters, only JSON's
 * escapes, a surrogate pair joined, a lone surrogate as U+FFFD. Bytes
 * above 0x7F are copied; no known field may hold one, so how Go
 * replaces invalid UTF-8 does not change an outcome here.
 */
static bool string(scan *s, out *o)
{
	if (!eat(s, '"'))
		return false;
	for (;;) {
		int c = peek(s);
		if (c < 0 || c < 0x20)
			return false;
		s->p++;
		if (c == '"')
			return true;
		if (c != '\\') {
			put(o, (unsigned char)c);
			continue;
		}
		c = peek(s);
		s->p++;
		switch (c) {
		case '"':
		case '\\':
		case '/':
			put(o, (unsigned char)c);
			break;
		case 'b':
			put(o, '\b');
			break;
		case 'f':
			put(o, '\f');
			break;
		case 'n':
			put(o, '\n');
			break;
		case 'r':
			put(o, '\r');
			break;
		case 't':
			put(o, '\t');
			break;
		case 'u': {
			long r = u4(s, s->p);
			if (r < 0)
				return false;
			s->p += 4;
			if (r >= 0xD800 && r < 0xE000) {
				long r2 = -1;
				if (r < 0xDC00 && s->end - s->p >= 6 && s->p[0] == '\\' && s->p[1] == 'u')
					r2 = u4(s, s->p + 2);
				if (r2 >= 0xDC00 && r2 < 0xE000) {
					r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
					s->p += 6;
				} else {
					r = 0xFFFD;
				}
			}
			put_rune(o, (unsigned long)r);
			break;
		}
		default:
			return false;
		}
	}
}

static bool digits(scan *s)
{
	const uint8_t *start = s->p;
	while (peek(s) >= '0' && peek(s) <= '9')
		s->p++;
	return s->p > start;
}

/* number reads a JSON number; integer reports that it has neither
 * fraction nor exponent. */
static bool number(scan *s, bool *integer)
{
	*integer = true;
	eat(s, '-');
	if (eat(s, '0')) {
		/* no leading zeros */
	} else if (!(peek(s) >= '1' && peek(s) <= '9') || !digits(s)) {
		return false;
	}
	if (eat(s, '.')) {
		*integer = false;
		if (!digits(s))
			return false;
	}
	if (peek(s) == 'e' || peek(s) == 'E') {
		s->p++;
		*integer = false;
		if (!eat(s, '+'))
			eat(s, '-');
		if (!digits(s))
			return false;
	}
	return true;
}

static bool literal(scan *s, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return false;
	s->p += n;
	return true;
}

/*
 * value checks any JSON value without recursion: a manifest is at most
 * 4096 bytes, so at most 2048 levels, one bit each.
 */
static bool value(scan *s)
{
	uint8_t arrays[SENSOR_MANIFEST_MAX / 16 + 1] = {0};
	size_t depth = 0;
	for (;;) {
		ws(s);
		int c = peek(s);
		bool integer;
		/* one value */
		if (c == '{' || c == '[') {
			if (depth >= sizeof arrays * 8)
				return false;
			s->p++;
			if (c == '[')
				arrays[depth / 8] |= (uint8_t)(1u << depth % 8);
			else
				arrays[depth / 8] &= (uint8_t) ~(1u << depth % 8);
			depth++;
			ws(s);
			if (eat(s, c == '{' ? '}' : ']')) {
				depth--;
				goto after;
			}
			if (c == '{')
				goto key;
			continue;
		}
		if (c == '"') {
			if (!string(s, NULL))
				return false;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (!number(s, &integer))
				return false;
		} else if (!literal(s, "true") && !literal(s, "false") && !literal(s, "null")) {
			return false;
		}
	after:
		/* what follows a value inside its container */
		for (;;) {
			if (depth == 0)
				return true;
			ws(s);
			bool array = arrays[(depth - 1) / 8] & (1u << (depth - 1) % 8);
			if (eat(s, ',')) {
				if (array)
					break;
				goto key;
			}
			if (!eat(s, array ? ']' : '}'))
				return false;
			depth--;
		}
		continue;
	key:
		ws(s);
		if (!string(s, NULL))
			return false;
		ws(s);
		if (!eat(s, ':'))
			return false;
	}
}

enum field { F_FORMAT, F_FIRMWARE, F_CHIP, F_VERSION, F_SECURE_VERSION, F_MANIFEST_VERSION, F_SIZE, F_SHA256, F_PATH, F_EXPIRES, NFIELDS };

static const char *const names[NFIELDS] = {"format",	 "firmware", "chip",   "version", "secure_version", "manifest_version",
					   "size",	 "sha256",   "path",   "expires"};

static void say(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A number field as read: sign and magnitude. */
typedef struct {
	bool neg;
	uint64_t mag;
} intval;

/*
 * integer_field reads a number as encoding/json stores it in a Go
 * integer: no fraction or exponent, within the type's range (max for
 * the magnitude); an unsigned type refuses any minus sign, even "-0".
 */
static bool integer_field(scan *s, bool is_signed, uint64_t max, intval *v)
{
	const uint8_t *d = s->p;
	bool integer;
	if (!number(s, &integer) || !integer)
		return false;
	v->neg = *d == '-';
	if (v->neg) {
		if (!is_signed)
			return false;
		d++;
		/* a signed 64-bit integer reaches one further below zero */
		max++;
	}
	v->mag = 0;
	for (; d < s->p; d++) {
		uint64_t digit = (uint64_t)(*d - '0');
		if (v->mag > (UINT64_MAX - digit) / 10)
			return false;
		v->mag = v->mag * 10 + digit;
	}
	return v->mag <= max;
}

/* positive reports v > 0. */
static bool positive(intval v) { return !v.neg && v.mag > 0; }

static bool charset(const char *v, size_t n, size_t max, const char *extra)
{
	if (n < 1 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = v[i];
		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c && strchr(extra, c))))
			return false;
	}
	return true;
}

static bool lower_hex(const char *v, size_t n)
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
			return false;
	return true;
}

static const char *const chips[] = {"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2"};

static bool known_chip(const char *v, size_t n)
{
	for (size_t i = 0; i < sizeof chips / sizeof chips[0]; i++)
		if (strlen(chips[i]) == n && memcmp(chips[i], v, n) == 0)
			return true;
	return false;
}

/* A string field's bytes, checked later against its pattern. */
typedef struct {
	char v[128];
	size_t n;
} strval;

static bool string_field(scan *s, strval *f)
{
	out o = {f->v, sizeof f->v - 1, 0};
	if (!string(s, &o))
		return false;
	f->n = o.len;
	/* too long for any pattern: keep it failing there */
	f->v[o.len < sizeof f->v ? o.len : sizeof f->v - 1] = 0;
	return true;
}

static bool copy_str(char *dst, size_t cap, const strval *f)
{
	if (f->n >= cap)
		return false;
	memcpy(dst, f->v, f->n);
	dst[f->n] = 0;
	return true;
}

int sensor_manifest_parse(const uint8_t *b, size_t len, sensor_manifest *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);
	if (len > SENSOR_MANIFEST_MAX) {
		say(err, errlen, "a manifest of %zu bytes; at most %d", len, SENSOR_MANIFEST_MAX);
		return -1;
	}
	scan s = {b, b + len};
	bool seen[NFIELDS] = {false};
	strval str[NFIELDS];
	intval num[NFIELDS] = {{false, 0}};
	ws(&s);
	if (!eat(&s, '{')) {
		say(err, errlen, "not a JSON object");
		return -1;
	}
	ws(&s);
	if (!eat(&s, '}')) {
		for (;;) {
			ws(&s);
			char kb[24];
			out k = {kb, sizeof kb, 0};
			if (!string(&s, &k)) {
				say(err, errlen, "not JSON: a bad object key");
				return -1;
			}
			ws(&s);
			if (!eat(&s, ':')) {
				say(err, errlen, "not JSON: no ':' after a key");
				return -1;
			}
			ws(&s);
			int f = -1;
			for (int i = 0; i < NFIELDS; i++)
				if (k.len <= sizeof kb && strlen(names[i]) == k.len && memcmp(names[i], kb, k.len) == 0)
					f = i;
			if (f < 0) {
				if (!value(&s)) {
					say(err, errlen, "not JSON");
					return -1;
				}
			} else {
				if (seen[f]) {
					say(err, errlen, "%s appears twice", names[f]);
					return -1;
				}
				seen[f] = true;
				bool ok;
				switch (f) {
				case F_FIRMWARE:
				case F_CHIP:
				case F_VERSION:
				case F_SHA256:
				case F_PATH:
					ok = peek(&s) == '"' && string_field(&s, &str[f]);
					break;
				case F_SECURE_VERSION: /* uint32 */
					ok = integer_field(&s, false, UINT32_MAX, &num[f]);
					break;
				case F_MANIFEST_VERSION: /* uint64; the 2^53 bound is Validate's */
					ok = integer_field(&s, false, UINT64_MAX, &num[f]);
					break;
				default: /* int, int64 */
					ok = integer_field(&s, true, (uint64_t)INT64_MAX, &num[f]);
				}
				if (!ok) {
					say(err, errlen, "%s has the wrong type", names[f]);
					return -1;
				}
			}
			ws(&s);
			if (eat(&s, ','))
				continue;
			if (eat(&s, '}'))
				break;
			say(err, errlen, "not JSON: no ',' or '}' after a value");
			return -1;
		}
	}
	ws(&s);
	if (s.p != s.end) {
		say(err, errlen, "data after the JSON object");
		return -1;
	}
	for (int i = 0; i < NFIELDS; i++) {
		if (!seen[i]) {
			say(err, errlen, "no %s", names[i]);
			return -1;
		}
	}
	/* Validate, field by field as firmware/ota checks them. */
	if (num[F_FORMAT].neg || num[F_FORMAT].mag != 1) {
		say(err, errlen, "manifest format %s%" PRIu64 "; this reads format 1", num[F_FORMAT].neg ? "-" : "", num[F_FORMAT].mag);
		return -1;
	}
	if (!charset(str[F_FIRMWARE].v, str[F_FIRMWARE].n, 32, "_-")) {
		say(err, errlen, "firmware name: 1 to 32 letters, digits, '-' or '_'");
		return -1;
	}
	if (!known_chip(str[F_CHIP].v, str[F_CHIP].n)) {
		say(err, errlen, "unknown chip");
		return -1;
	}
	if (!charset(str[F_VERSION].v, str[F_VERSION].n, 31, ".+_-")) {
		say(err, errlen, "version: 1 to 31 letters, digits and . + _ -");
		return -1;
	}
	uint64_t mv = num[F_MANIFEST_VERSION].mag;
	if (mv < 1 || mv > SENSOR_MANIFEST_VERSION_MAX) {
		say(err, errlen, "manifest version: 1 to 2^53-1");
		return -1;
	}
	if (!positive(num[F_SIZE])) {
		say(err, errlen, "the image size is not positive");
		return -1;
	}
	if (!lower_hex(str[F_SHA256].v, str[F_SHA256].n)) {
		say(err, errlen, "sha256: 64 lower-case hex digits");
		return -1;
	}
	/* firmware (≤ 32) and sha256 (64) are checked: the path fits */
	char want[2 * sizeof str[0].v + 8];
	snprintf(want, sizeof want, "%s/%s.bin", str[F_FIRMWARE].v, str[F_SHA256].v);
	if (str[F_PATH].n != strlen(want) || memcmp(str[F_PATH].v, want, str[F_PATH].n) != 0) {
		say(err, errlen, "path: want %s", want);
		return -1;
	}
	if (!positive(num[F_EXPIRES])) {
		say(err, errlen, "the expiry is not positive");
		return -1;
	}
	copy_str(m->firmware, sizeof m->firmware, &str[F_FIRMWARE]);
	copy_str(m->chip, sizeof m->chip, &str[F_CHIP]);
	copy_str(m->version, sizeof m->version, &str[F_VERSION]);
	copy_str(m->sha256, sizeof m->sha256, &str[F_SHA256]);
	copy_str(m->path, sizeof m->path, &str[F_PATH]);
	m->secure_version = (uint32_t)num[F_SECURE_VERSION].mag;
	m->manifest_version = mv;
	m->size = (int64_t)num[F_SIZE].mag;
	m->expires = (int64_t)num[F_EXPIRES].mag;
	return 0;
}

sensor_ota_result sensor_manifest_verify(const uint8_t *b, size_t len, const uint8_t *sig, size_t sig_len,
					 const sensor_key *keys, size_t nkeys, const sensor_device *dev, int64_t now,
					 sensor_manifest *m, char *detail, size_t dl)
{
	say(detail, dl, "%s", "");
	if (len > SENSOR_MANIFEST_MAX) {
		say(detail, dl, "the manifest has %zu bytes, more than %d", len, SENSOR_MANIFEST_MAX);
		return SENSOR_OTA_TOO_LARGE;
	}
	uint8_t digest[32];
	if (sensor_sha256_digest(b, len, digest) != 0)
		return SENSOR_OTA_SIGNATURE;
	bool verified = false;
	for (size_t i = 0; i < nkeys && !verified; i++)
		verified = sensor_p256_verify(keys[i].pem, keys[i].len, digest, sig, sig_len) == 0;
	if (!verified) {
		say(detail, dl, "the manifest's signature does not verify with any of the %zu trusted OTA keys", nkeys);
		return SENSOR_OTA_SIGNATURE;
	}
	char why[160];
	if (sensor_manifest_parse(b, len, m, why, sizeof why) != 0) {
		say(detail, dl, "the manifest is malformed: %s", why);
		return SENSOR_OTA_MALFORMED;
	}
	if (strcmp(m->firmware, dev->firmware) != 0) {
		say(detail, dl, "the manifest is for firmware \"%s\", this node runs \"%s\"", m->firmware, dev->firmware);
		return SENSOR_OTA_FIRMWARE;
	}
	if (strcmp(m->chip, dev->chip) != 0) {
		say(detail, dl, "the manifest is for an %s, this node is an %s", m->chip, dev->chip);
		return SENSOR_OTA_CHIP;
	}
	if (now < SENSOR_CLOCK_FLOOR) {
		say(detail, dl, "the clock is not set, so the manifest's expiry cannot be checked");
		return SENSOR_OTA_NO_CLOCK;
	}
	if (now >= m->expires) {
		say(detail, dl, "the manifest expired at %" PRId64 " (Unix time)", m->expires);
		return SENSOR_OTA_EXPIRED;
	}
	if (m->manifest_version <= dev->manifest_version) {
		say(detail, dl, "manifest version %" PRIu64 " is not newer than %" PRIu64 ", the last accepted",
		    m->manifest_version, dev->manifest_version);
		return SENSOR_OTA_REPLAY;
	}
	if (m->secure_version < dev->secure_version) {
		say(detail, dl, "secure version %" PRIu32 " is lower than the running firmware's %" PRIu32, m->secure_version,
		    dev->secure_version);
		return SENSOR_OTA_DOWNGRADE;
	}
	if (strcmp(m->version, dev->version) == 0) {
		say(detail, dl, "version %s is already running", m->version);
		return SENSOR_OTA_UNCHANGED;
	}
	say(detail, dl, "version %s (secure version %" PRIu32 ", manifest version %" PRIu64 ")", m->version,
	    m->secure_version, m->manifest_version);
	return SENSOR_OTA_OK;
}

const char *sensor_ota_result_name(sensor_ota_result r)
{
	switch (r) {
	case SENSOR_OTA_OK:
		return "accepted";
	case SENSOR_OTA_TOO_LARGE:
		return "too_large";
	case SENSOR_OTA_SIGNATURE:
		return "signature";
	case SENSOR_OTA_MALFORMED:
		return "malformed";
	case SENSOR_OTA_FIRMWARE:
		return "firmware";
	case SENSOR_OTA_CHIP:
		return "chip";
	case SENSOR_OTA_NO_CLOCK:
		return "no_clock";
	case SENSOR_OTA_EXPIRED:
		return "expired";
	case SENSOR_OTA_REPLAY:
		return "replay";
	case SENSOR_OTA_DOWNGRADE:
		return "downgrade";
	case SENSOR_OTA_UNCHANGED:
		return "unchanged";
	case SENSOR_OTA_FETCH_FAILED:
		return "fetch_failed";
	case SENSOR_OTA_DOWNLOAD_FAILED:
		return "download_failed";
	case SENSOR_OTA_IMAGE_MISMATCH:
		return "image_mismatch";
	case SENSOR_OTA_COMMIT_FAILED:
		return "commit_failed";
	case SENSOR_OTA_INSTALLED:
		return "installed";
	}
	return "unknown";
}

int sensor_image_check(const sensor_manifest *m, uint64_t len, const uint8_t sha[32])
{
	if (m->size < 0 || len != (uint64_t)m->size)
		return -1;
	char h[65];
	for (int i = 0; i < 32; i++)
		snprintf(h + 2 * i, 3, "%02x", sha[i]);
	return strcmp(h, m->sha256) == 0 ? 0 : -1;
}
