package tests

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Replicas converge on the primary's history in every journal mode, and a
// reader on a replica never sees a half-applied transaction (SPEC sections
// 7 and 12, guarantees 1-3).

// convergeTxs is the number of write transactions per journal mode.
const convergeTxs = 1000

// TestReplication_ThreeNodesConvergePerJournalMode writes 1,000 mixed
// transactions to one database per journal mode on a primary, all at once,
// and checks that both replicas end at the primary's position with the same
// content, intact, and a database file whose checksum is the position's.
func TestReplication_ThreeNodesConvergePerJournalMode(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 2, NodeOptions{})
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(journalModes))
	names := make([]string, len(journalModes))
	for i, m := range journalModes {
		names[i] = "converge-" + m.name + ".db"
		// synchronous=NORMAL: the fsync paths are the crash tests' business;
		// here the number of transactions counts.
		db := openSingleConn(t, p.DBPath(names[i]), strings.Replace(m.dsn, "_sync=FULL", "_sync=NORMAL", 1))
		if got := queryString(t, db, "PRAGMA journal_mode"); got != m.want {
			t.Fatalf("%s: PRAGMA journal_mode = %q, want %q", names[i], got, m.want)
		}
		mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = mixedWrites(db, convergeTxs, rand.New(rand.NewPCG(seed, uint64(i))))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", names[i], err)
		}
	}
	t.Logf("%d transactions in each of %d databases in %s", convergeTxs, len(names), time.Since(start).Round(time.Millisecond))

	want := waitConverged(t, ConvergeTimeout, p, rs, names...)
	t.Logf("replicas converged %s after the first commit", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(p.MountDir, ".primary")); !os.IsNotExist(err) {
		t.Errorf("stat .primary on the primary: %v, want it absent", err)
	}
	for _, r := range rs {
		if data, err := ReadFileTimeout(filepath.Join(r.MountDir, ".primary"), 10*time.Second); err != nil || string(data) != p.Name+"\n" {
			t.Errorf("replica %s: .primary = %q (%v), want %q", r.Name, data, err, p.Name+"\n")
		}
		data, err := ReadFileTimeout(filepath.Join(r.MountDir, ".lag"), 10*time.Second)
		lag, perr := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || perr != nil || lag < 0 || lag > 5000 {
			t.Errorf("replica %s: .lag = %q (%v) after converging, want a lag of 0-5000 ms", r.Name, data, err)
		}
	}
	for i, m := range journalModes {
		name := names[i]
		if want[name].txid < convergeTxs {
			t.Errorf("%s: primary at TXID %d after %d write transactions", name, want[name].txid, convergeTxs)
		}
		if !m.wal {
			// The primary's database file holds every commit in rollback modes.
			if file := FileChecksum(t, dataFile(p, name, "database")); file != want[name].sum {
				t.Errorf("primary: %s-pos says %s, database file checksum %016x", name, want[name], file)
			}
		}
		digest := contentDigest(t, p.DBPath(name))
		for _, r := range rs {
			requireReadOnlyReplica(t, r, name)
			if got := contentDigest(t, r.DBPath(name)); got != digest {
				t.Errorf("%s: replica %s content %s, primary %s", name, r.Name, got, digest)
			}
			if rp := requireReplicaFileMatchesPos(t, r, name); rp != want[name] {
				t.Errorf("%s: replica %s moved to %s after converging at %s", name, r.Name, rp, want[name])
			}
		}
	}
}

// requireReadOnlyReplica checks that a write to name on replica r without
// the HALT lock fails and changes nothing: SQLITE_READONLY in
// rollback-journal modes, SQLITE_BUSY in WAL mode (see docs/ARCHITECTURE.md,
// "Writes on a replica").
func requireReadOnlyReplica(t *testing.T, r *Node, name string) {
	t.Helper()
	before := readPos(t, r, name)
	db := openSingleConn(t, r.DBPath(name), "")
	mustExec(t, db, "PRAGMA busy_timeout = 100")
	want := "attempt to write a readonly database"
	if queryString(t, db, "PRAGMA journal_mode") == "wal" {
		want = "database is locked"
	}
	ctx, cancel := sqlCtx()
	defer cancel()
	_, err := db.ExecContext(ctx, "INSERT INTO t(v) VALUES (x'00')")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("replica %s: INSERT into %s: %v, want %q", r.Name, name, err, want)
	}
	closeDB(t, db)
	if after := readPos(t, r, name); after != before {
		t.Errorf("replica %s: a refused write moved %s from %s to %s", r.Name, name, before, after)
	}
}

// mixedWrites runs n write transactions on db: inserts of 1-3 rows, updates
// and deletes of a random row, blobs of 50 B to 3 KB.
func mixedWrites(db *sql.DB, n int, rng *rand.Rand) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < n; i++ {
		var stmts []string
		switch r := rng.IntN(10); {
		case r < 5 || i < 20:
			for k := 0; k <= rng.IntN(3); k++ {
				stmts = append(stmts, fmt.Sprintf("INSERT INTO t(v) VALUES (randomblob(%d))", 50+rng.IntN(3000)))
			}
		case r < 8:
			stmts = append(stmts, fmt.Sprintf(
				"UPDATE t SET v = randomblob(%d) WHERE id = (SELECT id FROM t ORDER BY random() LIMIT 1)", 50+rng.IntN(3000)))
		default:
			stmts = append(stmts, "DELETE FROM t WHERE id = (SELECT id FROM t ORDER BY random() LIMIT 1)")
		}
		if err := execTx(ctx, db, stmts...); err != nil {
			return fmt.Errorf("transaction %d: %w", i, err)
		}
	}
	return nil
}

