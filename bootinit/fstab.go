package bootinit

import (
	"bufio"
	"os"
	"strings"
)

// BootMount is where the boot partition is mounted, as on Raspberry Pi
// OS and Debian's Raspberry Pi images.
const BootMount = "/boot/firmware"

// fstabMounts reports whether the fstab at path mounts something on dir.
func fstabMounts(path, dir string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && !strings.HasPrefix(fields[0], "#") && fields[1] == dir {
			return true
		}
	}
	return false
}
