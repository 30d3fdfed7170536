package http

import (
	"bytes"
	"context"
	"errors"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

func TestHaltClient_ErrorsMapBackToCoreErrors(t *testing.T) {
	const token = "tok"
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: time.Minute}, ServerOptions{AuthToken: token})
	primaryInfo := &litefs.PrimaryInfo{Hostname: "primary", AdvertiseURL: e.ts.URL}
	newClient := func(p *litefs.PrimaryInfo, token string) (*HaltClient, *litefs.Store) {
		s := openStore(t)
		if p != nil {
			s.SetReplica(p)
		}
		return NewHaltClient(s, token, nil), s
	}
	c1, s1 := newClient(primaryInfo, token)
	c2, s2 := newClient(primaryInfo, token)
	e.streamAs(t, litefs.FormatNodeID(s1.NodeID()), token)
	e.streamAs(t, litefs.FormatNodeID(s2.NodeID()), token)
	notStreaming, _ := newClient(primaryInfo, token)
	badToken, _ := newClient(primaryInfo, "wrong")
	noPrimary, _ := newClient(nil, token) // its own store is primary: no primary to ask

	replica := openStore(t)
	if _, err := replica.CreateDB("a.db"); err != nil {
		t.Fatal(err)
	}
	replica.SetReplica(&litefs.PrimaryInfo{Hostname: "elsewhere", AdvertiseURL: "http://127.0.0.1:1"})
	_, rts := startServer(t, replica, ServerOptions{})
	toReplica, _ := newClient(&litefs.PrimaryInfo{Hostname: "old-primary", AdvertiseURL: rts.URL}, "")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const id1, id2 = 0x1111, 0x2222

	l, err := c1.AcquireHalt(ctx, "a.db", id1, true)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != id1 || l.Holder != s1.NodeID() || l.Pos != e.db.Pos() || time.Until(l.Expires) <= 0 {
		t.Fatalf("lock %+v, want id %x held by %x at %v", l, id1, s1.NodeID(), e.db.Pos())
	}
	if q, held, err := c2.QueryHalt(ctx, "a.db"); err != nil || !held || q.Holder != s1.NodeID() || q.ID != id1 {
		t.Fatalf("query: %+v %v %v, want held by client 1", q, held, err)
	}

	before := snapshotDB(t, e.db)
	next := nextContent(t, e.db, 5)
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"busy", func() error { _, err := c2.AcquireHalt(ctx, "a.db", id2, false); return err }, litefs.ErrHaltBusy},
		{"node without a stream", func() error { _, err := notStreaming.AcquireHalt(ctx, "a.db", id2, false); return err }, ErrNoStream},
		{"renew by another node", func() error { _, err := c2.RenewHalt(ctx, "a.db", id1); return err }, litefs.ErrHaltNotHeld},
		{"renew wrong id", func() error { _, err := c1.RenewHalt(ctx, "a.db", id2); return err }, litefs.ErrHaltNotHeld},
		{"forward by another node", func() error {
			_, err := c2.ForwardTx(ctx, "a.db", id1, bytes.NewReader(forwardedTx(t, e.db, next, nil)))
			return err
		}, litefs.ErrHaltNotHeld},
		{"stale position", func() error {
			b := forwardedTx(t, e.db, next, func(h *ltx.Header, _ *ltx.Checksum) { h.MinTXID, h.MaxTXID = 2, 2 })
			_, err := c1.ForwardTx(ctx, "a.db", id1, bytes.NewReader(b))
			return err
		}, litefs.ErrPosMismatch},
		{"wrong pre-apply checksum", func() error {
			b := forwardedTx(t, e.db, next, func(h *ltx.Header, _ *ltx.Checksum) { h.PreApplyChecksum ^= 0x10 })
			_, err := c1.ForwardTx(ctx, "a.db", id1, bytes.NewReader(b))
			return err
		}, litefs.ErrChecksumMismatch},
		{"wrong post-apply checksum", func() error {
			b := forwardedTx(t, e.db, next, func(_ *ltx.Header, post *ltx.Checksum) { *post ^= 0x10 })
			_, err := c1.ForwardTx(ctx, "a.db", id1, bytes.NewReader(b))
			return err
		}, litefs.ErrChecksumMismatch},
		{"corrupted file", func() error {
			b := forwardedTx(t, e.db, next, nil)
			b[len(b)/2] ^= 0xff
			_, err := c1.ForwardTx(ctx, "a.db", id1, bytes.NewReader(b))
			return err
		}, litefs.ErrHaltInvalid},
		{"unknown database", func() error { _, err := c1.AcquireHalt(ctx, "nope.db", id1, false); return err }, litefs.ErrDatabaseNotFound},
		{"server is a replica", func() error { _, err := toReplica.AcquireHalt(ctx, "a.db", id2, false); return err }, litefs.ErrNotPrimary},
		{"server is a replica, forward", func() error {
			_, err := toReplica.ForwardTx(ctx, "a.db", id1, bytes.NewReader(forwardedTx(t, e.db, next, nil)))
			return err
		}, litefs.ErrNotPrimary},
		{"no primary known", func() error { _, err := noPrimary.AcquireHalt(ctx, "a.db", id2, false); return err }, litefs.ErrNotPrimary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want errors.Is %v", err, tt.want)
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}

	t.Run("wrong token", func(t *testing.T) {
		_, err := badToken.AcquireHalt(ctx, "a.db", id2, false)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("error %v, want the primary's 401", err)
		}
	})

	// The holder's own calls succeed.
	pos, err := c1.ForwardTx(ctx, "a.db", id1, bytes.NewReader(forwardedTx(t, e.db, next, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if pos != e.db.Pos() || pos.TXID != before.pos.TXID+1 || !bytes.Equal(readDBFile(t, e.db), next) {
		t.Fatalf("forwarded: client got %v, primary at %v", pos, e.db.Pos())
	}
	r, err := c1.RenewHalt(ctx, "a.db", id1)
	if err != nil || r.Pos != pos || !r.Expires.After(l.Expires) {
		t.Fatalf("renew: %+v %v, want pos %v and a later expiry than %v", r, err, pos, l.Expires)
	}
	if err := c1.ReleaseHalt(ctx, "a.db", id1); err != nil {
		t.Fatal(err)
	}
	if _, held, err := c1.QueryHalt(ctx, "a.db"); err != nil || held {
		t.Fatalf("query after release: held %v, err %v", held, err)
	}
	if err := c1.ReleaseHalt(ctx, "a.db", id1); err != nil {
		t.Fatalf("second release: %v, want a no-op", err)
	}
	if _, err := c1.RenewHalt(ctx, "a.db", id1); !errors.Is(err, litefs.ErrHaltNotHeld) {
		t.Fatalf("renew after release: %v, want ErrHaltNotHeld", err)
	}
	if l, err := c2.AcquireHalt(ctx, "a.db", id2, false); err != nil || l.Pos != pos {
		t.Fatalf("next holder: %+v %v, want the lock at %v", l, err, pos)
	}
}

func TestHalt_BlocksLocalWritersButNeverReaders(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	dbl, shm := e.db.Locks(litefs.FileDatabase), e.db.Locks(litefs.FileSHM)
	const reader = 0x5ead

	// A reader inside a read transaction does not delay the grant.
	if !dbl.TryLock(reader, reader, 2, litefs.LockRead, litefs.SharedFirst, litefs.SharedFirst+litefs.SharedSize-1) {
		t.Fatal("reader could not take SHARED")
	}
	code, body := e.acquire(t, nodeA, lockA, "&wait=false")
	if code != 200 {
		t.Fatalf("acquire while a reader holds SHARED: %d %s", code, body)
	}
	dbl.TryLock(reader, reader, 2, litefs.LockUnlock, 0, 1<<62)

	type lockCase struct {
		name        string
		table       *litefs.LockTable
		typ         litefs.LockType
		start, end  uint64
		whileHalted bool
	}
	tests := []lockCase{
		{"writer RESERVED", dbl, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte, false},
		{"writer WAL write lock", shm, litefs.LockWrite, litefs.WALWriteLockByte, litefs.WALWriteLockByte, false},
		{"reader PENDING (taken on the way to SHARED)", dbl, litefs.LockRead, litefs.PendingByte, litefs.PendingByte, true},
		{"reader SHARED", dbl, litefs.LockRead, litefs.SharedFirst, litefs.SharedFirst + litefs.SharedSize - 1, true},
		{"WAL reader read mark", shm, litefs.LockRead, litefs.WALReadLockByte0, litefs.WALReadLockByte0 + 4, true},
		{"WAL reader DMS", shm, litefs.LockRead, litefs.WALDMSByte, litefs.WALDMSByte, true},
	}
	try := func(tt lockCase) bool {
		ok := tt.table.TryLock(otherOwner, otherOwner, 1, tt.typ, tt.start, tt.end)
		if ok {
			tt.table.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, tt.start, tt.end)
		}
		return ok
	}
	for _, tt := range tests {
		t.Run("halted/"+tt.name, func(t *testing.T) {
			if got := try(tt); got != tt.whileHalted {
				t.Fatalf("granted %v while a HALT is held, want %v", got, tt.whileHalted)
			}
		})
	}

	// A blocked local writer gets the lock as soon as the HALT is released.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		got <- dbl.Lock(ctx, otherOwner+1, otherOwner+1, 3, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte)
	}()
	select {
	case err := <-got:
		t.Fatalf("local writer got RESERVED while the HALT is held (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if !e.release(t, nodeA, lockA) {
		t.Fatal("release reported not held")
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("local writer: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("local writer still blocked 5s after the release")
	}
	dbl.TryLock(otherOwner+1, otherOwner+1, 3, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)

	for _, tt := range tests {
		t.Run("released/"+tt.name, func(t *testing.T) {
			if !try(tt) {
				t.Fatal("not granted after the HALT was released")
			}
		})
	}
}

func TestHaltAcquire_AWaiterThatGivesUpNeverHoldsTheLock(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	e.mustAcquire(t, nodeA, lockA)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, "POST", e.ts.URL+"/halt?name=a.db&id="+lockB, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderNodeID, nodeB)
	if resp, err := nethttp.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("waiting request answered %d while A holds the lock", resp.StatusCode)
	}

	if !e.release(t, nodeA, lockA) {
		t.Fatal("release of A reported not held")
	}
	time.Sleep(200 * time.Millisecond) // let the server notice B is gone
	if q := e.query(t); q.Held {
		t.Fatalf("GET /halt %+v: the caller that gave up holds the lock", q)
	}
	if h := e.mustAcquire(t, nodeC, lockC); h.Holder != nodeC {
		t.Fatalf("next holder %+v, want C", h)
	}
}
