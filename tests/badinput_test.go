package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

// Bad input must be refused loudly and before anything is served: a bad
// configuration (SPEC sections 2 and 3) and a database file that does not
// match its LTX history (SPEC section 6).

// runLitefsBounded runs the daemon binary with args and returns its exit
// code and combined output. A run that is still going after limit is killed
// and reported with code -1.
func runLitefsBounded(t *testing.T, limit time.Duration, dir string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonPath(t), args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return -1, out.String()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run litefs %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestBadInput_InvalidConfigIsRefusedBeforeMounting runs `litefs mount` with
// broken configurations: each must exit 1 or 2 with a message that names
// the problem, and leave nothing mounted.
func TestBadInput_InvalidConfigIsRefusedBeforeMounting(t *testing.T) {
	RequireFUSE(t)
	daemonPath(t)
	cases := []struct {
		name string
		// yaml is the config; DATA and MNT are replaced by real directories.
		yaml string
		// want must all appear in the output; "LINE(key)" is the 1-based
		// line of the first line of yaml containing key.
		want []string
	}{
		{
			name: "unknown key",
			yaml: "data:\n  dir: DATA\nfuse:\n  dir: MNT\n  allow-others: true\nlease:\n  type: static\n",
			want: []string{"allow-others", "LINE(allow-others)"},
		},
		{
			name: "unknown top-level key",
			yaml: "data:\n  dir: DATA\nfuse:\n  dir: MNT\nlease:\n  type: static\nreplicate-everything: yes\n",
			want: []string{"replicate-everything", "LINE(replicate-everything)"},
		},
		{
			name: "bad duration",
			yaml: "data:\n  dir: DATA\n  retention: 10 minutes\nfuse:\n  dir: MNT\nlease:\n  type: static\n",
			want: []string{"retention", "10 minutes"},
		},
		{
			name: "bad duration in lease",
			yaml: "data:\n  dir: DATA\nfuse:\n  dir: MNT\nlease:\n  type: static\n  reconnect-delay: 3x\n",
			want: []string{"reconnect-delay", "3x"},
		},
		{
			name: "fuse.dir equal to data.dir",
			yaml: "data:\n  dir: MNT\nfuse:\n  dir: MNT\nlease:\n  type: static\n",
			want: []string{"fuse.dir", "data.dir"},
		},
		{
			name: "fuse.dir equal to data.dir spelled differently",
			yaml: "data:\n  dir: MNT/\nfuse:\n  dir: MNT/../mnt\nlease:\n  type: static\n",
			want: []string{"fuse.dir", "data.dir"},
		},
		{
			name: "missing lease.type",
			yaml: "data:\n  dir: DATA\nfuse:\n  dir: MNT\nlease:\n  candidate: true\n",
			want: []string{"lease.type"},
		},
		{
			name: "no lease section",
			yaml: "data:\n  dir: DATA\nfuse:\n  dir: MNT\n",
			want: []string{"lease.type"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			mnt := filepath.Join(dir, "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := unmount(mnt); err != nil {
					t.Error(err)
				}
			})
			yaml := strings.NewReplacer("DATA", filepath.Join(dir, "data"), "MNT", mnt).Replace(c.yaml)
			cfg := filepath.Join(dir, "litefs.yml")
			if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out := runLitefsBounded(t, 30*time.Second, dir, "mount", "-config", cfg)
			if IsMounted(mnt) {
				t.Errorf("%s is mounted after a refused configuration", mnt)
			}
			if code != 1 && code != 2 {
				t.Errorf("exit code %d, want 1 or 2 (-1: still running after 30s)", code)
			}
			for _, w := range c.want {
				if strings.HasPrefix(w, "LINE(") {
					w = "line " + strconv.Itoa(lineOf(yaml, strings.TrimSuffix(strings.TrimPrefix(w, "LINE("), ")")))
				}
				if !strings.Contains(out, w) {
					t.Errorf("output does not mention %q", w)
				}
			}
			if t.Failed() {
				t.Logf("litefs.yml:\n%s\noutput:\n%s", yaml, out)
			}
		})
	}
}

// lineOf returns the 1-based number of the first line of text containing s.
func lineOf(text, s string) int {
	for i, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return i + 1
		}
	}
	return -1
}

// TestBadInput_MissingConfigFileIsRefused runs `litefs mount -config` on a
// path that does not exist.
func TestBadInput_MissingConfigFileIsRefused(t *testing.T) {
	RequireFUSE(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "no-such-litefs.yml")
	code, out := runLitefsBounded(t, 30*time.Second, dir, "mount", "-config", cfg)
	if code != 1 && code != 2 {
		t.Errorf("exit code %d, want 1 or 2", code)
	}
	if !strings.Contains(out, cfg) {
		t.Errorf("output does not name the missing file %s:\n%s", cfg, out)
	}
}

