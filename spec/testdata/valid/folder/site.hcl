site "split" {}

gateway "split-gw" {
  board = "rpi5"

  network {
    wifi {
      ssid    = "barn"
      psk     = var.barn_psk
      country = "FR"
    }
  }
}

variable "barn_psk" {
  sensitive = true
}
