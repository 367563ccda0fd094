# A greenhouse: a Raspberry Pi 5 gateway running Raspberry Pi OS (Debian
# trixie with archive.raspberrypi.com), InfluxDB 2 and Grafana from their
# vendors' repositories, and a fleet of ESP32-S3 nodes.
#
#   appliance plan examples/greenhouse.hcl

site "greenhouse" {
  description = "Greenhouse north: benches, doors and the cold frame"
  contact     = ["mailto:security@example.com", "https://example.com/security"]
  vendor      = "Example Greenhouses GmbH"
}

variable "wifi_psk" {
  description = "WPA passphrase of the sensor Wi-Fi"
  type        = string
  sensitive   = true
}

variable "bench_count" {
  description = "Number of bench sensors"
  type        = number
  default     = 12
}

locals {
  admin_key = "~/.ssh/id_ed25519.pub"
  sensor_wifi = {
    ssid = "greenhouse-sensors"
    psk  = var.wifi_psk
  }
}

gateway "gw" {
  board    = "rpi5"
  hostname = "greenhouse-gw"
  timezone = "Europe/Berlin"
  locale   = "de_DE.UTF-8"

  admin {
    user            = "ops"
    authorized_keys = fileexists(local.admin_key) ? [file(local.admin_key)] : []
  }

  network {
    address = "192.168.1.50/24"
    router  = "192.168.1.1"
    dns     = ["192.168.1.1"]
  }
}

os {
  suite    = "trixie"
  packages = ["chrony"]

  source "debian" {
    url        = "http://deb.debian.org/debian"
    components = ["main", "non-free-firmware"]
    keyring    = "../keys/debian-archive.pgp"
  }

  source "debian-security" {
    url        = "http://deb.debian.org/debian-security"
    suite      = "trixie-security"
    components = ["main", "non-free-firmware"]
    keyring    = "../keys/debian-archive.pgp"
  }

  source "raspberrypi" {
    url     = "http://archive.raspberrypi.com/debian"
    keyring = "../keys/raspberrypi.asc"
  }

  source "influxdata" {
    url     = "https://repos.influxdata.com/debian"
    suite   = "stable"
    keyring = "../keys/influxdata.asc"
  }

  source "grafana" {
    url     = "https://apt.grafana.com"
    suite   = "stable"
    keyring = "../keys/grafana.asc"
  }
}

mqtt {
  port = 8883
}

ota {
  path = "/ota/"
}

influxdb {
  version   = 2
  retention = "90d"
}

grafana {}

firewall {
  ssh_from   = ["192.168.1.0/24"]
  mqtt_from  = ["192.168.1.0/24"]
  https_from = ["192.168.1.0/24"]
}

firmware "sensor" {
  chip           = "esp32s3"
  version        = "1.4.0"
  secure_version = 1
}

node "bench" {
  count    = var.bench_count
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "30s"
  wifi     = local.sensor_wifi
  tags     = { zone = "benches" }
}

node "door" {
  count    = 2
  firmware = firmware.sensor
  sensor   = { type = "dht22", pin = 5 }
  interval = "1m"
  wifi     = local.sensor_wifi
  tags     = { zone = "doors" }
}

node "coldframe" {
  firmware = firmware.sensor
  sensor   = { type = "dht22", pin = 5 }
  interval = "5m"
  wifi     = local.sensor_wifi
  tags     = { zone = "outside" }
}
