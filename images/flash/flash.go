// Package flash writes a gateway image to an SD card (or any block
// device, or a file): only the blocks its bmap maps. The image is checked
// against the bmap's SHA-256 sums before anything is written, and the
// card is read back and checked after. It refuses a disk that is mounted
// or not removable unless forced, so a typo cannot wipe the build machine.
package flash

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/appliance/appliance/images/bmap"
	"golang.org/x/sys/unix"
)

// Options tune Flash.
type Options struct {
	// Force writes to a disk that is mounted or not removable.
	Force bool
	// Progress, when set, is told how far each phase (check, write,
	// verify) has come, in bytes.
	Progress func(phase string, done, total int64)
}

// Check refuses targets that are probably not the card the user means:
// partitions, mounted disks (or disks with a mounted partition) and disks
// that are not removable. A regular file is always fine.
func Check(device string) error {
	fi, err := os.Stat(device)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist; name the card's whole disk (lsblk lists the disks)", device)
	}
	if err != nil {
		return err
	}
	if fi.Mode().IsRegular() {
		return nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return fmt.Errorf("%s is neither a block device nor a file", device)
	}
	var st unix.Stat_t
	if err := unix.Stat(device, &st); err != nil {
		return err
	}
	major, minor := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return fmt.Errorf("%s is a partition; flash the whole disk, /dev/%s", device, filepath.Base(filepath.Dir(sys)))
	}
	name := filepath.Base(sys)
	if mounted, err := mountedOn(name); err != nil {
		return err
	} else if mounted != "" {
		return fmt.Errorf("%s is in use: %s is mounted; unmount it first, or pass --force if you really mean this disk", device, mounted)
	}
	if b, err := os.ReadFile(filepath.Join(sys, "removable")); err == nil && strings.TrimSpace(string(b)) != "1" {
		return fmt.Errorf("%s is not a removable disk; pass --force if it really is the card to flash", device)
	}
	return nil
}

// mountedOn names a mounted device among the disk and its partitions.
func mountedOn(disk string) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+2 < len(fields) {
				src := filepath.Base(fields[i+2])
				if src == disk || strings.HasPrefix(src, disk) && len(src) > len(disk) {
					return "/dev/" + src + " on " + fields[4], nil
				}
			}
		}
	}
	return "", sc.Err()
}

// Flash writes image to device by its bmap (image + ".bmap") and reads
// every written range back to check it. Blocks the bmap does not map
// keep what the card held, but for its first and last MiB, which are
// zeroed so that no old partition table survives.
func Flash(image, device string, opt Options) error {
	if !opt.Force {
		if err := Check(device); err != nil {
			return err
		}
	}
	mf, err := os.Open(image + ".bmap")
	if err != nil {
		return fmt.Errorf("%w; flash needs the block map written beside the image", err)
	}
	m, err := bmap.Parse(mf)
	mf.Close()
	if err != nil {
		return err
	}
	in, err := os.Open(image)
	if err != nil {
		return err
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return err
	} else if fi.Size() != m.ImageSize {
		return fmt.Errorf("%s is %d bytes, its bmap says %d: they are not of one build", image, fi.Size(), m.ImageSize)
	}
	out, err := os.OpenFile(device, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s does not exist; name the card's whole disk (lsblk lists the disks)", device)
	}
	if err != nil {
		return err
	}
	defer out.Close()
	if fi, err := out.Stat(); err != nil {
		return err
	} else if fi.Mode().IsRegular() {
		// A file stands for a card: it gets the image's size.
		if fi.Size() < m.ImageSize {
			if err := out.Truncate(m.ImageSize); err != nil {
				return err
			}
		}
	} else {
		size, err := out.Seek(0, io.SeekEnd)
		if err != nil {
			return err
		}
		if size < m.ImageSize {
			return fmt.Errorf("%s holds %d MiB, the image needs %d MiB", device, size>>20, m.ImageSize>>20)
		}
	}
	total := m.Mapped()
	buf := make([]byte, 4<<20)
	progress := func(phase string) func(int64) {
		var done int64
		return func(n int64) {
			done += n
			if opt.Progress != nil {
				opt.Progress(phase, done, total)
			}
		}
	}

	// The image is checked against its map before a byte goes to the
	// card, so a damaged image leaves the card as it was.
	check := progress("check")
	for _, r := range m.Ranges {
		sum, err := rangeSum(in, r, m, buf, check)
		if err != nil {
			return fmt.Errorf("reading %s: %w", image, err)
		}
		if sum != r.SHA256 {
			return fmt.Errorf("%s does not match its bmap at blocks %d-%d: the image is damaged; build it again", image, r.First, r.Last)
		}
	}
	// A card that held another system may carry a GPT, whose backup
	// header at the card's end outlives a new MBR, and other signatures
	// near its start: tools would take the card for what it was. The
	// first and last MiB are zeroed; the image's own blocks follow.
	end, err := out.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	clear(buf)
	for _, at := range []int64{0, max(0, end-wipe)} {
		if _, err := out.WriteAt(buf[:min(wipe, end)], at); err != nil {
			return fmt.Errorf("writing %s: %w", device, err)
		}
	}
	write := progress("write")
	for _, r := range m.Ranges {
		from, to := r.First*m.BlockSize, min((r.Last+1)*m.BlockSize, m.ImageSize)
		for off := from; off < to; {
			n := min(int64(len(buf)), to-off)
			if _, err := in.ReadAt(buf[:n], off); err != nil {
				return fmt.Errorf("reading %s: %w", image, err)
			}
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("writing %s: %w", device, err)
			}
			off += n
			write(n)
		}
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", device, err)
	}
	// Read back past the page cache where the kernel lets us: the card,
	// not memory, must hold the image.
	unix.Fadvise(int(out.Fd()), 0, 0, unix.FADV_DONTNEED)
	verify := progress("verify")
	for _, r := range m.Ranges {
		sum, err := rangeSum(out, r, m, buf, verify)
		if err != nil {
			return fmt.Errorf("reading %s back: %w", device, err)
		}
		if sum != r.SHA256 {
			return fmt.Errorf("%s reads back wrong at blocks %d-%d: the card may be failing", device, r.First, r.Last)
		}
	}
	return nil
}

// wipe is how much of each end of the card is zeroed before writing.
const wipe = 1 << 20

// rangeSum hashes one range of the map as f holds it.
func rangeSum(f *os.File, r bmap.Range, m *bmap.Map, buf []byte, progress func(int64)) ([32]byte, error) {
	from, to := r.First*m.BlockSize, min((r.Last+1)*m.BlockSize, m.ImageSize)
	h := sha256.New()
	for off := from; off < to; {
		n := min(int64(len(buf)), to-off)
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return [32]byte{}, err
		}
		h.Write(buf[:n])
		off += n
		progress(n)
	}
	return [32]byte(h.Sum(nil)), nil
}
