package ext4

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// chunk is how much of a file is read before it is written: large enough
// for few system calls, small enough that memory stays flat however big
// the files are.
const chunk = 1 << 20

// writeContents streams every regular file's content into its blocks.
// Files go to a few workers: while one waits on a read another writes,
// and the positions were all fixed by the plan, so the order of writes
// does not change the result.
func (p *plan) writeContents(w io.WriterAt) error {
	work := make(chan *node)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	workers := max(2, runtime.GOMAXPROCS(0))
	for range workers {
		wg.Go(func() {
			buf := make([]byte, chunk)
			for n := range work {
				if failed() {
					continue
				}
				if err := copyFile(w, n, buf); err != nil {
					fail(fmt.Errorf("ext4: %s: %w", n.e.Path, err))
				}
			}
		})
	}
	for _, n := range p.nodes {
		if n.e.Type == Regular && n.blocks > 0 {
			work <- n
		}
	}
	close(work)
	wg.Wait()
	return first
}

var errLonger = errors.New("content is longer than its Size")

func copyFile(w io.WriterAt, n *node, buf []byte) error {
	r, err := n.e.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	left := n.e.Size
	for _, rn := range n.runs {
		pos := int64(rn.start * BlockSize)
		end := pos + int64(rn.n*BlockSize)
		for pos < end && left > 0 {
			want := min(int64(len(buf)), end-pos, left)
			got, err := io.ReadFull(r, buf[:want])
			if err != nil {
				return fmt.Errorf("content is %d bytes, not its Size %d: %w", n.e.Size-left+int64(got), n.e.Size, err)
			}
			left -= want
			// Whole blocks: the tail of the last one is zeros whatever
			// the target held before.
			padded := (want + BlockSize - 1) &^ (BlockSize - 1)
			clear(buf[want:padded])
			if _, err := w.WriteAt(buf[:padded], pos); err != nil {
				return err
			}
			pos += padded
		}
	}
	var one [1]byte
	if k, _ := r.Read(one[:]); k > 0 {
		return errLonger
	}
	return nil
}
