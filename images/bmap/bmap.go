// Package bmap writes the block map of a sparse image file in bmaptool's
// format 2.0, so that `bmaptool copy` writes only the blocks that hold
// data and checks each range's SHA-256.
//
// The map comes from the file itself (SEEK_DATA and SEEK_HOLE, through
// package sparse): exactly
// what the writers wrote, whichever writer it was, and nothing the disk
// writers need to track.
package bmap

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/appliance/appliance/images/sparse"
)

// BlockSize is the bmap's block size.
const BlockSize = 4096

// Range is a run of mapped blocks, First to Last inclusive.
type Range struct {
	First, Last int64
	SHA256      [32]byte
}

// Ranges returns f's mapped blocks, hashed: the file's data extents
// widened to whole blocks, merged, and cut into ranges of at most 16 MiB.
func Ranges(f *os.File) ([]Range, int64, error) {
	split, size, err := Unhashed(f)
	if err != nil {
		return nil, 0, err
	}
	return split, size, hashRanges(f, split, size)
}

// Unhashed returns f's mapped blocks as Ranges does but without their
// hashes, for a caller that hashes them while it reads the file anyway;
// it also returns f's size.
func Unhashed(f *os.File) ([]Range, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := st.Size()
	data, err := sparse.Data(f, size)
	if err != nil {
		return nil, 0, fmt.Errorf("bmap: %w", err)
	}
	var out []Range
	for _, d := range data {
		first, last := d.Off/BlockSize, (d.Off+d.Len+BlockSize-1)/BlockSize-1
		if n := len(out); n > 0 && out[n-1].Last >= first-1 {
			out[n-1].Last = max(out[n-1].Last, last)
		} else {
			out = append(out, Range{First: first, Last: last})
		}
	}
	// Ranges of at most maxRange blocks, hashed in parallel: the format
	// allows any split, bmaptool checks each range on its own, and an
	// image is mostly one long run that one core would hash alone.
	var split []Range
	for _, r := range out {
		for first := r.First; first <= r.Last; first += maxRange {
			split = append(split, Range{First: first, Last: min(first+maxRange-1, r.Last)})
		}
	}
	return split, size, nil
}

// hashRanges fills in the ranges' hashes, a few at once.
func hashRanges(f *os.File, split []Range, size int64) error {
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		hashErr error
	)
	for range max(2, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for i := int(next.Add(1) - 1); i < len(split); i = int(next.Add(1) - 1) {
				r := &split[i]
				h := sha256.New()
				from, to := r.First*BlockSize, r.End(size)
				if _, err := io.CopyBuffer(h, io.NewSectionReader(f, from, to-from), buf); err != nil {
					errOnce.Do(func() { hashErr = fmt.Errorf("bmap: %s: %w", f.Name(), err) })
					return
				}
				h.Sum(r.SHA256[:0])
			}
		})
	}
	wg.Wait()
	return hashErr
}

// End is the byte offset just past r in a file of size bytes (the last
// block may be short).
func (r *Range) End(size int64) int64 { return min((r.Last+1)*BlockSize, size) }

// maxRange is the longest range written: 16 MiB.
const maxRange = 4096

// Write writes the bmap of image f to w.
func Write(w io.Writer, f *os.File) error {
	ranges, size, err := Ranges(f)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, Format(ranges, size))
	return err
}

// Format renders the bmap XML as bmaptool 3.6 writes it, with the file's
// own checksum computed over the text with that checksum zeroed.
func Format(ranges []Range, size int64) string {
	blocks := (size + BlockSize - 1) / BlockSize
	var mapped int64
	for _, r := range ranges {
		mapped += r.Last - r.First + 1
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->

<bmap version="2.0">
`)
	fmt.Fprintf(&b, "    <!-- Image size in bytes: %s -->\n", human(size))
	fmt.Fprintf(&b, "    <ImageSize> %d </ImageSize>\n\n", size)
	b.WriteString("    <!-- Size of a block in bytes -->\n")
	fmt.Fprintf(&b, "    <BlockSize> %d </BlockSize>\n\n", BlockSize)
	b.WriteString("    <!-- Count of blocks in the image file -->\n")
	fmt.Fprintf(&b, "    <BlocksCount> %d </BlocksCount>\n\n", blocks)
	pct := 0.0
	if blocks > 0 {
		pct = 100 * float64(mapped) / float64(blocks)
	}
	// bmaptool leaves room for the longest figures, then writes the real
	// ones over the start of that room: do the same, so the files match.
	room := []byte(strings.Repeat(" ", len(human(size))) + " or " + strings.Repeat(" ", len("100.0%")) + "   -->\n")
	copy(room, fmt.Sprintf("%s or %.1f%%", human(mapped*BlockSize), pct))
	b.WriteString("    <!-- Count of mapped blocks: ")
	b.Write(room)
	room = []byte(strings.Repeat(" ", len(fmt.Sprint(blocks))))
	copy(room, fmt.Sprint(mapped))
	fmt.Fprintf(&b, "    <MappedBlocksCount> %s </MappedBlocksCount>\n\n", room)
	b.WriteString("    <!-- Type of checksum used in this file -->\n")
	b.WriteString("    <ChecksumType> sha256 </ChecksumType>\n\n")
	b.WriteString(`    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
`)
	zero := strings.Repeat("0", 64)
	fmt.Fprintf(&b, "    <BmapFileChecksum> %s </BmapFileChecksum>\n\n", zero)
	b.WriteString(`    <!-- The block map which consists of elements which may either be a
         range of blocks or a single block. The 'chksum' attribute
         (if present) is the checksum of this blocks range. -->
    <BlockMap>
`)
	for _, r := range ranges {
		span := fmt.Sprint(r.First)
		if r.Last != r.First {
			span = fmt.Sprintf("%d-%d", r.First, r.Last)
		}
		fmt.Fprintf(&b, "        <Range chksum=\"%s\"> %s </Range>\n", hex.EncodeToString(r.SHA256[:]), span)
	}
	b.WriteString("    </BlockMap>\n</bmap>\n")
	s := b.String()
	sum := sha256.Sum256([]byte(s))
	return strings.Replace(s, zero, hex.EncodeToString(sum[:]), 1)
}

// human prints a size as bmaptool does.
func human(n int64) string {
	switch {
	case n == 1:
		return "1 byte"
	case n < 512:
		return fmt.Sprintf("%d bytes", n)
	}
	f := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024
		if f < 1024 {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return fmt.Sprintf("%.1f EiB", f)
}
