site "ports" {}

gateway "gw" {
  board = "rpi5"
}

ssh {
  port = 8086
}

https {
  redirect_port = 8883
}

grafana {
  port = 22
  path = "/ota/dash/"
}

ingest {
  metrics_port = 443
}