// TestBadInput_CorruptDatabaseIsNotServed damages a page that the last
// transaction did not write (so re-applying the last LTX file cannot repair
// it): the daemon must refuse to start, naming the database and both
// checksums, and must not mount.
func TestBadInput_CorruptDatabaseIsNotServed(t *testing.T) {
	RequireFUSE(t)
	n := StartNode(t, NodeOptions{})
	const name = "corrupt.db"
	db := openSingleConn(t, n.DBPath(name), "_journal_mode=DELETE&_sync=FULL")
	mustExec(t, db, "CREATE TABLE old(id INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, "CREATE TABLE recent(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) INSERT INTO old(v) SELECT randomblob(1000) FROM c")
	for i := 0; i < 3; i++ {
		mustExec(t, db, "INSERT INTO recent(v) VALUES (?)", fmt.Sprintf("small transaction %d", i))
	}
	if pages := queryInt(t, db, "PRAGMA page_count"); pages < 50 {
		t.Fatalf("database has %d pages, want at least 50", pages)
	}
	closeDB(t, db)
	var oldPages []int64
	for _, f := range strings.Fields(RunSQLite3(t, n.DBPath(name),
		"SELECT pageno FROM dbstat WHERE name = 'old' AND pagetype = 'leaf' ORDER BY pageno;\n")) {
		p, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("dbstat page number %q: %v", f, err)
		}
		oldPages = append(oldPages, p)
	}
	_, goodSum := ReadPos(t, n, name)
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}

	// The pages the last transaction wrote, from its LTX file.
	lastPages := lastLTXPages(t, filepath.Join(n.DataDir, "dbs", name, "ltx"))
	pgno := int64(0)
	for _, p := range oldPages {
		if p >= 10 && !slices.Contains(lastPages, uint32(p)) {
			pgno = p
			break
		}
	}
	if pgno == 0 {
		t.Fatalf("no leaf page of table old from page 10 on outside the last transaction's pages %v (old: %v)", lastPages, oldPages)
	}

	// Flip 64 bytes in the middle of that page.
	path := dataFile(n, name, "database")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := (pgno-1)*4096 + 2048
	buf := make([]byte, 64)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] ^= 0xff
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	badSum := FileChecksum(t, path)
	if badSum == goodSum {
		t.Fatal("the damage did not change the file's checksum")
	}
	t.Logf("damaged page %d: history says %016x, file now has %016x", pgno, goodSum, badSum)

	// Start the daemon again on the same directories.
	logStart := len(n.Log())
	n2 := StartNode(t, NodeOptions{Name: n.Name, Dir: n.Dir, NoWait: true})
	deadline := time.Now().Add(20 * time.Second)
	mountedAt := time.Time{}
	for n2.Running() && time.Now().Before(deadline) {
		if mountedAt.IsZero() && IsMounted(n2.MountDir) {
			mountedAt = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, err := n2.WaitExit(time.Second)
	if err != nil {
		t.Fatalf("the daemon is still running 20s after starting on a damaged database (mounted: %v): %v", IsMounted(n2.MountDir), err)
	}
	out := n2.Log()[logStart:]
	if code == 0 {
		t.Errorf("the daemon exited with code 0 on a damaged database")
	}
	if !mountedAt.IsZero() || IsMounted(n2.MountDir) {
		t.Errorf("%s was mounted although the database is damaged", n2.MountDir)
	}
	for _, w := range []string{name, fmt.Sprintf("%016x", goodSum), fmt.Sprintf("%016x", badSum)} {
		if !strings.Contains(out, w) {
			t.Errorf("the daemon's output does not mention %q (database name, history checksum, file checksum):\n%s", w, out)
		}
	}
}

// lastLTXPages returns the page numbers in the newest LTX file of dir.
func lastLTXPages(t *testing.T, dir string) []uint32 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ltx") && e.Name() > last {
			last = e.Name()
		}
	}
	if last == "" {
		t.Fatalf("no LTX file in %s", dir)
	}
	f, err := os.Open(filepath.Join(dir, last))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := ltx.NewDecoder(f)
	if err := dec.DecodeHeader(); err != nil {
		t.Fatalf("%s: %v", last, err)
	}
	buf := make([]byte, dec.Header().PageSize)
	var pgnos []uint32
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, buf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", last, err)
		}
		pgnos = append(pgnos, ph.Pgno)
	}
	if len(pgnos) == 0 || len(pgnos) > 5 {
		t.Fatalf("%s holds pages %v; the test needs a last transaction touching 1 to 5 pages", last, pgnos)
	}
	return pgnos
}
