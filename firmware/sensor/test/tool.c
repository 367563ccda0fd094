/*
 * sensor-tool: the core's parsers and formats on the command line, for
 * the Go tests that hold them against the Go side (ingest/wire decodes
 * payloads, firmware/ota verifies manifests, firmware/identity checks
 * configs).
 *
 *   sensor-tool payload < readings      one payload per input line:
 *                                       BOOT SEQ T_MS TEMP_DC HUM_DC RSSI|- FW|-
 *   sensor-tool verify [flags] MANIFEST SIGNATURE
 *       --keys A.pem,B.pem --firmware F --chip C --version V
 *       --secure-version N --manifest-version N --now UNIX
 *                                       the result's name, the detail, and
 *                                       the manifest as JSON when accepted
 *   sensor-tool verify-batch FILE       verify for each line of FILE:
 *       NAME MANIFEST SIGNATURE KEYS FIRMWARE CHIP VERSION SV MV NOW
 *                                       one line each: NAME RESULT [JSON]
 *   sensor-tool dht dht11|dht22 < frames
 *                                       per line of 10 hex digits, "ok TEMP_DC
 *                                       HUM_DC" or the status
 *   sensor-tool config FILE             "ok …" or the error
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sensor/config.h"
#include "sensor/dht.h"
#include "sensor/ota.h"
#include "sensor/reading.h"

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	size_t cap = 1 << 16, n = 0;
	uint8_t *b = malloc(cap);
	size_t r;
	while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap)
			b = realloc(b, cap *= 2);
	}
	fclose(f);
	if (!b)
		exit(2);
	*len = n;
	return b;
}

static int payload(void)
{
	char line[256];
	while (fgets(line, sizeof line, stdin)) {
		unsigned long boot, seq;
		long long t;
		int temp, hum;
		char rssi[16], fw[64];
		if (sscanf(line, "%lu %lu %lld %d %d %15s %63s", &boot, &seq, &t, &temp, &hum, rssi, fw) != 7) {
			fprintf(stderr, "bad line: %s", line);
			return 2;
		}
		sensor_reading r = {
			.boot = (uint32_t)boot,
			.seq = (uint32_t)seq,
			.t_ms = t,
			.temp_dc = (int16_t)temp,
			.hum_dc = (int16_t)hum,
			.has_rssi = strcmp(rssi, "-") != 0,
			.rssi = (int8_t)atoi(rssi),
		};
		char out[SENSOR_PAYLOAD_MAX];
		if (sensor_payload(out, sizeof out, &r, strcmp(fw, "-") ? fw : NULL) < 0) {
			puts("error");
			continue;
		}
		puts(out);
	}
	return 0;
}

static void print_manifest(const sensor_manifest *m)
{
	printf("{\"format\":1,\"firmware\":\"%s\",\"chip\":\"%s\",\"version\":\"%s\",\"secure_version\":%" PRIu32
	       ",\"manifest_version\":%" PRIu64 ",\"size\":%" PRId64 ",\"sha256\":\"%s\",\"path\":\"%s\",\"expires\":%" PRId64 "}",
	       m->firmware, m->chip, m->version, m->secure_version, m->manifest_version, m->size, m->sha256, m->path, m->expires);
}

static size_t load_keys(char *list, sensor_key *keys, size_t max)
{
	size_t n = 0;
	for (char *k = strtok(list, ","); k && n < max; k = strtok(NULL, ",")) {
		size_t len;
		char *pem = (char *)slurp(k, &len);
		keys[n++] = (sensor_key){pem, len};
	}
	return n;
}

static int verify_batch(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return 2;
	}
	char line[4096];
	while (fgets(line, sizeof line, f)) {
		char name[256], mpath[1024], spath[1024], keylist[2048], fw[64], chip[64], version[64];
		unsigned long sv;
		unsigned long long mv;
		long long now;
		if (sscanf(line, "%255s %1023s %1023s %2047s %63s %63s %63s %lu %llu %lld", name, mpath, spath, keylist, fw, chip,
			   version, &sv, &mv, &now) != 10) {
			fprintf(stderr, "bad line: %s", line);
			fclose(f);
			return 2;
		}
		sensor_key keys[8];
		size_t nkeys = load_keys(keylist, keys, 8);
		sensor_device dev = {fw, chip, version, (uint32_t)sv, mv};
		size_t mlen, slen;
		uint8_t *m = slurp(mpath, &mlen), *s = slurp(spath, &slen);
		sensor_manifest out;
		sensor_ota_result r = sensor_manifest_verify(m, mlen, s, slen, keys, nkeys, &dev, now, &out, NULL, 0);
		printf("%s %s", name, sensor_ota_result_name(r));
		if (r == SENSOR_OTA_OK) {
			putchar(' ');
			print_manifest(&out);
		}
		putchar('\n');
		free(m);
		free(s);
		for (size_t k = 0; k < nkeys; k++)
			free((void *)keys[k].pem);
	}
	fclose(f);
	return 0;
}

static int dht(const char *type)
{
	sensor_type t = strcmp(type, "dht22") == 0 ? SENSOR_DHT22 : SENSOR_DHT11;
	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		uint8_t frame[5];
		unsigned b[5];
		if (sscanf(line, "%2x%2x%2x%2x%2x", &b[0], &b[1], &b[2], &b[3], &b[4]) != 5) {
			fprintf(stderr, "bad frame: %s", line);
			return 2;
		}
		for (int i = 0; i < 5; i++)
			frame[i] = (uint8_t)b[i];
		/* through the pulse decoder, as the device reads it */
		dht_pulse p[DHT_MAX_PULSES];
		size_t n = dht_frame_pulses(frame, p, NULL, NULL);
		dht_reading r;
		dht_status st = dht_decode(t, p, n, &r);
		if (st == DHT_OK)
			printf("ok %d %d\n", r.temp_dc, r.hum_dc);
		else
			printf("%d\n", (int)st);
	}
	return 0;
}

