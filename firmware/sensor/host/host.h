/*
 * The Linux platform: the core's sensor_platform on POSIX, libmosquitto
 * (MQTT v5 over TLS) and libcurl (HTTPS), for running a node on a PC
 * against a real gateway's services.
 *
 * It reads the identity from a folder with the identity image's layout
 * (`appliance node export NODE DIR` fills one), keeps what the device
 * keeps in NVS as small files in a state folder, stands the inactive
 * OTA slot by a file and the DHT by a generator of plausible readings
 * whose pulses go through the core's decoder. "Restarting" re-executes
 * the program, which then boots the slot's version as the bootloader
 * would: pending verification until the core marks it valid, rolled
 * back if it restarts before that.
 */
#ifndef SENSOR_HOST_H
#define SENSOR_HOST_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "sensor/node.h"

typedef struct host host;

typedef struct {
	const char *identity; /* folder */
	const char *state;    /* folder */
	const char *slot;     /* file; default STATE/slot.bin */
	/* The "factory" app, until an update replaces it. */
	const char *version;
	uint32_t secure_version;
	const char *chip;
	bool verbose;
	char **argv; /* for the restart */
} host_options;

/* host_new sets the platform up; NULL with err filled on failure. */
host *host_new(const host_options *o, const sensor_identity *id, char *err, size_t errlen);
const sensor_platform *host_platform(host *h);
void host_free(host *h);
/* host_stop makes the next wait return SENSOR_EV_STOP (signal-safe). */
void host_stop(void);
/* host_restart_requested reports that the core asked to restart. */
bool host_restart_requested(const host *h);
/* host_restart re-executes the program; it returns only on failure. */
void host_restart(host *h);

#endif
