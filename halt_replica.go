package litefs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// The HALT lock, replica side (SPEC 8.1-8.3). An application takes an OFD
// write lock on byte HaltByte of NAME-lock. Local holders queue in this
// node's lock table; the one that gets it asks the primary (HaltClient),
// waits until this node has applied exactly the position the primary
// answered, and only then is granted the lock. While it holds it, each
// transaction committed here is shipped to the primary before SQLite's
// commit completes (commitTx calls forwardTx), and a refusal fails that
// commit. A renewal goroutine keeps the lock alive; a lock the primary no
// longer holds is void: commits fail, releases are no-ops.

// HaltClient is how a replica reaches the primary's HALT API (package http
// implements it over POST/DELETE /halt and POST /tx).
type HaltClient interface {
	// AcquireHalt asks for the HALT lock on db under lock id; with wait
	// false the primary answers at once (ErrHaltBusy when taken).
	AcquireHalt(ctx context.Context, db string, id uint64, wait bool) (HaltLock, error)
	// RenewHalt extends lock id; ErrHaltNotHeld when the primary dropped it.
	RenewHalt(ctx context.Context, db string, id uint64) (HaltLock, error)
	// ReleaseHalt releases lock id (a no-op for a lock no longer held).
	ReleaseHalt(ctx context.Context, db string, id uint64) error
	// ForwardTx ships one transaction's LTX file under lock id and returns
	// the primary's position after applying it.
	ForwardTx(ctx context.Context, db string, id uint64, r io.Reader) (ltx.Pos, error)
	// QueryHalt reports the HALT currently held on db, if any.
	QueryHalt(ctx context.Context, db string) (HaltLock, bool, error)
}

// SetHaltClient sets how this replica reaches the primary's HALT API.
func (s *Store) SetHaltClient(c HaltClient) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.haltClient = c
}

func (s *Store) getHaltClient() HaltClient {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.haltClient
}

// Errors of the replica side of the HALT lock.
var (
	// ErrHaltAlreadyHeld: this descriptor already holds or waits for the
	// HALT lock (ENOLCK).
	ErrHaltAlreadyHeld = errors.New("this descriptor already holds or is waiting for the HALT lock")
	// ErrHaltVoid: the HALT this node held expired, was dropped, or its
	// primary is no longer primary.
	ErrHaltVoid = errors.New("HALT lock is void")
)

// forwardTimeout bounds one POST /tx.
const forwardTimeout = 60 * time.Second

// remoteHalt is a HALT this replica holds from the primary.
type remoteHalt struct {
	id, owner, handle uint64
	acquired          time.Time
	void              error // why the lock is void; nil while valid
	// ctx ends when the lock is released or void (stop); forwards use it,
	// so a commit in flight fails as soon as the lock is known lost.
	ctx  context.Context
	stop context.CancelFunc
}

// context returns h's context (Background for a lock made without one).
func (h *remoteHalt) context() context.Context {
	if h.ctx == nil {
		return context.Background()
	}
	return h.ctx
}

// replicaHalts is the replica-side HALT state of one database.
type replicaHalts struct {
	mu        sync.Mutex
	cur       *remoteHalt
	waiting   map[uint64]bool           // lock owners waiting for byte HaltByte
	forwarded map[ltx.TXID]ltx.Checksum // recent forwarded commits: the stream sends them back
	recovery  bool                      // the WAL index must be rebuilt: grant the WAL write lock
	recoverer uint64                    // the owner granted the WAL write lock for that

	refusedEnd int64 // end of a WAL commit frame whose forwarding was refused (0: none)
	refusedErr error // why
}

