package http

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// openStream posts positions to url's /stream and returns its frame
// reader. The stream is closed when the test ends (or after 20 s).
func openStream(t *testing.T, url string, have map[string]ltx.Pos, query string) *FrameReader {
	t.Helper()
	req := StreamRequest{DBs: make(map[string]PosJSON)}
	for name, pos := range have {
		req.DBs[name] = NewPosJSON(pos)
	}
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	hreq, _ := nethttp.NewRequestWithContext(ctx, "POST", url+"/stream"+query, bytes.NewReader(b))
	hreq.Header.Set(HeaderNodeID, "00000000000000aa")
	resp, err := nethttp.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream status %d: %s", resp.StatusCode, msg)
	}
	return NewFrameReader(resp.Body)
}

// nextData returns the next frame that is not a Heartbeat, with an LTX
// body read into memory.
func nextData(t testing.TB, fr *FrameReader) (Frame, []byte) {
	t.Helper()
	for {
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		if f.Type == FrameHeartbeat {
			continue
		}
		var body []byte
		if f.Type == FrameLTX {
			if body, err = io.ReadAll(f.Body); err != nil {
				t.Fatal(err)
			}
		}
		return f, body
	}
}

// ltxFile returns the bytes of db's LTX file for txid.
func ltxFile(t *testing.T, db *litefs.DB, txid ltx.TXID) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(db.LTXDir(), ltx.FormatFilename(txid, txid)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// posAfter returns the position after LTX file txid of db (its header
// and trailer).
func posAfter(t *testing.T, db *litefs.DB, txid ltx.TXID) ltx.Pos {
	t.Helper()
	dec := ltx.NewDecoder(bytes.NewReader(ltxFile(t, db, txid)))
	if err := dec.Verify(); err != nil {
		t.Fatal(err)
	}
	return dec.PostApplyPos()
}

func TestStream_SendsMissingLTXFilesInOrderThenReadyThenNewCommits(t *testing.T) {
	store := openStore(t)
	db := createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 10), makeSQLiteFile(t, 15))
	_, ts := startServer(t, store, ServerOptions{})
	fr := openStream(t, ts.URL, map[string]ltx.Pos{"a.db": posAfter(t, db, 1)}, "")

	for _, txid := range []ltx.TXID{2, 3} {
		f, body := nextData(t, fr)
		if f.Type != FrameLTX || f.Name != "a.db" || !bytes.Equal(body, ltxFile(t, db, txid)) {
			t.Fatalf("frame %v %q (%d bytes), want ltx file %s of a.db", f.Type, f.Name, len(body), txid)
		}
	}
	if f, _ := nextData(t, fr); f.Type != FrameReady || time.Since(f.Time) > 10*time.Second {
		t.Fatalf("frame %v at %v, want ready", f.Type, f.Time)
	}

	// A new commit is pushed at once, not at the next heartbeat.
	start := time.Now()
	writeTx(t, db, makeSQLiteFile(t, 20))
	f, body := nextData(t, fr)
	if f.Type != FrameLTX || !bytes.Equal(body, ltxFile(t, db, 4)) {
		t.Fatalf("frame %v (%d bytes), want ltx file 4", f.Type, len(body))
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("commit reached the stream after %s", d)
	}

	// Idle: heartbeats about every second, carrying the primary's clock.
	hb, err := fr.Next()
	if err != nil || hb.Type != FrameHeartbeat || time.Since(hb.Time) > 3*time.Second {
		t.Fatalf("frame %+v %v, want a recent heartbeat", hb, err)
	}
}

func TestStream_SendsNothingToAnUpToDateReplica(t *testing.T) {
	store := openStore(t)
	db := createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 5))
	store.CreateDB("empty.db") // never committed: nothing to send
	_, ts := startServer(t, store, ServerOptions{})
	fr := openStream(t, ts.URL, map[string]ltx.Pos{"a.db": db.Pos()}, "")
	if f, _ := nextData(t, fr); f.Type != FrameReady {
		t.Fatalf("frame %v, want ready straight away", f.Type)
	}
}

func TestStream_DropsDatabasesThePrimaryDoesNotHave(t *testing.T) {
	store := openStore(t)
	_, ts := startServer(t, store, ServerOptions{})
	gone := ltx.Pos{TXID: 3, PostApplyChecksum: ltx.ChecksumFlag | 5}
	fr := openStream(t, ts.URL, map[string]ltx.Pos{"gone.db": gone}, "")
	if f, _ := nextData(t, fr); f.Type != FrameDrop || f.Name != "gone.db" {
		t.Fatalf("frame %v %q, want drop gone.db", f.Type, f.Name)
	}
	if f, _ := nextData(t, fr); f.Type != FrameReady {
		t.Fatalf("frame %v, want ready", f.Type)
	}

}

