site "alerts" {
  contact = ["security@example.com", "http://example.com/security", "mailto:security@example.com"]
}

gateway "gw" {
  board = "rpi5"
}

grafana {
  alert_webhook = "http://hooks.example.com/x"
  alert_email   = ["ops@example.com", "Ops <ops@example.com>"]
}
