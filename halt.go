package litefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// The HALT lock, primary side (SPEC section 8). A replica borrows the
// primary's write lock on one database: the primary takes SQLite's own
// write locks in its lock tables on the replica's behalf (RESERVED on the
// database file for rollback-journal mode, the WAL write lock in -shm for
// WAL mode: both, so a journal-mode change under the HALT is covered), so
// local writers get SQLITE_BUSY and readers are never blocked. While it
// holds the HALT the replica ships each transaction as an LTX file, which
// is verified and applied under the same locks. A HALT ends on release, on
// expiry (no renewal within the TTL), when the holder's stream drops, or
// when this node stops being primary.

// Defaults of the HALT options (halt.* in litefs.yml).
const (
	DefaultHaltAcquireTimeout = 10 * time.Second
	DefaultHaltTTL            = 5 * time.Second
	DefaultHaltRenewInterval  = time.Second
)

// Errors of the HALT lock. Callers compare with errors.Is.
var (
	ErrHaltBusy    = errors.New("HALT lock is busy")
	ErrHaltNotHeld = errors.New("HALT lock is not held")
	ErrNotPrimary  = errors.New("this node is not the primary")
	ErrHaltInvalid = errors.New("invalid HALT request")
)

// HaltLock describes a granted HALT lock.
type HaltLock struct {
	ID      uint64    // chosen by the holder: random, non-zero
	Holder  uint64    // the holder's node id
	Pos     ltx.Pos   // the database position when granted (or after the last forwarded transaction)
	Expires time.Time // when the primary drops it unless renewed
}

// heldHalt is the HALT currently granted on a database of this primary.
type heldHalt struct {
	HaltLock
	owner    uint64 // the lock-table owner that holds SQLite's write locks
	acquired time.Time
	timer    *time.Timer
}

// haltState is the primary-side HALT state of one database. mu serializes
// grants, forwarded transactions and releases.
type haltState struct {
	mu  sync.Mutex
	cur *heldHalt
	// walOpen: the HALT's owner let go of the WAL write lock so that a
	// reader can rebuild the WAL index (halt_wal.go).
	walOpen atomic.Bool
}

// haltOwnerSeq hands out lock-table owners for HALT grants, counting down
// from just below the daemon's own owner. Each grant gets its own owner so
// that halters queue behind each other in the lock table in arrival order.
var haltOwnerSeq atomic.Uint64

func init() { haltOwnerSeq.Store(daemonOwner - 1) }

// haltRange is one lock a HALT holds.
type haltRange struct {
	kind FileKind
	b    uint64
}

// haltRanges are the locks a HALT holds: SQLite's RESERVED lock on the
// database file and the WAL write lock in -shm.
var haltRanges = []haltRange{{FileDatabase, ReservedByte}, {FileSHM, WALWriteLockByte}}

// AcquireHalt grants the HALT lock on this database to node holder under
// lock id. It waits up to the acquire timeout for local writers and for
// earlier halters (in arrival order); with wait false it fails at once with
// ErrHaltBusy when the lock is taken. Every committed transaction is in
// the LTX history when it returns, and the lock's Pos is that history's end.
// Asking again with the id and holder of the current lock returns it.
func (db *DB) AcquireHalt(ctx context.Context, id, holder uint64, wait bool) (HaltLock, error) {
	if id == 0 {
		return HaltLock{}, fmt.Errorf("%w: lock id must be non-zero", ErrHaltInvalid)
	}
	if !db.store.IsPrimary() {
		return HaltLock{}, fmt.Errorf("halt %s: %w", db.name, ErrNotPrimary)
	}
	if l, ok := db.currentHalt(id, holder); ok {
		return l, nil
	}
	owner := haltOwnerSeq.Add(^uint64(0))
	start := time.Now()
	if wait {
		db.yieldToLocalWriter(ctx)
	}
	if err := db.lockHaltRanges(ctx, owner, wait); err != nil {
		db.store.haltEvent(HaltEvent{Type: HaltRefused, DB: db.name, Holder: holder, Reason: "busy"})
		return HaltLock{}, err
	}
	db.haltGranted()
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	pos, err := db.settleForHalt()
	if err == nil && !db.store.IsPrimary() {
		err = fmt.Errorf("halt %s: %w", db.name, ErrNotPrimary)
	}
	if err != nil {
		db.unlockHaltRanges(owner)
		return HaltLock{}, err
	}
	ttl := db.store.opts.haltTTL()
	h := &heldHalt{
		HaltLock: HaltLock{ID: id, Holder: holder, Pos: pos, Expires: time.Now().Add(ttl)},
		owner:    owner, acquired: time.Now(),
	}
	h.timer = time.AfterFunc(ttl, func() { db.expireHalt(h) })
	db.halt.cur = h
	db.log.Info("HALT acquired", "holder", FormatNodeID(holder), "id", FormatNodeID(id), "txid", pos.TXID, "wait", time.Since(start).Round(time.Microsecond))
	db.store.haltEvent(HaltEvent{Type: HaltAcquired, DB: db.name, Holder: holder, Wait: time.Since(start)})
	return h.HaltLock, nil
}

