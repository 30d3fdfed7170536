package tests

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The daemon is SIGKILLed at random moments while an application writes
// with synchronous=FULL; every restart must recover (SPEC sections 6 and 12):
// integrity ok, the position's checksum equal to the file's, and every
// transaction whose COMMIT returned still there.

const crashIterations = 20

// crashDB is one database of the crash test and what is known about it.
type crashDB struct {
	name  string
	dsn   string
	wal   bool
	acked map[int64]bool // ids whose transaction's COMMIT returned nil
	ackTx int            // number of such transactions
	setup uint64         // TXID after the table was created
}

// crashWriter is one write loop and what it has seen so far. The test reads
// its acknowledgements while it may still be stuck in a call on the dead
// mount: SQLite takes any failed lock on the -shm as "busy" and retries for
// about 10 s before it gives up with SQLITE_PROTOCOL.
type crashWriter struct {
	d    *crashDB
	db   *sql.DB
	done chan struct{}

	mu     sync.Mutex
	acked  []int64 // ids of rows whose COMMIT returned nil, not yet merged
	ackTx  int     // transactions acknowledged, not yet merged
	total  int     // transactions acknowledged in all
	err    error   // the error that stopped the loop
	merged bool    // done, and everything merged into d
}

// run inserts rows from firstID on until an error or stop: three in four
// transactions are one autocommit INSERT, the others insert 2-4 rows in an
// explicit transaction; blobs are 100 B to 6 KB so transactions touch one
// to several pages.
func (w *crashWriter) run(firstID int64, seed uint64, stop <-chan struct{}) {
	defer close(w.done)
	rng := rand.New(rand.NewPCG(seed, 1))
	next := firstID
	for {
		select {
		case <-stop:
			return
		default:
		}
		ids := make([]int64, 1)
		if rng.IntN(4) == 0 {
			ids = make([]int64, 2+rng.IntN(3))
		}
		for i := range ids {
			ids[i] = next
			next++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := crashInsert(ctx, w.db, ids, 100+rng.IntN(6000))
		cancel()
		w.mu.Lock()
		if err != nil {
			w.err = err
			w.mu.Unlock()
			return
		}
		w.acked = append(w.acked, ids...)
		w.ackTx++
		w.total++
		w.mu.Unlock()
	}
}

// merge moves the acknowledgements seen so far into w.d, and closes the
// handle once the loop has ended. It reports whether w is finished.
func (w *crashWriter) merge() bool {
	select {
	case <-w.done:
	default:
		w.mu.Lock()
		defer w.mu.Unlock()
		w.mergeLocked()
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mergeLocked()
	if !w.merged {
		w.merged = true
		closeQuietly(w.db)
	}
	return true
}

func (w *crashWriter) mergeLocked() {
	for _, id := range w.acked {
		w.d.acked[id] = true
	}
	w.d.ackTx += w.ackTx
	w.acked, w.ackTx = nil, 0
}

// mergeAll merges every writer's acknowledgements and drops finished
// writers from the list.
func mergeAll(ws []*crashWriter) []*crashWriter {
	var busy []*crashWriter
	for _, w := range ws {
		if !w.merge() {
			busy = append(busy, w)
		}
	}
	return busy
}

// TestCrash_SIGKILLDuringWritesLosesNoAcknowledgedCommit kills the daemon
// 20 times during a write loop, alternating between a WAL and a DELETE mode
// database, and checks both databases after every restart.
func TestCrash_SIGKILLDuringWritesLosesNoAcknowledgedCommit(t *testing.T) {
	RequireFUSE(t)
	n := StartNode(t, NodeOptions{})
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x6c69746566732d63))

	dbs := []*crashDB{
		{name: "crash-wal.db", dsn: "_journal_mode=WAL&_sync=FULL", wal: true},
		{name: "crash-delete.db", dsn: "_journal_mode=DELETE&_sync=FULL"},
	}
	for _, d := range dbs {
		db := OpenDB(t, n.DBPath(d.name), d.dsn)
		mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		closeDB(t, db)
		d.setup, _ = ReadPos(t, n, d.name)
		d.acked = map[int64]bool{}
	}

	// Writers still stuck in a call on a dead mount; their late
	// acknowledgements are checked after the next restart, or at the end.
	var pending []*crashWriter
	start := time.Now()
	for iter := 0; iter < crashIterations; iter++ {
		d, other := dbs[iter%2], dbs[(iter+1)%2]
		otherTXID, otherSum := ReadPos(t, n, other.name)

		db, err := sql.Open("sqlite3", "file:"+n.DBPath(d.name)+"?_busy_timeout=5000&"+d.dsn)
		if err != nil {
			t.Fatal(err)
		}
		// Every other time, make SQLite touch the database file in the
		// middle of the loop: frequent checkpoints (WAL) or cache spills
		// before COMMIT (DELETE), so some kills land in those too.
		db.SetMaxOpenConns(1)
		if iter%4 < 2 {
			tune := "PRAGMA cache_size = 5"
			if d.wal {
				tune = "PRAGMA wal_autocheckpoint = 16"
			}
			mustExec(t, db, tune)
		}
		w := &crashWriter{d: d, db: db, done: make(chan struct{})}
		stop := make(chan struct{})
		go w.run(int64(iter+1)*1_000_000, rng.Uint64(), stop)

		time.Sleep(time.Duration(50+rng.IntN(351)) * time.Millisecond)
		if err := n.Kill(); err != nil {
			t.Fatalf("iteration %d: kill: %v", iter, err)
		}
		close(stop)
		select {
		case <-w.done:
		case <-time.After(time.Second):
		}
		pending = mergeAll(append(pending, w))

		logStart := len(n.Log())
		n.Restart(t)
		pending = mergeAll(pending)
		for _, c := range dbs {
			checkAfterCrash(t, n, c, fmt.Sprintf("iteration %d", iter))
		}
		w.mu.Lock()
		t.Logf("iteration %d: %s: %d transactions acknowledged before SIGKILL; writer stopped by: %v",
			iter, d.name, w.total, w.err)
		w.mu.Unlock()
		if txid, sum := ReadPos(t, n, other.name); txid != otherTXID || sum != otherSum {
			t.Errorf("iteration %d: %s was not written, but its position went from %d/%016x to %d/%016x across the crash",
				iter, other.name, otherTXID, otherSum, txid, sum)
		}
		if log := n.Log()[logStart:]; strings.Contains(log, "level=ERROR") {
			t.Errorf("iteration %d: the daemon logged an error after the restart:\n%s", iter, log)
		}
		if t.Failed() {
			t.FailNow()
		}
	}

	// Writers that were still stuck: wait for them, then check once more.
	deadline := time.Now().Add(20 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		pending = mergeAll(pending)
	}
	if len(pending) > 0 {
		t.Fatalf("%d writers still running 20s after the last crash", len(pending))
	}
	for _, c := range dbs {
		checkAfterCrash(t, n, c, "at the end")
	}
	t.Logf("%d crashes in %s; acknowledged transactions: %s %d, %s %d", crashIterations,
		time.Since(start).Round(time.Millisecond), dbs[0].name, dbs[0].ackTx, dbs[1].name, dbs[1].ackTx)
	if dbs[0].ackTx == 0 || dbs[1].ackTx == 0 {
		t.Errorf("a database had no acknowledged transaction in %d crashes: the test proved nothing about it", crashIterations)
	}
}