static int verify(int argc, char **argv)
{
	sensor_device dev = {.firmware = "", .chip = "", .version = ""};
	int64_t now = 0;
	sensor_key keys[8];
	size_t nkeys = 0;
	int i = 2;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		const char *f = argv[i], *v = argv[i + 1];
		if (!strcmp(f, "--keys")) {
			char *list = strdup(v);
			nkeys = load_keys(list, keys, 8);
			free(list);
		} else if (!strcmp(f, "--firmware")) {
			dev.firmware = v;
		} else if (!strcmp(f, "--chip")) {
			dev.chip = v;
		} else if (!strcmp(f, "--version")) {
			dev.version = v;
		} else if (!strcmp(f, "--secure-version")) {
			dev.secure_version = (uint32_t)strtoul(v, NULL, 10);
		} else if (!strcmp(f, "--manifest-version")) {
			dev.manifest_version = strtoull(v, NULL, 10);
		} else if (!strcmp(f, "--now")) {
			now = strtoll(v, NULL, 10);
		} else {
			fprintf(stderr, "unknown flag %s\n", f);
			return 2;
		}
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: sensor-tool verify [flags] MANIFEST SIGNATURE\n");
		return 2;
	}
	size_t mlen, slen;
	uint8_t *m = slurp(argv[i], &mlen), *s = slurp(argv[i + 1], &slen);
	sensor_manifest out;
	char detail[256];
	sensor_ota_result r = sensor_manifest_verify(m, mlen, s, slen, keys, nkeys, &dev, now, &out, detail, sizeof detail);
	printf("%s\n%s\n", sensor_ota_result_name(r), detail);
	if (r == SENSOR_OTA_OK) {
		print_manifest(&out);
		putchar('\n');
	}
	free(m);
	free(s);
	for (size_t k = 0; k < nkeys; k++)
		free((void *)keys[k].pem);
	return 0;
}

static int config(const char *path)
{
	size_t len;
	uint8_t *b = slurp(path, &len);
	sensor_config c;
	char err[256];
	if (sensor_config_parse((const char *)b, len, &c, err, sizeof err) != 0)
		printf("%s\n", err);
	else
		printf("ok %s %s %s:%u %s %" PRIu32 " %s %u %s %s\n", c.node, c.firmware, c.mqtt_host, c.mqtt_port, c.mqtt_topic,
		       c.interval_ms, sensor_type_name(c.sensor), c.sensor_pin, c.ota_url, c.time_server);
	free(b);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "payload"))
		return payload();
	if (argc >= 2 && !strcmp(argv[1], "verify"))
		return verify(argc, argv);
	if (argc == 3 && !strcmp(argv[1], "verify-batch"))
		return verify_batch(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "dht"))
		return dht(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "config"))
		return config(argv[2]);
	fprintf(stderr, "usage: sensor-tool payload | verify ... | verify-batch FILE | dht TYPE | config FILE\n");
	return 2;
}
