package fuse

import (
	"io"
	"sync/atomic"
	"testing"
	"time"

	"bazil.org/fuse"
)

// fakeDevice feeds requests to a readerPool as the kernel would.
type fakeDevice struct {
	reqs    chan fuse.Request
	handled chan fuse.RequestID
	block   map[fuse.RequestID]chan struct{} // requests that wait to be released
	maxRun  atomic.Int32
}

func newFakeDevice() *fakeDevice {
	return &fakeDevice{reqs: make(chan fuse.Request), handled: make(chan fuse.RequestID, 1024), block: map[fuse.RequestID]chan struct{}{}}
}

func (d *fakeDevice) read() (fuse.Request, error) {
	req, ok := <-d.reqs
	if !ok {
		return nil, io.EOF
	}
	return req, nil
}

func (d *fakeDevice) pool() *readerPool {
	p := &readerPool{read: d.read}
	p.handle = func(req fuse.Request) {
		p.mu.Lock()
		if n := int32(p.running); n > d.maxRun.Load() {
			d.maxRun.Store(n)
		}
		p.mu.Unlock()
		if c := d.block[req.Hdr().ID]; c != nil {
			<-c
		}
		d.handled <- req.Hdr().ID
	}
	return p
}

func request(id fuse.RequestID) fuse.Request {
	return &fuse.StatfsRequest{Header: fuse.Header{ID: id}}
}

// waitHandled waits for request id to be handled.
func (d *fakeDevice) waitHandled(t *testing.T, id fuse.RequestID, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-d.handled:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("request %d not handled within %v", id, within)
		}
	}
}

func TestReaderPool_StuckRequestDoesNotHoldUpTheNext(t *testing.T) {
	d := newFakeDevice()
	release := make(chan struct{})
	d.block[1] = release
	p := d.pool()
	done := make(chan error, 1)
	go func() { done <- p.run() }()

	d.reqs <- request(1) // blocks its reader until released
	d.reqs <- request(2) // taken by a reader the watchdog adds
	d.waitHandled(t, 2, 2*time.Second)
	close(release)
	d.waitHandled(t, 1, 2*time.Second)

	// Once a reader is idle again, the added one leaves.
	deadline := time.Now().Add(2 * time.Second)
	for id := fuse.RequestID(3); ; id++ {
		d.reqs <- request(id)
		d.waitHandled(t, id, time.Second)
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if running == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers still running after the stall ended", running)
		}
	}
	close(d.reqs)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestReaderPool_OneReaderServesAStreamOfQuickRequests(t *testing.T) {
	d := newFakeDevice()
	p := d.pool()
	done := make(chan error, 1)
	go func() { done <- p.run() }()
	for id := fuse.RequestID(1); id <= 2000; id++ {
		d.reqs <- request(id)
		d.waitHandled(t, id, time.Second)
	}
	close(d.reqs)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if n := d.maxRun.Load(); n != 1 {
		t.Fatalf("quick requests were served by %d readers, want 1", n)
	}
}

func TestReaderPool_WatchdogDecisions(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, tt := range []struct {
		name                   string
		waiting, busy          int32
		sinceProgress          int64
		wantStalled, wantQuiet bool
	}{
		{"a reader waits", 1, 1, 100 * ms, false, false},
		{"busy briefly", 0, 1, 1 * ms, false, false},
		{"busy past stallAfter with none waiting", 0, 1, int64(stallAfter) + ms, true, false},
		{"idle a moment", 1, 0, 10 * ms, false, false},
		{"idle past watchdogRest", 1, 0, int64(watchdogRest) + ms, false, true},
		{"stuck for long is not quiet", 0, 1, int64(watchdogRest) + ms, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p readerPool
			p.waiting.Store(tt.waiting)
			p.busy.Store(tt.busy)
			now := int64(10 * time.Second)
			p.progress.Store(now - tt.sinceProgress)
			if got := p.stalled(now); got != tt.wantStalled {
				t.Errorf("stalled = %v, want %v", got, tt.wantStalled)
			}
			if got := p.quiet(now); got != tt.wantQuiet {
				t.Errorf("quiet = %v, want %v", got, tt.wantQuiet)
			}
		})
	}
}