func TestStream_DropsADatabaseDeletedWhileStreaming(t *testing.T) {
	store := openStore(t)
	db := createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 5))
	_, ts := startServer(t, store, ServerOptions{})
	fr := openStream(t, ts.URL, map[string]ltx.Pos{"a.db": db.Pos()}, "")
	if f, _ := nextData(t, fr); f.Type != FrameReady {
		t.Fatalf("frame %v, want ready", f.Type)
	}
	if err := store.DeleteDB("a.db"); err != nil {
		t.Fatal(err)
	}
	if f, _ := nextData(t, fr); f.Type != FrameDrop || f.Name != "a.db" {
		t.Fatalf("frame %v %q, want drop a.db", f.Type, f.Name)
	}
}

func TestStream_FilterLimitsTheDatabasesSent(t *testing.T) {
	store := openStore(t)
	a := createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 6))
	b := createDBWithTxs(t, store, "b.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 6))
	_, ts := startServer(t, store, ServerOptions{})
	have := map[string]ltx.Pos{"a.db": posAfter(t, a, 1), "b.db": posAfter(t, b, 1), "c.db": {TXID: 1, PostApplyChecksum: ltx.ChecksumFlag}}
	fr := openStream(t, ts.URL, have, "?filter=b.db")
	if f, _ := nextData(t, fr); f.Type != FrameLTX || f.Name != "b.db" {
		t.Fatalf("frame %v %q, want ltx of b.db only", f.Type, f.Name)
	}
	if f, _ := nextData(t, fr); f.Type != FrameReady {
		t.Fatalf("frame %v %q, want ready (a.db and c.db are filtered out)", f.Type, f.Name)
	}
	writeTx(t, a, makeSQLiteFile(t, 7))
	writeTx(t, b, makeSQLiteFile(t, 7))
	if f, _ := nextData(t, fr); f.Type != FrameLTX || f.Name != "b.db" {
		t.Fatalf("frame %v %q, want ltx of b.db", f.Type, f.Name)
	}
}

func TestRunReplica_AdoptsClusterDropsStaleDatabaseAndReportsConnected(t *testing.T) {
	primary := openStore(t)
	if _, err := primary.CreateDB("empty.db"); err != nil {
		t.Fatal(err)
	}
	_, ts := startServer(t, primary, ServerOptions{})
	replica := openStore(t)
	createDBWithTxs(t, replica, "stale.db", makeSQLiteFile(t, 3))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: ts.URL, PrimaryHostname: "node-1", Logger: quietLogger()})
	}()
	waitFor(t, "replica connected and caught up", func() bool {
		return replicaConnected(replica) && replica.Lag() < time.Second && replica.DB("stale.db") == nil
	})
	if replica.ClusterID() == "" || replica.ClusterID() != primary.ClusterID() {
		t.Fatalf("replica cluster id %q, primary %q", replica.ClusterID(), primary.ClusterID())
	}
	if p := replica.Primary(); p == nil || p.Hostname != "node-1" || p.AdvertiseURL != ts.URL {
		t.Fatalf("replica's primary %+v", p)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunReplica returned %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunReplica did not return after cancel")
	}
	if replica.Connected() {
		t.Fatal("replica still marked connected after RunReplica returned")
	}
}

func TestRunReplica_OtherClusterStaysDisconnected(t *testing.T) {
	primary := openStore(t)
	_, ts := startServer(t, primary, ServerOptions{})
	replica := openStore(t)
	if err := replica.SetClusterID("LFSCOTHERCLUSTER"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: ts.URL, ReconnectDelay: 100 * time.Millisecond, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if replica.ClusterID() != "LFSCOTHERCLUSTER" {
		t.Fatalf("cluster id changed to %q", replica.ClusterID())
	}
	if replica.Connected() {
		t.Fatal("replica connected to another cluster")
	}
}

func TestRunReplica_ReconnectsAfterPrimaryRestart(t *testing.T) {
	primary := openStore(t)
	start := func(addr string) (*Server, context.CancelFunc, chan error) {
		srv := NewServer(primary, ServerOptions{Addr: addr, Logger: quietLogger(), TempDir: t.TempDir()})
		if err := srv.Listen(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		return srv, cancel, done
	}
	srv, stop, served := start("127.0.0.1:0")
	addr := srv.Addr().String()

	replica := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: "http://" + addr, ReconnectDelay: 50 * time.Millisecond, Logger: quietLogger()})
	waitFor(t, "first connection", func() bool { return replicaConnected(replica) })

	before := metrics.streamReconnects.Load()
	stop()
	<-served
	waitFor(t, "disconnect noticed", func() bool { return !replica.Connected() })
	_, stop2, served2 := start(addr)
	defer func() { stop2(); <-served2 }()
	waitFor(t, "reconnected", func() bool { return replicaConnected(replica) })
	if metrics.streamReconnects.Load() == before {
		t.Fatal("reconnect not counted")
	}
}

