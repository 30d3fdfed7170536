package fuse

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"bazil.org/fuse"
)

// How requests are read.
//
// The kernel gives each request to the reader that has waited on /dev/fuse
// the longest. With several idle readers, every request therefore lands on
// the coldest thread, one whose processor the Go scheduler has meanwhile
// handed to someone else; on the 2-core benchmark machine that made each
// request about twice as expensive (8,460 against 4,970 single-row WAL
// transactions/s through a mount that records nothing, one reader against
// four). So one permanent reader serves requests inline, and a watchdog adds
// a reader only when a request has kept every reader busy for stallAfter:
// a slow request (a commit waiting for the disk, a mutex held by one) then
// delays the others by about that much, never indefinitely. An added reader
// leaves as soon as another reader is idle again.

// stallAfter is how long all readers may be busy before another starts. The
// watchdog checks this often while requests come. Measured through a mount
// that records nothing (single-row WAL tx/s, two runs each): checking every
// 1 ms gave 5,660-5,820, every 5 ms 7,970-8,430, no watchdog 6,870-9,420.
const stallAfter = 5 * time.Millisecond

// maxReaders bounds the readers the watchdog starts.
const maxReaders = 32

// watchdogRest is how long without a request before the watchdog stops
// waking up and waits for the next request.
const watchdogRest = time.Second

// readerPool is the state the readers and their watchdog share.
type readerPool struct {
	read   func() (fuse.Request, error) // the next request (blocks)
	handle func(fuse.Request)           // answers one request

	waiting  atomic.Int32 // readers blocked reading the device
	busy     atomic.Int32 // readers handling a request
	progress atomic.Int64 // monotonic ns of the last request start or end
	resting  atomic.Bool  // the watchdog waits on wake
	wake     chan struct{}

	mu      sync.Mutex
	running int  // readers alive
	stopped bool // the connection ended: start no more readers
	err     error
	wg      sync.WaitGroup
}

// epoch anchors the pool's monotonic clock.
var epoch = time.Now()

func monoNow() int64 { return int64(time.Since(epoch)) }

// serve answers requests until the kernel ends the connection.
func (s *server) serve() error {
	s.readers.read = s.conn.ReadRequest
	s.readers.handle = func(req fuse.Request) {
		if s.debug {
			s.fs.log.Debug("fuse request", "req", req.String())
		}
		s.dispatch(req)
	}
	err := s.readers.run()
	s.wg.Wait()
	return err
}

// run reads and handles requests until the connection ends, and returns
// the first read error.
func (p *readerPool) run() error {
	p.wake = make(chan struct{}, 1)
	stop := make(chan struct{})
	p.start(true)
	go p.watchdog(stop)
	p.wg.Wait()
	close(stop)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// start adds a reader unless the connection ended or the pool is full.
func (p *readerPool) start(permanent bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.running >= maxReaders {
		return
	}
	p.running++
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := p.readLoop(permanent)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.running--
		if permanent || err != nil {
			p.stopped = true
		}
		if err != nil && p.err == nil {
			p.err = err
		}
	}()
}

// readLoop reads and handles requests. An added (not permanent) reader
// returns after a request when another reader is already waiting.
func (p *readerPool) readLoop(permanent bool) error {
	for {
		p.waiting.Add(1)
		req, err := p.read()
		p.waiting.Add(-1)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ENODEV) {
				return nil
			}
			return err
		}
		if d, ok := req.(*fuse.DestroyRequest); ok {
			d.Respond()
			return nil
		}
		p.begin()
		p.handle(req)
		p.end()
		if !permanent && p.waiting.Load() > 0 {
			return nil
		}
	}
}

// begin records that a reader took a request, waking a resting watchdog.
func (p *readerPool) begin() {
	p.busy.Add(1)
	p.progress.Store(monoNow())
	if p.resting.Load() && p.resting.CompareAndSwap(true, false) {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// end records that a reader finished its request.
func (p *readerPool) end() {
	p.progress.Store(monoNow())
	p.busy.Add(-1)
}

// stalled reports whether every reader has been busy without progress for
// stallAfter, so another reader is needed.
func (p *readerPool) stalled(now int64) bool {
	return p.waiting.Load() == 0 && p.busy.Load() > 0 && now-p.progress.Load() >= int64(stallAfter)
}

// quiet reports whether the pool has been without requests long enough for
// the watchdog to rest.
func (p *readerPool) quiet(now int64) bool {
	return p.busy.Load() == 0 && now-p.progress.Load() >= int64(watchdogRest)
}

// watchdog starts a reader whenever the others are stuck. It checks every
// stallAfter while requests come, and rests while none do.
func (p *readerPool) watchdog(stop <-chan struct{}) {
	t := time.NewTimer(stallAfter)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := monoNow()
		if p.stalled(now) {
			p.start(false)
		}
		if p.quiet(now) {
			p.resting.Store(true)
			// A request that began before resting was set would not wake
			// us: look again now that it is set.
			if p.busy.Load() == 0 && monoNow()-p.progress.Load() >= int64(watchdogRest) {
				select {
				case <-stop:
					return
				case <-p.wake:
				}
			}
			p.resting.Store(false)
		}
		t.Reset(stallAfter)
	}
}

// offload runs fn in its own goroutine, for requests that wait for the disk.
func (s *server) offload(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}
