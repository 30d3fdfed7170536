package litefs

import (
	"context"
	"errors"
	"math"
	"sync"
)

// LockType is the kind of a byte-range lock.
type LockType int

// Lock types, in increasing strength.
const (
	LockUnlock LockType = iota // no lock; as a request, clears locks
	LockRead                   // shared lock (F_RDLCK)
	LockWrite                  // exclusive lock (F_WRLCK)
)

// String returns the name of the lock type.
func (typ LockType) String() string {
	switch typ {
	case LockUnlock:
		return "unlock"
	case LockRead:
		return "read"
	case LockWrite:
		return "write"
	default:
		return "invalid"
	}
}

// lockEOF is the End of a range that extends to the end of the file (the
// kernel's OFFSET_MAX). Larger ends are clamped to it.
const lockEOF = math.MaxInt64

// ErrDeadlock is returned by LockTable.Lock when waiting for the lock would
// deadlock (EDEADLK).
var ErrDeadlock = errors.New("lock would deadlock")

// errInvalidLockType is returned by LockTable.Lock for an unknown LockType.
var errInvalidLockType = errors.New("invalid lock type")

// Lock is one held byte-range lock on the inclusive range [Start, End]. An
// End of math.MaxInt64 means "to end of file".
type Lock struct {
	Owner  uint64   // lock owner id passed by the kernel
	Handle uint64   // file handle the lock was set through
	Type   LockType // LockRead or LockWrite
	Start  uint64   // first byte
	End    uint64   // last byte, inclusive
	PID    uint32   // pid of the process that set the lock
}

// overlaps reports whether l and [start, end] share a byte.
func (l *Lock) overlaps(start, end uint64) bool {
	return l.Start <= end && start <= l.End
}

// conflicts reports whether l and o belong to different owners, overlap and
// at least one of them is a write lock.
func (l *Lock) conflicts(o *Lock) bool {
	return l.Owner != o.Owner && l.overlaps(o.Start, o.End) &&
		(l.Type == LockWrite || o.Type == LockWrite)
}

// lockWaiter is a blocked Lock call.
type lockWaiter struct {
	req     Lock
	ready   chan struct{} // closed once granted
	granted bool          // set under LockTable.mu before ready is closed
}

// LockTable holds the POSIX byte-range locks of one file. Use NewLockTable to
// create one; it is safe for concurrent use.
//
// Invariants: locks is sorted by Start then Owner; the locks of one owner
// never overlap; and two locks of one owner with the same type and handle are
// never adjacent (they are merged).
type LockTable struct {
	mu       sync.Mutex
	locks    []Lock
	buf      []Lock // spare backing array for apply, swapped with locks
	waiters  []*lockWaiter
	barriers []Lock // ranges no other owner may newly lock (see Barrier)
}

// NewLockTable returns an empty lock table.
func NewLockTable() *LockTable {
	return &LockTable{
		locks: make([]Lock, 0, 8),
		buf:   make([]Lock, 0, 8),
	}
}

// TryLock sets (LockRead, LockWrite) or clears (LockUnlock) owner's lock on
// [start, end] with POSIX semantics (F_SETLK): the request replaces whatever
// owner held in that range, splitting and merging owner's ranges as needed.
// It fails with ok=false, changing nothing, if another owner holds a
// conflicting lock. Locks of one owner never conflict with each other.
// Blocked waiters are not considered (a non-blocking request may barge).
// An empty range (start > end) changes nothing and reports ok=true.
func (t *LockTable) TryLock(owner, handle uint64, pid uint32, typ LockType, start, end uint64) (ok bool) {
	if typ < LockUnlock || typ > LockWrite {
		return false
	}
	req := Lock{Owner: owner, Handle: handle, Type: typ, Start: start, End: clampLockEnd(end), PID: pid}

	t.mu.Lock()
	defer t.mu.Unlock()
	if req.Start > req.End {
		return true
	}
	if t.holderConflict(&req) >= 0 || t.barrierConflict(&req) {
		return false
	}
	t.apply(&req)
	if len(t.waiters) > 0 {
		t.grantWaiters()
	}
	return true
}

// Lock is the blocking form of TryLock (F_SETLKW). It waits until the lock
// can be set or ctx is done; in the latter case it returns ctx.Err() and
// changes nothing. A lock that can be set at once is set even if ctx is
// already done; a lock granted concurrently with cancellation is kept and
// reported with a nil error.
//
// Waiters are served in arrival order: a request does not overtake an
// earlier blocked request of another owner that conflicts with it, unless
// that earlier request is itself (transitively) waiting for this owner, in
// which case honouring the order would deadlock and it is not honoured.
//
// If waiting would deadlock, that is the owners holding conflicting locks
// are (transitively) waiting for owner, Lock returns ErrDeadlock at once.
func (t *LockTable) Lock(ctx context.Context, owner, handle uint64, pid uint32, typ LockType, start, end uint64) error {
	if typ < LockUnlock || typ > LockWrite {
		return errInvalidLockType
	}
	req := Lock{Owner: owner, Handle: handle, Type: typ, Start: start, End: clampLockEnd(end), PID: pid}

	t.mu.Lock()
	if req.Start > req.End {
		t.mu.Unlock()
		return nil
	}
	if typ == LockUnlock || t.grantable(&req, len(t.waiters)) {
		t.apply(&req)
		if len(t.waiters) > 0 {
			t.grantWaiters()
		}
		t.mu.Unlock()
		return nil
	}
	if t.wouldDeadlock(&req) {
		t.mu.Unlock()
		return ErrDeadlock
	}
	if err := ctx.Err(); err != nil {
		t.mu.Unlock()
		return err
	}
	w := &lockWaiter{req: req, ready: make(chan struct{})}
	t.waiters = append(t.waiters, w)
	// The new waiter adds wait-for edges, which may make an earlier
	// waiter's ordering constraint cyclic and therefore waived.
	t.grantWaiters()
	t.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if w.granted {
		return nil
	}
	t.removeWaiter(w)
	t.grantWaiters() // later waiters may have been queued behind w
	return ctx.Err()
}

