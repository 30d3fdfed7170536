package http

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	nethttp "net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// onlyReader hides a reader's length so the body is sent chunked.
type onlyReader struct{ io.Reader }

func TestForwardedTx_RefusalsChangeNothing(t *testing.T) {
	const maxTx = 64 << 10
	big := makeSQLiteFile(t, 600) // a transaction of about 130 KiB
	tests := []struct {
		name   string
		hold   bool   // A holds the HALT under lockA
		node   string // the caller
		id     string // the lock id sent
		body   func(t *testing.T, db *litefs.DB, next []byte) io.Reader
		status int
		code   string
		why    []string
	}{
		{
			name: "wrong lock id", hold: true, node: nodeA, id: lockB,
			status: 409, code: codeNotHeld, why: []string{"not the current lock"},
		},
		{
			name: "caller is not the holder", hold: true, node: nodeB, id: lockA,
			status: 409, code: codeNotHeld, why: []string{"not the holder"},
		},
		{
			name: "no HALT held", hold: false, node: nodeA, id: lockA,
			status: 409, code: codeNotHeld, why: []string{"no HALT is held"},
		},
		{
			name: "stale position", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, next, func(h *ltx.Header, _ *ltx.Checksum) {
					h.MinTXID, h.MaxTXID = db.Pos().TXID, db.Pos().TXID
				}))
			},
			status: 409, code: codePosition, why: []string{"stale position", "expects"},
		},
		{
			name: "future position", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, next, func(h *ltx.Header, _ *ltx.Checksum) {
					h.MinTXID, h.MaxTXID = db.Pos().TXID+2, db.Pos().TXID+2
				}))
			},
			status: 409, code: codePosition, why: []string{"position"},
		},
		{
			name: "wrong pre-apply checksum", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, next, func(h *ltx.Header, _ *ltx.Checksum) {
					h.PreApplyChecksum ^= 0x10
				}))
			},
			status: 409, code: codeChecksum, why: []string{"pre-apply checksum"},
		},
		{
			name: "wrong post-apply checksum", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, next, func(_ *ltx.Header, post *ltx.Checksum) {
					*post ^= 0x10
				}))
			},
			status: 409, code: codeChecksum, why: []string{"checksum"},
		},
		{
			name: "truncated LTX", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				b := forwardedTx(t, db, next, nil)
				return bytes.NewReader(b[:len(b)/2])
			},
			status: 400, code: codeInvalid, why: []string{"invalid or incomplete"},
		},
		{
			name: "truncated trailer", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				b := forwardedTx(t, db, next, nil)
				return bytes.NewReader(b[:len(b)-3])
			},
			status: 400, code: codeInvalid, why: []string{"invalid or incomplete"},
		},
		{
			name: "corrupted LTX", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				b := forwardedTx(t, db, next, nil)
				b[len(b)/2] ^= 0xff
				return bytes.NewReader(b)
			},
			status: 400, code: codeInvalid, why: []string{"invalid"},
		},
		{
			name: "two transactions in one file", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, next []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, next, func(h *ltx.Header, _ *ltx.Checksum) {
					h.MaxTXID = h.MinTXID + 1
				}))
			},
			status: 400, code: codeInvalid, why: []string{"one transaction"},
		},
		{
			name: "oversized body with length", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, _ []byte) io.Reader {
				return bytes.NewReader(forwardedTx(t, db, big, nil))
			},
			status: 413, code: codeTooLarge, why: []string{"limit"},
		},
		{
			name: "oversized body chunked", hold: true, node: nodeA, id: lockA,
			body: func(t *testing.T, db *litefs.DB, _ []byte) io.Reader {
				return onlyReader{bytes.NewReader(forwardedTx(t, db, big, nil))}
			},
			status: 413, code: codeTooLarge, why: []string{"limit"},
		},
		{
			name: "not an LTX file", hold: true, node: nodeA, id: lockA,
			body: func(*testing.T, *litefs.DB, []byte) io.Reader {
				return strings.NewReader(strings.Repeat("hello world ", 500))
			},
			status: 400, code: codeInvalid, why: []string{"invalid"},
		},
		{
			name: "empty body", hold: true, node: nodeA, id: lockA,
			body: func(*testing.T, *litefs.DB, []byte) io.Reader {
				return bytes.NewReader(nil)
			},
			status: 400, code: codeInvalid, why: []string{"invalid"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: time.Minute}, ServerOptions{MaxTxSize: maxTx})
			next := nextContent(t, e.db, 5)
			var body io.Reader
			if tt.body != nil {
				body = tt.body(t, e.db, next)
			} else {
				body = bytes.NewReader(forwardedTx(t, e.db, next, nil))
			}
			var held HaltJSON
			if tt.hold {
				held = e.mustAcquire(t, nodeA, lockA)
			}
			before := snapshotDB(t, e.db)
			code, resp := e.postTx(t, tt.node, tt.id, body)
			if code != tt.status {
				t.Fatalf("status %d %s, want %d", code, resp, tt.status)
			}
			apiRefusal(t, resp, tt.code, tt.why...)
			before.mustEqual(t, snapshotDB(t, e.db))
			if !tt.hold {
				return
			}

			// The HALT survives the refusal and still works.
			if q := e.query(t); q.Holder != nodeA || q.ID != lockA || q.Pos != held.Pos {
				t.Fatalf("GET /halt after the refusal %+v, want %+v", q, held)
			}
			if reserved, walWrite := tryWriterLocks(e.db); reserved || walWrite {
				t.Fatal("local writers got the write lock after a refusal")
			}
			code, resp = e.postTx(t, nodeA, lockA, bytes.NewReader(forwardedTx(t, e.db, next, nil)))
			if code != 200 {
				t.Fatalf("a good transaction after the refusal: %d %s", code, resp)
			}
			if got := readDBFile(t, e.db); !bytes.Equal(got, next) {
				t.Fatal("database file is not the forwarded content")
			}
		})
	}
}

