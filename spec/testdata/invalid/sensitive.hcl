site "secrets" {}

variable "name" {
  sensitive = true
  default   = "do-not-print-me"
}

gateway "gw" {
  board    = "qemu-arm64"
  hostname = "${var.name}-gw"
}

firmware "sensor" {
  chip    = "esp32"
  version = "1.0.0"
}

node "n" {
  sensor = { type = "dht11", pin = 4 }
  wifi   = { ssid = var.name, psk = "do-not-print-me-either" }
  tags   = { owner = var.name }
}