// Query implements F_GETLK: it returns the first lock (in Start order) held
// by another owner that conflicts with (typ, start, end), and ok=true; or
// ok=false if owner could set that lock. A LockUnlock query never conflicts.
func (t *LockTable) Query(owner uint64, typ LockType, start, end uint64) (conflict Lock, ok bool) {
	if typ != LockRead && typ != LockWrite {
		return Lock{}, false
	}
	req := Lock{Owner: owner, Type: typ, Start: start, End: clampLockEnd(end)}

	t.mu.Lock()
	defer t.mu.Unlock()
	if i := t.holderConflict(&req); i >= 0 {
		return t.locks[i], true
	}
	return Lock{}, false
}

// ReleaseOwner drops every lock held by owner (POSIX close semantics: FUSE
// FLUSH carries the closing process's lock owner) and wakes waiters.
// Pending Lock calls of owner keep waiting.
func (t *LockTable) ReleaseOwner(owner uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocks(func(l *Lock) bool { return l.Owner == owner })
}

// ReleaseHandle drops every lock that was set through handle (FUSE RELEASE
// of an open file description; this is how OFD locks go away on last
// close) and wakes waiters.
func (t *LockTable) ReleaseHandle(handle uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removeLocks(func(l *Lock) bool { return l.Handle == handle })
}

// Held reports whether any owner holds a lock of at least typ overlapping
// [start, end].
func (t *LockTable) Held(typ LockType, start, end uint64) bool {
	end = clampLockEnd(end)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.locks {
		if l := &t.locks[i]; l.Type >= typ && l.overlaps(start, end) {
			return true
		}
	}
	return false
}

// HeldBy reports whether owner holds a lock of at least typ overlapping
// [start, end].
func (t *LockTable) HeldBy(owner uint64, typ LockType, start, end uint64) bool {
	end = clampLockEnd(end)
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.locks {
		if l := &t.locks[i]; l.Owner == owner && l.Type >= typ && l.overlaps(start, end) {
			return true
		}
	}
	return false
}

// Locks returns a copy of all held locks, sorted by Start then Owner.
func (t *LockTable) Locks() []Lock {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Lock(nil), t.locks...)
}

// clampLockEnd maps every end at or beyond OFFSET_MAX to lockEOF.
func clampLockEnd(end uint64) uint64 {
	if end >= lockEOF {
		return lockEOF
	}
	return end
}

// holderConflict returns the index of the first held lock that conflicts
// with req, or -1. Unlock requests never conflict.
func (t *LockTable) holderConflict(req *Lock) int {
	if req.Type == LockUnlock {
		return -1
	}
	for i := range t.locks {
		if t.locks[i].conflicts(req) {
			return i
		}
	}
	return -1
}

// apply replaces owner's locks on req's range with req (or clears them for
// LockUnlock), merging req with overlapping or adjacent locks of the same
// owner, type and handle. The caller has checked for conflicts.
func (t *LockTable) apply(req *Lock) {
	out := t.buf[:0]
	s, e := req.Start, req.End // grows as req merges with neighbours
	for _, l := range t.locks {
		switch {
		case l.Owner != req.Owner || l.End+1 < s || e+1 < l.Start:
			out = append(out, l) // other owner, or neither touching nor adjacent
		case l.Type == req.Type && l.Handle == req.Handle:
			s, e = min(s, l.Start), max(e, l.End) // merge into req
		case !l.overlaps(s, e):
			out = append(out, l) // adjacent, not mergeable
		default: // overlapping: keep the parts outside [s, e]
			if l.Start < s {
				left := l
				left.End = s - 1
				out = append(out, left)
			}
			if l.End > e {
				right := l
				right.Start = e + 1
				out = append(out, right)
			}
		}
	}
	if req.Type != LockUnlock {
		l := *req
		l.Start, l.End = s, e
		out = append(out, l)
	}
	sortLocks(out)
	t.locks, t.buf = out, t.locks[:0]
}

// sortLocks sorts locks by Start then Owner. Insertion sort: the slice is
// short and nearly sorted.
func sortLocks(locks []Lock) {
	for i := 1; i < len(locks); i++ {
		for j := i; j > 0 && lockLess(&locks[j], &locks[j-1]); j-- {
			locks[j], locks[j-1] = locks[j-1], locks[j]
		}
	}
}

