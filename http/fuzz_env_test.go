package http

import (
	"bytes"
	"context"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/litefs/litefs"
)

// fuzzEnv is the primary the handler fuzz targets send requests to: a real
// store on a temporary directory with two real SQLite databases (a.db at
// TXID 2, b.db at TXID 1), served by a real Server. Requests go straight to
// its handler (httptest.NewRecorder): no socket per input.
type fuzzEnv struct {
	store   *litefs.Store
	db      *litefs.DB // a.db
	handler nethttp.Handler
	tempDir string // the server's temporary directory: empty between requests
}

// newFuzzEnv builds the environment once per fuzzing process.
func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	s, err := litefs.OpenStore(context.Background(), litefs.StoreOptions{
		Dir: tb.TempDir(), StrictVerify: true, SkipSync: true, Logger: quietLogger(),
		HaltTTL: time.Hour, HaltAcquireTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	db := createDBWithTxs(tb, s, "a.db", makeSQLiteFile(tb, 5), makeSQLiteFile(tb, 5))
	createDBWithTxs(tb, s, "b.db", makeSQLiteFile(tb, 3))
	e := &fuzzEnv{store: s, db: db, tempDir: tb.TempDir()}
	e.handler = NewServer(s, ServerOptions{
		Logger: quietLogger(), TempDir: e.tempDir,
		MaxImportSize: 1 << 20, MaxTxSize: 1 << 20, WriteTimeout: 10 * time.Second,
	}).Handler()
	return e
}

// streamNodes gives nodes A and B live replication streams (served on a
// socket by the same handler): a HALT is granted only to a streaming node,
// so without them every /halt and /tx input would stop at that check.
func (e *fuzzEnv) streamNodes(tb testing.TB) {
	tb.Helper()
	ts := httptest.NewServer(e.handler)
	tb.Cleanup(ts.Close)
	for _, node := range []string{nodeA, nodeB} {
		openDrainedStream(tb, ts.URL+"/stream", node, "")
	}
}

// serve sends one request to the handler. ok is false when method and
// target do not make a request (net/http would refuse it before any
// handler).
func (e *fuzzEnv) serve(method, target, node string, body []byte) (code int, resp []byte, ok bool) {
	req, err := nethttp.NewRequest(method, "http://127.0.0.1"+target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, false
	}
	if node != "" {
		req.Header.Set(HeaderNodeID, node)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, req.WithContext(ctx))
	return rec.Code, rec.Body.Bytes(), true
}

// fuzzMaxFile bounds the database files a fuzz input may leave behind.
const fuzzMaxFile = 64 << 20

// fuzzStoreState is the state of every database of a store.
type fuzzStoreState map[string]dbState

// state reads every database's position, file and history.
func (e *fuzzEnv) state(t *testing.T) fuzzStoreState {
	t.Helper()
	s := fuzzStoreState{}
	for _, db := range e.store.DBs() {
		if fi, err := os.Stat(filepath.Join(db.Dir(), litefs.DatabaseFileName)); err == nil && fi.Size() > fuzzMaxFile {
			t.Fatalf("database %s grew to %d bytes", db.Name(), fi.Size())
		}
		s[db.Name()] = snapshotDB(t, db)
	}
	return s
}

// mustEqual fails t unless every database is as in s and no database was
// added or removed.
func (s fuzzStoreState) mustEqual(t *testing.T, after fuzzStoreState, what string) {
	t.Helper()
	if len(after) != len(s) {
		t.Fatalf("%s: databases %v, before %v", what, slices.Sorted(mapKeys(after)), slices.Sorted(mapKeys(s)))
	}
	for name, st := range s {
		if _, ok := after[name]; !ok {
			t.Fatalf("%s: database %s is gone", what, name)
		}
		st.mustEqual(t, after[name])
	}
}

// mapKeys returns an iterator over m's keys.
func mapKeys(m fuzzStoreState) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkClean fails t unless the server's temporary directory is empty.
func (e *fuzzEnv) checkClean(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(e.tempDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > 0 {
		t.Fatalf("temporary files left behind: %s ...", ents[0].Name())
	}
}

// checkRefusal fails t unless a refused request's answer is a client or
// availability error whose body says what was wrong.
func checkRefusal(t *testing.T, code int, body []byte) {
	t.Helper()
	if code < 400 || code >= 500 && code != nethttp.StatusServiceUnavailable {
		t.Fatalf("status %d: %s", code, body)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		t.Fatalf("status %d without a message", code)
	}
}
