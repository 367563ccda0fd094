site "fw" {}

gateway "gw" {
  board = "qemu-arm64"
}

firmware "a" {
  chip           = "esp8266"
  version        = "1.0"
  secure_version = 3
}

firmware "b" {
  chip           = "esp32s3"
  version        = "1.0.0-this-version-string-is-far-too-long"
  secure_version = 17
  image          = "build/none.bin"
}

firmware "b" {
  chip       = "esp32"
  version    = "1.0.0"
  flash_size = "3MB"
}

firmware "Bad" {
  chip    = "esp32"
  version = "1.0.0"
}
