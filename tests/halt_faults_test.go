package tests

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	litefsgo "github.com/superfly/litefs-go"
)

// Fault tests of the HALT lock (SPEC 8.3): whatever happens to the holder,
// the primary becomes writable again within the bounds, and nothing
// deadlocks.

// holdHaltEnv makes the test binary a child that takes the HALT lock on the
// -lock file it names, prints "held", and waits to be killed.
const holdHaltEnv = "LITEFS_TEST_HOLD_HALT"

// holdHaltChild is the body of that child process.
func holdHaltChild(lockPath string) int {
	f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	if err := litefsgo.Halt(f); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("held")
	select {}
}

// startHaltHolder starts a child process holding the HALT on name at node n.
func startHaltHolder(t *testing.T, n *Node, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holdHaltEnv+"="+n.DBPath(name)+"-lock")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case l := <-line:
		if l != "held" {
			t.Fatalf("HALT holder on %s: %q\n%s", n.Name, l, n.Log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("HALT holder on %s: no lock within 20s", n.Name)
	}
	return cmd
}

// haltCluster starts a primary and one replica with a short halt.ttl and a
// WAL database "f.db" with table t on both.
func haltCluster(t *testing.T) (*Node, *Node, *sql.DB) {
	t.Helper()
	return haltClusterMode(t, journalModes[3])
}

// haltClusterMode is haltCluster with the database in journal mode m.
func haltClusterMode(t *testing.T, m journalMode) (*Node, *Node, *sql.DB) {
	t.Helper()
	extra := "halt:\n  ttl: 2s\n  renew-interval: 400ms\n  acquire-timeout: 10s\n"
	p := StartNode(t, NodeOptions{Extra: extra})
	r := StartNode(t, NodeOptions{Primary: p, Extra: extra})
	pdb := openModeDB(t, p, "f.db", m)
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
	return p, r, pdb
}

