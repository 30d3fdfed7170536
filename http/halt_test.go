package http

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// Node ids (Litefs-Id) and lock ids used by the HALT tests.
const (
	nodeA = "00000000000000a1"
	nodeB = "00000000000000b2"
	nodeC = "00000000000000c3"

	lockA = "1111111111111111"
	lockB = "2222222222222222"
	lockC = "3333333333333333"
)

// haltEnv is a primary store with one database, a.db, that has two
// committed transactions, served by a real Server on httptest.
type haltEnv struct {
	dir   string
	store *litefs.Store
	db    *litefs.DB
	ts    *httptest.Server
}

// newHaltEnv opens a primary store with the given HALT options and serves
// it with srvOpts.
func newHaltEnv(t *testing.T, sopts litefs.StoreOptions, srvOpts ServerOptions) *haltEnv {
	t.Helper()
	return newHaltEnvWith(t, sopts, srvOpts, nil)
}

// newHaltEnvWith is newHaltEnv with the database a.db made by setup
// instead (nil: two committed transactions).
func newHaltEnvWith(t *testing.T, sopts litefs.StoreOptions, srvOpts ServerOptions, setup func(*testing.T, *litefs.Store) *litefs.DB) *haltEnv {
	t.Helper()
	dir := t.TempDir()
	sopts.Dir, sopts.StrictVerify, sopts.SkipSync, sopts.Logger = dir, true, true, quietLogger()
	if sopts.HaltAcquireTimeout == 0 {
		sopts.HaltAcquireTimeout = 5 * time.Second // no test can hang on a waiter
	}
	if sopts.HaltTTL == 0 {
		sopts.HaltTTL = time.Minute // only the expiry tests count on the TTL
	}
	s, err := litefs.OpenStore(context.Background(), sopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var db *litefs.DB
	if setup == nil {
		db = createDBWithTxs(t, s, "a.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 5))
		if db.Pos().TXID != 2 {
			t.Fatalf("setup: position %v, want TXID 2", db.Pos())
		}
	} else {
		db = setup(t, s)
	}
	_, ts := startServer(t, s, srvOpts)
	return &haltEnv{dir: dir, store: s, db: db, ts: ts}
}

// rawHaltCall sends one HALT API request as node (no Litefs-Id header when
// node is empty), bounded to 15 s, and returns the status and the body. It
// does not use a *testing.T, so goroutines may call it.
func rawHaltCall(method, url, node string, body io.Reader, header map[string]string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, "", err
	}
	if node != "" {
		req.Header.Set(HeaderNodeID, node)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// haltCall is rawHaltCall failing the test on a transport error.
func haltCall(t *testing.T, method, url, node string, body io.Reader, header map[string]string) (int, string) {
	t.Helper()
	code, resp, err := rawHaltCall(method, url, node, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return code, resp
}

// acquire sends POST /halt for a.db and returns the status and body.
func (e *haltEnv) acquire(t *testing.T, node, id, extra string) (int, string) {
	t.Helper()
	return haltCall(t, "POST", e.ts.URL+"/halt?name=a.db&id="+id+extra, node, nil, nil)
}

// mustAcquire acquires the HALT on a.db for node under lock id.
func (e *haltEnv) mustAcquire(t *testing.T, node, id string) HaltJSON {
	t.Helper()
	code, body := e.acquire(t, node, id, "")
	if code != 200 {
		t.Fatalf("acquire by %s: status %d %s", node, code, body)
	}
	return decodeHaltJSON(t, body)
}

// release sends DELETE /halt for a.db and reports the "released" answer.
func (e *haltEnv) release(t *testing.T, node, id string) bool {
	t.Helper()
	code, body := haltCall(t, "DELETE", e.ts.URL+"/halt?name=a.db&id="+id, node, nil, nil)
	var out struct {
		Released bool `json:"released"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("release by %s: status %d %s", node, code, body)
	}
	return out.Released
}

// query returns GET /halt for a.db.
func (e *haltEnv) query(t *testing.T) HaltJSON {
	t.Helper()
	code, body := haltCall(t, "GET", e.ts.URL+"/halt?name=a.db", "", nil, nil)
	if code != 200 {
		t.Fatalf("GET /halt: status %d %s", code, body)
	}
	return decodeHaltJSON(t, body)
}

// postTx sends POST /tx for a.db with body.
func (e *haltEnv) postTx(t *testing.T, node, id string, body io.Reader) (int, string) {
	t.Helper()
	return haltCall(t, "POST", e.ts.URL+"/tx?name=a.db&id="+id, node, body, nil)
}

func decodeHaltJSON(t *testing.T, body string) HaltJSON {
	t.Helper()
	var h HaltJSON
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("decode HALT answer %q: %v", body, err)
	}
	return h
}

// apiRefusal checks that body is a JSON refusal {"error","code"} with the
// given code whose message contains every one of why.
func apiRefusal(t *testing.T, body, code string, why ...string) {
	t.Helper()
	var e apiErrorJSON
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("refusal is not JSON {error, code}: %q (%v)", body, err)
	}
	if e.Code != code {
		t.Fatalf("refusal code %q (%s), want %q", e.Code, e.Error, code)
	}
	if !contains(e.Error, why...) {
		t.Fatalf("refusal message %q does not say %q", e.Error, why)
	}
}

// dbState is everything a refused request must leave unchanged.
type dbState struct {
	pos  ltx.Pos
	file []byte
	ltx  []string
}

func snapshotDB(t *testing.T, db *litefs.DB) dbState {
	t.Helper()
	ents, err := os.ReadDir(db.LTXDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return dbState{pos: db.Pos(), file: dbFileBytes(t, db), ltx: names}
}

func (s dbState) mustEqual(t *testing.T, after dbState) {
	t.Helper()
	if after.pos != s.pos {
		t.Fatalf("position changed: %v -> %v", s.pos, after.pos)
	}
	if !bytes.Equal(after.file, s.file) {
		t.Fatalf("database file changed (%d -> %d bytes)", len(s.file), len(after.file))
	}
	if !slices.Equal(after.ltx, s.ltx) {
		t.Fatalf("LTX directory changed: %v -> %v", s.ltx, after.ltx)
	}
}

// dbFileBytes returns db's database file, or nil if it does not exist yet.
func dbFileBytes(t *testing.T, db *litefs.DB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(db.Dir(), litefs.DatabaseFileName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// pageSizeOf reads the page size from a SQLite database header.
func pageSizeOf(t *testing.T, b []byte) uint32 {
	t.Helper()
	if len(b) < 100 {
		t.Fatalf("not a database: %d bytes", len(b))
	}
	ps := uint32(binary.BigEndian.Uint16(b[16:18]))
	if ps == 1 {
		ps = 65536
	}
	return ps
}

// dbChecksum is the database checksum of SPEC 6 computed from scratch:
// 1<<63 | XOR over every page but the lock page of PageChecksum.
func dbChecksum(content []byte, pageSize uint32) ltx.Checksum {
	var sum ltx.Checksum
	for pgno := uint32(1); int(pgno)*int(pageSize) <= len(content); pgno++ {
		if pgno == ltx.LockPgno(pageSize) {
			continue
		}
		off := int(pgno-1) * int(pageSize)
		sum ^= litefs.PageChecksum(pgno, content[off:off+int(pageSize)])
	}
	return ltx.ChecksumFlag | sum
}

// forwardedTx builds the LTX file a replica holding the HALT would send to
// turn db's current content into next: TXID pos+1, the current checksum as
// pre-apply checksum, every changed page, and the post-apply checksum of
// next. edit may alter the header and post-apply checksum before encoding.
func forwardedTx(t *testing.T, db *litefs.DB, next []byte, edit func(hdr *ltx.Header, post *ltx.Checksum)) []byte {
	t.Helper()
	cur := dbFileBytes(t, db)
	pos := db.Pos()
	ps := pageSizeOf(t, next)
	if pos.TXID == 0 {
		cur = nil // the first transaction is a snapshot: every page
	} else if got := dbChecksum(cur, ps); got != pos.PostApplyChecksum {
		t.Fatalf("checksum of the database file %s, the store says %s", got, pos.PostApplyChecksum)
	}
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: ps, Commit: uint32(len(next)) / ps,
		MinTXID: pos.TXID + 1, MaxTXID: pos.TXID + 1, Timestamp: time.Now().UnixMilli(),
		PreApplyChecksum: pos.PostApplyChecksum,
	}
	if pos.TXID == 0 {
		hdr.PreApplyChecksum = 0
	}
	post := dbChecksum(next, ps)
	if edit != nil {
		edit(&hdr, &post)
	}
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	n := 0
	for pgno := uint32(1); pgno <= hdr.Commit; pgno++ {
		off := int(pgno-1) * int(ps)
		page := next[off : off+int(ps)]
		if pgno == ltx.LockPgno(ps) || (off+int(ps) <= len(cur) && bytes.Equal(cur[off:off+int(ps)], page)) {
			continue
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("setup: the transaction changes no page")
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// nextContent returns a real SQLite file of the same size as db's file,
// with different rows: what an UPDATE on the replica would produce.
func nextContent(t *testing.T, db *litefs.DB, rows int) []byte {
	t.Helper()
	next := makeSQLiteFile(t, rows)
	if cur := readDBFile(t, db); len(cur) != len(next) {
		t.Fatalf("setup: next content is %d bytes, the database %d", len(next), len(cur))
	}
	return next
}

// otherOwner is a lock owner standing for a local SQLite connection.
const otherOwner = 0x7e57

// tryWriterLocks reports whether a local writer could take SQLite's write
// locks (RESERVED, and the WAL write lock) now; it releases what it took.
func tryWriterLocks(db *litefs.DB) (reserved, walWrite bool) {
	dbl, shm := db.Locks(litefs.FileDatabase), db.Locks(litefs.FileSHM)
	reserved = dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte)
	// As the FUSE layer asks: the gate, then the lock table. While a HALT
	// lets a reader rebuild the WAL index the lock may be granted for that,
	// but no WAL write is accepted: a writer cannot write.
	walWrite = db.MayLockWALWrite(otherOwner) &&
		shm.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.WALWriteLockByte, litefs.WALWriteLockByte) &&
		!db.HaltWALOpen()
	dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)
	shm.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.WALWriteLockByte, litefs.WALWriteLockByte)
	db.WALWriteUnlocked(otherOwner)
	return reserved, walWrite
}

func TestHaltAcquire_GrantsTheLockAtTheDatabasePosition(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: 2 * time.Second}, ServerOptions{})
	start := time.Now()
	h := e.mustAcquire(t, nodeA, lockA)
	want := NewPosJSON(e.db.Pos())
	if !h.Held || h.ID != lockA || h.Holder != nodeA || h.Pos != want {
		t.Fatalf("grant %+v, want held by %s under %s at %+v", h, nodeA, lockA, want)
	}
	if h.Expires.Before(start.Add(2*time.Second)) || h.Expires.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("expires %v, want one halt.ttl (2s) after the grant at %v", h.Expires, start)
	}
	if q := e.query(t); q != h {
		t.Fatalf("GET /halt %+v, want %+v", q, h)
	}

	// Asking again with the same id and holder returns the same lock.
	if again := e.mustAcquire(t, nodeA, lockA); again != h {
		t.Fatalf("second acquire by the holder %+v, want %+v", again, h)
	}
	if !e.release(t, nodeA, lockA) {
		t.Fatal("release reported the lock was not held")
	}
	if q := e.query(t); q.Held || q.ID != "" || q.Holder != "" || q.Pos != want {
		t.Fatalf("GET /halt after release %+v, want not held at %+v", q, want)
	}
}

func TestHaltAcquire_SecondHolderWithoutWaitIsBusy(t *testing.T) {
	tests := []struct {
		name  string
		extra string
	}{
		{"wait=false", "&wait=false"},
		{"wait=0", "&wait=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
			first := e.mustAcquire(t, nodeA, lockA)
			start := time.Now()
			code, body := e.acquire(t, nodeB, lockB, tt.extra)
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeBusy, "busy")
			if d := time.Since(start); d > time.Second {
				t.Fatalf("refusal took %s, want at once", d)
			}
			if q := e.query(t); q != first {
				t.Fatalf("holder changed: %+v, want %+v", q, first)
			}
		})
	}
}

type haltResult struct {
	who  string
	code int
	body string
}

func TestHaltAcquire_WaitersGetTheLockInArrivalOrderAfterRelease(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	e.mustAcquire(t, nodeA, lockA)

	results := make(chan haltResult, 2)
	wait := func(node, id string) {
		go func() {
			code, body, err := rawHaltCall("POST", e.ts.URL+"/halt?name=a.db&id="+id, node, nil, nil)
			if err != nil {
				body = err.Error()
			}
			results <- haltResult{node, code, body}
		}()
	}
	noResult := func(d time.Duration, why string) {
		t.Helper()
		select {
		case r := <-results:
			t.Fatalf("%s answered %d %s while %s", r.who, r.code, r.body, why)
		case <-time.After(d):
		}
	}
	next := func() haltResult {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no waiter was granted the lock within 5s of its release")
		}
		return haltResult{}
	}

	wait(nodeB, lockB)
	noResult(200*time.Millisecond, "A holds the lock") // B is queued first
	wait(nodeC, lockC)
	noResult(200*time.Millisecond, "A holds the lock")

	if !e.release(t, nodeA, lockA) {
		t.Fatal("release of A reported not held")
	}
	r := next()
	if h := decodeHaltJSON(t, r.body); r.code != 200 || r.who != nodeB || h.Holder != nodeB || h.ID != lockB || h.Pos != NewPosJSON(e.db.Pos()) {
		t.Fatalf("first grant after release: %s %d %s, want B (arrived first)", r.who, r.code, r.body)
	}
	noResult(300*time.Millisecond, "B holds the lock")

	if !e.release(t, nodeB, lockB) {
		t.Fatal("release of B reported not held")
	}
	r = next()
	if h := decodeHaltJSON(t, r.body); r.code != 200 || r.who != nodeC || h.Holder != nodeC || h.ID != lockC {
		t.Fatalf("grant after B's release: %s %d %s, want C", r.who, r.code, r.body)
	}
	if q := e.query(t); q.Holder != nodeC {
		t.Fatalf("GET /halt %+v, want held by C", q)
	}
}

func TestHaltAcquire_WaitsForALocalWriterUpToTheAcquireTimeout(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltAcquireTimeout: 300 * time.Millisecond}, ServerOptions{})
	dbl := e.db.Locks(litefs.FileDatabase)
	if !dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte) {
		t.Fatal("local writer could not take RESERVED")
	}
	unlock := func() {
		dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)
	}
	defer unlock()

	tests := []struct {
		name    string
		extra   string
		atLeast time.Duration
		why     string
	}{
		{"no wait", "&wait=false", 0, "busy"},
		{"wait times out", "", 300 * time.Millisecond, "acquire-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, body := e.acquire(t, nodeA, lockA, tt.extra)
			d := time.Since(start)
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeBusy, tt.why)
			if d < tt.atLeast || d > tt.atLeast+2*time.Second {
				t.Fatalf("answered after %s, want about %s", d, tt.atLeast)
			}
			if q := e.query(t); q.Held {
				t.Fatalf("GET /halt %+v, want not held", q)
			}
		})
	}

	// A waiting request is granted as soon as the local writer is done.
	e2 := newHaltEnv(t, litefs.StoreOptions{HaltAcquireTimeout: 5 * time.Second}, ServerOptions{})
	dbl2 := e2.db.Locks(litefs.FileDatabase)
	if !dbl2.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte) {
		t.Fatal("local writer could not take RESERVED")
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		dbl2.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)
	}()
	start := time.Now()
	h := e2.mustAcquire(t, nodeA, lockA)
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second || h.Holder != nodeA {
		t.Fatalf("granted %+v after %s, want right after the writer's release at 200ms", h, d)
	}
}

func TestHaltRenew_ExtendsExpiryAndFailsForALockNotHeld(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: 2 * time.Second}, ServerOptions{})
	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew with nothing held: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "no HALT is held")

	first := e.mustAcquire(t, nodeA, lockA)
	time.Sleep(20 * time.Millisecond)
	code, body = e.acquire(t, nodeA, lockA, "&renew=1")
	if code != 200 {
		t.Fatalf("renew by the holder: %d %s", code, body)
	}
	renewed := decodeHaltJSON(t, body)
	if !renewed.Expires.After(first.Expires) || renewed.ID != lockA || renewed.Holder != nodeA || renewed.Pos != first.Pos {
		t.Fatalf("renewed %+v, want %+v with a later expiry", renewed, first)
	}
	if q := e.query(t); q.Expires != renewed.Expires {
		t.Fatalf("GET /halt expires %v, want %v", q.Expires, renewed.Expires)
	}

	tests := []struct {
		name, node, id, why string
	}{
		{"wrong lock id", nodeA, lockB, "not the current lock"},
		{"other node", nodeB, lockA, "not the holder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.acquire(t, tt.node, tt.id, "&renew=true")
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeNotHeld, tt.why)
			if q := e.query(t); q != renewed {
				t.Fatalf("lock changed: %+v, want %+v", q, renewed)
			}
		})
	}
}

func TestHaltTTL_RenewedLockOutlivesTheTTL(t *testing.T) {
	ttl := 300 * time.Millisecond
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: ttl}, ServerOptions{})
	h := e.mustAcquire(t, nodeA, lockA)
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); {
		time.Sleep(ttl / 4)
		code, body := e.acquire(t, nodeA, lockA, "&renew=1")
		if code != 200 {
			t.Fatalf("renew: %d %s", code, body)
		}
		r := decodeHaltJSON(t, body)
		if !r.Expires.After(h.Expires) {
			t.Fatalf("renewal did not move the expiry: %v then %v", h.Expires, r.Expires)
		}
		h = r
	}
	if q := e.query(t); !q.Held || q.Holder != nodeA {
		t.Fatalf("GET /halt %+v, want still held by A", q)
	}

	// Once the renewals stop it expires one TTL after the last one.
	last := time.Now()
	waitFor(t, "the HALT to expire after the last renewal", func() bool { return !e.query(t).Held })
	if d := time.Since(last); d < ttl-50*time.Millisecond || d > ttl+2*time.Second {
		t.Fatalf("expired %s after the last renewal, want about halt.ttl (%s)", d, ttl)
	}
}

func TestHaltTTL_UnrenewedLockExpiresAndANewHolderAcquires(t *testing.T) {
	ttl := 300 * time.Millisecond
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: ttl}, ServerOptions{})
	start := time.Now()
	e.mustAcquire(t, nodeA, lockA)
	waitFor(t, "the HALT to expire", func() bool { return !e.query(t).Held })
	if d := time.Since(start); d < ttl || d > ttl+2*time.Second {
		t.Fatalf("expired after %s, want about halt.ttl (%s)", d, ttl)
	}
	if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
		t.Fatalf("local writers still locked out after expiry (reserved %v, wal write %v)", reserved, walWrite)
	}

	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew of the expired lock: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "not held")
	if h := e.mustAcquire(t, nodeB, lockB); h.Holder != nodeB {
		t.Fatalf("new holder %+v, want B", h)
	}
	if e.release(t, nodeA, lockA) {
		t.Fatal("release of the expired lock reported released")
	}
	if q := e.query(t); q.Holder != nodeB {
		t.Fatalf("the old holder's release changed the lock: %+v", q)
	}
}

func TestReleaseHaltsOf_DropsTheHoldersLock(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	e.mustAcquire(t, nodeA, lockA)
	e.store.ReleaseHaltsOf(0xb2) // another node: nothing happens
	if q := e.query(t); q.Holder != nodeA {
		t.Fatalf("GET /halt %+v, want still held by A", q)
	}
	e.store.ReleaseHaltsOf(0xa1)
	if q := e.query(t); q.Held {
		t.Fatalf("GET /halt %+v, want not held", q)
	}
	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew of the dropped lock: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "not held")
	if h := e.mustAcquire(t, nodeB, lockB); h.Holder != nodeB {
		t.Fatalf("new holder %+v, want B", h)
	}
}

func TestHaltRelease_OfALockNotHeldIsANoOp(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	held := e.mustAcquire(t, nodeA, lockA)
	tests := []struct {
		name, node, id string
	}{
		{"wrong lock id", nodeA, lockB},
		{"other node", nodeB, lockA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e.release(t, tt.node, tt.id) {
				t.Fatal("reported released")
			}
			if q := e.query(t); q != held {
				t.Fatalf("lock changed: %+v, want %+v", q, held)
			}
		})
	}
}

func TestHaltRequests_MalformedAre400AndChangeNothing(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	before := snapshotDB(t, e.db)
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct {
		name   string
		method string
		path   string
		node   string
		why    string
	}{
		{"acquire parent path", "POST", "/halt?name=../x&id=" + lockA, nodeA, "name"},
		{"acquire slash", "POST", "/halt?name=a/b&id=" + lockA, nodeA, "name"},
		{"acquire empty name", "POST", "/halt?name=&id=" + lockA, nodeA, "name"},
		{"acquire missing name", "POST", "/halt?id=" + lockA, nodeA, "name"},
		{"acquire dotdot", "POST", "/halt?name=..&id=" + lockA, nodeA, "name"},
		{"release parent path", "DELETE", "/halt?name=../x&id=" + lockA, nodeA, "name"},
		{"query slash", "GET", "/halt?name=a/b", "", "name"},
		{"query missing name", "GET", "/halt", "", "name"},
		{"tx parent path", "POST", "/tx?name=../a.db&id=" + lockA, nodeA, "name"},
		{"tx slash", "POST", "/tx?name=x/a.db&id=" + lockA, nodeA, "name"},
		{"acquire id zero", "POST", "/halt?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"acquire id not hex", "POST", "/halt?name=a.db&id=zzzzzzzzzzzzzzzz", nodeA, "lock id"},
		{"acquire id too short", "POST", "/halt?name=a.db&id=1", nodeA, "lock id"},
		{"acquire id missing", "POST", "/halt?name=a.db", nodeA, "lock id"},
		{"acquire no Litefs-Id", "POST", "/halt?name=a.db&id=" + lockA, "", "Litefs-Id"},
		{"acquire bad Litefs-Id", "POST", "/halt?name=a.db&id=" + lockA, "not-hex", "Litefs-Id"},
		{"acquire bad wait", "POST", "/halt?name=a.db&id=" + lockA + "&wait=maybe", nodeA, "wait"},
		{"release id zero", "DELETE", "/halt?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"release no Litefs-Id", "DELETE", "/halt?name=a.db&id=" + lockA, "", "Litefs-Id"},
		{"tx id zero", "POST", "/tx?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"tx id not hex", "POST", "/tx?name=a.db&id=xyz", nodeA, "lock id"},
		{"tx no Litefs-Id", "POST", "/tx?name=a.db&id=" + lockA, "", "Litefs-Id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), nil)
			if code != nethttp.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", code, resp)
			}
			if !strings.Contains(resp, tt.why) {
				t.Fatalf("message %q does not mention %q", resp, tt.why)
			}
			if names := dbNames(t, e.store); len(names) != 1 || names[0] != "a.db" {
				t.Fatalf("databases now %v, want [a.db]", names)
			}
			ents, err := os.ReadDir(filepath.Join(e.dir, "dbs"))
			if err != nil || len(ents) != 1 || ents[0].Name() != "a.db" {
				t.Fatalf("data directory dbs/ holds %v (%v), want a.db only", ents, err)
			}
			if q := e.query(t); q.Held {
				t.Fatalf("GET /halt %+v, want not held", q)
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}
}

func TestHaltRequests_UnknownDatabaseIs404(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	tests := []struct{ method, path, node string }{
		{"POST", "/halt?name=nope.db&id=" + lockA, nodeA},
		{"DELETE", "/halt?name=nope.db&id=" + lockA, nodeA},
		{"GET", "/halt?name=nope.db", ""},
		{"POST", "/tx?name=nope.db&id=" + lockA, nodeA},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, strings.NewReader("x"), nil)
			if code != nethttp.StatusNotFound {
				t.Fatalf("status %d %s, want 404", code, body)
			}
			apiRefusal(t, body, codeNotFound, "nope.db", "not found")
			if e.store.DB("nope.db") != nil {
				t.Fatal("nope.db was created")
			}
		})
	}
}

func TestHaltRequests_OnAReplicaAre503NotPrimary(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	before := snapshotDB(t, e.db)
	e.store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-1", AdvertiseURL: "http://node-1:20202"})
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct{ method, path, node string }{
		{"POST", "/halt?name=a.db&id=" + lockA, nodeA},
		{"POST", "/halt?name=a.db&id=" + lockA + "&renew=1", nodeA},
		{"DELETE", "/halt?name=a.db&id=" + lockA, nodeA},
		{"GET", "/halt?name=a.db", ""},
		{"POST", "/tx?name=a.db&id=" + lockA, nodeA},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), nil)
			if code != nethttp.StatusServiceUnavailable {
				t.Fatalf("status %d %s, want 503", code, resp)
			}
			apiRefusal(t, resp, codeNotPrimary, "primary")
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}
	if _, held := e.db.HaltHolder(); held {
		t.Fatal("a HALT was granted on a replica")
	}
}

func TestHaltRequests_AuthTokenRequired(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{AuthToken: "s3cret"})
	before := snapshotDB(t, e.db)
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct {
		name, method, path, node, auth string
		want                           int
	}{
		{"acquire without token", "POST", "/halt?name=a.db&id=" + lockA, nodeA, "", 401},
		{"acquire wrong token", "POST", "/halt?name=a.db&id=" + lockA, nodeA, "Bearer nope", 401},
		{"query without token", "GET", "/halt?name=a.db", "", "", 401},
		{"release without token", "DELETE", "/halt?name=a.db&id=" + lockA, nodeA, "", 401},
		{"tx without token", "POST", "/tx?name=a.db&id=" + lockA, nodeA, "", 401},
		{"query right token", "GET", "/halt?name=a.db", "", "Bearer s3cret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), hdr)
			if code != tt.want {
				t.Fatalf("status %d %s, want %d", code, resp, tt.want)
			}
			if code == 401 && !strings.Contains(resp, "auth") {
				t.Fatalf("401 message does not say why: %q", resp)
			}
			if _, held := e.db.HaltHolder(); held {
				t.Fatal("a HALT was granted without the token")
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}

	// With the token the whole cycle works.
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if code, resp := haltCall(t, "POST", e.ts.URL+"/halt?name=a.db&id="+lockA, nodeA, nil, auth); code != 200 {
		t.Fatalf("acquire with the token: %d %s", code, resp)
	}
	if code, resp := haltCall(t, "POST", e.ts.URL+"/tx?name=a.db&id="+lockA, nodeA, bytes.NewReader(body), auth); code != 200 {
		t.Fatalf("tx with the token: %d %s", code, resp)
	}
	if code, resp := haltCall(t, "DELETE", e.ts.URL+"/halt?name=a.db&id="+lockA, nodeA, nil, auth); code != 200 {
		t.Fatalf("release with the token: %d %s", code, resp)
	}
}

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
	c2, _ := newClient(primaryInfo, token)
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
