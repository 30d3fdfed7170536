package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Two processes, the sqlite3 CLI and this Go test (go-sqlite3), write to the
// same database through the mount at the same time. SQLite's locking must
// work through FUSE as on a local disk: busy waits end in success, no write
// is lost or duplicated, and every write transaction is exactly one TXID.

const (
	concGoTx     = 300 // write transactions run by the Go side
	concCLIRuns  = 30  // sqlite3 processes started one after another
	concCLIPerRn = 9   // write transactions per sqlite3 process
	concCLIBase  = 1_000_000
	// concPause is the pause after each transaction on both sides (the CLI
	// runs "sleep 0.003"). Without it SQLite's busy handler, which polls
	// with growing sleeps, lets one side starve the other even on a local
	// disk, and the two would not really write at the same time.
	concPause = 3 * time.Millisecond
	// nextSeq numbers rows in commit order, to see that the writers interleaved.
	nextSeq = "(SELECT coalesce(max(seq), 0) + 1 FROM t)"
	// runsQuery describes the commit order as runs of one writer ("go x12 ...").
	runsQuery = `WITH o AS (SELECT seq, src, seq - row_number() OVER (PARTITION BY src ORDER BY seq) AS g FROM t)
		SELECT group_concat(src || ' x' || n, ', ') FROM (SELECT src, count(*) AS n, min(seq) AS s FROM o GROUP BY src, g ORDER BY s)`
)

// writerResult is what one side reports: the ids of the rows whose
// transaction it saw commit, the number of those transactions, and errors.
type writerResult struct {
	ids  []int64
	txs  int
	errs []string
}

// TestConcurrency_CLIAndGoWritersLoseNothing runs the CLI and a Go program
// as concurrent writers (plus a Go reader) in DELETE and WAL mode.
func TestConcurrency_CLIAndGoWritersLoseNothing(t *testing.T) {
	RequireFUSE(t)
	for _, m := range []journalMode{journalModes[0], journalModes[3]} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, NodeOptions{})
			const name = "conc.db"
			path := n.DBPath(name)
			db := OpenDB(t, path, m.dsn+"&_txlock=immediate")
			db.SetMaxOpenConns(4)
			if got := queryString(t, db, "PRAGMA journal_mode"); got != m.want {
				t.Fatalf("PRAGMA journal_mode = %q, want %q", got, m.want)
			}
			mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, src TEXT NOT NULL, v BLOB, seq INTEGER UNIQUE)")
			txid0, _ := ReadPos(t, n, name)

			var wg sync.WaitGroup
			var goRes, cliRes writerResult
			writersDone := make(chan struct{})
			wg.Add(2)
			go func() { defer wg.Done(); goRes = goWriter(db) }()
			go func() { defer wg.Done(); cliRes = cliWriter(path) }()
			readErrs := make(chan []string, 1)
			go func() { readErrs <- goReader(db, writersDone) }()

			waited := make(chan struct{})
			go func() { wg.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(3 * time.Minute):
				t.Fatal("the writers did not finish within 3 minutes")
			}
			close(writersDone)
			rerrs := <-readErrs

			for _, e := range goRes.errs {
				t.Errorf("Go writer: %s", e)
			}
			for _, e := range cliRes.errs {
				t.Errorf("sqlite3 writer: %s", e)
			}
			for _, e := range rerrs {
				t.Errorf("Go reader: %s", e)
			}
			if goRes.txs != concGoTx || cliRes.txs != concCLIRuns*concCLIPerRn {
				t.Errorf("committed transactions: Go %d of %d, sqlite3 %d of %d; with a 5 s busy timeout none may fail",
					goRes.txs, concGoTx, cliRes.txs, concCLIRuns*concCLIPerRn)
			}

			// Every acknowledged row is there exactly once, and nothing else.
			want := append(slices.Clone(goRes.ids), cliRes.ids...)
			slices.Sort(want)
			got := queryIDs(t, db, "SELECT id FROM t ORDER BY id")
			if !slices.Equal(got, want) {
				t.Errorf("table holds %d rows, the writers acknowledged %d; missing %v, unexpected %v",
					len(got), len(want), idDiff(want, got), idDiff(got, want))
			}
			// The test proves nothing unless the two writers really alternated.
			if switches := queryInt(t, db, "SELECT count(*) FROM t a JOIN t b ON b.seq = a.seq + 1 WHERE a.src <> b.src"); switches < 10 {
				t.Errorf("in commit order the writer changed only %d times: the two sides did not run concurrently; runs: %s",
					switches, queryString(t, db, runsQuery))
			}
			if dup := queryInt(t, db, "SELECT count(*) - count(DISTINCT id) FROM t"); dup != 0 {
				t.Errorf("%d duplicate ids", dup)
			}
			requireIntegrity(t, db)
			closeDB(t, db)

			txid, _ := requirePosMatchesFile(t, n, name, m.wal)
			if wantTXID := txid0 + uint64(goRes.txs+cliRes.txs); txid != wantTXID {
				t.Errorf("TXID = %d, want %d (%d before the writers + %d Go + %d sqlite3 transactions)",
					txid, wantTXID, txid0, goRes.txs, cliRes.txs)
			}
		})
	}
}