// crashInsert inserts ids in one transaction.
func crashInsert(ctx context.Context, db *sql.DB, ids []int64, size int) error {
	const insert = "INSERT INTO t(id, v) VALUES (?, randomblob(?))"
	if len(ids) == 1 {
		_, err := db.ExecContext(ctx, insert, ids[0], size)
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, insert, id, size); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// closeQuietly closes a handle whose files may be on a dead mount, giving up
// after a few seconds; its errors are expected.
func closeQuietly(db *sql.DB) {
	done := make(chan struct{})
	go func() { _ = db.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// checkAfterCrash checks database d after a restart: integrity, every
// acknowledged row, a TXID that counts every acknowledged transaction, and
// the position's checksum against the file.
func checkAfterCrash(t *testing.T, n *Node, d *crashDB, when string) {
	t.Helper()
	db := OpenDB(t, n.DBPath(d.name), "")
	if got := queryString(t, db, "PRAGMA integrity_check"); got != "ok" {
		t.Errorf("%s: %s: PRAGMA integrity_check = %q", when, d.name, got)
	}
	present := map[int64]bool{}
	for _, id := range queryIDs(t, db, "SELECT id FROM t") {
		present[id] = true
	}
	var missing []int64
	for id := range d.acked {
		if !present[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		count := len(missing)
		slices.Sort(missing)
		if len(missing) > 20 {
			missing = missing[:20]
		}
		t.Errorf("%s: %s: %d acknowledged rows are gone after the crash, e.g. %v",
			when, d.name, count, missing)
	}
	closeDB(t, db)
	txid, _ := requirePosMatchesFile(t, n, d.name, d.wal)
	if min := d.setup + uint64(d.ackTx); txid < min {
		t.Errorf("%s: %s: TXID %d after the crash, but %d transactions were acknowledged after TXID %d",
			when, d.name, txid, d.ackTx, d.setup)
	}
}
