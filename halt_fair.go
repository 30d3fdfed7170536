package litefs

import (
	"context"
	"sync"
	"time"
)

// Fairness between the primary's own writers and halters (issue 5: the
// primary keeps at least half its write rate while a replica halts again
// and again). SQLite never waits in the kernel for a lock: a connection
// refused RESERVED (or the WAL write lock) sleeps in its busy handler (1, 2,
// 5, ... up to 100 ms) and tries again, while a halter waits in the lock
// table's queue and gets the lock the instant it is free. Left alone, a
// halter that asks again at once would win every time.
//
// So a local writer refused the write lock is remembered, and the next HALT
// waits (before queueing) until that writer has had the lock, for at most
// localWriterGrace after the later of its refusal and the last HALT's end:
// long enough for the longest busy-handler sleep. Then, if local writers
// were refused while the last HALT was held, it leaves them the lock for a
// window of three times that HALT's hold time (localWindowMin to localWindowMax),
// so that they keep well over half the time under back-to-back HALTs.
// Local writers that gave up cost a halter at most the grace, once.

// Bounds of the yield of a HALT request to the primary's own writers.
const (
	localWriterGrace = 110 * time.Millisecond
	localWindowMin   = 2 * time.Millisecond
	localWindowMax   = 50 * time.Millisecond
)

// localWriters is what the primary knows of its own waiting writers.
type localWriters struct {
	mu        sync.Mutex
	waiting   bool          // refused the write lock and not had it since
	since     time.Time     // when it was first refused
	served    chan struct{} // closed when it gets the lock
	servedAt  time.Time     // when a waiting writer last got the lock
	contended bool          // a local writer was refused since the last HALT grant
	haltDone  time.Time     // when the last HALT ended
	lastHold  time.Duration // how long it was held
}

// LocalWriteLock records the outcome of a local connection's request for
// SQLite's write lock (RESERVED, or the WAL write lock): the FUSE layer
// calls it for every such request.
func (db *DB) LocalWriteLock(granted bool) {
	lw := &db.localW
	lw.mu.Lock()
	defer lw.mu.Unlock()
	switch {
	case granted && lw.waiting:
		lw.waiting, lw.servedAt = false, time.Now()
		close(lw.served)
	case !granted:
		lw.contended = true
		if !lw.waiting {
			lw.waiting, lw.since, lw.served = true, time.Now(), make(chan struct{})
		}
	}
}

// haltGranted starts a new HALT tenure: contention is counted afresh.
func (db *DB) haltGranted() {
	db.localW.mu.Lock()
	db.localW.contended = false
	db.localW.mu.Unlock()
}

// haltEnded records the end of a HALT held for held.
func (db *DB) haltEnded(held time.Duration) {
	db.localW.mu.Lock()
	db.localW.haltDone, db.localW.lastHold = time.Now(), held
	db.localW.mu.Unlock()
}

// yieldToLocalWriter waits, before a HALT queues for the write lock, until
// a refused local writer has had the lock (or its grace passed), then for
// the local window if local writers contended with the last HALT.
func (db *DB) yieldToLocalWriter(ctx context.Context) {
	lw := &db.localW
	lw.mu.Lock()
	served, wait := lw.served, time.Duration(0)
	if lw.waiting {
		wait = time.Until(later(lw.since, lw.haltDone).Add(localWriterGrace))
		if wait <= 0 {
			lw.waiting = false // it gave up, or is not coming back soon
			close(lw.served)
		}
	}
	lw.mu.Unlock()
	if wait > 0 {
		sleepUntil(ctx, served, wait)
	}

	lw.mu.Lock()
	window := min(max(3*lw.lastHold, localWindowMin), localWindowMax)
	until := later(lw.servedAt, lw.haltDone).Add(window)
	contended := lw.contended
	lw.mu.Unlock()
	if d := time.Until(until); contended && d > 0 {
		sleepUntil(ctx, nil, d)
	}
}

// sleepUntil waits d, or until done is closed or ctx ends.
func sleepUntil(ctx context.Context, done <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
