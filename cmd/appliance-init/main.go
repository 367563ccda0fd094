// Command appliance-init is the gateway's first program: /init in the
// initramfs, and init= in the root file system (see package bootinit).
package main

import "github.com/appliance/appliance/bootinit"

func main() { bootinit.Main() }
