package http

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
)

func TestBadDatabaseNames_Refused400NothingCreated(t *testing.T) {
	store := openStore(t)
	_, ts := startServer(t, store, ServerOptions{})
	sqliteFile := makeSQLiteFile(t, 5)
	nodeHdr := map[string]string{HeaderNodeID: "00000000000000aa"}
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		header map[string]string
	}{
		{"export parent path", "GET", "/export?name=../x", "", nil},
		{"export slash", "GET", "/export?name=a/b", "", nil},
		{"export empty", "GET", "/export?name=", "", nil},
		{"export missing", "GET", "/export", "", nil},
		{"export dotdot", "GET", "/export?name=..", "", nil},
		{"export NUL", "GET", "/export?name=a%00b", "", nil},
		{"import parent path", "POST", "/import?name=../x", string(sqliteFile), nil},
		{"import slash", "POST", "/import?name=a/b", string(sqliteFile), nil},
		{"import empty", "POST", "/import?name=", string(sqliteFile), nil},
		{"import too long", "POST", "/import?name=" + strings.Repeat("x", 256), string(sqliteFile), nil},
		{"stream filter", "POST", "/stream?filter=a,../x", `{"dbs":{}}`, nodeHdr},
		{"stream body name", "POST", "/stream", `{"dbs":{"a/b":{"txid":"0000000000000001","checksum":"8000000000000001"}}}`, nodeHdr},
		{"stream body empty name", "POST", "/stream", `{"dbs":{"":{"txid":"0000000000000001","checksum":"8000000000000001"}}}`, nodeHdr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, tt.method, ts.URL+tt.path, strings.NewReader(tt.body), tt.header)
			if code != nethttp.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", code, body)
			}
			if !strings.Contains(body, "name") {
				t.Fatalf("message does not say what is wrong: %q", body)
			}
			if names := dbNames(t, store); len(names) != 0 {
				t.Fatalf("databases created: %v", names)
			}
		})
	}
}

func TestAuthToken_RequiredExceptMetricsAndHealthz(t *testing.T) {
	store := openStore(t)
	_, ts := startServer(t, store, ServerOptions{AuthToken: "s3cret"})
	sqliteFile := string(makeSQLiteFile(t, 5))
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		auth   string
		want   int
	}{
		{"info without token", "GET", "/info", "", "", 401},
		{"info wrong token", "GET", "/info", "", "Bearer nope", 401},
		{"info token without Bearer", "GET", "/info", "", "s3cret", 401},
		{"info right token", "GET", "/info", "", "Bearer s3cret", 200},
		{"import without token", "POST", "/import?name=a.db", sqliteFile, "", 401},
		{"stream without token", "POST", "/stream", `{"dbs":{}}`, "", 401},
		{"events without token", "GET", "/events", "", "", 401},
		{"pprof without token", "GET", "/debug/pprof/", "", "", 401},
		{"export without token", "GET", "/export?name=a.db", "", "", 401},
		{"metrics without token", "GET", "/metrics", "", "", 200},
		{"healthz without token", "GET", "/healthz", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			code, body := do(t, tt.method, ts.URL+tt.path, strings.NewReader(tt.body), hdr)
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, body, tt.want)
			}
			if code == 401 && !strings.Contains(body, "auth") {
				t.Fatalf("401 message does not say why: %q", body)
			}
			if names := dbNames(t, store); len(names) != 0 {
				t.Fatalf("databases created: %v", names)
			}
		})
	}
}

func TestStream_RefusedWithConflictOnReplica(t *testing.T) {
	store := openStore(t)
	store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-1", AdvertiseURL: "http://node-1:20202"})
	_, ts := startServer(t, store, ServerOptions{})
	code, body := do(t, "POST", ts.URL+"/stream", strings.NewReader(`{"dbs":{}}`), map[string]string{HeaderNodeID: "00000000000000aa"})
	if code != nethttp.StatusConflict {
		t.Fatalf("status %d, want 409", code)
	}
	if !contains(body, "not the primary", "node-1") {
		t.Fatalf("message does not name the primary: %q", body)
	}
}