// lockLess orders locks by Start then Owner.
func lockLess(a, b *Lock) bool {
	if a.Start != b.Start {
		return a.Start < b.Start
	}
	return a.Owner < b.Owner
}

// removeLocks drops every lock matching drop and wakes waiters if anything
// was dropped.
func (t *LockTable) removeLocks(drop func(*Lock) bool) {
	out := t.locks[:0]
	for i := range t.locks {
		if !drop(&t.locks[i]) {
			out = append(out, t.locks[i])
		}
	}
	if len(out) == len(t.locks) {
		return
	}
	clear(t.locks[len(out):])
	t.locks = out
	t.grantWaiters()
}

// grantable reports whether req, queued at position pos (len(t.waiters) for
// a new request), can be granted now: no held lock conflicts with it and it
// is not ordered behind an earlier conflicting waiter (see Lock).
func (t *LockTable) grantable(req *Lock, pos int) bool {
	if t.holderConflict(req) >= 0 || t.barrierConflict(req) {
		return false
	}
	for _, w := range t.waiters[:pos] {
		if w.req.conflicts(req) && !t.waitsFor(w.req.Owner, req.Owner, false) {
			return false
		}
	}
	return true
}

// grantWaiters grants, in FIFO order, every waiter that can proceed. After
// each grant it starts over, since the grant may have released ranges
// (downgrade) or removed an ordering constraint.
func (t *LockTable) grantWaiters() {
	for i := 0; i < len(t.waiters); {
		w := t.waiters[i]
		if !t.grantable(&w.req, i) {
			i++
			continue
		}
		t.apply(&w.req)
		w.granted = true
		close(w.ready)
		t.removeWaiter(w)
		i = 0
	}
}

// removeWaiter removes w from the queue, keeping the order of the others.
func (t *LockTable) removeWaiter(w *lockWaiter) {
	for i, x := range t.waiters {
		if x == w {
			n := copy(t.waiters[i:], t.waiters[i+1:])
			t.waiters[i+n] = nil
			t.waiters = t.waiters[:i+n]
			return
		}
	}
}

// wouldDeadlock reports whether an owner holding a lock that conflicts with
// req is, through held-lock waits, waiting for req.Owner.
func (t *LockTable) wouldDeadlock(req *Lock) bool {
	for i := range t.locks {
		if l := &t.locks[i]; l.conflicts(req) && t.waitsFor(l.Owner, req.Owner, true) {
			return true
		}
	}
	return false
}

// waitsFor reports whether owner from transitively waits for owner target.
// An owner waits for the holders of locks that conflict with one of its
// blocked requests and, unless holdersOnly, for the owners of earlier
// waiters its requests are queued behind.
func (t *LockTable) waitsFor(from, target uint64, holdersOnly bool) bool {
	seen := []uint64{from}
	for next := 0; next < len(seen); next++ {
		o := seen[next]
		for i, w := range t.waiters {
			if w.req.Owner != o {
				continue
			}
			for j := range t.locks {
				if t.locks[j].conflicts(&w.req) {
					if t.locks[j].Owner == target {
						return true
					}
					seen = appendOwner(seen, t.locks[j].Owner)
				}
			}
			if holdersOnly {
				continue
			}
			for _, e := range t.waiters[:i] {
				if e.req.conflicts(&w.req) {
					if e.req.Owner == target {
						return true
					}
					seen = appendOwner(seen, e.req.Owner)
				}
			}
		}
	}
	return false
}

// appendOwner appends owner to set unless it is already present.
func appendOwner(set []uint64, owner uint64) []uint64 {
	for _, o := range set {
		if o == owner {
			return set
		}
	}
	return append(set, owner)
}

// Barrier stops every owner but owner from newly locking [start, end] in a
// way that conflicts with typ, until the returned function is called. Locks
// already held are unaffected. The daemon raises a barrier before it waits
// for SQLite's readers to leave (so that a steady stream of new readers
// cannot starve it), then takes the locks it waited for; new readers meanwhile
// fail with EAGAIN and retry, as SQLite does when busy.
func (t *LockTable) Barrier(owner uint64, typ LockType, start, end uint64) (lift func()) {
	b := Lock{Owner: owner, Type: typ, Start: start, End: clampLockEnd(end)}
	t.mu.Lock()
	t.barriers = append(t.barriers, b)
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			for i := range t.barriers {
				if t.barriers[i] == b {
					t.barriers = append(t.barriers[:i], t.barriers[i+1:]...)
					break
				}
			}
			if len(t.waiters) > 0 {
				t.grantWaiters()
			}
		})
	}
}

// barrierConflict reports whether req is stopped by another owner's barrier.
func (t *LockTable) barrierConflict(req *Lock) bool {
	if req.Type == LockUnlock {
		return false
	}
	for i := range t.barriers {
		b := &t.barriers[i]
		if b.Owner != req.Owner && b.conflicts(req) {
			return true
		}
	}
	return false
}
