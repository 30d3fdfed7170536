package litefs

import (
	"errors"
	"fmt"
	"time"
)

// ErrLeaseExpired is returned for a commit on a primary whose lease
// deadline has passed: another node may be granted the lease from then on,
// so this node must not acknowledge a write (SPEC section 9).
var ErrLeaseExpired = errors.New("this node's primary lease has expired")

// SetLeaseDeadline makes every commit on this primary first check that
// time.Now() is before deadline(): the lease's Deadline, after which
// another node may be granted the lease. nil removes the check (a static
// lease never expires). The lease loop also demotes the node when the lease
// ends; this check covers a commit that runs before the loop is scheduled.
func (s *Store) SetLeaseDeadline(deadline func() time.Time) {
	s.fence.Store(nil)
	if deadline == nil {
		s.leaseDeadline.Store(nil)
		return
	}
	s.leaseDeadline.Store(&deadline)
}

// checkLease returns an error wrapping ErrLeaseExpired if the lease
// deadline set by SetLeaseDeadline has passed.
func (s *Store) checkLease() error {
	if err := s.fence.Load(); err != nil {
		return *err
	}
	f := s.leaseDeadline.Load()
	if f == nil {
		return nil
	}
	if d := (*f)(); !time.Now().Before(d) {
		return fmt.Errorf("%w at %s: the commit is refused", ErrLeaseExpired, d.Format(time.RFC3339Nano))
	}
	return nil
}

// FenceWrites makes every commit on this primary fail with reason until
// the next SetLeaseDeadline: a primary handing its role over stops
// accepting writes while it still streams what it committed.
func (s *Store) FenceWrites(reason error) { s.fence.Store(&reason) }

// DrainCommits waits until no commit that started before FenceWrites (or
// SetReplica) is still running, and records WAL transactions committed
// before it. Every later commit is refused, so Positions() is then final.
func (s *Store) DrainCommits() {
	for _, db := range s.DBs() {
		db.mu.Lock()
		if db.walMode() {
			// Committed WAL frames are recorded when their writer unlocks;
			// record them now (frames written after the fence were refused).
			if err := db.settleWAL(); err != nil {
				db.log.Error("record committed WAL transactions before the handoff", "error", err)
			}
		}
		db.mu.Unlock()
	}
}
