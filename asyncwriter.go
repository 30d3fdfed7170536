package litefs

import (
	"errors"
	"io"
	"sync"
)

// asyncWriter writes to w from a second goroutine. Write copies into a chunk
// buffer and hands full chunks over, so the caller's work overlaps with the
// writes. A few chunks circulate, so memory stays flat. A write error is
// returned by the next Write or by Close.
type asyncWriter struct {
	w    io.Writer
	cur  []byte
	full chan []byte
	free chan []byte
	done chan struct{}
	shut bool // Close was called

	mu  sync.Mutex
	err error // first write error
}

// Chunk size and count of an asyncWriter.
const (
	asyncChunkSize = 256 << 10
	asyncChunks    = 4
)

// Errors of an asyncWriter that was closed or aborted.
var (
	errAsyncClosed  = errors.New("write after close")
	errAsyncAborted = errors.New("writer aborted")
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:    w,
		full: make(chan []byte, asyncChunks),
		free: make(chan []byte, asyncChunks),
		done: make(chan struct{}),
	}
	for range asyncChunks {
		a.free <- make([]byte, 0, asyncChunkSize)
	}
	go a.run(a.full)
	return a
}

// run writes the chunks in order; after an error it only hands
// chunks back, so Write never blocks for good.
func (a *asyncWriter) run(full <-chan []byte) {
	defer close(a.done)
	for c := range full {
		if a.firstErr() == nil {
			if _, err := a.w.Write(c); err != nil {
				a.setErr(err)
			}
		}
		a.free <- c[:0]
	}
}

func (a *asyncWriter) firstErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncWriter) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
}

// Write queues a copy of p.
func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.shut {
		return 0, errAsyncClosed
	}
	if err := a.firstErr(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = <-a.free
		}
		k := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:k]...)
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close writes what is queued, ends the goroutine and returns the first
// write error. Later calls return errAsyncClosed.
func (a *asyncWriter) Close() error {
	if a.shut {
		return errAsyncClosed
	}
	if len(a.cur) > 0 {
		a.full <- a.cur
	}
	a.cur = nil
	close(a.full)
	a.shut = true
	<-a.done
	return a.firstErr()
}

// Abort ends the goroutine without writing the chunks still queued (a write
// in progress finishes first). Later Writes fail. It does nothing after
// Close.
func (a *asyncWriter) Abort() {
	if a.shut {
		return
	}
	a.setErr(errAsyncAborted)
	_ = a.Close()
}