func TestForwardedTx_AppliedNotifiedStreamedAndExtendsTheHalt(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: time.Minute}, ServerOptions{})
	before := e.db.Pos()
	sub := e.store.Subscribe()
	defer sub.Close()
	fr := openStream(t, e.ts.URL, map[string]ltx.Pos{"a.db": before}, "") // as node 00000000000000aa
	if f, _ := nextData(t, fr); f.Type != FrameReady {
		t.Fatalf("frame %v, want ready", f.Type)
	}

	granted := e.mustAcquire(t, nodeA, lockA)
	select { // drain a signal the grant may have caused
	case <-sub.C:
	default:
	}
	time.Sleep(20 * time.Millisecond) // the extended expiry is measurably later

	next := nextContent(t, e.db, 5)
	file := forwardedTx(t, e.db, next, nil)
	dec := ltx.NewDecoder(bytes.NewReader(file))
	if err := dec.Verify(); err != nil {
		t.Fatalf("built LTX file does not verify: %v", err)
	}
	want := dec.PostApplyPos()
	if want.TXID != before.TXID+1 {
		t.Fatalf("setup: file TXID %s", want.TXID)
	}

	code, body := e.postTx(t, nodeA, lockA, bytes.NewReader(file))
	if code != 200 {
		t.Fatalf("POST /tx: %d %s", code, body)
	}
	var resp struct {
		Pos PosJSON `json:"pos"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Pos != NewPosJSON(want) {
		t.Fatalf("answer %s (%v), want pos %+v", body, err, NewPosJSON(want))
	}
	if got := e.db.Pos(); got != want {
		t.Fatalf("position %v, want %v", got, want)
	}
	if got := readDBFile(t, e.db); !bytes.Equal(got, next) {
		t.Fatal("database file does not hold the forwarded pages")
	}
	if got := ltxFile(t, e.db, want.TXID); !bytes.Equal(got, file) {
		t.Fatal("the LTX history does not hold the forwarded file")
	}

	select {
	case <-sub.C:
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber not notified")
	}
	f, data := nextData(t, fr)
	if f.Type != FrameLTX || f.Name != "a.db" || !bytes.Equal(data, file) {
		t.Fatalf("stream frame %v %q (%d bytes), want the forwarded LTX file", f.Type, f.Name, len(data))
	}

	q := e.query(t)
	if !q.Held || q.Holder != nodeA || q.ID != lockA || q.Pos != NewPosJSON(want) {
		t.Fatalf("GET /halt %+v, want held by A at %+v", q, NewPosJSON(want))
	}
	if !q.Expires.After(granted.Expires) {
		t.Fatalf("expiry %v not extended past %v", q.Expires, granted.Expires)
	}
	if reserved, walWrite := tryWriterLocks(e.db); reserved || walWrite {
		t.Fatal("applying the forwarded transaction handed the write lock to local writers")
	}
	if !e.db.Locks(litefs.FileDatabase).TryLock(otherOwner, otherOwner, 1, litefs.LockRead, litefs.SharedFirst, litefs.SharedFirst+litefs.SharedSize-1) {
		t.Fatal("a reader cannot take SHARED after the apply")
	}
	e.db.Locks(litefs.FileDatabase).TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.SharedFirst, litefs.SharedFirst+litefs.SharedSize-1)

	// A second transaction under the same HALT follows on.
	next2 := nextContent(t, e.db, 5)
	if code, body := e.postTx(t, nodeA, lockA, bytes.NewReader(forwardedTx(t, e.db, next2, nil))); code != 200 {
		t.Fatalf("second POST /tx: %d %s", code, body)
	}
	if e.db.Pos().TXID != want.TXID+1 || !bytes.Equal(readDBFile(t, e.db), next2) {
		t.Fatalf("second transaction not applied: position %v", e.db.Pos())
	}
	if !e.release(t, nodeA, lockA) {
		t.Fatal("release reported not held")
	}
	if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
		t.Fatal("local writers still locked out after release")
	}
}

func TestForwardedTx_AppliesEveryShapeOfTransaction(t *testing.T) {
	withTxs := func(contents ...[]byte) func(*testing.T, *litefs.Store) *litefs.DB {
		return func(t *testing.T, s *litefs.Store) *litefs.DB { return createDBWithTxs(t, s, "a.db", contents...) }
	}
	tests := []struct {
		name  string
		setup func(*testing.T, *litefs.Store) *litefs.DB
		next  func(*testing.T) []byte
	}{
		{"same size", withTxs(makeSQLiteFile(t, 5), makeSQLiteFile(t, 5)), func(t *testing.T) []byte { return makeSQLiteFile(t, 5) }},
		{"database grows", withTxs(makeSQLiteFile(t, 5)), func(t *testing.T) []byte { return makeSQLiteFile(t, 80) }},
		{"database shrinks", withTxs(makeSQLiteFile(t, 80)), func(t *testing.T) []byte { return makeSQLiteFile(t, 5) }},
		{"first transaction of an empty database", withTxs(), func(t *testing.T) []byte { return makeSQLiteFile(t, 5) }},
		{"WAL-mode database", func(t *testing.T, s *litefs.Store) *litefs.DB {
			db, err := s.CreateDB("a.db")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.ApplyLTX(context.Background(), bytes.NewReader(forwardedTx(t, db, makeWALFile(t, 5), nil))); err != nil {
				t.Fatal(err)
			}
			return db
		}, func(t *testing.T) []byte { return makeWALFile(t, 5) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHaltEnvWith(t, litefs.StoreOptions{HaltTTL: time.Minute}, ServerOptions{}, tt.setup)
			before := e.db.Pos()
			next := tt.next(t)
			file := forwardedTx(t, e.db, next, nil)
			dec := ltx.NewDecoder(bytes.NewReader(file))
			if err := dec.Verify(); err != nil {
				t.Fatal(err)
			}
			h := e.mustAcquire(t, nodeA, lockA)
			if h.Pos != NewPosJSON(before) {
				t.Fatalf("granted at %+v, database at %v", h.Pos, before)
			}
			code, body := e.postTx(t, nodeA, lockA, bytes.NewReader(file))
			if code != 200 {
				t.Fatalf("POST /tx: %d %s", code, body)
			}
			if got, want := e.db.Pos(), dec.PostApplyPos(); got != want || got.TXID != before.TXID+1 {
				t.Fatalf("position %v, want %v", got, want)
			}
			if got := readDBFile(t, e.db); !bytes.Equal(got, next) {
				t.Fatalf("database file (%d bytes) is not the forwarded content (%d bytes)", len(got), len(next))
			}
			if reserved, walWrite := tryWriterLocks(e.db); reserved || walWrite {
				t.Fatal("local writers got the write lock while the HALT is held")
			}
			if !e.release(t, nodeA, lockA) {
				t.Fatal("release reported not held")
			}
			if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
				t.Fatal("local writers locked out after release")
			}
		})
	}
}

func TestForwardedTx_AStalledUploadDoesNotWedgeTheHalt(t *testing.T) {
	ttl := 300 * time.Millisecond
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: ttl}, ServerOptions{})
	before := snapshotDB(t, e.db)
	file := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	e.mustAcquire(t, nodeA, lockA)

	// The holder starts shipping its transaction, then goes silent (its
	// network is cut) without closing the connection.
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	defer func() { cancel(); pw.Close(); <-done }()
	go func() {
		defer close(done)
		req, _ := nethttp.NewRequestWithContext(ctx, "POST", e.ts.URL+"/tx?name=a.db&id="+lockA, pr)
		req.Header.Set(HeaderNodeID, nodeA)
		if resp, err := nethttp.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(file[:len(file)/2]); err != nil {
		t.Fatal(err)
	}

	// The primary is not wedged: GET /halt answers, the lock expires within
	// about halt.ttl, and another node can take it.
	start := time.Now()
	qctx, qcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer qcancel()
	qreq, _ := nethttp.NewRequestWithContext(qctx, "GET", e.ts.URL+"/halt?name=a.db", nil)
	qresp, err := nethttp.DefaultClient.Do(qreq)
	if err != nil {
		t.Fatalf("GET /halt did not answer within 3s while the holder's upload is stalled: %v", err)
	}
	qresp.Body.Close()
	waitFor(t, "the stalled holder's HALT to expire", func() bool { return !e.query(t).Held })
	if d := time.Since(start); d > ttl+2*time.Second {
		t.Fatalf("expired after %s, want about halt.ttl (%s)", d, ttl)
	}
	if h := e.mustAcquire(t, nodeB, lockB); h.Holder != nodeB {
		t.Fatalf("next holder %+v, want B", h)
	}
	// The upload ends; the spooled half is thrown away and nothing changed.
	cancel()
	pw.Close()
	<-done
	waitFor(t, "the stalled upload's spool file to be removed", func() bool {
		ents, err := os.ReadDir(e.db.LTXDir())
		if err != nil {
			return false
		}
		for _, ent := range ents {
			if strings.HasSuffix(ent.Name(), ".tmp") {
				return false
			}
		}
		return true
	})
	before.mustEqual(t, snapshotDB(t, e.db))
}

func TestHalt_DroppedAtOnceWhenTheHoldersStreamDisconnects(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, "POST", e.ts.URL+"/stream", strings.NewReader(`{"dbs":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(HeaderNodeID, nodeA)
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream status %d", resp.StatusCode)
	}
	fr := NewFrameReader(resp.Body)
	if f, _ := nextData(t, fr); f.Type != FrameLTX && f.Type != FrameReady {
		t.Fatalf("frame %v, want the stream to be up", f.Type)
	}

	e.mustAcquire(t, nodeB, lockB) // another node's lock must survive
	e.release(t, nodeB, lockB)
	e.mustAcquire(t, nodeA, lockA)
	cancel() // the holder's daemon dies
	start := time.Now()
	waitFor(t, "the HALT of the disconnected holder to drop", func() bool { return !e.query(t).Held })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("HALT dropped %s after the holder's stream went, want under 1s", d)
	}
	if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
		t.Fatal("local writers still locked out after the holder's stream dropped")
	}
}

