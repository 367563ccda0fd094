/*
 * The sensor node on ESP-IDF: mount the identity image read-only, read
 * it with the core, start the platform and run the core's loop, which
 * returns only to restart.
 */
#include "esp_littlefs.h"
#include "esp_log.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "nvs_flash.h"

#include "platform_esp.h"

static const char *TAG = "sensor";

/* The offline queue: readings kept while the broker is away. */
static sensor_queue_entry queue[512];
static sensor_identity id;

/* halt keeps a node whose identity is broken from doing anything, and
 * says why, until it is reflashed. */
static void halt(const char *why)
{
	for (;;) {
		ESP_LOGE(TAG, "%s", why);
		vTaskDelay(pdMS_TO_TICKS(60000));
	}
}

void app_main(void)
{
	esp_err_t err = nvs_flash_init();
	if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
		ESP_ERROR_CHECK(nvs_flash_erase());
		err = nvs_flash_init();
	}
	ESP_ERROR_CHECK(err);

	/* The identity image is the build's; never formatted, never written. */
	esp_vfs_littlefs_conf_t fs = {
		.base_path = "/id",
		.partition_label = "littlefs",
		.format_if_mount_failed = false,
		.read_only = true,
	};
	if ((err = esp_vfs_littlefs_register(&fs)) != ESP_OK)
		halt("the littlefs partition does not mount: flash the node's bundle from `appliance build`");

	static char why[300];
	if (sensor_identity_load("/id", &id, why, sizeof why) != 0)
		halt(why);

	static sensor_node node;
	sensor_node_start(&node, platform_esp_start(&id), &id, &sensor_default_options, queue,
			  sizeof queue / sizeof queue[0]);
	sensor_node_run(&node);
	esp_restart();
}
