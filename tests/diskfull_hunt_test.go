package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Issue 14, item 4, second half: once, on a brand-new database in a fresh
// daemon with a tmpfs data directory, `PRAGMA journal_mode=WAL; CREATE
// TABLE f(...)` reported success and the table never existed. This test
// hunts for it: a few hundred fresh databases, first with space, then with
// the disk nearly full (a different number of free pages each time), each
// created by the sqlite3 command line as in the report. Every database
// whose script succeeded must have its table, before and after restarts of
// the daemon; one whose script failed must not have it.

// huntResult is the outcome of one fresh database.
type huntResult struct {
	name string
	ok   bool   // the sqlite3 script reported success
	out  string // its output, for the failure message
}

const (
	huntIterations = 300              // at most this many fresh databases
	huntBudget     = 75 * time.Second // and at most this long
	huntRestarts   = 3                // fresh daemons along the way
)

func TestDiskFull_FreshWALDatabasesKeepWhatSQLiteReported(t *testing.T) {
	p := startNodeOnTmpfs(t, "20m", NodeOptions{})
	var results []huntResult
	filler := ""
	deadline := time.Now().Add(huntBudget)
	for i := 0; i < huntIterations && time.Now().Before(deadline); i++ {
		full := i%2 == 1 // alternate: with space, nearly full
		if full {
			filler = leaveFree(t, p.DataDir, int64(i/2%24)*4096)
		} else if filler != "" {
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			filler = ""
		}
		results = append(results, huntOne(t, p, fmt.Sprintf("h%03d", i), huntScripts[i%len(huntScripts)]))
		if (i+1)%(huntIterations/(huntRestarts+1)) == 0 {
			huntCheck(t, p, results, &filler)
			p.Restart(t)
			huntCheck(t, p, results, &filler)
		}
	}
	huntCheck(t, p, results, &filler)
	p.Restart(t)
	huntCheck(t, p, results, &filler)
	ok := 0
	for _, r := range results {
		if r.ok {
			ok++
		}
	}
	t.Logf("%d fresh databases, %d scripts succeeded, %d failed", len(results), ok, len(results)-ok)
	if ok == 0 || ok == len(results) {
		t.Fatalf("%d of %d scripts succeeded: the hunt needs both outcomes", ok, len(results))
	}
}

// huntScripts are the scripts a fresh database is created with: the
// reported one (the sqlite3 shell's default synchronous=FULL), and with
// synchronous=NORMAL, where SQLite does not fsync the WAL at a commit and
// litefs records it only at the unlock.
var huntScripts = []string{
	"PRAGMA journal_mode=WAL;\nCREATE TABLE f(a INTEGER PRIMARY KEY, b TEXT);\n",
	"PRAGMA journal_mode=WAL;\nCREATE TABLE f(a INTEGER PRIMARY KEY, b TEXT);\n",
	"PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\nCREATE TABLE f(a INTEGER PRIMARY KEY, b TEXT);\n",
}

// huntOne creates database name with script.
func huntOne(t *testing.T, p *Node, name, script string) huntResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), SQLite3Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sqlite3", "-bail", p.DBPath(name))
	cmd.Stdin = strings.NewReader(script)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sqlite3 on %s hung: %s", name, out)
	}
	return huntResult{name: name, ok: err == nil, out: string(out)}
}

// huntCheck frees the space, then checks every database: the table exists
// exactly when its script succeeded, and -pos is past 0 for those.
func huntCheck(t *testing.T, p *Node, results []huntResult, filler *string) {
	t.Helper()
	if *filler != "" {
		if err := os.Remove(*filler); err != nil {
			t.Fatal(err)
		}
		*filler = ""
	}
	for _, r := range results {
		has := huntHasTable(t, p, r.name)
		switch {
		case r.ok && !has:
			t.Fatalf("%s: the script succeeded (%q) but table f does not exist (position %s, files %v)",
				r.name, r.out, huntPos(p, r.name), huntFiles(p, r.name))
		case !r.ok && has:
			t.Fatalf("%s: the script failed (%q) but table f exists", r.name, r.out)
		}
		pp, err := tryReadPos(p, r.name)
		if has && (err != nil || pp.txid == 0) {
			t.Fatalf("%s: table f exists but the position is %s (%v): the commit was never recorded (files %v)",
				r.name, pp, err, huntFiles(p, r.name))
		}
		// The check's sqlite3 closed the database last, with space: the WAL
		// is checkpointed and gone, so the file must be what -pos says.
		if _, werr := os.Stat(dataFile(p, r.name, "wal")); err == nil && os.IsNotExist(werr) {
			if pp.txid == 0 {
				pp.sum = 1 << 63 // no history: the checksum of an empty file
			}
			if sum := FileChecksum(t, dataFile(p, r.name, "database")); sum != pp.sum {
				t.Fatalf("%s (script ok: %v, %q): position %s, but the database file's checksum is %016x (files %v)",
					r.name, r.ok, r.out, pp, sum, huntFiles(p, r.name))
			}
		}
	}
}

// huntHasTable reports whether database name has table f.
func huntHasTable(t *testing.T, p *Node, name string) bool {
	t.Helper()
	if _, err := os.Stat(p.DBPath(name)); os.IsNotExist(err) {
		return false
	}
	out := RunSQLite3(t, p.DBPath(name), "SELECT count(*) FROM sqlite_master WHERE name = 'f';\n")
	return strings.TrimSpace(out) == "1"
}

// huntPos returns the -pos of name as text, or the error reading it.
func huntPos(p *Node, name string) string {
	pp, err := tryReadPos(p, name)
	if err != nil {
		return err.Error()
	}
	return pp.String()
}

// huntFiles lists name's backing files with their sizes.
func huntFiles(p *Node, name string) []string {
	var out []string
	for _, kind := range []string{"database", "wal", "shm", "journal"} {
		if fi, err := os.Stat(dataFile(p, name, kind)); err == nil {
			out = append(out, fmt.Sprintf("%s=%d", kind, fi.Size()))
		}
	}
	return out
}

// leaveFree fills the file system of dir, then frees free bytes of it, and
// returns the filler's path.
func leaveFree(t *testing.T, dir string, free int64) string {
	t.Helper()
	path := fillDisk(t, dir)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(0, fi.Size()-free)); err != nil {
		t.Fatal(err)
	}
	return path
}
