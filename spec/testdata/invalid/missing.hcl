mqtt {
  port = 8883
}
