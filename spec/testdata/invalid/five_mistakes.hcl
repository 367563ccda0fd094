site "five" {}

gateway "gw" {
  board    = "rpi2"
  hostname = "Green_House"
}

mqtt {
  port = 443
}

firewall {
  ssh_from = ["192.168.1.5/24"]
}

firmware "sensor" {
  chip    = "esp32s3"
  version = "1.0.0"
}

node "bench" {
  count  = 3
  sensor = { type = "dht33", pin = 4 }
  wifi   = { ssid = "greenhouse", psk = "a long enough passphrase" }
}