// currentHalt returns the current lock if it has this id and holder.
func (db *DB) currentHalt(id, holder uint64) (HaltLock, bool) {
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	if h := db.halt.cur; h != nil && h.ID == id && h.Holder == holder {
		return h.HaltLock, true
	}
	return HaltLock{}, false
}

// lockHaltRanges takes SQLite's write locks for owner, waiting up to the
// acquire timeout when wait is set.
func (db *DB) lockHaltRanges(ctx context.Context, owner uint64, wait bool) error {
	timeout := db.store.opts.haltAcquireTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for i, r := range haltRanges {
		t := db.locks[r.kind]
		var err error
		if !wait {
			if !t.TryLock(owner, owner, 0, LockWrite, r.b, r.b) {
				err = fmt.Errorf("halt %s: %w: another holder or a local writer has the write lock", db.name, ErrHaltBusy)
			}
		} else if lerr := t.Lock(ctx, owner, owner, 0, LockWrite, r.b, r.b); lerr != nil {
			err = fmt.Errorf("halt %s: %w: no write lock within halt.acquire-timeout (%s): %v", db.name, ErrHaltBusy, timeout, lerr)
			if ctx.Err() == nil || errors.Is(lerr, context.Canceled) {
				err = fmt.Errorf("halt %s: wait for the write lock: %w", db.name, lerr)
			}
		}
		if err != nil {
			for _, taken := range haltRanges[:i] {
				db.locks[taken.kind].TryLock(owner, owner, 0, LockUnlock, taken.b, taken.b)
			}
			return err
		}
	}
	return nil
}

// unlockHaltRanges gives SQLite's write locks back to local writers.
func (db *DB) unlockHaltRanges(owner uint64) {
	for _, r := range haltRanges {
		db.locks[r.kind].TryLock(owner, owner, 0, LockUnlock, r.b, r.b)
	}
}

// settleForHalt records every committed transaction and waits until its
// LTX file is written: the history is complete up to the returned position.
func (db *DB) settleForHalt() (ltx.Pos, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.commitJournal(); err != nil {
		return ltx.Pos{}, err
	}
	if err := db.settleWAL(); err != nil {
		return ltx.Pos{}, err
	}
	return db.pos, nil
}

// RenewHalt extends the lock id of holder by the TTL.
func (db *DB) RenewHalt(id, holder uint64) (HaltLock, error) {
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	h, err := db.heldBy(id, holder)
	if err != nil {
		return HaltLock{}, err
	}
	db.extendHalt(h)
	return h.HaltLock, nil
}

// extendHalt moves the expiry of h one TTL from now. halt.mu is held.
func (db *DB) extendHalt(h *heldHalt) {
	ttl := db.store.opts.haltTTL()
	h.Expires = time.Now().Add(ttl)
	h.timer.Reset(ttl)
}

// heldBy returns the current lock if it is lock id of holder. halt.mu is held.
func (db *DB) heldBy(id, holder uint64) (*heldHalt, error) {
	h := db.halt.cur
	switch {
	case !db.store.IsPrimary():
		return nil, fmt.Errorf("halt %s: %w", db.name, ErrNotPrimary)
	case h == nil:
		return nil, fmt.Errorf("halt %s: %w: no HALT is held (it expired, was released or the holder's stream dropped)", db.name, ErrHaltNotHeld)
	case h.ID != id:
		return nil, fmt.Errorf("halt %s: %w: lock id %s is not the current lock", db.name, ErrHaltNotHeld, FormatNodeID(id))
	case h.Holder != holder:
		return nil, fmt.Errorf("halt %s: %w: node %s is not the holder", db.name, ErrHaltNotHeld, FormatNodeID(holder))
	}
	return h, nil
}

// ReleaseHalt releases lock id of holder. Releasing a lock that is no
// longer held is a no-op: it reports false.
func (db *DB) ReleaseHalt(id, holder uint64) bool {
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	h := db.halt.cur
	if h == nil || h.ID != id || h.Holder != holder {
		return false
	}
	db.endHalt(h, HaltReleased)
	return true
}

// expireHalt drops h if it is still the current lock and was not renewed.
func (db *DB) expireHalt(h *heldHalt) {
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	if db.halt.cur != h || time.Now().Before(h.Expires) {
		return
	}
	db.endHalt(h, HaltExpired)
}

// endHalt ends the current lock h. halt.mu is held.
func (db *DB) endHalt(h *heldHalt, why HaltEventType) {
	h.timer.Stop()
	db.halt.cur = nil
	db.halt.walOpen.Store(false)
	held := time.Since(h.acquired)
	db.haltEnded(held)
	db.unlockHaltRanges(h.owner)
	lvl := "HALT released"
	if why != HaltReleased {
		lvl = "HALT dropped"
	}
	db.log.Info(lvl, "holder", FormatNodeID(h.Holder), "id", FormatNodeID(h.ID), "reason", string(why), "held", held.Round(time.Microsecond))
	db.store.haltEvent(HaltEvent{Type: why, DB: db.name, Holder: h.Holder, Held: held})
}

