site "admin" {}

gateway "gw" {
  board = "rpi5"

  admin {
    user            = "root"
    authorized_keys = ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7PYV37j/GG+gbby9jJnGmmjP6dekXBZFdu2ESL1KLoofOwKVo69+J7T7M90qFNLslTxOb3NUlz7IhKz/hSo5dstQYRW4+Awk1YeoEbTueWRR4H+1VX9FsTewePDOPVNDkHTCqlC8f33/UPJyJYszRmzzhZIWl7N8gDu8WH+K1yp74x8cpF1yyRNCjugVRuYWOg+TTI54ZGYkwlE056o4X/FQ+MowxfiIVAOse2pauXTya8Ii9Ds1bkOFqPaQ/GmoqXjpZMVK+FeYBaIkf1K+HQjPowwK9/yCuMYfE233ScMXEtm7nEIaz9AZcRnaJLCo2WoiWpsmstEepfJAqev5L weak@example", "not a key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEPHUaaxmufFsYwRFQpW6ykYd0vAoJ5DjLzp0CnQhhV2 ok@example"]
  }
}

firewall {
  ssh_from   = []
  mqtt_from  = ["192.168.1.7", "0.0.0.0/0"]
  https_from = ["not-a-cidr"]
}
