site "ranges" { support_years = 3 }

gateway "gw" {
  board = "qemu-arm64"
}

mqtt {
  max_message_size    = "1TiB"
  max_queued_messages = -1
  local_plain_port    = 70000
}

influxdb {
  version   = 3
  retention = "30m"
}

ingest {
  batch_size     = 1.5
  flush_interval = "5"
  spool_size     = "lots"
}

firmware "sensor" {
  chip    = "esp32"
  version = "1.0.0"
}

node "n" {
  count    = 20000
  sensor   = { type = "dht11", pin = 4 }
  wifi     = { ssid = "lab", psk = "a long enough passphrase" }
}

node "m" {
  sensor   = { type = "dht11", pin = 4 }
  interval = "2d"
  wifi     = { ssid = "lab", psk = "a long enough passphrase" }
}