func TestStream_MalformedRequestsRefused(t *testing.T) {
	store := openStore(t)
	id, err := store.EnsureClusterID()
	if err != nil {
		t.Fatal(err)
	}
	_, ts := startServer(t, store, ServerOptions{})
	self := litefs.FormatNodeID(store.NodeID())
	peer := "00000000000000aa"
	tests := []struct {
		name   string
		body   string
		header map[string]string
		want   int
	}{
		{"no node id", `{"dbs":{}}`, nil, 400},
		{"bad node id", `{"dbs":{}}`, map[string]string{HeaderNodeID: "xyz"}, 400},
		{"own node id", `{"dbs":{}}`, map[string]string{HeaderNodeID: self}, 400},
		{"not json", `garbage`, map[string]string{HeaderNodeID: peer}, 400},
		{"bad txid", `{"dbs":{"a.db":{"txid":"12","checksum":"8000000000000001"}}}`, map[string]string{HeaderNodeID: peer}, 400},
		{"bad checksum", `{"dbs":{"a.db":{"txid":"0000000000000001","checksum":"zz"}}}`, map[string]string{HeaderNodeID: peer}, 400},
		{"other cluster", `{"dbs":{}}`, map[string]string{HeaderNodeID: peer, HeaderClusterID: id + "X"}, 409},
		{"oversized body", `{"dbs":{}, "x":"` + strings.Repeat("x", maxJSONBodySize) + `"}`, map[string]string{HeaderNodeID: peer}, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, "POST", ts.URL+"/stream", strings.NewReader(tt.body), tt.header)
			if code != tt.want {
				t.Fatalf("status %d (%s), want %d", code, body, tt.want)
			}
			if strings.TrimSpace(body) == "" {
				t.Fatal("no message")
			}
		})
	}
}

func TestInfo_ReportsIdentityRoleAndPositions(t *testing.T) {
	primary := openStore(t)
	if _, err := primary.EnsureClusterID(); err != nil {
		t.Fatal(err)
	}
	db := createDBWithTxs(t, primary, "a.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 10))
	_, ts := startServer(t, primary, ServerOptions{Hostname: "node-1", AdvertiseURL: "http://node-1:20202", Candidate: true})

	replica := openStore(t)
	replica.SetReplica(&litefs.PrimaryInfo{Hostname: "node-1", AdvertiseURL: "http://node-1:20202"})
	_, rts := startServer(t, replica, ServerOptions{Hostname: "node-2"})

	tests := []struct {
		name      string
		url       string
		store     *litefs.Store
		role      string
		candidate bool
	}{
		{"primary", ts.URL, primary, RolePrimary, true},
		{"replica", rts.URL, replica, RoleReplica, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, "GET", tt.url+"/info", nil, nil)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			var info InfoResponse
			if err := json.Unmarshal([]byte(body), &info); err != nil {
				t.Fatal(err)
			}
			if info.NodeID != litefs.FormatNodeID(tt.store.NodeID()) || info.Role != tt.role || info.Candidate != tt.candidate {
				t.Fatalf("info %+v", info)
			}
			if info.Primary.Hostname != "node-1" || info.Primary.URL != "http://node-1:20202" {
				t.Fatalf("primary %+v, want node-1", info.Primary)
			}
			if tt.role == RolePrimary {
				if info.ClusterID == "" || info.ClusterID != primary.ClusterID() {
					t.Fatalf("cluster id %q, store %q", info.ClusterID, primary.ClusterID())
				}
				want := NewPosJSON(db.Pos())
				if got := info.DBs["a.db"]; got.PosJSON != want || len(got.TXID) != 16 || len(got.Checksum) != 16 {
					t.Fatalf("position %+v, want %+v", got, want)
				}
			}
		})
	}
}

func TestHealthz_StatusFollowsRoleConnectionAndLag(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *litefs.Store)
		want  int
		why   string
	}{
		{"primary", func(s *litefs.Store) {}, 200, "ok"},
		{"replica disconnected", func(s *litefs.Store) {
			s.SetReplica(&litefs.PrimaryInfo{Hostname: "p"})
		}, 503, "not connected"},
		{"replica connected, not caught up", func(s *litefs.Store) {
			s.SetReplica(&litefs.PrimaryInfo{Hostname: "p"})
			s.SetConnected(true, false, 0)
		}, 503, "not caught up"},
		{"replica within max lag", func(s *litefs.Store) {
			s.SetReplica(&litefs.PrimaryInfo{Hostname: "p"})
			s.SetConnected(true, true, 2*time.Second)
		}, 200, "ok"},
		{"replica beyond max lag", func(s *litefs.Store) {
			s.SetReplica(&litefs.PrimaryInfo{Hostname: "p"})
			s.SetConnected(true, true, 11*time.Second)
		}, 503, "lag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t)
			tt.setup(store)
			_, ts := startServer(t, store, ServerOptions{AuthToken: "tok"})
			code, body := do(t, "GET", ts.URL+"/healthz", nil, nil)
			if code != tt.want || !strings.Contains(body, tt.why) {
				t.Fatalf("status %d %q, want %d with %q", code, body, tt.want, tt.why)
			}
		})
	}
}