func TestRunReplica_RefusesBadOptions(t *testing.T) {
	store := openStore(t)
	for _, opts := range []ReplicaOptions{
		{PrimaryURL: ""},
		{PrimaryURL: "http://x", Databases: []string{"../etc"}},
	} {
		if err := RunReplica(context.Background(), store, opts); err == nil || !strings.Contains(err.Error(), "bad") {
			t.Fatalf("RunReplica(%+v) = %v, want an error", opts, err)
		}
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakePrimary answers /stream with frames written by write, counting
// connections.
func fakePrimary(t *testing.T, write func(w nethttp.ResponseWriter, fw *FrameWriter)) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	ts := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		hits.Add(1)
		w.Header().Set(HeaderClusterID, "LFSCFAKE")
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		write(w, NewFrameWriter(w))
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

func TestRunReplica_BadFramesChangeNothingAndReconnect(t *testing.T) {
	garbage := []byte("this is not an ltx file at all")
	tests := []struct {
		name  string
		write func(w nethttp.ResponseWriter, fw *FrameWriter)
	}{
		{"garbage ltx body", func(w nethttp.ResponseWriter, fw *FrameWriter) {
			fw.WriteLTX("a.db", bytes.NewReader(garbage), int64(len(garbage)))
		}},
		{"ltx body cut short", func(w nethttp.ResponseWriter, fw *FrameWriter) {
			w.Write(rawFrame(byte(FrameLTX), []byte("a.db"), append(u64(1000), garbage...)...))
		}},
		{"path in name", func(w nethttp.ResponseWriter, fw *FrameWriter) {
			w.Write(rawFrame(byte(FrameLTX), []byte("../a.db"), append(u64(uint64(len(garbage))), garbage...)...))
		}},
		{"unknown frame", func(w nethttp.ResponseWriter, fw *FrameWriter) { w.Write(rawFrame(42, nil)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, hits := fakePrimary(t, tt.write)
			replica := openStore(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: ts.URL, ReconnectDelay: 20 * time.Millisecond, Logger: quietLogger()})
			}()
			waitFor(t, "a reconnect", func() bool { return hits.Load() >= 2 })
			cancel()
			<-done
			if names := dbNames(t, replica); len(names) != 0 {
				t.Fatalf("databases created from bad frames: %v", names)
			}
			ents, _ := os.ReadDir(filepath.Join(filepath.Dir(replica.LocalDir()), "dbs"))
			if len(ents) != 0 {
				t.Fatalf("data directory has %d entries under dbs/", len(ents))
			}
		})
	}
}

func TestRunReplica_StalledStreamIsDropped(t *testing.T) {
	ts, hits := fakePrimary(t, func(w nethttp.ResponseWriter, fw *FrameWriter) {
		fw.WriteReady(time.Now())
		w.(nethttp.Flusher).Flush()
		time.Sleep(time.Second) // then nothing: no heartbeats
	})
	replica := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: ts.URL, ReconnectDelay: 20 * time.Millisecond,
			StallTimeout: 200 * time.Millisecond, Logger: quietLogger()})
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "connected", func() bool { return replicaConnected(replica) })
	waitFor(t, "stall noticed", func() bool { return !replica.Connected() })
	waitFor(t, "reconnect", func() bool { return hits.Load() >= 2 })
}

// replicaConnected reports whether s is a replica with its stream up (a
// store is primary, and so "connected", until RunReplica makes it a replica).
func replicaConnected(s *litefs.Store) bool { return s.Primary() != nil && s.Connected() }

func TestRunReplica_SendsTheAuthToken(t *testing.T) {
	primary := openStore(t)
	_, ts := startServer(t, primary, ServerOptions{AuthToken: "s3cret"})
	tests := []struct {
		name      string
		token     string
		connected bool
	}{
		{"right token", "s3cret", true},
		{"no token", "", false},
		{"wrong token", "nope", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replica := openStore(t)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			done := make(chan struct{})
			go func() {
				defer close(done)
				RunReplica(ctx, replica, ReplicaOptions{PrimaryURL: ts.URL, AuthToken: tt.token, ReconnectDelay: 20 * time.Millisecond, Logger: quietLogger()})
			}()
			defer func() { cancel(); <-done }()
			if tt.connected {
				waitFor(t, "connected", func() bool { return replicaConnected(replica) })
				return
			}
			time.Sleep(300 * time.Millisecond)
			if replicaConnected(replica) || replica.ClusterID() != "" {
				t.Fatal("replica connected without the right token")
			}
		})
	}
}

func TestExport_NeverWrittenDatabaseIsAnEmptyFile(t *testing.T) {
	store := openStore(t)
	if _, err := store.CreateDB("new.db"); err != nil {
		t.Fatal(err)
	}
	_, ts := startServer(t, store, ServerOptions{})
	if code, body := do(t, "GET", ts.URL+"/export?name=new.db", nil, nil); code != 200 || body != "" {
		t.Fatalf("status %d, %d bytes; want 200 and an empty body", code, len(body))
	}
}
