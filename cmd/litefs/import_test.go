package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestImportRefusesNonSQLiteFileWithoutSending(t *testing.T) {
	clearToken(t)
	srv, requests := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"txid":"0000000000000001","checksum":"8000000000000001"}`))
	})
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badPageSize := fakeSQLite(t, 4096)
	binary.BigEndian.PutUint16(badPageSize[16:18], 1000)
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing file", filepath.Join(dir, "nope.db"), "no such file"},
		{"directory", dir, "is a directory, not a regular file"},
		{"empty file", write("empty.db", nil), "the file is empty"},
		{"text file", write("notes.txt", []byte("hello, this is not a database at all\n")), "does not start with the header"},
		{"short header", write("short.db", []byte("SQLite form")), "does not start with the header"},
		{"header only", write("hdr.db", []byte(sqliteHeader)), "too short"},
		{"bad page size", write("badpage.db", badPageSize), "bad page size 1000"},
		{"truncated page", write("trunc.db", fakeSQLite(t, 8192)[:5000]), "not a multiple of its page size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, "import", "-name", "db", "-url", srv.URL, tt.path)
			if res.code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr %q)", res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.want) || !strings.Contains(res.stderr, tt.path) {
				t.Errorf("stderr %q does not contain %q and the path", res.stderr, tt.want)
			}
			if n := requests.Load(); n != 0 {
				t.Fatalf("server received %d requests, want none", n)
			}
		})
	}
}

func TestImportStreamsFileAndPrintsNewPosition(t *testing.T) {
	t.Setenv(authTokenEnv, "tok")
	data := fakeSQLite(t, 3*4096)
	var mu sync.Mutex
	var got []byte
	var gotReq *http.Request
	srv, requests := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		mu.Lock()
		got, gotReq = body, r
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"txid":"0000000000000007","checksum":"9abcdef012345678","extra":true}`))
	})
	path := writeTemp(t, "app.db", data)
	res := runCLI(t, "import", "-name", "app.db", "-url", srv.URL+"/", path)
	if res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	want := fmt.Sprintf("imported %s as app.db: txid 0000000000000007 checksum 9abcdef012345678\n", path)
	if res.stdout != want {
		t.Errorf("stdout %q, want %q", res.stdout, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := requests.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	checks := []struct{ what, got, want string }{
		{"method", gotReq.Method, http.MethodPost},
		{"path", gotReq.URL.Path, "/import"},
		{"name", gotReq.URL.Query().Get("name"), "app.db"},
		{"authorization", gotReq.Header.Get("Authorization"), "Bearer tok"},
		{"content length", fmt.Sprint(gotReq.ContentLength), fmt.Sprint(len(data))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
	if !bytes.Equal(got, data) {
		t.Errorf("server received %d bytes that differ from the %d-byte file", len(got), len(data))
	}
	if res.progress != "" {
		t.Errorf("progress printed for a small file: %q", res.progress)
	}
}

func TestImportReadsPositionInEveryResponseShape(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name   string
		header string
		body   string
		want   string
	}{
		{"flat JSON", "", `{"txid":"0000000000000003","checksum":"00000000000000aa"}`, "txid 0000000000000003 checksum 00000000000000aa"},
		{"nested pos", "", `{"name":"x","pos":{"txid":"0000000000000004","checksum":"00000000000000bb"},"created":true}`,
			"txid 0000000000000004 checksum 00000000000000bb"},
		{"header only", "0000000000000002/00000000000000ff", "ok\n", "txid 0000000000000002 checksum 00000000000000ff"},
		{"nothing", "", "", "txid - checksum -"},
	}
	path := writeTemp(t, "x.db", fakeSQLite(t, 4096))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if tt.header != "" {
					w.Header().Set("Litefs-Pos", tt.header)
				}
				io.WriteString(w, tt.body)
			})
			res := runCLI(t, "import", "-name", "x", "-url", srv.URL, path)
			if want := ": " + tt.want + "\n"; res.code != 0 || !strings.HasSuffix(res.stdout, want) {
				t.Errorf("exit %d stdout %q, want success ending in %q (stderr %q)", res.code, res.stdout, want, res.stderr)
			}
		})
	}
}

func TestImportShowsServerErrorVerbatim(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		want   string
	}{
		{"integrity check failed (text)", 400, "text/plain", "integrity check failed: *** in database main ***\nPage 3: btreeInitPage() returns error code 11\n",
			"integrity check failed: *** in database main ***\nPage 3: btreeInitPage() returns error code 11 (HTTP 400 Bad Request)"},
		{"bad name (json)", 400, "application/json", `{"error":"bad database name: \"..\""}`, `bad database name: ".." (HTTP 400 Bad Request)`},
		{"replica (409)", 409, "text/plain", "this node is a replica: import on the primary host-a (http://host-a:20202)",
			"this node is a replica: import on the primary host-a (http://host-a:20202) (HTTP 409 Conflict)"},
		{"empty body (500)", 500, "text/plain", "", "no error message from server (HTTP 500"},
	}
	path := writeTemp(t, "app.db", fakeSQLite(t, 2*4096))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", tt.ctype)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			res := runCLI(t, "import", "-name", "app", "-url", srv.URL, path)
			if res.code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr %q)", res.code, res.stderr)
			}
			wantPrefix := fmt.Sprintf("litefs: import %s as \"app\": ", path)
			if !strings.HasPrefix(res.stderr, wantPrefix) || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("stderr %q, want %q followed by %q", res.stderr, wantPrefix, tt.want)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing on failure", res.stdout)
			}
		})
	}
}

func TestImportShowsProgressForLargeFiles(t *testing.T) {
	clearToken(t)
	old := progressThreshold
	progressThreshold = 64 << 10
	defer func() { progressThreshold = old }()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"txid":"0000000000000001","checksum":"8000000000000001"}`))
	})
	path := writeTemp(t, "big.db", fakeSQLite(t, 256*4096)) // 1 MiB
	res := runCLI(t, "import", "-name", "big", "-url", srv.URL, path)
	if res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.progress), "\n")
	if len(lines) < 2 || len(lines) > 12 {
		t.Fatalf("got %d progress lines, want about one per 10%%:\n%s", len(lines), res.progress)
	}
	last := lines[len(lines)-1]
	for _, want := range []string{"import big:", "1.0 / 1.0 MiB", "(100%)", "MiB/s"} {
		if !strings.Contains(last, want) {
			t.Errorf("last progress line %q does not contain %q", last, want)
		}
	}
}

func TestImportWarnsAboutUncheckpointedWAL(t *testing.T) {
	clearToken(t)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"txid":"0000000000000001","checksum":"8000000000000001"}`))
	})
	path := writeTemp(t, "w.db", fakeSQLite(t, 4096))
	if err := os.WriteFile(path+"-wal", []byte("wal frames"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCLI(t, "import", "-name", "w", "-url", srv.URL, path)
	if res.code != 0 || !strings.Contains(res.progress, "-wal is not empty") {
		t.Errorf("exit %d, warnings %q: want success with a WAL warning", res.code, res.progress)
	}
}
