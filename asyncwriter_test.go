package litefs

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// failAfter accepts n bytes, then fails every write.
type failAfter struct {
	buf bytes.Buffer
	n   int
}

var errTestWrite = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > f.n {
		return 0, errTestWrite
	}
	return f.buf.Write(p)
}

func TestAsyncWriter_WritesEverythingInOrder(t *testing.T) {
	tests := []struct {
		name   string
		writes []int // sizes of the Write calls
	}{
		{"nothing", nil},
		{"small writes", []int{1, 7, 100, 4096}},
		{"exactly one chunk", []int{asyncChunkSize}},
		{"writes across chunks", []int{asyncChunkSize - 3, 10, 3 * asyncChunkSize, 5}},
		{"more than all chunks at once", []int{(asyncChunks + 2) * asyncChunkSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []byte
			dst := &failAfter{n: 1 << 30}
			w := newAsyncWriter(dst)
			for i, n := range tt.writes {
				p := bytes.Repeat([]byte{byte(i + 1)}, n)
				for j := range p {
					p[j] += byte(j)
				}
				want = append(want, p...)
				if got, err := w.Write(p); err != nil || got != n {
					t.Fatalf("write %d: %d, %v", i, got, err)
				}
				clear(p) // the writer must have copied it
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst.buf.Bytes(), want) {
				t.Fatalf("wrote %d bytes, not the %d given in order", dst.buf.Len(), len(want))
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, errAsyncClosed) {
				t.Fatalf("write after close: %v", err)
			}
		})
	}
}

func TestAsyncWriter_ReportsAWriteErrorAndStops(t *testing.T) {
	dst := &failAfter{n: asyncChunkSize + 1}
	w := newAsyncWriter(dst)
	var err error
	// Far more than the chunks in circulation: Write must not block for
	// good once the goroutine has failed, and must report the error.
	for i := 0; i < 4*asyncChunks && err == nil; i++ {
		_, err = w.Write(make([]byte, asyncChunkSize))
	}
	cerr := w.Close()
	if !errors.Is(err, errTestWrite) && !errors.Is(cerr, errTestWrite) {
		t.Fatalf("write error %v, close error %v: the failure was not reported", err, cerr)
	}
	if !errors.Is(cerr, errTestWrite) {
		t.Fatalf("close returned %v, want the write error", cerr)
	}
	select {
	case <-w.done:
	default:
		t.Fatal("the writing goroutine is still running after Close")
	}
}

// gatedWriter blocks its first Write until gate is closed.
type gatedWriter struct {
	gate    chan struct{}
	entered chan struct{}
	n       int
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	if g.n == 0 {
		close(g.entered)
		<-g.gate
	}
	g.n += len(p)
	return len(p), nil
}

func TestAsyncWriter_AbortDropsQueuedChunks(t *testing.T) {
	g := &gatedWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	w := newAsyncWriter(g)
	if _, err := w.Write(make([]byte, 3*asyncChunkSize)); err != nil {
		t.Fatal(err)
	}
	<-g.entered // the first chunk is being written, two are queued
	aborted := make(chan struct{})
	go func() { w.Abort(); close(aborted) }()
	for w.firstErr() == nil {
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	<-aborted
	if g.n != asyncChunkSize {
		t.Fatalf("%d bytes written after Abort, want only the chunk in progress (%d)", g.n, asyncChunkSize)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write after Abort succeeded")
	}
}
