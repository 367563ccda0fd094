site "vars" {}

variable "count" {
  type    = number
  default = "many"
}

variable "psk" {
  sensitive = true
  default   = "short-but-secret"

  validation {
    condition     = length(var.psk) > 20 && var.count > 1
    error_message = "Too short."
  }
}

variable "psk" {}

variable "name" {
  default = "gw"

  validation {
    condition     = length(var.name) > 5
    error_message = "The name must be longer than five characters."
  }
}

gateway "gw" {
  board    = "qemu-arm64"
  hostname = var.undeclared
}
