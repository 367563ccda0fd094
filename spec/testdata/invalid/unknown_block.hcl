site "typo" {}

gatway "gw" {
  board = "rpi5"
}

gateway "gw" {
  board  = "rpi5"
  bord   = "rpi4"
}
