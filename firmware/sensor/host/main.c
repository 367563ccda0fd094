/*
 * sensor-host: the sensor firmware's core on Linux.
 *
 *   sensor-host --identity DIR --state DIR [options]
 *
 * DIR holds the node's identity as its LittleFS image does (config.json,
 * ca.pem, node.crt, node.key, ota/key-N.pem); `appliance node export
 * NODE DIR` writes it. It runs until SIGTERM or SIGINT.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host.h"
#include "sensor/node.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: sensor-host --identity DIR --state DIR [options]\n"
		   "\n"
		   "  --identity DIR         the node's identity, laid out as its LittleFS image\n"
		   "                         (`appliance node export NODE DIR` writes it)\n"
		   "  --state DIR            what the device keeps in NVS, and its OTA record\n"
		   "  --slot FILE            the inactive OTA slot (default STATE/slot.bin)\n"
		   "  --version V            the factory app's version (default 0.0.0)\n"
		   "  --secure-version N     the factory app's secure version (default 0)\n"
		   "  --chip CHIP            the chip to claim for OTA manifests (default esp32s3)\n"
		   "  --ota-interval MS      between OTA checks (default 6 h)\n"
		   "  --ota-first-delay MS   from the first connection to the first check (default 30 s)\n"
		   "  --rollback-after MS    how long a new app may take to reach the broker (default 10 min)\n"
		   "  --backoff-cap MS       the longest reconnect delay (default 5 min)\n"
		   "  --queue N              readings kept while the broker is away (default 1024)\n"
		   "  -v, --verbose          log every reading\n");
}

static void on_signal(int sig)
{
	(void)sig;
	host_stop();
}

static int number(const char *arg, const char *name, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || *end || end == arg || v > max) {
		fprintf(stderr, "sensor-host: %s %s: want a number up to %lu\n", name, arg, max);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	host_options o = {.version = "0.0.0", .chip = "esp32s3", .argv = argv};
	sensor_options opt = sensor_default_options;
	unsigned long queue = 1024, v;
	static const struct option longs[] = {
		{"identity", required_argument, 0, 'i'},      {"state", required_argument, 0, 's'},
		{"slot", required_argument, 0, 'S'},	      {"version", required_argument, 0, 'V'},
		{"secure-version", required_argument, 0, 'n'}, {"chip", required_argument, 0, 'c'},
		{"ota-interval", required_argument, 0, 'o'},   {"ota-first-delay", required_argument, 0, 'f'},
		{"rollback-after", required_argument, 0, 'r'}, {"backoff-cap", required_argument, 0, 'b'},
		{"queue", required_argument, 0, 'q'},	      {"verbose", no_argument, 0, 'v'},
		{"help", no_argument, 0, 'h'},		      {0, 0, 0, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "vh", longs, NULL)) != -1) {
		switch (ch) {
		case 'i':
			o.identity = optarg;
			break;
		case 's':
			o.state = optarg;
			break;
		case 'S':
			o.slot = optarg;
			break;
		case 'V':
			o.version = optarg;
			break;
		case 'c':
			o.chip = optarg;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'n':
			if (number(optarg, "--secure-version", UINT32_MAX, &v))
				return 2;
			o.secure_version = (uint32_t)v;
			break;
		case 'o':
			if (number(optarg, "--ota-interval", UINT32_MAX, &v))
				return 2;
			opt.ota_interval_ms = (uint32_t)v;
			break;
		case 'f':
			if (number(optarg, "--ota-first-delay", UINT32_MAX, &v))
				return 2;
			opt.ota_first_delay_ms = (uint32_t)v;
			break;
		case 'r':
			if (number(optarg, "--rollback-after", UINT32_MAX, &v))
				return 2;
			opt.rollback_after_ms = (uint32_t)v;
			break;
		case 'b':
			if (number(optarg, "--backoff-cap", UINT32_MAX, &v))
				return 2;
			opt.backoff_cap_ms = (uint32_t)v;
			break;
		case 'q':
			if (number(optarg, "--queue", 1u << 20, &queue) || queue == 0)
				return 2;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!o.identity || !o.state || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (strlen(o.version) == 0 || strlen(o.version) > 31) {
		fprintf(stderr, "sensor-host: --version %s: 1 to 31 characters\n", o.version);
		return 2;
	}

	char err[512];
	sensor_identity id;
	if (sensor_identity_load(o.identity, &id, err, sizeof err) != 0) {
		fprintf(stderr, "sensor-host: %s\n", err);
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	curl_global_init(CURL_GLOBAL_DEFAULT);

	int rc = 1;
	sensor_queue_entry *storage = calloc(queue, sizeof *storage);
	host *h = storage ? host_new(&o, &id, err, sizeof err) : NULL;
	if (!h) {
		fprintf(stderr, "sensor-host: %s\n", storage ? err : "out of memory");
	} else {
		sensor_node n;
		sensor_node_start(&n, host_platform(h), &id, &opt, storage, queue);
		sensor_node_run(&n);
		fprintf(stderr, "sensor-host: boot %u: %u readings taken, %u failed, %u published, %u acknowledged, %u refused, %u dropped, %zu kept unsent\n",
			n.boot, n.readings, n.read_failures, n.published, n.acked, n.refused, n.q.dropped, sensor_queue_len(&n.q));
		rc = 0;
		if (host_restart_requested(h)) {
			fprintf(stderr, "sensor-host: restarting\n");
			free(storage);
			sensor_identity_free(&id);
			curl_global_cleanup();
			mosquitto_lib_cleanup();
			host_restart(h);
			fprintf(stderr, "sensor-host: restarting failed: %s\n", strerror(errno));
			return 1;
		}
	}
	host_free(h);
	free(storage);
	sensor_identity_free(&id);
	curl_global_cleanup();
	mosquitto_lib_cleanup();
	return rc;
}
