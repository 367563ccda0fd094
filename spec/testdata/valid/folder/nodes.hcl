firmware "sensor" {
  chip    = "esp32c6"
  version = "3.1.4"
}

node "stall" {
  count  = 4
  sensor = { type = "dht11", pin = 2 }
  wifi   = { ssid = "barn", psk = var.barn_psk }
}
