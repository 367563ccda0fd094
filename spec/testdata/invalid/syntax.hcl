site "broken" {

gateway "gw" {
  board = "rpi5"
}
