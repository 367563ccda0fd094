site "paths" {}

gateway "gw" {
  board = "rpi5"
}

ota {
  path = "/"
}

grafana {
  path = "/dash board/"
}
