package tests

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"hash/crc64"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
	"github.com/superfly/ltx"
)

// SQLite3Timeout bounds one RunSQLite3 call.
const SQLite3Timeout = 60 * time.Second

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// OpenDB opens path with github.com/mattn/go-sqlite3, a 5 s busy timeout and
// the extra DSN parameters in params (e.g. "_journal_mode=WAL&_sync=FULL"),
// checks the connection and closes the handle in t.Cleanup.
func OpenDB(t testing.TB, path string, params string) *sql.DB {
	t.Helper()
	dsn := "file:" + path + "?_busy_timeout=5000"
	if params = strings.TrimPrefix(params, "?"); params != "" {
		dsn += "&" + params
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() {
		// Bounded: a close inside a mount whose daemon is stuck must not hang
		// the test; the node's own cleanup (which runs after this one) kills
		// the daemon, which releases the close.
		closed := make(chan error, 1)
		go func() { closed <- db.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Errorf("close %s: %v", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("close %s: no answer within 10s", path)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	return db
}

// RunSQLite3 runs the sqlite3 CLI with -bail on dbPath, feeding it sqlText on
// stdin, and returns its standard output. It fails the test, showing all
// output, if sqlite3 reports an error or runs longer than SQLite3Timeout.
func RunSQLite3(t testing.TB, dbPath, sqlText string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), SQLite3Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sqlite3", "-bail", dbPath)
	cmd.Stdin = strings.NewReader(sqlText)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sqlite3 -bail %s: %v\nsql:\n%s\nstdout:\n%s\nstderr:\n%s",
			dbPath, err, sqlText, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// ReadPos reads <mnt>/<name>-pos on node n ("%016x/%016x\n") and returns the
// node's TXID and post-apply checksum for database name.
func ReadPos(t testing.TB, n *Node, name string) (txid uint64, checksum uint64) {
	t.Helper()
	path := filepath.Join(n.MountDir, name+"-pos")
	data, err := ReadFileTimeout(path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	txid, checksum, err = parsePos(string(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return txid, checksum
}

// parsePos parses the exact "%016x/%016x\n" format of a -pos file.
func parsePos(s string) (txid, checksum uint64, err error) {
	if len(s) != 34 || s[16] != '/' || s[33] != '\n' {
		return 0, 0, fmt.Errorf("malformed position %q, want %%016x/%%016x\\n", s)
	}
	if txid, err = strconv.ParseUint(s[:16], 16, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed TXID in %q: %v", s, err)
	}
	if checksum, err = strconv.ParseUint(s[17:33], 16, 64); err != nil {
		return 0, 0, fmt.Errorf("malformed checksum in %q: %v", s, err)
	}
	return txid, checksum, nil
}

// FileChecksum computes the database checksum of a plain SQLite file from
// scratch (SPEC section 6), independently of litefs's code: 1<<63 OR the XOR,
// over every page p except the lock page, of CRC64-ISO(big-endian uint32 p
// followed by the page). An empty file has checksum 1<<63.
func FileChecksum(t testing.TB, path string) uint64 {
	t.Helper()
	sum, err := fileChecksum(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// checksumFlag is set on every database checksum so it is never zero.
const checksumFlag = uint64(1) << 63

var crc64ISO = crc64.MakeTable(crc64.ISO)

func fileChecksum(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() == 0 {
		return checksumFlag, nil
	}
	var hdr [100]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, fmt.Errorf("%s: cannot read the 100-byte SQLite header: %v", path, err)
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return 0, fmt.Errorf("%s: invalid page size %d in header", path, pageSize)
	}
	if fi.Size()%pageSize != 0 {
		return 0, fmt.Errorf("%s: size %d is not a multiple of the page size %d", path, fi.Size(), pageSize)
	}
	nPages := uint32(fi.Size() / pageSize)
	lock := lockPgno(uint32(pageSize))
	r := bufio.NewReaderSize(f, 1<<20)
	page := make([]byte, pageSize)
	var pgnoBuf [4]byte
	var sum uint64
	for pgno := uint32(1); pgno <= nPages; pgno++ {
		if _, err := io.ReadFull(r, page); err != nil {
			return 0, fmt.Errorf("%s: read page %d: %v", path, pgno, err)
		}
		if pgno == lock {
			continue
		}
		binary.BigEndian.PutUint32(pgnoBuf[:], pgno)
		crc := crc64.Update(0, crc64ISO, pgnoBuf[:])
		sum ^= crc64.Update(crc, crc64ISO, page)
	}
	return checksumFlag | sum, nil
}

// lockPgno is the page holding SQLite's lock bytes (offset 0x40000000); it is
// never written and is left out of the checksum.
func lockPgno(pageSize uint32) uint32 {
	return 0x40000000/pageSize + 1
}

// TestMount_StartsAndStops is the smoke test of the harness and the daemon:
// a primary mounts, shows .lag, and goes away cleanly on SIGTERM.
func TestMount_StartsAndStops(t *testing.T) {
	n := StartNode(t, NodeOptions{})
	data, err := ReadFileTimeout(filepath.Join(n.MountDir, ".lag"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "+0000000000\n"; got != want {
		t.Fatalf(".lag on the primary = %q, want %q", got, want)
	}
	if err := n.Stop(); err != nil {
		t.Fatal(err)
	}
	if IsMounted(n.MountDir) {
		t.Fatalf("%s still mounted after Stop", n.MountDir)
	}
}

// TestFileChecksum_MatchesLTX checks FileChecksum against the ltx module's
// page checksum on real SQLite files of several page sizes.
func TestFileChecksum_MatchesLTX(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		t.Run(strconv.Itoa(pageSize), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db")
			db := OpenDB(t, path, "_journal_mode=DELETE")
			db.SetMaxOpenConns(1) // page_size must be set on the connection that creates the file
			stmts := []string{
				fmt.Sprintf("PRAGMA page_size=%d", pageSize),
				"CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)",
				"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400) INSERT INTO t(v) SELECT randomblob(300) FROM n",
			}
			for _, s := range stmts {
				if _, err := db.Exec(s); err != nil {
					t.Fatalf("%s: %v", s, err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wantField := pageSize
			if pageSize == 65536 {
				wantField = 1 // SQLite's encoding of 65536
			}
			if got := int(binary.BigEndian.Uint16(data[16:18])); got != wantField {
				t.Fatalf("header page size field = %d, want %d", got, wantField)
			}
			var want ltx.Checksum
			for i := 0; i < len(data)/pageSize; i++ {
				pgno := uint32(i + 1)
				if pgno != ltx.LockPgno(uint32(pageSize)) {
					want ^= ltx.ChecksumPage(pgno, data[i*pageSize:(i+1)*pageSize])
				}
			}
			want |= ltx.ChecksumFlag
			if got := FileChecksum(t, path); got != uint64(want) {
				t.Fatalf("FileChecksum = %016x, ltx says %016x (%d pages)", got, uint64(want), len(data)/pageSize)
			}
		})
	}
}

// TestFileChecksum_EdgeCases covers the empty file, the lock page number and
// files that are not SQLite databases.
func TestFileChecksum_EdgeCases(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := FileChecksum(t, empty); got != checksumFlag {
		t.Fatalf("empty file checksum = %016x, want %016x", got, checksumFlag)
	}
	for _, ps := range []uint32{512, 1024, 4096, 65536} {
		if got, want := lockPgno(ps), ltx.LockPgno(ps); got != want {
			t.Fatalf("lockPgno(%d) = %d, ltx says %d", ps, got, want)
		}
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := fileChecksum(bad); err == nil {
		t.Fatal("fileChecksum accepted a file with page size 0")
	}
}

// TestParsePos checks the strict -pos format.
func TestParsePos(t *testing.T) {
	txid, sum, err := parsePos("000000000000000a/80000000000000ff\n")
	if err != nil || txid != 10 || sum != 0x80000000000000ff {
		t.Fatalf("parsePos = %d, %x, %v", txid, sum, err)
	}
	for _, s := range []string{"", "a/b\n", "000000000000000a/80000000000000ff", "000000000000000g/80000000000000ff\n"} {
		if _, _, err := parsePos(s); err == nil {
			t.Fatalf("parsePos(%q) accepted a malformed position", s)
		}
	}
}

// TestUnescapeMountPath checks the decoding of /proc/self/mountinfo paths.
func TestUnescapeMountPath(t *testing.T) {
	if got, want := unescapeMountPath(`/tmp/a\040b\134c\011`), "/tmp/a b\\c\t"; got != want {
		t.Fatalf("unescapeMountPath = %q, want %q", got, want)
	}
}