// goWriter runs concGoTx write transactions: single-row inserts, and every
// tenth a two-row explicit transaction.
func goWriter(db *sql.DB) writerResult {
	var res writerResult
	id := int64(1)
	for i := 0; i < concGoTx; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var ids []int64
		var err error
		if i%10 == 9 {
			ids = []int64{id, id + 1}
			err = goTx(ctx, db, ids)
		} else {
			ids = []int64{id}
			_, err = db.ExecContext(ctx, "INSERT INTO t(id, src, v, seq) VALUES (?, 'go', randomblob(200), "+nextSeq+")", id)
		}
		cancel()
		id += int64(len(ids))
		if err != nil {
			res.errs = append(res.errs, fmt.Sprintf("transaction inserting %v: %v", ids, err))
			continue
		}
		res.ids = append(res.ids, ids...)
		res.txs++
		time.Sleep(concPause)
	}
	return res
}

// goTx inserts ids in one explicit transaction.
func goTx(ctx context.Context, db *sql.DB, ids []int64) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, "INSERT INTO t(id, src, v, seq) VALUES (?, 'go', randomblob(200), "+nextSeq+")", id); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

// cliWriter starts concCLIRuns sqlite3 processes one after another; each
// runs concCLIPerRn write transactions (seven single inserts, a two-row
// transaction, one more insert) and a read, and prints "ok <ids>" after
// each transaction that committed, then pauses. With -bail it stops at the
// first error.
func cliWriter(path string) writerResult {
	var res writerResult
	id := int64(concCLIBase)
	for run := 0; run < concCLIRuns; run++ {
		var b strings.Builder
		b.WriteString(".timeout 5000\n")
		for i := 0; i < concCLIPerRn; i++ {
			if i == 7 {
				fmt.Fprintf(&b, "BEGIN IMMEDIATE;\nINSERT INTO t(id, src, v, seq) VALUES (%d, 'cli', randomblob(200), "+nextSeq+");\n"+
					"INSERT INTO t(id, src, v, seq) VALUES (%d, 'cli', randomblob(200), "+nextSeq+");\nCOMMIT;\nSELECT 'ok %d %d';\n.shell sleep 0.003\n",
					id, id+1, id, id+1)
				id += 2
				continue
			}
			fmt.Fprintf(&b, "INSERT INTO t(id, src, v, seq) VALUES (%d, 'cli', randomblob(200), "+nextSeq+");\nSELECT 'ok %d';\n.shell sleep 0.003\n", id, id)
			id++
		}
		b.WriteString("SELECT 'count ' || count(*) FROM t;\n")

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "sqlite3", "-bail", "-batch", path)
		cmd.Stdin = strings.NewReader(b.String())
		cmd.WaitDelay = 5 * time.Second
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		for _, line := range strings.Split(stdout.String(), "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 || fields[0] != "ok" {
				continue
			}
			for _, f := range fields[1:] {
				v, perr := strconv.ParseInt(f, 10, 64)
				if perr != nil {
					res.errs = append(res.errs, fmt.Sprintf("unexpected output line %q", line))
					continue
				}
				res.ids = append(res.ids, v)
			}
			res.txs++
		}
		if err != nil {
			res.errs = append(res.errs, fmt.Sprintf("sqlite3 run %d: %v: %s", run, err, strings.TrimSpace(stderr.String())))
		}
	}
	return res
}

// goReader reads the table until done is closed; the row count seen must
// never go down, and reads must not fail.
func goReader(db *sql.DB, done <-chan struct{}) []string {
	var errs []string
	last := int64(-1)
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if reads == 0 {
				errs = append(errs, "no read ran while the writers were busy")
			}
			return errs
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var count, sum int64
		err := db.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(length(v)), 0) FROM t").Scan(&count, &sum)
		cancel()
		switch {
		case err != nil:
			errs = append(errs, err.Error())
		case count < last:
			errs = append(errs, fmt.Sprintf("row count went down from %d to %d", last, count))
		case sum != 200*count:
			errs = append(errs, fmt.Sprintf("%d rows hold %d bytes of blobs, want %d", count, sum, 200*count))
		}
		if err == nil {
			last = count
		}
		if len(errs) > 20 {
			return errs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queryIDs returns the integers in the first column of query's rows.
func queryIDs(t testing.TB, db *sql.DB, query string) []int64 {
	t.Helper()
	var ids []int64
	forEachRow(t, db, query, func(rows *sql.Rows) {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	})
	return ids
}

// idDiff returns the ids in a that are not in b (at most 20 of them).
func idDiff(a, b []int64) []int64 {
	in := make(map[int64]bool, len(b))
	for _, id := range b {
		in[id] = true
	}
	var out []int64
	for _, id := range a {
		if !in[id] && len(out) < 20 {
			out = append(out, id)
		}
	}
	return out
}
