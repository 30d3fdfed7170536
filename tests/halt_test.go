package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	litefsgo "github.com/superfly/litefs-go"
)

// End-to-end tests of the HALT lock and write forwarding (SPEC section 8):
// an application on a replica takes the lock with the unchanged
// github.com/superfly/litefs-go client, writes through its ordinary
// connection pool, and the rows appear on every node.

// haltSteps are the statements run under one HALT on a replica, in order:
// each a transaction (or a rolled-back one) of the kinds SPEC 8.4 names.
var haltSteps = []struct {
	name  string
	stmts []string
	fail  bool // the transaction is rolled back on purpose
}{
	{"insert", []string{"INSERT INTO t(v) VALUES ('from replica')"}, false},
	{"update", []string{"UPDATE t SET v = 'updated' WHERE id = 1"}, false},
	{"delete", []string{"DELETE FROM t WHERE id = 2"}, false},
	{"rollback", []string{"INSERT INTO t(v) VALUES ('rolled back')"}, true},
	{"larger than the page cache", []string{
		"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 3000) INSERT INTO t(v) SELECT hex(randomblob(600)) FROM c",
	}, false},
	{"migration", []string{
		"CREATE TABLE m(a INTEGER PRIMARY KEY, b TEXT)",
		"ALTER TABLE m ADD COLUMN c INTEGER DEFAULT 7",
		"CREATE INDEX m_b ON m(b)",
		"INSERT INTO m(b) VALUES ('x'), ('y')",
	}, false},
}

// TestHalt_LitefsGoForwardsEveryKindOfWriteInEveryJournalMode runs
// haltSteps on a replica under litefs-go's WithHalt, through a connection
// pool opened before the lock was taken, and checks every node converges
// to the same content, position and checksum.
func TestHalt_LitefsGoForwardsEveryKindOfWriteInEveryJournalMode(t *testing.T) {
	RequireFUSE(t)
	for _, m := range journalModes {
		t.Run(m.name, func(t *testing.T) {
			p, rs := startCluster(t, 2, NodeOptions{})
			name := "halt.db"
			pdb := openModeDB(t, p, name, m)
			mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
			mustExec(t, pdb, "INSERT INTO t(v) VALUES ('a'), ('b'), ('c')")
			waitConverged(t, ConvergeTimeout, p, rs, name)

			r := rs[0]
			rdb := OpenDB(t, r.DBPath(name), "_cache_size=-64")
			requireReadOnlyReplica(t, r, name)
			err := litefsgo.WithHalt(r.DBPath(name), func() error {
				for _, st := range haltSteps {
					if err := runHaltStep(rdb, st.stmts, st.fail); err != nil {
						return fmt.Errorf("%s: %w", st.name, err)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("WithHalt on replica %s: %v\n%s", r.Name, err, r.Log())
			}
			want := waitConverged(t, ConvergeTimeout, p, rs, name)
			digest := contentDigest(t, p.DBPath(name))
			for _, n := range append([]*Node{p}, rs...) {
				if got := contentDigest(t, n.DBPath(name)); got != digest {
					t.Errorf("node %s: content %s, primary %s", n.Name, got, digest)
				}
				if got := haltQueryString(t, n, name, "SELECT count(*) || '/' || sum(c) FROM m"); got != "2/14" {
					t.Errorf("node %s: migration table m: %s, want 2/14", n.Name, got)
				}
			}
			if got := queryString(t, pdb, "SELECT count(*) FROM t WHERE v = 'rolled back'"); got != "0" {
				t.Errorf("a rolled-back transaction reached the primary: %s rows", got)
			}
			requireReadOnlyReplica(t, r, name)
			mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary again')")
			if after := readPos(t, p, name); after.txid != want[name].txid+1 {
				t.Errorf("primary write after the HALT: TXID %d, want %d", after.txid, want[name].txid+1)
			}
		})
	}
}

// runHaltStep runs stmts as one transaction on db; with fail it rolls back.
func runHaltStep(db *sql.DB, stmts []string, fail bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if fail {
		return tx.Rollback()
	}
	return tx.Commit()
}

// haltQueryString runs a one-value query on a fresh read-only connection.
func haltQueryString(t testing.TB, n *Node, name, query string) string {
	t.Helper()
	db := OpenDB(t, n.DBPath(name), "mode=ro")
	defer closeDB(t, db)
	return queryString(t, db, query)
}

// TestHalt_SeveralTransactionsUnderOneLockKeepTXIDsInStep checks that each
// forwarded transaction advances every node's TXID by exactly one.
func TestHalt_SeveralTransactionsUnderOneLockKeepTXIDsInStep(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	name := "steps.db"
	pdb := openModeDB(t, p, name, journalModes[3])
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	waitConverged(t, ConvergeTimeout, p, rs, name)
	r := rs[0]
	start := readPos(t, r, name)
	rdb := OpenDB(t, r.DBPath(name), "")
	f, err := os.OpenFile(r.DBPath(name)+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := litefsgo.Halt(f); err != nil {
		t.Fatalf("Halt: %v\n%s", err, r.Log())
	}
	for i := 1; i <= 5; i++ {
		mustExec(t, rdb, "INSERT INTO t(v) VALUES (?)", fmt.Sprint(i))
		if got := readPos(t, r, name); got.txid != start.txid+uint64(i) {
			t.Fatalf("after forwarded commit %d: replica TXID %d, want %d", i, got.txid, start.txid+uint64(i))
		}
		if got := readPos(t, p, name); got != readPos(t, r, name) {
			t.Fatalf("after forwarded commit %d: primary at %s, replica at %s (read-your-writes)", i, got, readPos(t, r, name))
		}
	}
	if err := litefsgo.Unhalt(f); err != nil {
		t.Fatalf("Unhalt: %v", err)
	}
	waitConverged(t, ConvergeTimeout, p, rs, name)
	if got := queryString(t, pdb, "SELECT group_concat(v, ',') FROM t"); got != "1,2,3,4,5" {
		t.Errorf("primary rows %q, want 1,2,3,4,5", got)
	}
	if strings.Contains(r.Log(), "panic") {
		t.Errorf("replica log shows a panic:\n%s", r.Log())
	}
}
