package disk

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sync"

	"github.com/appliance/appliance/images/bmap"
)

// Digest is what one read of an image gives.
type Digest struct {
	// Size and SHA256 are the image's.
	Size   int64
	SHA256 [32]byte
	// Bmap is its bmap (bmaptool's format), of Ranges.
	Bmap   string
	Ranges []bmap.Range
}

// digestChunk is how much of the image moves through Digest at a time.
const digestChunk = 4 << 20

// chunk is one piece of the image on its way to Digest's consumers.
type chunk struct {
	buf []byte
	// rng is the index of the bmap range the chunk lies in, or -1 in a
	// hole; last says the chunk ends that range.
	rng  int
	last bool
	// pooled buffers go back to the pool; the shared zeros do not.
	pooled bool
	refs   sync.WaitGroup
}

// DigestRanges reads the image f (size bytes, its data in ranges, from
// bmap.Unhashed) once, in order, and from that one read hashes it and
// each of its ranges, for its bmap. hashed(i), unless nil, is called
// from another goroutine once ranges[i].SHA256 is set (ranges[i] must
// not be read before), so that a caller can use each range as soon as
// it is known.
//
// Only the image's data is read: its holes are fed as zeros from memory.
// Reading a hole makes the kernel allocate and clear page cache for it,
// which on a gateway image (a third of it holes) cost more than a second
// of system time — more than the hashing.
func DigestRanges(f *os.File, size int64, ranges []bmap.Range, hashed func(i int)) (*Digest, error) {
	// The checksum of the whole image and the ranges' checksums each take
	// a core: each consumer runs on its own goroutine, and every chunk
	// goes to both.
	image, rng := sha256.New(), sha256.New()
	consumers := []func(c *chunk){
		func(c *chunk) { image.Write(c.buf) },
		// Chunks come in order, so one range is hashed at a time.
		func(c *chunk) {
			if c.rng < 0 {
				return
			}
			rng.Write(c.buf)
			if c.last {
				rng.Sum(ranges[c.rng].SHA256[:0])
				rng.Reset()
				if hashed != nil {
					hashed(c.rng)
				}
			}
		},
	}

	const depth = 4 // chunks in flight per consumer
	free := make(chan []byte, depth+2)
	for range depth + 2 {
		free <- make([]byte, digestChunk)
	}
	zeros := make([]byte, digestChunk)
	var wg sync.WaitGroup
	queues := make([]chan *chunk, len(consumers))
	for i, consume := range consumers {
		queues[i] = make(chan *chunk, depth)
		wg.Go(func() {
			for c := range queues[i] {
				consume(c)
				c.refs.Done()
			}
		})
	}
	send := func(c *chunk) {
		c.refs.Add(len(queues))
		for _, q := range queues {
			q <- c
		}
		if c.pooled {
			// The buffer goes back to the pool once every consumer is
			// done with it.
			go func() { c.refs.Wait(); free <- c.buf[:cap(c.buf)] }()
		}
	}
	// holes sends the zeros from off to end.
	holes := func(off, end int64) {
		for ; off < end; off += digestChunk {
			send(&chunk{buf: zeros[:min(digestChunk, end-off)], rng: -1})
		}
	}
	produce := func() error {
		var off int64
		for i, r := range ranges {
			from, to := r.First*bmap.BlockSize, r.End(size)
			holes(off, from)
			for off = from; off < to; {
				buf := <-free
				buf = buf[:min(digestChunk, to-off)]
				if _, err := f.ReadAt(buf, off); err != nil {
					return fmt.Errorf("disk: %s: %w", f.Name(), err)
				}
				off += int64(len(buf))
				send(&chunk{buf: buf, rng: i, last: off == to, pooled: true})
			}
		}
		holes(off, size)
		return nil
	}
	err := produce()
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	d := &Digest{Size: size, Bmap: bmap.Format(ranges, size), Ranges: ranges}
	image.Sum(d.SHA256[:0])
	return d, nil
}