// LockHalt takes the HALT lock for a lock owner of NAME-lock (F_OFD_SETLKW
// when wait is set, F_OFD_SETLK otherwise). On the primary it is a local
// lock only. Errors: ErrHaltAlreadyHeld, ErrHaltBusy, a context error when
// interrupted, ErrHaltVoid-free network and catch-up errors otherwise.
func (db *DB) LockHalt(ctx context.Context, owner, handle uint64, pid uint32, wait bool) error {
	t := db.locks[FileLock]
	db.rhalt.mu.Lock()
	if db.rhalt.waiting[owner] || t.HeldBy(owner, LockWrite, HaltByte, HaltByte) {
		db.rhalt.mu.Unlock()
		return fmt.Errorf("halt %s: %w", db.name, ErrHaltAlreadyHeld)
	}
	if db.rhalt.waiting == nil {
		db.rhalt.waiting = make(map[uint64]bool)
	}
	db.rhalt.waiting[owner] = true
	db.rhalt.mu.Unlock()
	defer func() {
		db.rhalt.mu.Lock()
		delete(db.rhalt.waiting, owner)
		db.rhalt.mu.Unlock()
	}()

	if !wait {
		if !t.TryLock(owner, handle, pid, LockWrite, HaltByte, HaltByte) {
			return fmt.Errorf("halt %s: %w: another process on this node holds it", db.name, ErrHaltBusy)
		}
	} else if err := t.Lock(ctx, owner, handle, pid, LockWrite, HaltByte, HaltByte); err != nil {
		return fmt.Errorf("halt %s: wait for local holder: %w", db.name, err)
	}
	if db.store.IsPrimary() {
		return nil
	}
	if err := db.acquireRemote(ctx, owner, handle, wait); err != nil {
		t.TryLock(owner, handle, pid, LockUnlock, HaltByte, HaltByte)
		return err
	}
	return nil
}

// acquireRemote gets the HALT from the primary and catches up to it.
func (db *DB) acquireRemote(ctx context.Context, owner, handle uint64, wait bool) error {
	c := db.store.getHaltClient()
	if c == nil {
		return fmt.Errorf("halt %s: %w: this replica has no connection to a primary", db.name, ErrHaltBusy)
	}
	id := randomLockID()
	ctx, cancel := context.WithTimeout(ctx, db.opts.haltAcquireTimeout()+5*time.Second)
	defer cancel()
	start := time.Now()
	l, err := c.AcquireHalt(ctx, db.name, id, wait)
	answered := time.Now()
	if err != nil {
		// The primary may have granted it just as the request was given up
		// (an interrupted F_SETLKW): release it, or it would block every
		// other holder until it expires. Releasing an unknown id is a no-op.
		go func() {
			rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer rcancel()
			_ = c.ReleaseHalt(rctx, db.name, id)
		}()
		return fmt.Errorf("halt %s: %w", db.name, err)
	}
	if err := db.waitForPos(ctx, l.Pos); err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		_ = c.ReleaseHalt(rctx, db.name, id)
		return fmt.Errorf("halt %s: catch up to the primary: %w", db.name, err)
	}
	rctx, stop := context.WithCancel(context.Background())
	h := &remoteHalt{id: id, owner: owner, handle: handle, ctx: rctx, stop: stop, acquired: time.Now()}
	db.rhalt.mu.Lock()
	db.rhalt.cur = h
	db.rhalt.mu.Unlock()
	db.store.haltEvent(HaltEvent{Type: HaltAcquired, DB: db.name, Holder: db.store.NodeID(), Wait: time.Since(start)})
	db.log.Info("HALT acquired from primary", "id", FormatNodeID(id), "txid", l.Pos.TXID, "wait", time.Since(start).Round(time.Microsecond))
	go db.renewLoop(rctx, c, h, answered)
	return nil
}

// randomLockID returns a random non-zero lock id.
func randomLockID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// waitForPos waits until this database is exactly at pos.
func (db *DB) waitForPos(ctx context.Context, pos ltx.Pos) error {
	sub := db.store.Subscribe()
	defer sub.Close()
	for {
		cur := db.Pos()
		switch {
		case cur == pos:
			return nil
		case cur.TXID >= pos.TXID:
			return fmt.Errorf("%w: this node is at %s/%s, the primary at %s/%s",
				ErrPosMismatch, cur.TXID, cur.PostApplyChecksum, pos.TXID, pos.PostApplyChecksum)
		}
		select {
		case <-sub.C:
		case <-ctx.Done():
			return fmt.Errorf("still at TXID %s, primary at %s: %w", cur.TXID, pos.TXID, ctx.Err())
		}
	}
}

