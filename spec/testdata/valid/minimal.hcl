site "minimal" {}

gateway "gw" {
  board = "qemu-arm64"
}

firmware "sensor" {
  chip    = "esp32"
  version = "0.1.0"
}

node "probe" {
  sensor = { type = "dht22", pin = 4 }
  wifi   = { ssid = "lab", psk = "correct horse battery" }
}
