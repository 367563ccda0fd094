site "os" {}

gateway "gw" {
  board = "rpi5"
}

os {
  suite    = "bookworm"
  packages = ["chrony", "Bad_Name", "gcc"]

  source "debian" {
    url     = "ftp://deb.debian.org/debian"
    keyring = "keys/missing.pgp"
  }

  source "debian" {
    url = "http://deb.debian.org/debian"
  }

  source "vendor" {
    url        = "https://packages.example.com/apt"
    components = []
  }
}
