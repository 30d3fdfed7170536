package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// cliResult is what one run of the command line produced.
type cliResult struct {
	code     int
	stdout   string
	stderr   string
	progress string // what went to progressOut
}

// runCLI runs the litefs command line in-process, capturing its output.
// LITEFS_AUTH_TOKEN is cleared unless the test sets it afterwards.
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr, prog bytes.Buffer
	old := progressOut
	progressOut = &prog
	defer func() { progressOut = old }()
	code := run(context.Background(), args, &stdout, &stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String(), progress: prog.String()}
}

// clearToken makes sure no auth token leaks in from the environment.
func clearToken(t *testing.T) {
	t.Helper()
	t.Setenv(authTokenEnv, "")
}

// fakeSQLite returns size bytes that pass the local SQLite header checks:
// the magic string, a page size of 4096, random content after the header.
func fakeSQLite(t *testing.T, size int) []byte {
	t.Helper()
	if size%4096 != 0 {
		t.Fatalf("fakeSQLite: size %d is not a multiple of 4096", size)
	}
	b := make([]byte, size)
	rand.New(rand.NewSource(int64(size))).Read(b)
	copy(b, sqliteHeader)
	binary.BigEndian.PutUint16(b[16:18], 4096)
	return b
}

// writeTemp writes data to a new file in a test directory and returns it.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// countingServer is an httptest server that counts its requests.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestUsageErrorsExitTwoAndNameTheProblem(t *testing.T) {
	clearToken(t)
	db := writeTemp(t, "db.sqlite", fakeSQLite(t, 4096))
	out := filepath.Join(t.TempDir(), "out.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"import without -name", []string{"import", db}, "missing required flag -name"},
		{"import with empty -name", []string{"import", "-name", "", db}, "missing required flag -name"},
		{"import with bad -name", []string{"import", "-name", "a/b", db}, `bad -name "a/b"`},
		{"import without PATH", []string{"import", "-name", "db"}, "want exactly one PATH argument"},
		{"import with two PATHs", []string{"import", "-name", "db", db, db}, "got 2"},
		{"import unknown flag", []string{"import", "-nmae", "db", db}, "-nmae"},
		{"import flag without value", []string{"import", db, "-name"}, "-name"},
		{"import bad -url", []string{"import", "-name", "db", "-url", "localhost:20202", db}, "bad -url"},
		{"export without -name", []string{"export", out}, "missing required flag -name"},
		{"export with bad -name", []string{"export", "-name", "..", out}, `bad -name ".."`},
		{"export without PATH", []string{"export", "-name", "db"}, "want exactly one PATH argument"},
		{"export bad -url scheme", []string{"export", "-name", "db", "-url", "ftp://x", out}, "bad -url"},
		{"status with argument", []string{"status", "extra"}, `unexpected argument "extra"`},
		{"status unknown flag", []string{"status", "-jsn"}, "-jsn"},
		{"status bad -url", []string{"status", "-url", "::"}, "bad -url"},
		{"mount unknown flag", []string{"mount", "-bogus"}, "flag provided but not defined: -bogus"},
		{"version with a flag", []string{"version", "-x"}, `unexpected argument "-x"`},
		{"version with an argument", []string{"version", "now"}, `unexpected argument "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.args...)
			if res.code != 2 {
				t.Fatalf("exit code %d, want 2 (stderr %q)", res.code, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", res.stderr, tt.want)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q, want nothing", res.stdout)
			}
		})
	}
}

func TestUsageErrorIsReportedOnce(t *testing.T) {
	res := runCLI(t, "mount", "-bogus")
	// -no-expand-env is a mount flag named once in the usage text; a flag
	// dump would name it again.
	if n := strings.Count(res.stderr, "-no-expand-env"); n != 1 {
		t.Fatalf("stderr names -no-expand-env %d times, want once (no flag dump besides the usage):\n%s", n, res.stderr)
	}
	if n := strings.Count(res.stderr, "flag provided but not defined"); n != 1 {
		t.Fatalf("the error appears %d times, want once:\n%s", n, res.stderr)
	}
}

func TestHelpOfMountAndVersionExitsZero(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"mount", "-h"}, "-with-lock"},
		{[]string{"mount", "--help"}, "-config"},
		{[]string{"version", "-h"}, "litefs version"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			res := runCLI(t, tt.args...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit code %d, stderr %q, want 0 and nothing", res.code, res.stderr)
			}
			if !strings.Contains(res.stdout, tt.want) {
				t.Fatalf("help %q does not mention %q", res.stdout, tt.want)
			}
		})
	}
}

func TestHelpFlagPrintsCommandUsageAndExitsZero(t *testing.T) {
	for _, cmd := range []string{"import", "export", "status"} {
		t.Run(cmd, func(t *testing.T) {
			res := runCLI(t, cmd, "-h")
			if res.code != 0 {
				t.Fatalf("exit code %d, want 0 (stderr %q)", res.code, res.stderr)
			}
			for _, want := range []string{"litefs " + cmd, "-url", authTokenEnv} {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("help %q does not mention %q", res.stdout, want)
				}
			}
		})
	}
}

func TestFlagsMayFollowPath(t *testing.T) {
	clearToken(t)
	var gotName atomic.Value
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotName.Store(r.URL.Query().Get("name"))
		w.Write([]byte(`{"txid":"0000000000000001","checksum":"8000000000000001"}`))
	})
	db := writeTemp(t, "db.sqlite", fakeSQLite(t, 4096))
	res := runCLI(t, "import", db, "-name", "late", "-url", srv.URL)
	if res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	if got := gotName.Load(); got != "late" {
		t.Errorf("server got name %q, want %q", got, "late")
	}
}

func TestUnreachableDaemonNamesURLAndSuggestsMount(t *testing.T) {
	clearToken(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	db := writeTemp(t, "db.sqlite", fakeSQLite(t, 4096))
	out := filepath.Join(t.TempDir(), "out.db")
	tests := []struct {
		name string
		args []string
	}{
		{"import", []string{"import", "-name", "db", "-url", url, db}},
		{"export", []string{"export", "-name", "db", "-url", url, out}},
		{"status", []string{"status", "-url", url}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.args...)
			if res.code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr %q)", res.code, res.stderr)
			}
			for _, want := range []string{"cannot reach litefs at " + url, "(is litefs mount running?)"} {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr %q does not contain %q", res.stderr, want)
				}
			}
		})
	}
}

func TestAuthTokenSentAsBearerAndRefusalExplained(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		wantCode int
		wantErr  string
	}{
		{"right token", "s3cret", 0, ""},
		{"no token", "", 1, "set LITEFS_AUTH_TOKEN"},
		{"wrong token", "nope", 1, "check that LITEFS_AUTH_TOKEN matches"},
	}
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "missing or wrong auth token", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"nodeID":"0000000000000001","role":"primary","dbs":{}}`))
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(authTokenEnv, tt.token)
			res := runCLI(t, "status", "-url", srv.URL)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d (stderr %q)", res.code, tt.wantCode, res.stderr)
			}
			if tt.wantErr != "" && !strings.Contains(res.stderr, "missing or wrong auth token (HTTP 401") {
				t.Errorf("stderr %q does not show the server's message and status", res.stderr)
			}
			if !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", res.stderr, tt.wantErr)
			}
		})
	}
}
