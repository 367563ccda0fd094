site "locals" {}

locals {
  a = local.b
  b = local.c
  c = local.a
  d = local.a
}

locals {
  d = 1
}

gateway "gw" {
  board    = "qemu-arm64"
  timezone = local.d
}
