package tests

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// A replica SIGKILLed while it receives and applies transactions (or a whole
// snapshot) recovers on restart and converges (SPEC sections 6, 7 and 12).

const (
	replicaKillIterations = 10
	bigRows               = 5       // rows of table big, rewritten by a large transaction
	bigRowSize            = 1 << 20 // bytes per row: a large transaction changes ~5 MB
)

// killDBs are the databases written during the kill test.
var killDBs = []journalMode{
	{"kill-wal.db", "_journal_mode=WAL&_sync=NORMAL", "wal", true},
	{"kill-delete.db", "_journal_mode=DELETE&_sync=NORMAL", "delete", false},
}

// killWriter writes to one database until stopped: small inserts and
// updates, and now and then (or first, when asked) a ~5 MB transaction.
// Each committed large transaction is announced on big.
func killWriter(db *sql.DB, rng *rand.Rand, bigFirst bool, stop <-chan struct{}, big chan<- struct{}) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n, nil
		default:
		}
		var stmt string
		switch {
		case (n == 0 && bigFirst) || rng.IntN(40) == 0:
			stmt = fmt.Sprintf("UPDATE big SET v = randomblob(%d)", bigRowSize)
		case rng.IntN(3) == 0:
			stmt = fmt.Sprintf("UPDATE t SET v = randomblob(%d) WHERE id = (SELECT max(id) FROM t)", 100+rng.IntN(4000))
		default:
			stmt = fmt.Sprintf("INSERT INTO t(v) VALUES (randomblob(%d))", 100+rng.IntN(4000))
		}
		if err := execTx(ctx, db, stmt); err != nil {
			return n, err
		}
		if strings.Contains(stmt, "big") {
			select {
			case big <- struct{}{}:
			default:
			}
		}
	}
}

// TestReplication_ReplicaKilledDuringApplyRecovers SIGKILLs a replica ten
// times while the primary writes (sometimes right after a ~5 MB transaction
// committed, so a large apply is in flight); in every third iteration the
// replica's data directory is also wiped and the replica is killed again
// while the snapshot that rebuilds it is in flight. After each restart the
// replica must converge with an intact database whose file matches its
// position.
func TestReplication_ReplicaKilledDuringApplyRecovers(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))

	var names []string
	dbs := map[string]*sql.DB{}
	for _, m := range killDBs {
		names = append(names, m.name)
		db := openSingleConn(t, p.DBPath(m.name), m.dsn)
		mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		mustExec(t, db, "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
		mustExec(t, db, fmt.Sprintf(
			"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d) INSERT INTO big(v) SELECT randomblob(%d) FROM n",
			bigRows, bigRowSize))
		dbs[m.name] = db
	}
	waitConverged(t, ConvergeTimeout, p, rs, names...)

	start := time.Now()
	for iter := 0; iter < replicaKillIterations; iter++ {
		wipe := iter%3 == 2
		afterBig := iter%2 == 1
		stop := make(chan struct{})
		big := make(chan struct{}, 1)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var writeErrs []error
		txs := 0
		for i, name := range names {
			wg.Add(1)
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
			go func() {
				defer wg.Done()
				n, err := killWriter(dbs[name], wrng, afterBig && i == 0, stop, big)
				mu.Lock()
				defer mu.Unlock()
				txs += n
				if err != nil {
					writeErrs = append(writeErrs, fmt.Errorf("%s: %w", name, err))
				}
			}()
		}

		how := "during small transactions"
		if afterBig {
			select {
			case <-big:
				how = "just after a ~5 MB commit"
			case <-time.After(10 * time.Second):
				t.Errorf("iteration %d: no large transaction committed within 10s", iter)
			}
			time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		}
		if err := r.Kill(); err != nil {
			t.Fatalf("iteration %d: kill: %v", iter, err)
		}
		logOff := len(r.Log())
		if wipe {
			// Lose everything: the restart needs a snapshot of each database,
			// and is killed again while those are in flight.
			if err := os.RemoveAll(r.DataDir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(r.DataDir, 0o755); err != nil {
				t.Fatal(err)
			}
			r.Restart(t)
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			if err := r.Kill(); err != nil {
				t.Fatalf("iteration %d: second kill: %v", iter, err)
			}
			log := logSince(r, logOff)
			how += fmt.Sprintf(", data directory wiped, killed again %s stream connected and %d of %d snapshots applied",
				map[bool]string{true: "with the", false: "before the"}[strings.Contains(log, "connected to primary")],
				strings.Count(log, "snapshot applied"), len(names))
		}
		r.Restart(t)
		close(stop)
		wg.Wait()
		if len(writeErrs) > 0 {
			t.Fatalf("iteration %d: writer on the primary: %v", iter, writeErrs)
		}
		want := waitConverged(t, ConvergeTimeout, p, rs, names...)
		for _, name := range names {
			if got, w := contentDigest(t, r.DBPath(name)), contentDigest(t, p.DBPath(name)); got != w {
				t.Errorf("iteration %d: %s: replica content %s, primary %s", iter, name, got, w)
			}
			if rp := requireReplicaFileMatchesPos(t, r, name); rp != want[name] {
				t.Errorf("iteration %d: %s: replica at %s, primary at %s", iter, name, rp, want[name])
			}
		}
		if errs := grepLines(logSince(r, logOff), "level=ERROR"); errs != "" {
			t.Errorf("iteration %d: the replica logged errors after being killed:\n%s", iter, errs)
		}
		t.Logf("iteration %d: killed %s; %d transactions on the primary; converged at %s %s, %s %s",
			iter, how, txs, names[0], want[names[0]], names[1], want[names[1]])
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d kills in %s", replicaKillIterations, time.Since(start).Round(time.Millisecond))
}
