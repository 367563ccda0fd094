package disk

import (
	"crypto/sha256"
	"fmt"
	gohash "hash"
	"io"
	"os"
	"sync"

	"github.com/appliance/appliance/images/bmap"
)

// Digest is what one read of an image gives.
type Digest struct {
	// Size and SHA256 are the image's.
	Size   int64
	SHA256 [32]byte
	// Bmap is its bmap (bmaptool's format).
	Bmap string
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

// DigestImage reads the image at path once, in order, and from that one
// read hashes it, makes its bmap and, unless compressed is nil, writes
// every byte of it to compressed (which must not retain the slices it is
// given).
//
// Only the image's data is read: its holes are fed as zeros from memory.
// Reading a hole makes the kernel allocate and clear page cache for it,
// which on a gateway image (a third of it holes) cost more than a second
// of system time — more than the hashing.
func DigestImage(path string, compressed io.Writer) (*Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	defer f.Close()
	ranges, size, err := bmap.Unhashed(f)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}

	// The checksum of the whole image, the ranges' checksums and the
	// compressed copy each take a core's worth of work: each consumer
	// runs on its own goroutine, and every chunk goes to all of them.
	rangeHashes := make([]gohash.Hash, len(ranges))
	image := sha256.New()
	consumers := []func(c *chunk) error{
		func(c *chunk) error { image.Write(c.buf); return nil },
		func(c *chunk) error {
			if c.rng < 0 {
				return nil
			}
			h := rangeHashes[c.rng]
			if h == nil {
				h = sha256.New()
				rangeHashes[c.rng] = h
			}
			h.Write(c.buf)
			if c.last {
				h.Sum(ranges[c.rng].SHA256[:0])
			}
			return nil
		},
	}
	if compressed != nil {
		consumers = append(consumers, func(c *chunk) error {
			_, err := compressed.Write(c.buf)
			return err
		})
	}

	const depth = 4 // chunks in flight per consumer
	free := make(chan []byte, depth+2)
	for range depth + 2 {
		free <- make([]byte, digestChunk)
	}
	zeros := make([]byte, digestChunk)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
		failed  = make(chan struct{})
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; close(failed) })
	}
	queues := make([]chan *chunk, len(consumers))
	for i, consume := range consumers {
		queues[i] = make(chan *chunk, depth)
		wg.Go(func() {
			for c := range queues[i] {
				if err := consume(c); err != nil {
					fail(err)
				}
				c.refs.Done()
			}
		})
	}
	send := func(c *chunk) bool {
		c.refs.Add(len(queues))
		for _, q := range queues {
			q <- c
		}
		if c.pooled {
			// The buffer goes back to the pool once every consumer is
			// done with it.
			go func() { c.refs.Wait(); free <- c.buf[:cap(c.buf)] }()
		}
		select {
		case <-failed:
			return false
		default:
			return true
		}
	}
	// holes sends the zeros from off to end.
	holes := func(off, end int64) bool {
		for ; off < end; off += digestChunk {
			if !send(&chunk{buf: zeros[:min(digestChunk, end-off)], rng: -1}) {
				return false
			}
		}
		return true
	}
	produce := func() {
		var off int64
		for i, r := range ranges {
			from, to := r.First*bmap.BlockSize, r.End(size)
			if !holes(off, from) {
				return
			}
			for off = from; off < to; {
				var buf []byte
				select {
				case buf = <-free:
				case <-failed:
					return
				}
				buf = buf[:min(digestChunk, to-off)]
				if _, err := f.ReadAt(buf, off); err != nil {
					fail(fmt.Errorf("disk: %s: %w", path, err))
					return
				}
				off += int64(len(buf))
				if !send(&chunk{buf: buf, rng: i, last: off == to, pooled: true}) {
					return
				}
			}
		}
		holes(off, size)
	}
	produce()
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	d := &Digest{Size: size, Bmap: bmap.Format(ranges, size)}
	image.Sum(d.SHA256[:0])
	return d, nil
}