// TestReplication_ReaderNeverSeesATornState moves money between 10 accounts
// on the primary while a replica sums the balances as fast as it can: every
// sum, in every read transaction, must be the initial total.
func TestReplication_ReaderNeverSeesATornState(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	for _, m := range []journalMode{journalModes[3], journalModes[0]} { // wal, delete
		t.Run(m.name, func(t *testing.T) {
			tornReaderRun(t, p, r, "bank-"+m.name+".db", m, 5*time.Second)
		})
	}
}

const (
	tornAccounts = 10
	tornTotal    = tornAccounts * 1000
)

// tornReaderRun runs the transfers and the replica reader for d. Each
// transfer also counts itself in meta.n, so the reader can tell that it
// sees new transactions, in order.
func tornReaderRun(t *testing.T, p, r *Node, name string, m journalMode, d time.Duration) {
	w := openSingleConn(t, p.DBPath(name), m.dsn)
	mustExec(t, w, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
	mustExec(t, w, fmt.Sprintf(
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO accounts SELECT i, %d FROM n",
		tornAccounts, tornTotal/tornAccounts))
	mustExec(t, w, "CREATE TABLE meta(n INTEGER NOT NULL); INSERT INTO meta VALUES (0)")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, name)

	reader := openSingleConn(t, r.DBPath(name), "")
	stop := make(chan struct{})
	var transfers atomic.Int64
	var writeErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		ctx, cancel := context.WithTimeout(context.Background(), d+time.Minute)
		defer cancel()
		for {
			select {
			case <-stop:
				return
			default:
			}
			a, b, x := 1+rng.IntN(tornAccounts), 1+rng.IntN(tornAccounts), 1+rng.IntN(100)
			if err := execTx(ctx, w,
				fmt.Sprintf("UPDATE accounts SET balance = balance - %d WHERE id = %d", x, a),
				"UPDATE meta SET n = n + 1",
				fmt.Sprintf("UPDATE accounts SET balance = balance + %d WHERE id = %d", x, b)); err != nil {
				writeErr = err
				return
			}
			transfers.Add(1)
		}
	}()

	reads, torn, versions := 0, 0, 0
	var firstTorn string
	var readErr error
	last := int64(-1)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		// Every tenth read stays inside its read transaction for a while,
		// so applies land while it is open.
		rs, err := readBalances(reader, reads%10 == 9)
		if err != nil {
			readErr = err
			break
		}
		reads++
		if bad := rs.problem(last); bad != "" {
			torn++
			if firstTorn == "" {
				firstTorn = fmt.Sprintf("read %d: %s", reads, bad)
			}
		}
		if rs.n1 != last {
			versions++
			last = rs.n1
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%s: %d transfers on the primary; %d reads on the replica saw %d different versions",
		name, transfers.Load(), reads, versions)
	if writeErr != nil {
		t.Fatalf("transfer on the primary: %v", writeErr)
	}
	if readErr != nil {
		t.Fatalf("read on the replica after %d reads: %v", reads, readErr)
	}
	if torn > 0 {
		t.Fatalf("%d of %d reads on the replica saw a torn or stale state; first: %s", torn, reads, firstTorn)
	}
	if reads <= 100 {
		t.Errorf("only %d reads on the replica in %s; want more than 100", reads, d)
	}
	if transfers.Load() == 0 || versions < 2 {
		t.Errorf("%d transfers on the primary, %d versions seen on the replica: the test proved nothing", transfers.Load(), versions)
	}
	want := waitConverged(t, ConvergeTimeout, p, []*Node{r}, name)
	// The same connection must now see the last transfer.
	if rs, err := readBalances(reader, false); err != nil || rs.n1 != transfers.Load() || rs.problem(last) != "" {
		t.Errorf("after converging, the replica's reader sees %+v (%v); want version %d", rs, err, transfers.Load())
	}
	closeDB(t, reader)
	if rp := requireReplicaFileMatchesPos(t, r, name); rp != want[name] {
		t.Errorf("replica moved to %s after converging at %s", rp, want[name])
	}
}

// balances is what one read transaction saw: the version and the total
// at its start, and again at its end.
type balances struct {
	n1, sum1, n2, sum2, count int64
}

// problem describes what is wrong with b, given the version the previous
// read saw, or returns "".
func (b balances) problem(prev int64) string {
	switch {
	case b.sum1 != tornTotal || b.sum2 != tornTotal || b.count != tornAccounts:
		return fmt.Sprintf("total %d then %d over %d accounts, want %d over %d", b.sum1, b.sum2, b.count, tornTotal, tornAccounts)
	case b.n1 != b.n2:
		return fmt.Sprintf("version %d then %d inside one read transaction", b.n1, b.n2)
	case b.n1 < prev:
		return fmt.Sprintf("version %d after version %d: the replica went back in time", b.n1, prev)
	}
	return ""
}

// readBalances reads the version and the total balance twice in one read
// transaction, pausing in between if slow.
func readBalances(db *sql.DB, slow bool) (b balances, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return b, err
	}
	defer func() { _ = tx.Rollback() }()
	const q = "SELECT (SELECT n FROM meta), sum(balance), count(*) FROM accounts"
	if err := tx.QueryRowContext(ctx, q).Scan(&b.n1, &b.sum1, &b.count); err != nil {
		return b, err
	}
	if slow {
		time.Sleep(20 * time.Millisecond)
	}
	if err := tx.QueryRowContext(ctx, q).Scan(&b.n2, &b.sum2, &b.count); err != nil {
		return b, err
	}
	return b, tx.Commit()
}