// primaryWritableAfter retries a one-row insert on the primary (each try
// refused at once while the HALT is held) and returns how long it took to
// succeed, failing the test after limit.
func primaryWritableAfter(t *testing.T, pdb *sql.DB, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	conn, err := pdb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit+5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(context.Background(), "PRAGMA busy_timeout = 5000")
	for {
		_, err := conn.ExecContext(ctx, "INSERT INTO t(v) VALUES ('primary')")
		if err == nil {
			return time.Since(start)
		}
		if !strings.Contains(err.Error(), "locked") && !strings.Contains(err.Error(), "busy") {
			t.Fatalf("primary insert: %v", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("primary still not writable %s after the fault (limit %s): %v", time.Since(start), limit, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// requirePrimaryBlocked checks that the primary refuses local writes now.
func requirePrimaryBlocked(t *testing.T, pdb *sql.DB) {
	t.Helper()
	conn, err := pdb.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := sqlCtx()
	defer cancel()
	_, _ = conn.ExecContext(ctx, "PRAGMA busy_timeout = 0")
	defer conn.ExecContext(context.Background(), "PRAGMA busy_timeout = 5000")
	if _, err := conn.ExecContext(ctx, "INSERT INTO t(v) VALUES ('must wait')"); err == nil {
		t.Fatal("primary accepted a local write while a replica holds the HALT")
	}
}

// TestHalt_KilledHolderProcessFreesPrimaryWithinOneSecond: the kernel
// releases a dead process's OFD lock; the replica releases the HALT.
func TestHalt_KilledHolderProcessFreesPrimaryWithinOneSecond(t *testing.T) {
	RequireFUSE(t)
	p, r, pdb := haltCluster(t)
	holder := startHaltHolder(t, r, "f.db")
	requirePrimaryBlocked(t, pdb)
	start := time.Now()
	_ = holder.Process.Kill()
	took := primaryWritableAfter(t, pdb, start, time.Second)
	t.Logf("primary writable %s after SIGKILL of the holder process", took)
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
}

// TestHalt_KilledHolderDaemonFreesPrimaryWithinOneSecond: the holder's
// stream drops with its daemon, and the primary drops its HALT at once.
func TestHalt_KilledHolderDaemonFreesPrimaryWithinOneSecond(t *testing.T) {
	RequireFUSE(t)
	p, r, pdb := haltCluster(t)
	holder := startHaltHolder(t, r, "f.db")
	requirePrimaryBlocked(t, pdb)
	start := time.Now()
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = holder.Process.Kill()
	took := primaryWritableAfter(t, pdb, start, time.Second)
	t.Logf("primary writable %s after SIGKILL of the holder's daemon", took)
	r.Restart(t)
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
}

// TestHalt_StoppedHolderDaemonExpiresAndItsNextCommitFails: a silent
// partition (SIGSTOP) ends with the HALT's TTL; once resumed, the holder's
// next commit fails cleanly and the replica keeps replicating.
func TestHalt_StoppedHolderDaemonExpiresAndItsNextCommitFails(t *testing.T) {
	RequireFUSE(t)
	p, r, pdb := haltCluster(t)
	rdb := OpenDB(t, r.DBPath("f.db"), "")
	f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := litefsgo.Halt(f); err != nil {
		t.Fatalf("Halt: %v", err)
	}
	mustExec(t, rdb, "INSERT INTO t(v) VALUES ('forwarded before the partition')")
	start := time.Now()
	if err := syscall.Kill(-r.Cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	took := primaryWritableAfter(t, pdb, start, 2*time.Second+time.Second)
	t.Logf("primary writable %s after SIGSTOP of the holder's daemon (halt.ttl 2s)", took)
	if err := syscall.Kill(-r.Cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := sqlCtx()
	defer cancel()
	if _, err := rdb.ExecContext(ctx, "INSERT INTO t(v) VALUES ('after expiry')"); err == nil {
		t.Fatal("a commit under an expired HALT succeeded")
	} else {
		t.Logf("commit under the expired HALT: %v", err)
	}
	if err := litefsgo.Unhalt(f); err != nil {
		t.Errorf("Unhalt of an expired HALT: %v, want a no-op", err)
	}
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary after')")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
	for _, n := range []*Node{p, r} {
		if got := haltQueryString(t, n, "f.db", "SELECT count(*) FROM t WHERE v = 'after expiry'"); got != "0" {
			t.Errorf("node %s: the refused commit is there (%s rows)", n.Name, got)
		}
		if got := haltQueryString(t, n, "f.db", "SELECT count(*) FROM t WHERE v = 'forwarded before the partition'"); got != "1" {
			t.Errorf("node %s: the forwarded commit is missing (%s rows)", n.Name, got)
		}
	}
}

// TestHalt_PrimaryRestartVoidsTheHalt: a HALT held while the primary
// restarts is void; the holder's commit fails, the release is a no-op,
// replication resumes.
func TestHalt_PrimaryRestartVoidsTheHalt(t *testing.T) {
	RequireFUSE(t)
	for _, m := range journalModes {
		t.Run(m.name, func(t *testing.T) {
			p, r, pdb := haltClusterMode(t, m)
			rdb := OpenDB(t, r.DBPath("f.db"), "")
			f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := litefsgo.Halt(f); err != nil {
				t.Fatalf("Halt: %v", err)
			}
			closeDB(t, pdb)
			p.Restart(t)
			ctx, cancel := sqlCtx()
			defer cancel()
			if _, err := rdb.ExecContext(ctx, "INSERT INTO t(v) VALUES ('void')"); err == nil {
				t.Fatal("a commit under a HALT from before the primary restarted succeeded")
			}
			if err := litefsgo.Unhalt(f); err != nil {
				t.Errorf("Unhalt of a void HALT: %v, want a no-op", err)
			}
			pdb = OpenDB(t, p.DBPath("f.db"), "")
			mustExec(t, pdb, "INSERT INTO t(v) VALUES ('after restart')")
			waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
			for _, n := range []*Node{p, r} {
				if got := haltQueryString(t, n, "f.db", "SELECT group_concat(v) FROM t"); got != "after restart" {
					t.Errorf("node %s: rows %q, want only \"after restart\"", n.Name, got)
				}
			}
			requireReadOnlyReplica(t, r, "f.db")
		})
	}
}

// TestHalt_OneHolderAtATimeAcrossThreadsAndReplicas: two descriptors in
// one process on one replica and one on another replica all loop on the
// HALT; exactly one holds it at any moment and every one gets its turns.
func TestHalt_OneHolderAtATimeAcrossThreadsAndReplicas(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 2, NodeOptions{})
	pdb := openModeDB(t, p, "f.db", journalModes[3])
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	waitConverged(t, ConvergeTimeout, p, rs, "f.db")
	var holders, maxHolders atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i, n := range []*Node{rs[0], rs[0], rs[1]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- haltTurns(n.DBPath("f.db"), fmt.Sprintf("%s/%d", n.Name, i), 5, &holders, &maxHolders)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if m := maxHolders.Load(); m != 1 {
		t.Errorf("%d holders at once, want exactly 1", m)
	}
	waitConverged(t, ConvergeTimeout, p, rs, "f.db")
	if got := queryString(t, pdb, "SELECT count(*) FROM t"); got != "15" {
		t.Errorf("primary has %s rows, want 15 (5 per holder)", got)
	}
}

// haltTurns takes the HALT n times through its own descriptor, checks it
// is the only holder, writes one row, and releases.
func haltTurns(path, who string, n int, holders, maxHolders *atomic.Int32) error {
	f, err := os.OpenFile(path+"-lock", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return err
	}
	defer db.Close()
	for i := 0; i < n; i++ {
		if err := litefsgo.Halt(f); err != nil {
			return fmt.Errorf("%s: Halt %d: %w", who, i, err)
		}
		h := holders.Add(1)
		for m := maxHolders.Load(); h > m && !maxHolders.CompareAndSwap(m, h); m = maxHolders.Load() {
		}
		_, err := db.Exec("INSERT INTO t(v) VALUES (?)", who)
		time.Sleep(10 * time.Millisecond)
		holders.Add(-1)
		if uerr := litefsgo.Unhalt(f); err == nil {
			err = uerr
		}
		if err != nil {
			return fmt.Errorf("%s: turn %d: %w", who, i, err)
		}
	}
	return nil
}

// TestHalt_PrimaryReadersAreNotBlocked: a reader on the primary completes
// in under 50 ms while a replica holds the HALT.
func TestHalt_PrimaryReadersAreNotBlocked(t *testing.T) {
	RequireFUSE(t)
	p, r, pdb := haltCluster(t)
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('x'), ('y')")
	startHaltHolder(t, r, "f.db")
	requirePrimaryBlocked(t, pdb)
	for i := 0; i < 5; i++ {
		db := openSingleConn(t, p.DBPath("f.db"), "")
		start := time.Now()
		got := queryString(t, db, "SELECT count(*) FROM t")
		took := time.Since(start)
		closeDB(t, db)
		if got != "2" || took > 50*time.Millisecond {
			t.Errorf("reader on the primary under a HALT: %s rows in %s, want 2 rows in under 50ms", got, took)
		}
	}
}

// TestHalt_MountWithLockRunsAMigrationFromAReplica: "litefs mount
// -with-lock -- CMD" on a replica waits until it is ready, holds the HALT
// on every database while CMD runs, and exits with CMD's code.
func TestHalt_MountWithLockRunsAMigrationFromAReplica(t *testing.T) {
	RequireFUSE(t)
	p := StartNode(t, NodeOptions{})
	pdb := openModeDB(t, p, "f.db", journalModes[0])
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	dir := t.TempDir()
	migration := fmt.Sprintf(`sqlite3 -bail -cmd ".timeout 5000" %s/mnt/f.db "CREATE TABLE m(x); INSERT INTO t(v) VALUES ('migrated')" && exit 3`, dir)
	r := StartNode(t, NodeOptions{Primary: p, Dir: dir, NoWait: true, Args: []string{"-with-lock", "--", "sh", "-c", "'" + strings.ReplaceAll(migration, "'", `'\''`) + "'"}})
	code, err := r.WaitExit(60 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("litefs mount -with-lock: exit %d, %v; want CMD's code 3\n%s", code, err, r.Log())
	}
	if got := queryString(t, pdb, "SELECT v FROM t"); got != "migrated" {
		t.Errorf("primary: row %q, want the migration's row", got)
	}
	if got := queryString(t, pdb, "SELECT count(*) FROM sqlite_schema WHERE name = 'm'"); got != "1" {
		t.Errorf("primary: the migration's table m is missing")
	}
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary writes again')")
}
