# The demo site: a gateway for QEMU's virt board, built from Debian's
# archive alone, and three DHT11 sensor nodes.
#
#   appliance plan examples/demo.hcl
#
# The nodes' Wi-Fi passphrase is a variable: set it with
# --var wifi_psk=… or APPLIANCE_VAR_wifi_psk=… when you build.

site "demo" {
  description = "Demo: a QEMU gateway from Debian alone, three DHT11 nodes"
  # Where vulnerabilities are reported: security.txt and the
  # vulnerability-handling policy of every build name it.
  contact = ["mailto:security@example.org"]
}

variable "wifi_psk" {
  description = "WPA passphrase of the nodes' Wi-Fi network"
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.wifi_psk) >= 12
    error_message = "Use a Wi-Fi passphrase of at least 12 characters."
  }
}

locals {
  admin_key = "~/.ssh/id_ed25519.pub"
}

gateway "gw" {
  board    = "qemu-arm64"
  hostname = "demo-gw"
  timezone = "Europe/Berlin"

  admin {
    user = "ops"
    # appliance's own deploy key, kept in the site's state, is always
    # authorized; yours is added when you have one.
    authorized_keys = fileexists(local.admin_key) ? [file(local.admin_key)] : []
  }
}

os {
  suite    = "trixie"
  packages = ["less"]

  # Debian's archive key ships with appliance (keys/), so no keyring is
  # named: the spec needs no file beside it.
  source "debian" {
    url        = "http://deb.debian.org/debian"
    components = ["main"]
  }

  source "debian-security" {
    url   = "http://deb.debian.org/debian-security"
    suite = "trixie-security"
  }
}

# Debian ships InfluxDB 1.x; Grafana is not in Debian, so the demo has none.
influxdb {
  version   = 1
  retention = "30d"
}

firmware "sensor" {
  chip    = "esp32s3"
  version = "1.0.0"
}

node "bench" {
  count    = 3
  firmware = firmware.sensor
  sensor   = { type = "dht11", pin = 4 }
  interval = "30s"
  wifi     = { ssid = "demo-sensors", psk = var.wifi_psk }
  tags     = { room = "lab" }
}