// renewLoop renews h until it is released or void. answered is when the
// primary's last answer about h (the grant) arrived: the primary received
// that request before, so without a later answer it drops h by answered +
// halt.ttl at the latest, unless requests whose answers were lost renewed
// it. Once that moment passes without an answer (a partition), h is void:
// a commit in flight is given up and the next one fails at once, instead
// of waiting for a network that may never answer.
func (db *DB) renewLoop(ctx context.Context, c HaltClient, h *remoteHalt, answered time.Time) {
	ttl := db.opts.haltTTL()
	tick := time.NewTicker(db.opts.haltRenewInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithDeadline(ctx, answered.Add(ttl))
		_, err := c.RenewHalt(rctx, db.name, h.id)
		cancel()
		if err == nil {
			answered = time.Now()
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		db.log.Warn("HALT renewal failed", "id", FormatNodeID(h.id), "error", err)
		if errors.Is(err, ErrHaltNotHeld) || errors.Is(err, ErrNotPrimary) {
			db.voidHalt(h, err)
			return
		}
		if since := time.Since(answered); since >= ttl {
			db.voidHalt(h, fmt.Errorf("the primary answered no renewal for %s (halt.ttl %s): it drops the lock", since.Round(time.Millisecond), ttl))
			return
		}
	}
}

// voidHalt marks h void: its next commit fails.
func (db *DB) voidHalt(h *remoteHalt, why error) {
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	if h.void == nil {
		h.void = why
		h.stop()
	}
}

// VoidHalts voids every HALT this replica holds (its primary changed).
func (s *Store) VoidHalts(why error) {
	for _, db := range s.DBs() {
		db.rhalt.mu.Lock()
		h := db.rhalt.cur
		db.rhalt.mu.Unlock()
		if h != nil {
			db.voidHalt(h, why)
		}
	}
}

// UnlockHalt releases the HALT of a lock owner (F_UNLCK on byte HaltByte,
// or every lock of the owner going). Releasing a void lock is a no-op.
func (db *DB) UnlockHalt(owner uint64) {
	db.releaseRemote(func(h *remoteHalt) bool { return h.owner == owner })
}

// ReleaseHaltHandle releases the HALT held through a file description
// that was closed for the last time.
func (db *DB) ReleaseHaltHandle(handle uint64) {
	db.releaseRemote(func(h *remoteHalt) bool { return h.handle == handle })
}

// releaseRemote ends the HALT this node holds if match says it is the
// caller's, and tells the primary.
func (db *DB) releaseRemote(match func(*remoteHalt) bool) {
	db.rhalt.mu.Lock()
	h := db.rhalt.cur
	if h == nil || !match(h) {
		db.rhalt.mu.Unlock()
		return
	}
	db.rhalt.cur = nil
	void := h.void
	h.stop()
	db.rhalt.mu.Unlock()
	db.removeIdleJournal()
	db.store.haltEvent(HaltEvent{Type: HaltReleased, DB: db.name, Holder: db.store.NodeID(), Held: time.Since(h.acquired)})
	if void != nil {
		db.log.Info("void HALT released (no-op)", "id", FormatNodeID(h.id), "reason", void)
		return
	}
	if c := db.store.getHaltClient(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.ReleaseHalt(ctx, db.name, h.id); err != nil {
			db.log.Warn("HALT release failed; the primary drops it after halt.ttl", "id", FormatNodeID(h.id), "error", err)
			return
		}
	}
	db.log.Info("HALT released", "id", FormatNodeID(h.id))
}

// removeIdleJournal removes a journal left by a write under the HALT
// (PERSIST and TRUNCATE modes keep it): without it, the next write without
// the HALT has to create one, which is what a replica refuses.
func (db *DB) removeIdleJournal() {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.journalHot || db.file(FileJournal) == nil {
		return
	}
	db.closeFile(FileJournal)
	if err := os.Remove(db.path(FileJournal)); err != nil && !os.IsNotExist(err) {
		db.log.Warn("remove idle journal", "error", err)
	}
}

// HaltGranted reports whether a connection on this replica may write: this
// node holds a HALT on the database (possibly void: its commit then fails).
// Always true on the primary.
func (db *DB) HaltGranted() bool {
	if db.store.IsPrimary() {
		return true
	}
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	return db.rhalt.cur != nil
}

// forwardTx ships a transaction committed on this replica to the primary
// before the commit completes. On the primary it does nothing. db.mu is held.
func (db *DB) forwardTx(out *ltxOut, pos ltx.Pos) error {
	if db.store.IsPrimary() {
		return nil
	}
	db.rhalt.mu.Lock()
	h := db.rhalt.cur
	var void error
	if h != nil {
		void = h.void
	}
	db.rhalt.mu.Unlock()
	switch {
	case h == nil:
		db.log.Warn("refused commit on a replica without the HALT lock")
		return fmt.Errorf("%s: %w: take the HALT lock to write on a replica", db.name, ErrReadOnlyReplica)
	case void != nil:
		return fmt.Errorf("%s: %w: %v", db.name, ErrHaltVoid, void)
	}
	c := db.store.getHaltClient()
	if c == nil {
		return fmt.Errorf("%s: %w: no connection to the primary", db.name, ErrHaltVoid)
	}
	r, err := out.reader()
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(h.context(), forwardTimeout)
	defer cancel()
	got, err := c.ForwardTx(ctx, db.name, h.id, r)
	if err != nil && h.context().Err() != nil {
		db.rhalt.mu.Lock()
		why := h.void
		db.rhalt.mu.Unlock()
		if why == nil {
			why = errors.New("released while the commit was in flight")
		}
		db.log.Warn("forwarded transaction given up: the HALT lock ended; the commit is rolled back", "txid", pos.TXID, "reason", why)
		return fmt.Errorf("forward TXID %s of %s: %w: %v (the primary may still apply it: outcome unknown)", pos.TXID, db.name, ErrHaltVoid, why)
	}
	if err != nil {
		if errors.Is(err, ErrHaltNotHeld) || errors.Is(err, ErrNotPrimary) {
			db.voidHalt(h, err)
		}
		db.log.Warn("forwarded transaction failed; the commit is rolled back", "txid", pos.TXID, "error", err)
		return fmt.Errorf("forward TXID %s of %s to the primary: %w", pos.TXID, db.name, err)
	}
	if got != pos {
		return fmt.Errorf("forward TXID %s of %s: %w: the primary is at %s/%s, this node computed %s/%s", pos.TXID, db.name,
			ErrChecksumMismatch, got.TXID, got.PostApplyChecksum, pos.TXID, pos.PostApplyChecksum)
	}
	db.rhalt.mu.Lock()
	if db.rhalt.forwarded == nil {
		db.rhalt.forwarded = make(map[ltx.TXID]ltx.Checksum)
	}
	db.rhalt.forwarded[pos.TXID] = pos.PostApplyChecksum
	db.rhalt.mu.Unlock()
	return nil
}

// alreadyForwarded reports whether in is a transaction this replica
// forwarded itself and already holds (the primary's stream sends it back).
func (db *DB) alreadyForwarded(in *incomingLTX) (ltx.Pos, bool) {
	db.rhalt.mu.Lock()
	sum, ok := db.rhalt.forwarded[in.hdr.MaxTXID]
	ok = ok && in.hdr.MinTXID == in.hdr.MaxTXID && sum == in.trailer.PostApplyChecksum
	if ok {
		delete(db.rhalt.forwarded, in.hdr.MaxTXID)
	}
	db.rhalt.mu.Unlock() // before db.mu: forwardTx takes them in the other order
	if !ok {
		return ltx.Pos{}, false
	}
	return db.Pos(), true
}

// reader returns the encoded file for reading.
func (o *ltxOut) reader() (io.ReadCloser, error) {
	if o.buf != nil {
		return io.NopCloser(bytes.NewReader(o.buf.Bytes())), nil
	}
	if err := o.w.Flush(); err != nil {
		return nil, fmt.Errorf("write ltx: %w", err)
	}
	f, err := os.Open(o.tmp)
	if err != nil {
		return nil, fmt.Errorf("read ltx: %w", err)
	}
	return f, nil
}

// QueryRemoteHalt reports whether another node holds the HALT on this
// database, asking the primary. Always false on the primary (its grants
// are local) and when this node holds it.
func (db *DB) QueryRemoteHalt(ctx context.Context) (bool, error) {
	if db.store.IsPrimary() {
		_, held := db.HaltHolder()
		return held, nil
	}
	c := db.store.getHaltClient()
	if c == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, held, err := c.QueryHalt(ctx, db.name)
	if err != nil {
		return false, fmt.Errorf("query HALT on %s: %w", db.name, err)
	}
	return held && l.Holder != db.store.NodeID(), nil
}
