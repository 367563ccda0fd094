/*
 * The DHT's single wire: the start signal, then every level's length
 * measured with interrupts off on this core, so that Wi-Fi cannot
 * stretch a 27 µs bit into a 70 µs one. A frame takes about 5 ms.
 */
#include "driver/gpio.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#include "platform_esp.h"

/* A level that lasts longer than this ends the frame. */
#define IDLE_US 300

static portMUX_TYPE dht_lock = portMUX_INITIALIZER_UNLOCKED;

dht_status dht_gpio_read(sensor_type type, int pin, dht_reading *out)
{
	gpio_config_t io = {
		.pin_bit_mask = 1ULL << pin,
		.mode = GPIO_MODE_INPUT_OUTPUT_OD,
		.pull_up_en = GPIO_PULLUP_ENABLE,
	};
	if (gpio_config(&io) != ESP_OK)
		return DHT_ERR_NO_RESPONSE;
	/* The host's start signal: low for at least 18 ms (DHT11) or 1 ms
	 * (DHT22); the task may sleep through it. */
	gpio_set_level(pin, 0);
	vTaskDelay(pdMS_TO_TICKS(type == SENSOR_DHT11 ? 20 : 2) + 1);

	dht_pulse p[DHT_MAX_PULSES];
	size_t n = 0;
	portENTER_CRITICAL(&dht_lock);
	gpio_set_level(pin, 1);
	int level = 1;
	int64_t since = esp_timer_get_time();
	while (n < DHT_MAX_PULSES) {
		int64_t now;
		int l;
		do {
			now = esp_timer_get_time();
			l = gpio_get_level(pin);
		} while (l == level && now - since < IDLE_US);
		p[n++] = (dht_pulse){(uint8_t)level, (uint16_t)(now - since)};
		if (l == level)
			break;
		level = l;
		since = now;
	}
	portEXIT_CRITICAL(&dht_lock);
	return dht_decode(type, p, n, out);
}
