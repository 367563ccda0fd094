site "nodes" {}

gateway "gw" {
  board    = "qemu-arm64"
  hostname = "hub"
}

firmware "s3" {
  chip    = "esp32s3"
  version = "1.0.0"
}

firmware "classic" {
  chip    = "esp32"
  version = "1.0.0"
}

node "bench" {
  count    = 3
  firmware = firmware.s3
  sensor   = { type = "dht22", pin = 27 }
  interval = "1s"
  wifi     = { ssid = "lab", psk = "hunter2" }
  tags     = { node = "x", "bad key" = "y" }
}

node "bench-2" {
  firmware = firmware.s3
  sensor   = { type = "dht11", pin = 4 }
  wifi     = { ssid = "lab", psk = "a long enough passphrase" }
}

node "ingest" {
  firmware = firmware.s3
  sensor   = { type = "dht11", pin = 4 }
  wifi     = { ssid = "lab", psk = "a long enough passphrase" }
}

node "hub" {
  firmware = firmware.classic
  sensor   = { type = "dht11", pin = 35, colour = "red" }
  wifi     = { ssid = "lab" }
}

node "orphan" {
  firmware = firmware.missing
  sensor   = { type = "dht11", pin = 4 }
  wifi     = { ssid = "lab", psk = "a long enough passphrase" }
}

node "lost" {
  sensor = { type = "dht11", pin = 4 }
  wifi   = { ssid = "lab", psk = "a long enough passphrase" }
}

node "Upper" {
  sensor = { type = "dht11", pin = 4 }
  wifi   = { ssid = "lab", psk = "a long enough passphrase" }
}