func TestForwardedTx_RefusedAfterThisNodeStopsBeingPrimary(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	file := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	e.mustAcquire(t, nodeA, lockA)
	before := snapshotDB(t, e.db)
	e.store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-2", AdvertiseURL: "http://node-2:20202"})
	code, body := e.postTx(t, nodeA, lockA, bytes.NewReader(file))
	if code != nethttp.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", code, body)
	}
	apiRefusal(t, body, codeNotPrimary, "primary")
	before.mustEqual(t, snapshotDB(t, e.db))

	// Stepping down releases every HALT; back as primary nothing applies
	// under the old lock id.
	e.store.ReleaseAllHalts()
	e.store.SetReplica(nil)
	code, body = e.postTx(t, nodeA, lockA, bytes.NewReader(file))
	if code != nethttp.StatusConflict {
		t.Fatalf("status %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "no HALT is held")
	before.mustEqual(t, snapshotDB(t, e.db))
	if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
		t.Fatal("local writers locked out after every HALT was released")
	}
}

func TestForwardedTx_WaitsForAReaderInsideAReadTransaction(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	next := nextContent(t, e.db, 5)
	file := forwardedTx(t, e.db, next, nil)
	e.mustAcquire(t, nodeA, lockA)
	dbl := e.db.Locks(litefs.FileDatabase)
	const reader = 0x5ead
	if !dbl.TryLock(reader, reader, 2, litefs.LockRead, litefs.SharedFirst, litefs.SharedFirst+litefs.SharedSize-1) {
		t.Fatal("reader could not take SHARED while the HALT is held")
	}
	before := snapshotDB(t, e.db)

	type answer struct {
		code int
		body string
	}
	got := make(chan answer, 1)
	go func() {
		code, body, err := rawHaltCall("POST", e.ts.URL+"/tx?name=a.db&id="+lockA, nodeA, bytes.NewReader(file), nil)
		if err != nil {
			body = err.Error()
		}
		got <- answer{code, body}
	}()
	select {
	case a := <-got:
		t.Fatalf("applied (%d %s) while a reader is inside a read transaction", a.code, a.body)
	case <-time.After(300 * time.Millisecond):
	}
	if e.db.Pos() != before.pos || !bytes.Equal(readDBFile(t, e.db), before.file) {
		t.Error("the database changed under a reader inside a read transaction")
	}

	dbl.TryLock(reader, reader, 2, litefs.LockUnlock, litefs.SharedFirst, litefs.SharedFirst+litefs.SharedSize-1)
	select {
	case a := <-got:
		if a.code != 200 {
			t.Fatalf("POST /tx after the reader left: %d %s", a.code, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("forwarded transaction not applied 10s after the reader left")
	}
	if !bytes.Equal(readDBFile(t, e.db), next) || e.db.Pos().TXID != before.pos.TXID+1 {
		t.Fatalf("not applied: position %v", e.db.Pos())
	}
}
