// Package firmware will make what each ESP32 sensor node is flashed with:
// the signed app image, the OTA manifest, a LittleFS image holding the
// node's identity and settings, the partition table and a flash bundle.
// It is empty until the firmware work lands.
package firmware
