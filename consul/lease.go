package consul

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/litefs/litefs"
)

// Lease is a held Consul lock: litefs.Lease.
//
// Two goroutines run from Acquire until Release or loss:
//
//   - renew passes the check and renews the session every RenewInterval;
//     each success moves Deadline to (time the pass was sent) + CheckTTL -
//     margin. A failure is retried; at Deadline the lease is lost.
//   - monitor follows the key by blocking query and declares loss at once
//     when the key is no longer locked by this session.
//
// Invariant: Done is closed (and Err set) before this node does anything
// that lets another session lock the key (release, destroy), and no later
// than Deadline, which is before the check can go critical.
type Lease struct {
	leaser *Leaser
	s      *session

	cancel context.CancelFunc // stops renew and monitor
	wg     sync.WaitGroup
	done   chan struct{}

	mu       sync.Mutex
	info     litefs.LeaseInfo
	deadline time.Time
	err      error // nil while held
}

var _ litefs.Lease = (*Lease)(nil)

// startLease starts renewing the lease that s just locked.
func startLease(l *Leaser, s *session, info litefs.LeaseInfo) *Lease {
	ctx, cancel := context.WithCancel(context.Background())
	le := &Lease{leaser: l, s: s, cancel: cancel, done: make(chan struct{}), info: info}
	le.deadline = le.deadlineAfter(s.alive)
	le.wg.Add(2)
	go func() { defer le.wg.Done(); le.renew(ctx) }()
	go func() { defer le.wg.Done(); le.monitor(ctx) }()
	return le
}

// margin is how long before the check could expire the lease counts as
// lost: room for scheduling delays and clock-rate differences.
func (le *Lease) margin() time.Duration { return le.leaser.cfg.CheckTTL / 10 }

// deadlineAfter is the deadline given a check pass sent at t.
func (le *Lease) deadlineAfter(t time.Time) time.Time {
	return t.Add(le.leaser.cfg.CheckTTL - le.margin())
}

// SessionID returns the Consul session holding the lock.
func (le *Lease) SessionID() string { return le.s.id }

// Info returns the info the lease last published.
func (le *Lease) Info() litefs.LeaseInfo {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.info
}

// Deadline returns the time after which this node must not accept writes
// unless a renewal moved it.
func (le *Lease) Deadline() time.Time {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.deadline
}

// Done is closed when the lease is lost or released.
func (le *Lease) Done() <-chan struct{} { return le.done }

// Err is nil while the lease is held; then it wraps litefs.ErrLeaseLost
// or litefs.ErrLeaseReleased.
func (le *Lease) Err() error {
	le.mu.Lock()
	defer le.mu.Unlock()
	return le.err
}

// finish ends the lease with err and closes Done; it reports whether this
// call ended it (false: it had already ended).
func (le *Lease) finish(err error) bool {
	le.mu.Lock()
	defer le.mu.Unlock()
	if le.err != nil {
		return false
	}
	le.err = err
	close(le.done)
	le.cancel()
	return true
}

// lose ends the lease as lost and then, best effort, destroys the session
// and its service so nothing lingers on the agent.
func (le *Lease) lose(cause error) {
	if !le.finish(fmt.Errorf("%w: key %s: %w", litefs.ErrLeaseLost, le.leaser.key, cause)) {
		return
	}
	le.leaser.log.Warn("lost lease", "session", le.s.id, "cause", cause)
	if err := le.s.close(); err != nil {
		le.leaser.log.Debug("cleaning up a lost lease", "error", err)
	}
}

// renew keeps the check passing and the session alive; see Lease.
func (le *Lease) renew(ctx context.Context) {
	ticker := time.NewTicker(le.leaser.cfg.RenewInterval)
	defer ticker.Stop()
	expire := time.NewTimer(time.Until(le.Deadline()))
	defer expire.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return
		case <-expire.C:
			le.lose(fmt.Errorf("no successful renewal for %s (check TTL %s), last error: %v", time.Since(le.s.alive).Round(time.Millisecond), le.leaser.cfg.CheckTTL, lastErr))
			return
		case <-ticker.C:
		}
		// A renewal may not outlive the deadline: past it the lease is lost
		// whatever Consul would answer.
		rctx, cancel := context.WithDeadline(ctx, le.Deadline())
		err := le.s.keepAlive(rctx)
		cancel()
		switch {
		case err == nil:
			d := le.deadlineAfter(le.s.alive)
			le.mu.Lock()
			le.deadline = d
			le.mu.Unlock()
			expire.Reset(time.Until(d))
			lastErr = nil
		case errors.Is(err, errSessionGone):
			le.lose(err)
			return
		case ctx.Err() != nil:
			return
		default:
			if lastErr == nil {
				le.leaser.log.Warn("lease renewal failed, retrying until the deadline", "deadline", le.Deadline(), "error", err)
			}
			lastErr = err
		}
	}
}

// monitor follows the key and ends the lease as soon as this session no
// longer holds it (invalidated, or the key deleted or overwritten).
func (le *Lease) monitor(ctx context.Context) {
	key := le.leaser.key
	var index uint64
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: watchWait}).WithContext(ctx)
		pair, meta, err := le.leaser.client.KV().Get(key, q)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// Renewal decides when unreachable Consul means loss.
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryDelay):
			}
			continue
		}
		switch {
		case pair == nil:
			le.lose(errors.New("the key was deleted"))
			return
		case pair.Session != le.s.id:
			le.lose(fmt.Errorf("the key is locked by session %q, not this node's %s", pair.Session, le.s.id))
			return
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = meta.LastIndex
		}
	}
}

// Update publishes info while the lease is held. If Consul says this
// session no longer holds the key, the lease is lost.
func (le *Lease) Update(ctx context.Context, info litefs.LeaseInfo) error {
	if err := le.Err(); err != nil {
		return err
	}
	value, err := encodeInfo(info)
	if err != nil {
		return err
	}
	pair := &api.KVPair{Key: le.leaser.key, Value: value, Session: le.s.id}
	ok, _, err := le.leaser.client.KV().Acquire(pair, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("update lease key %s: %w", le.leaser.key, err)
	}
	if !ok {
		le.lose(errors.New("update refused: this session no longer holds the key"))
		return le.Err()
	}
	le.mu.Lock()
	le.info = info
	le.mu.Unlock()
	return nil
}

// Release ends the lease (Done closes first), then releases the key with
// info as its value, destroys the session and removes the service. An
// explicit release has no lock-delay, so another candidate can lock the key
// at once. Releasing an ended lease waits for its cleanup and returns Err.
func (le *Lease) Release(ctx context.Context, info litefs.LeaseInfo) error {
	value, err := encodeInfo(info)
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	if !le.finish(litefs.ErrLeaseReleased) {
		le.wg.Wait()
		return le.Err()
	}
	le.wg.Wait()
	var errs []error
	pair := &api.KVPair{Key: le.leaser.key, Value: value, Session: le.s.id}
	if ok, _, err := le.leaser.client.KV().Release(pair, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		errs = append(errs, fmt.Errorf("release key %s: %w", le.leaser.key, err))
	} else if !ok {
		errs = append(errs, fmt.Errorf("release key %s: this session no longer held it", le.leaser.key))
	}
	if err := le.s.close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("release lease: %w", errors.Join(errs...))
	}
	le.leaser.log.Info("released lease", "session", le.s.id)
	return nil
}
