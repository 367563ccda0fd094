// Package firmware makes what each ESP32 sensor node is flashed with and
// updated from, from plain inputs (it reads neither the spec nor the
// state; the build hands it their values):
//
//   - the firmware's app image, checked against the spec's version and
//     secure version and signed for Secure Boot V2 (espimage,
//     secureboot);
//   - the OTA tree the gateway serves: signed manifest and signed image
//     (ota; docs/ota.md);
//   - per node, the LittleFS identity image (identity, littlefs;
//     docs/node.md) and the flash bundle around it (partition, bundle).
//
// Build does all of it for one firmware and its nodes. A firmware
// without an app image (a machine without ESP-IDF) still gives every
// node its identity and bundle; Output.NoApp says so, and there is then
// no OTA tree.
package firmware