func TestMetrics_ExposesStoreState(t *testing.T) {
	store := openStore(t)
	createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 5), makeSQLiteFile(t, 6))
	_, ts := startServer(t, store, ServerOptions{})
	code, body := do(t, "GET", ts.URL+"/metrics", nil, nil)
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	for _, want := range []string{
		`litefs_db_txid{db="a.db"} 2`, "litefs_is_primary 1", "# TYPE litefs_subscribers gauge",
		"litefs_stream_reconnects_total", `litefs_snapshots_total{direction="sent"}`,
		`litefs_snapshot_bytes_total{direction="received"}`, "litefs_lag_seconds 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// litefsGoEvent mirrors github.com/superfly/litefs-go's event types, whose
// JSON this server must produce.
type litefsGoEvent struct {
	Type string          `json:"type"`
	DB   string          `json:"db,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
}

type litefsGoTxData struct {
	TXID              string    `json:"txID"`
	PostApplyChecksum string    `json:"postApplyChecksum"`
	PageSize          uint32    `json:"pageSize"`
	Commit            uint32    `json:"commit"`
	Timestamp         time.Time `json:"timestamp"`
}

type litefsGoRoleData struct {
	IsPrimary bool   `json:"isPrimary"`
	Hostname  string `json:"hostname,omitempty"`
}

func TestEvents_InitThenOneTxEventPerCommitThenPrimaryChange(t *testing.T) {
	store := openStore(t)
	db := createDBWithTxs(t, store, "a.db", makeSQLiteFile(t, 3))
	_, ts := startServer(t, store, ServerOptions{Hostname: "node-1"})
	resp, err := nethttp.Get(ts.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	next := func() litefsGoEvent {
		t.Helper()
		var ev litefsGoEvent
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}

	ev := next()
	var role litefsGoRoleData
	if err := json.Unmarshal(ev.Data, &role); err != nil || ev.Type != "init" || !role.IsPrimary || role.Hostname != "node-1" {
		t.Fatalf("first event %s %s (%v), want init primary node-1", ev.Type, ev.Data, err)
	}

	c2, c3 := makeSQLiteFile(t, 20), makeSQLiteFile(t, 40)
	writeTx(t, db, c2)
	writeTx(t, db, c3)
	for want := 2; want <= 3; want++ {
		ev := next()
		var tx litefsGoTxData
		if err := json.Unmarshal(ev.Data, &tx); err != nil || ev.Type != "tx" || ev.DB != "a.db" {
			t.Fatalf("event %s %s %s (%v), want tx for a.db", ev.Type, ev.DB, ev.Data, err)
		}
		if tx.TXID != strings.Repeat("0", 15)+string(rune('0'+want)) || tx.PageSize != 4096 || tx.Commit == 0 ||
			len(tx.PostApplyChecksum) != 16 || time.Since(tx.Timestamp) > time.Minute {
			t.Fatalf("tx event %+v", tx)
		}
	}

	// A role change is reported.
	store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-2"})
	ev = next()
	if err := json.Unmarshal(ev.Data, &role); err != nil || ev.Type != "primaryChange" || role.IsPrimary || role.Hostname != "node-2" {
		t.Fatalf("event %s %s (%v), want primaryChange to replica of node-2", ev.Type, ev.Data, err)
	}
}

func TestImport_RefusesInvalidFilesAndChangesNothing(t *testing.T) {
	good := makeSQLiteFile(t, 50)
	corrupt := append([]byte{}, good...)
	for i := 2 * 4096; i < 3*4096; i++ { // wreck a b-tree page
		corrupt[i] = 0xA5
	}
	badPageSize := append([]byte{}, good...)
	badPageSize[16], badPageSize[17] = 0x03, 0x00 // 768
	tests := []struct {
		name string
		body []byte
		why  string
	}{
		{"empty", nil, "too short"},
		{"not sqlite", bytes.Repeat([]byte("hello world "), 1000), "not a SQLite database"},
		{"truncated", good[:len(good)-100], "whole number"},
		{"missing pages", good[:len(good)-4096], "header says"},
		{"bad page size", badPageSize, "page size"},
		{"corrupt page", corrupt, "integrity check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := openStore(t)
			db := createDBWithTxs(t, store, "existing.db", makeSQLiteFile(t, 3))
			before := db.Pos()
			_, ts := startServer(t, store, ServerOptions{})
			for _, name := range []string{"new.db", "existing.db"} {
				code, body := do(t, "POST", ts.URL+"/import?name="+name, bytes.NewReader(tt.body), nil)
				if code != 400 || !strings.Contains(body, tt.why) {
					t.Fatalf("import into %s: status %d %q, want 400 with %q", name, code, body, tt.why)
				}
			}
			if names := dbNames(t, store); len(names) != 1 || db.Pos() != before {
				t.Fatalf("store changed: dbs %v, pos %v -> %v", names, before, db.Pos())
			}
		})
	}
}

func TestImport_RefusedOnReplicaAndOversized(t *testing.T) {
	store := openStore(t)
	_, ts := startServer(t, store, ServerOptions{MaxImportSize: 8192})
	code, body := do(t, "POST", ts.URL+"/import?name=a.db", bytes.NewReader(makeSQLiteFile(t, 100)), nil)
	if code != nethttp.StatusRequestEntityTooLarge || !strings.Contains(body, "limit") {
		t.Fatalf("oversized import: %d %q, want 413", code, body)
	}
	store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-1"})
	code, body = do(t, "POST", ts.URL+"/import?name=a.db", bytes.NewReader(makeSQLiteFile(t, 1)), nil)
	if code != nethttp.StatusForbidden || !contains(body, "replica", "node-1") {
		t.Fatalf("import on replica: %d %q, want 403 naming the primary", code, body)
	}
	if names := dbNames(t, store); len(names) != 0 {
		t.Fatalf("databases created: %v", names)
	}
}

func TestExport_UnknownDatabaseIs404(t *testing.T) {
	store := openStore(t)
	_, ts := startServer(t, store, ServerOptions{})
	if code, body := do(t, "GET", ts.URL+"/export?name=nope.db", nil, nil); code != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("status %d %q, want 404", code, body)
	}
}

func TestServer_ListenFailsAtOnceWhenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := NewServer(openStore(t), ServerOptions{Addr: ln.Addr().String(), Logger: quietLogger()})
	if err := srv.Listen(); err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Listen on a taken port: %v", err)
	}
	if srv.Addr() != nil {
		t.Fatal("Addr set after a failed Listen")
	}
}

func TestServer_ShutdownEndsStreamsWithEndFrame(t *testing.T) {
	store := openStore(t)
	srv := NewServer(store, ServerOptions{Addr: "127.0.0.1:0", Logger: quietLogger(), TempDir: t.TempDir()})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	req, _ := nethttp.NewRequest("POST", "http://"+srv.Addr().String()+"/stream", strings.NewReader(`{"dbs":{}}`))
	req.Header.Set(HeaderNodeID, "00000000000000aa")
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(HeaderClusterID) == "" {
		t.Fatalf("status %d, cluster id %q", resp.StatusCode, resp.Header.Get(HeaderClusterID))
	}
	fr := NewFrameReader(resp.Body)
	if f, err := fr.Next(); err != nil || f.Type != FrameReady {
		t.Fatalf("first frame %+v %v, want ready", f, err)
	}
	cancel()
	for {
		f, err := fr.Next()
		if err != nil {
			t.Fatalf("stream ended without an End frame: %v", err)
		}
		if f.Type == FrameEnd {
			break
		}
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestServer_NoTempFilesLeft(t *testing.T) {
	// Refused imports clean up after themselves.
	store := openStore(t)
	tmp := t.TempDir()
	_, ts := startServer(t, store, ServerOptions{TempDir: tmp})
	do(t, "POST", ts.URL+"/import?name=a.db", strings.NewReader("not a database at all, not at all.............................................................."), nil)
	ents, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("temp file left: %s", filepath.Join(tmp, e.Name()))
	}
}
