/*
 * The ESP-IDF platform of the sensor core (sensor/node.h): Wi-Fi
 * station, SNTP from the gateway, NVS, esp-mqtt, esp_http_client and
 * esp_https_ota with the identity's certificate and CA, the OTA
 * partitions, and the DHT on a GPIO. Written against ESP-IDF 5.1+.
 */
#pragma once

#include "sensor/node.h"

/* platform_esp_start brings Wi-Fi and SNTP up for the identity and
 * returns the platform; the identity must outlive it. */
const sensor_platform *platform_esp_start(const sensor_identity *id);

/* dht_gpio_read reads one frame with the line's timings measured by a
 * busy-wait with interrupts off, and decodes it with the core. */
dht_status dht_gpio_read(sensor_type type, int pin, dht_reading *out);
