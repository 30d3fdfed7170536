package http

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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
	srv   *Server
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
	srv, ts := startServer(t, s, srvOpts)
	e := &haltEnv{dir: dir, store: s, db: db, ts: ts, srv: srv}
	for _, node := range []string{nodeA, nodeB, nodeC} {
		e.streamAs(t, node, srvOpts.AuthToken)
	}
	return e
}

// streamAs opens a replication stream from the primary as node, as a
// replica's daemon does (a HALT is granted only to a streaming node), and
// drains it in the background until the test ends.
func (e *haltEnv) streamAs(t *testing.T, node, token string) {
	t.Helper()
	openDrainedStream(t, e.ts.URL+"/stream", node, token)
}

// openDrainedStream opens a replication stream as node (streamURL is the
// primary's /stream URL, with a query if any), waits for its first frame and
// drains it in the background until stop is called or the test ends.
func openDrainedStream(tb testing.TB, streamURL, node, token string) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := nethttp.NewRequestWithContext(ctx, "POST", streamURL, strings.NewReader(`{"dbs":{}}`))
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	req.Header.Set(HeaderNodeID, node)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatalf("stream as %s: %v", node, err)
	}
	done := make(chan struct{})
	tb.Cleanup(func() { cancel(); <-done })
	if resp.StatusCode != 200 {
		resp.Body.Close()
		close(done)
		tb.Fatalf("stream as %s: status %d", node, resp.StatusCode)
		return nil
	}
	fr := NewFrameReader(resp.Body)
	if f, _ := nextData(tb, fr); f.Type != FrameLTX && f.Type != FrameReady {
		tb.Fatalf("stream as %s: first frame %v, want the stream to be up", node, f.Type)
	}
	go func() {
		defer close(done)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
	}()
	return cancel
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
func dbFileBytes(t testing.TB, db *litefs.DB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(db.Dir(), litefs.DatabaseFileName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

// pageSizeOf reads the page size from a SQLite database header.
func pageSizeOf(t testing.TB, b []byte) uint32 {
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
func forwardedTx(t testing.TB, db *litefs.DB, next []byte, edit func(hdr *ltx.Header, post *ltx.Checksum)) []byte {
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

// srvStreaming reports whether the server has a live stream from node.
func (e *haltEnv) srvStreaming(node string) bool {
	id, err := parseNodeID(node)
	if err != nil {
		panic(err)
	}
	e.srv.streams.mu.Lock()
	defer e.srv.streams.mu.Unlock()
	for ss := range e.srv.streams.live {
		if ss.nodeID == id {
			return true
		}
	}
	return false
}
