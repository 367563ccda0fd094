site "net" {}

gateway "gw" {
  board   = "rpi5"
  address = "127.0.0.1"

  network {
    address = "192.168.1.0/24"
    router  = "10.0.0.1"
    dns     = ["one.one.one.one"]

    wifi {
      ssid    = "a-very-long-ssid-that-goes-past-32-bytes"
      psk     = "tooshort"
      country = "XX"
    }
  }
}
