package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// exportServer imitates GET /export: it serves data for the database
// "app" and 404 for any other name.
func exportServer(t *testing.T, data []byte) string {
	t.Helper()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/export" {
			http.Error(w, "wrong endpoint "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		if name := r.URL.Query().Get("name"); name != "app" {
			http.Error(w, fmt.Sprintf("database %q not found", name), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data)
	})
	return srv.URL
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestExportWritesExactBytes(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name     string
		data     []byte
		existing []byte // PATH content before the export, nil: no file
	}{
		{"new file", fakeSQLite(t, 5*4096), nil},
		{"replaces existing file", fakeSQLite(t, 2*4096), []byte("old content")},
		{"empty database", []byte{}, []byte("old content")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := exportServer(t, tt.data)
			dir := t.TempDir()
			path := filepath.Join(dir, "copy.db")
			if tt.existing != nil {
				if err := os.WriteFile(path, tt.existing, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			res := runCLI(t, "export", "-name", "app", "-url", url, path)
			if res.code != 0 {
				t.Fatalf("exit code %d: %s", res.code, res.stderr)
			}
			if want := fmt.Sprintf("exported app to %s (%d bytes)\n", path, len(tt.data)); res.stdout != want {
				t.Errorf("stdout %q, want %q", res.stdout, want)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("PATH has %d bytes that differ from the %d sent", len(got), len(tt.data))
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("directory holds %q, want only copy.db", names)
			}
		})
	}
}

func TestExportIsAtomicOnFailure(t *testing.T) {
	clearToken(t)
	good := fakeSQLite(t, 4*4096)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"truncated body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(good)))
			w.Write(good[:len(good)/2])
		}, "download failed after 8192 bytes"},
		{"connection aborted mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Write(good[:4096])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, "download failed after 4096 bytes"},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "export \"app\": snapshot: disk I/O error", http.StatusInternalServerError)
		}, "export \"app\": snapshot: disk I/O error (HTTP 500"},
		{"no such database", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "database \"app\" not found", http.StatusNotFound)
		}, "database \"app\" not found (HTTP 404"},
		{"not a SQLite file", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("<html>", 100))
		}, "not a SQLite database"},
	}
	for _, tt := range tests {
		for _, existing := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/existing=%v", tt.name, existing), func(t *testing.T) {
				srv, _ := countingServer(t, tt.handler)
				dir := t.TempDir()
				path := filepath.Join(dir, "copy.db")
				old := []byte("previous export, must survive")
				if existing {
					if err := os.WriteFile(path, old, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				res := runCLI(t, "export", "-name", "app", "-url", srv.URL, path)
				if res.code != 1 {
					t.Fatalf("exit code %d, want 1 (stderr %q)", res.code, res.stderr)
				}
				if !strings.Contains(res.stderr, tt.want) {
					t.Errorf("stderr %q does not contain %q", res.stderr, tt.want)
				}
				checkUntouched(t, dir, path, existing, old)
			})
		}
	}
}

// checkUntouched checks that path still holds old (or still does not exist)
// and that nothing else was left in dir.
func checkUntouched(t *testing.T, dir, path string, existed bool, old []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	switch {
	case existed && err != nil:
		t.Errorf("existing PATH is gone: %v", err)
	case existed && !bytes.Equal(got, old):
		t.Errorf("existing PATH changed to %q", got)
	case !existed && err == nil:
		t.Errorf("PATH was created with %d bytes", len(got))
	}
	want := 0
	if existed {
		want = 1
	}
	if names := dirEntries(t, dir); len(names) != want {
		t.Errorf("directory holds %q, want %d file(s): a temporary file was left behind", names, want)
	}
}

func TestExportRefusesDirectoryPath(t *testing.T) {
	clearToken(t)
	srv, requests := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(fakeSQLite(t, 4096))
	})
	dir := t.TempDir()
	res := runCLI(t, "export", "-name", "app", "-url", srv.URL, dir)
	if res.code != 1 || !strings.Contains(res.stderr, "is a directory") {
		t.Errorf("exit %d stderr %q, want a refusal naming the directory", res.code, res.stderr)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("server received %d requests, want none", n)
	}
}

func TestExportShowsProgressForLargeDownloads(t *testing.T) {
	clearToken(t)
	old := progressThreshold
	progressThreshold = 64 << 10
	defer func() { progressThreshold = old }()
	url := exportServer(t, fakeSQLite(t, 512*4096)) // 2 MiB
	path := filepath.Join(t.TempDir(), "copy.db")
	res := runCLI(t, "export", "-name", "app", "-url", url, path)
	if res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.progress), "\n")
	if len(lines) < 2 || !strings.Contains(lines[len(lines)-1], "export app: 2.0 / 2.0 MiB (100%)") {
		t.Errorf("progress output %q, want several lines ending at 100%%", res.progress)
	}
}