// HaltHolder returns the current HALT lock on this database, if any.
func (db *DB) HaltHolder() (HaltLock, bool) {
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	if h := db.halt.cur; h != nil {
		return h.HaltLock, true
	}
	return HaltLock{}, false
}

// ReleaseHaltsOf drops every HALT lock held by node holder (its stream
// dropped: its daemon died or restarted).
func (s *Store) ReleaseHaltsOf(holder uint64) {
	for _, db := range s.DBs() {
		db.halt.mu.Lock()
		if h := db.halt.cur; h != nil && h.Holder == holder {
			db.endHalt(h, HaltDropped)
		}
		db.halt.mu.Unlock()
	}
}

// ReleaseAllHalts drops every HALT lock (this node stops being primary).
func (s *Store) ReleaseAllHalts() {
	for _, db := range s.DBs() {
		db.halt.mu.Lock()
		if h := db.halt.cur; h != nil {
			db.endHalt(h, HaltDropped)
		}
		db.halt.mu.Unlock()
	}
}

// ApplyForwardedLTX applies one transaction shipped by the holder of lock
// id (POST /tx). It is accepted only if the lock is current and held by
// holder, this node is primary, the file is one transaction that starts at
// this database's TXID+1 with this database's checksum as its pre-apply
// checksum, the file's own checksums verify, and applying it gives its
// post-apply checksum. Otherwise nothing changes. Readers wait only for the
// apply itself, as on a replica.
func (db *DB) ApplyForwardedLTX(ctx context.Context, id, holder uint64, r io.Reader) (ltx.Pos, error) {
	db.halt.mu.Lock()
	h, err := db.heldBy(id, holder)
	db.halt.mu.Unlock()
	if err != nil {
		return ltx.Pos{}, db.refuseTx("not-holder", err)
	}
	// The body is read without the HALT mutex: a holder that goes silent
	// mid-upload must not keep its lock from expiring.
	in, err := db.spoolLTX(r)
	if err != nil {
		return ltx.Pos{}, db.refuseTx("invalid", err)
	}
	defer in.remove()
	db.halt.mu.Lock()
	defer db.halt.mu.Unlock()
	if cur, err := db.heldBy(id, holder); err != nil || cur != h {
		if err == nil {
			err = fmt.Errorf("halt %s: %w: the lock changed during the upload", db.name, ErrHaltNotHeld)
		}
		return ltx.Pos{}, db.refuseTx("not-holder", err)
	}
	if err := db.checkForwarded(in); err != nil {
		return ltx.Pos{}, err
	}
	if err := db.checkApplicable(in); err != nil {
		return ltx.Pos{}, db.refuseTx("checksum", err)
	}
	if err := db.store.checkLease(); err != nil {
		return ltx.Pos{}, db.refuseTx("not-primary", fmt.Errorf("halt %s: %w: %w", db.name, ErrNotPrimary, err))
	}
	if err := db.closeWALForRebuild(ctx, h); err != nil {
		return ltx.Pos{}, err
	}
	pos, err := db.applyIncoming(ctx, in, h.owner)
	if err != nil {
		return ltx.Pos{}, err
	}
	db.openWALForRebuild(h)
	h.Pos = pos
	db.extendHalt(h)
	db.store.haltEvent(HaltEvent{Type: HaltForwarded, DB: db.name, Holder: holder})
	return pos, nil
}

// checkForwarded refuses a forwarded file that is not exactly the next
// single transaction of this database.
func (db *DB) checkForwarded(in *incomingLTX) error {
	db.mu.Lock()
	pos := db.pos
	db.mu.Unlock()
	hdr := in.hdr
	switch {
	case hdr.MinTXID != hdr.MaxTXID:
		return db.refuseTx("invalid", fmt.Errorf("%s: %w: a forwarded file must hold one transaction, this one holds TXIDs %s-%s",
			db.name, ErrHaltInvalid, hdr.MinTXID, hdr.MaxTXID))
	case hdr.MinTXID != pos.TXID+1:
		return db.refuseTx("position", fmt.Errorf("%s: %w: the file is TXID %s, the primary expects %s (stale position)",
			db.name, ErrPosMismatch, hdr.MinTXID, pos.TXID+1))
	case pos.TXID > 0 && hdr.PreApplyChecksum != pos.PostApplyChecksum:
		return db.refuseTx("checksum", fmt.Errorf("%s: %w: the file's pre-apply checksum %s is not the primary's checksum %s",
			db.name, ErrChecksumMismatch, hdr.PreApplyChecksum, pos.PostApplyChecksum))
	}
	return nil
}

// refuseTx counts a refused forwarded transaction and returns err.
func (db *DB) refuseTx(reason string, err error) error {
	db.log.Warn("forwarded transaction refused", "reason", reason, "error", err)
	db.store.haltEvent(HaltEvent{Type: HaltRefused, DB: db.name, Reason: reason})
	return err
}
