package litefs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A background LTX write that fails (a full disk) must not lose the file:
// it belongs to a transaction SQLite already committed. It stays queued,
// in order, is served by lookup, and lands on the next drain that succeeds.
func TestLTXWriter_FailedWriteStaysQueuedUntilItSucceeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ltx") // missing: every write fails
	w := newLTXWriter()
	files := []queuedLTX{{dir, "a", []byte("one")}, {dir, "b", []byte("two")}}
	for _, q := range files {
		w.enqueue(q)
	}
	if err := w.drain(); err == nil {
		t.Fatal("drain into a missing directory succeeded")
	}
	if !w.failing() {
		t.Fatal("failing() is false after a failed write")
	}
	if err := w.drain(); err == nil {
		t.Fatal("second drain succeeded: the failure was forgotten instead of retried")
	}
	for _, q := range files {
		if got := w.lookup(q.name); !bytes.Equal(got, q.data) {
			t.Fatalf("lookup(%s) = %q while the write fails, want %q", q.name, got, q.data)
		}
	}

	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w.enqueue(queuedLTX{dir, "c", []byte("three")})
	if err := w.drain(); err != nil {
		t.Fatalf("drain once the directory exists: %v", err)
	}
	if w.failing() {
		t.Fatal("failing() still true after a successful drain")
	}
	for _, q := range append(files, queuedLTX{dir, "c", []byte("three")}) {
		got, err := os.ReadFile(filepath.Join(dir, q.name))
		if err != nil || !bytes.Equal(got, q.data) {
			t.Fatalf("%s: %q (err %v), want %q", q.name, got, err, q.data)
		}
	}
}

// A write that runs out of space must not leave a short file under the
// name: no LTX file exists for a commit that failed.
func TestWriteFile_FailedWriteLeavesNoFile(t *testing.T) {
	dir := mountTestTmpfs(t, "64k")
	path := filepath.Join(dir, "big")
	err := writeFile(path, make([]byte, 1<<20), false)
	if err == nil {
		t.Fatal("1 MiB fit on a 64 KiB tmpfs")
	}
	if _, serr := os.Stat(path); !os.IsNotExist(serr) {
		t.Fatalf("after %v, %s exists (stat: %v)", err, path, serr)
	}
}
