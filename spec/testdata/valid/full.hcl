site "full-site" {
  description   = "Every setting written out"
  support_years = 8
  contact       = ["mailto:security@example.com", "https://example.com/security"]
  vendor        = "Example Plants Ltd"
}

variable "psk" {
  type      = string
  sensitive = true
  default   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
}

variable "rooms" {
  type    = list(string)
  default = ["north", "south"]
}

locals {
  wifi  = { ssid = "plants", psk = var.psk }
  first = upper(element(var.rooms, 0))
}

gateway "main" {
  board    = "rpi4"
  hostname = "plant-gw"
  address  = "10.1.2.3"
  timezone = "America/New_York"
  locale   = "en_US.UTF-8"

  admin {
    user            = "keeper"
    authorized_keys = [file("ops.pub")]
  }

  network {
    address = "10.1.2.3/16"
    router  = "10.1.0.1"
    dns     = ["10.1.0.1", "2001:db8::53"]

    wifi {
      ssid    = "plants-admin"
      psk     = var.psk
      country = "US"
    }
  }
}

os {
  suite    = "trixie"
  packages = ["chrony", "less", "chrony"]

  source "mirror" {
    url        = "https://mirror.example.org/debian/"
    components = ["main", "contrib"]
    keyring    = "../../../keys/debian-archive.pgp"
  }

  source "raspberrypi" {
    url = "http://archive.raspberrypi.com/debian"
  }
}

mqtt {
  port                  = 8884
  local_plain_port      = 1883
  max_message_size      = "4KiB"
  max_queued_messages   = 5000
  max_inflight_messages = 10
  persistence           = false
}

https {
  port          = 8443
  redirect_port = 0
}

ota {
  path = "/firmware"
}

influxdb {
  version   = 2
  port      = 8087
  expose    = true
  org       = "plants"
  bucket    = "readings"
  retention = "infinite"
}

grafana {
  port = 3001
  path = "/grafana/"

  alert_webhook = "https://hooks.example.com/appliance/${var.psk}"
  alert_email   = ["ops@example.com"]
  smtp          = { host = "mail.example.com:587", from = "gw@example.com", user = "gw", password = var.psk }
}

firewall {
  ssh_from   = ["10.1.0.0/16", "2001:db8::/32"]
  mqtt_from  = ["10.1.0.0/16"]
  https_from = []
}

ssh {
  port = 2222
}

ingest {
  batch_size          = 1000
  flush_interval      = "500ms"
  spool_size          = 1073741824
  metrics_port        = 9200
  shared_subscription = true
}

firmware "th" {
  chip           = "esp32c3"
  version        = "2.0.0-rc.1"
  secure_version = 16
}

firmware "big" {
  chip       = "esp32s3"
  version    = "1.0.0"
  flash_size = "8MB"
}

node "row" {
  count    = 2
  firmware = firmware.th
  sensor   = { type = "dht22", pin = node.index + 2 }
  interval = "1h30m"
  wifi     = local.wifi
  tags     = { room = local.first, slot = format("s%02d", node.index) }
}

node "hall" {
  firmware = firmware.big
  sensor   = { type = "dht11", pin = 48 }
  interval = "1d"
  wifi     = { ssid = "plants", psk = var.psk }
}
