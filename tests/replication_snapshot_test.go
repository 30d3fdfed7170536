package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// A replica that cannot be caught up with LTX files — it joins late, its
// history was removed by retention, or it diverged — gets a snapshot and
// ends at the primary's position and content (SPEC section 7, guarantee 7).

// writeRows commits n transactions on the database at path, each inserting
// one row tagged with tag.
func writeRows(t *testing.T, path, dsn, tag string, n int) {
	t.Helper()
	db := openSingleConn(t, path, dsn)
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
	for i := 0; i < n; i++ {
		mustExec(t, db, "INSERT INTO t(v) VALUES (? || randomblob(200))", fmt.Sprintf("%s-%d", tag, i))
	}
	closeDB(t, db)
}

// waitHistoryGone waits until name's LTX directory on n holds only the
// newest file, and that file does not start at TXID 1: retention removed
// the older history.
func waitHistoryGone(t *testing.T, n *Node, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files := ltxFiles(t, n, name)
		if len(files) == 1 && !strings.HasPrefix(files[0], "0000000000000001-") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: retention did not remove old LTX files within 20s: %v", name, files)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// requireSameContent checks replica r against primary p for every name:
// equal content digests and a database file matching the replica's position.
func requireSameContent(t *testing.T, p, r *Node, want map[string]pos, names ...string) {
	t.Helper()
	for _, name := range names {
		if got, w := contentDigest(t, r.DBPath(name)), contentDigest(t, p.DBPath(name)); got != w {
			t.Errorf("%s: replica %s content %s, primary %s", name, r.Name, got, w)
		}
		if rp := requireReplicaFileMatchesPos(t, r, name); rp != want[name] {
			t.Errorf("%s: replica %s at %s, primary at %s", name, r.Name, rp, want[name])
		}
	}
}

// logSince returns what n logged after the first offset bytes.
func logSince(n *Node, offset int) string {
	log := n.Log()
	if offset > len(log) {
		return ""
	}
	return log[offset:]
}

// requireLogMentions fails unless log has a line containing every one of words.
func requireLogMentions(t *testing.T, who, log string, words ...string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return
		}
	}
	t.Errorf("%s's log has no line mentioning all of %q:\n%s", who, words, log)
}

var snapshotModes = []struct{ name, dsn string }{
	{"late-wal.db", "_journal_mode=WAL&_sync=NORMAL"},
	{"late-delete.db", "_journal_mode=DELETE&_sync=FULL"},
}

// TestReplication_LateJoinAfterRetentionGetsSnapshot: a replica that joins
// after retention removed the start of the history, and a replica that
// comes back after its next LTX file was removed, both converge through a
// snapshot; a replica that comes back while the history is still there
// catches up with LTX files alone.
func TestReplication_LateJoinAfterRetentionGetsSnapshot(t *testing.T) {
	RequireFUSE(t)
	t.Run("history removed", func(t *testing.T) {
		p := StartNode(t, NodeOptions{Retention: "1s", RetentionInterval: "200ms"})
		var names []string
		for _, m := range snapshotModes {
			names = append(names, m.name)
			writeRows(t, p.DBPath(m.name), m.dsn, "before", 30)
		}
		for _, name := range names {
			waitHistoryGone(t, p, name)
		}

		r := StartNode(t, NodeOptions{Primary: p})
		want := waitConverged(t, ConvergeTimeout, p, []*Node{r}, names...)
		for _, name := range names {
			requireLogMentions(t, "late replica", r.Log(), "snapshot applied", name)
		}
		requireSameContent(t, p, r, want, names...)

		// Down while 50 transactions commit and retention removes them.
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, m := range snapshotModes {
			writeRows(t, p.DBPath(m.name), m.dsn, "while-down", 50)
		}
		for _, name := range names {
			waitHistoryGone(t, p, name)
		}
		pOff, rOff := len(p.Log()), len(r.Log())
		r.Restart(t)
		want = waitConverged(t, ConvergeTimeout, p, []*Node{r}, names...)
		for _, name := range names {
			requireLogMentions(t, "primary", logSince(p, pOff), "snapshot sent", name, "retention")
			requireLogMentions(t, "restarted replica", logSince(r, rOff), "snapshot applied", name)
		}
		requireSameContent(t, p, r, want, names...)
	})

	t.Run("history kept", func(t *testing.T) {
		p, rs := startCluster(t, 1, NodeOptions{})
		r := rs[0]
		var names []string
		for _, m := range snapshotModes {
			names = append(names, m.name)
			writeRows(t, p.DBPath(m.name), m.dsn, "before", 10)
		}
		waitConverged(t, ConvergeTimeout, p, rs, names...)
		if err := r.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, m := range snapshotModes {
			writeRows(t, p.DBPath(m.name), m.dsn, "while-down", 50)
		}
		rOff := len(r.Log())
		r.Restart(t)
		want := waitConverged(t, ConvergeTimeout, p, rs, names...)
		if log := logSince(r, rOff); strings.Contains(log, "snapshot applied") {
			t.Errorf("the replica needed a snapshot although the primary kept every LTX file:\n%s", log)
		}
		requireSameContent(t, p, r, want, names...)
	})
}

// TestReplication_DivergedReplicaIsResnapshotted makes a replica's data
// directory diverge from the primary's history — the node runs alone as a
// primary for a while, as an old primary does in a split brain — then
// starts it as a replica again: each database must end at the primary's
// position and content, whether the diverged copy has the same TXID as the
// primary, a greater one, or a smaller one.
func TestReplication_DivergedReplicaIsResnapshotted(t *testing.T) {
	RequireFUSE(t)
	cases := []struct {
		name          string
		alone, others int // transactions on the lone node, then on the primary
		check         func(b, a pos) bool
		desc          string
	}{
		{"same-txid.db", 3, 3, func(b, a pos) bool { return b.txid == a.txid && b.sum != a.sum }, "same TXID, different checksum"},
		{"ahead.db", 8, 3, func(b, a pos) bool { return b.txid > a.txid }, "replica ahead of the primary"},
		{"behind.db", 1, 4, func(b, a pos) bool { return b.txid < a.txid }, "replica behind on a different history"},
	}
	a := StartNode(t, NodeOptions{Name: "primary-a"})
	b := StartNode(t, NodeOptions{Name: "b", Primary: a})
	var names []string
	for _, c := range cases {
		names = append(names, c.name)
		writeRows(t, a.DBPath(c.name), "_journal_mode=DELETE", "common", 5)
	}
	waitConverged(t, ConvergeTimeout, a, []*Node{b}, names...)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}

	// B alone, as its own primary, on the same data directory.
	reconfigure(t, b, nil)
	b.Restart(t)
	for _, c := range cases {
		writeRows(t, b.DBPath(c.name), "_journal_mode=DELETE", "split-brain", c.alone)
	}
	bpos := map[string]pos{}
	for _, name := range names {
		bpos[name] = readPos(t, b, name)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		writeRows(t, a.DBPath(c.name), "_journal_mode=DELETE", "authoritative", c.others)
		if ap := readPos(t, a, c.name); !c.check(bpos[c.name], ap) {
			t.Fatalf("%s: setup failed to make %q: lone node at %s, primary at %s", c.name, c.desc, bpos[c.name], ap)
		}
	}

	reconfigure(t, b, a)
	aOff := len(a.Log())
	b.Restart(t)
	want := waitConverged(t, ConvergeTimeout, a, []*Node{b}, names...)
	requireSameContent(t, a, b, want, names...)
	for _, c := range cases {
		requireLogMentions(t, "primary", logSince(a, aOff), "snapshot sent", c.name, "diverged")
		db := OpenDB(t, b.DBPath(c.name), "mode=ro")
		if n := queryInt(t, db, "SELECT count(*) FROM t WHERE v LIKE 'split-brain-%'"); n != 0 {
			t.Errorf("%s (%s): %d rows written by the lone node are still on the replica", c.name, c.desc, n)
		}
		closeDB(t, db)
	}
	t.Logf("primary's snapshot reasons:\n%s", grepLines(logSince(a, aOff), "snapshot sent"))

	// The diverged history must be gone from B for good: a restart
	// recovers A's position, not a leftover LTX file of the lone run.
	for _, name := range names {
		for _, f := range ltxFiles(t, b, name) {
			if f > fmt.Sprintf("%016x-%016x.ltx", want[name].txid, want[name].txid) {
				t.Errorf("%s: B still holds LTX file %s beyond the primary's TXID %d", name, f, want[name].txid)
			}
		}
	}
	b.Restart(t)
	for _, name := range names {
		if rp := readPos(t, b, name); rp != want[name] {
			t.Errorf("%s: after a restart B is at %s, primary at %s", name, rp, want[name])
		}
	}
	requireSameContent(t, a, b, waitConverged(t, ConvergeTimeout, a, []*Node{b}, names...), names...)
}

// reconfigure rewrites n's litefs.yml, for its next Restart, as a replica
// of primary, or as a primary of its own when primary is nil.
func reconfigure(t *testing.T, n *Node, primary *Node) {
	t.Helper()
	n.opts.Primary = primary
	if err := os.WriteFile(n.ConfigPath, []byte(n.configYAML()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestReplication_SnapshotCarriesTheUncheckpointedWALOfALargeDatabase: a
// WAL-mode database of several megabytes whose every page is still in the
// primary's WAL (no checkpoint, the connection stays open) reaches a new
// replica whole. The primary copies such a database a few megabytes at a
// time, laying the WAL's pages over each part, while the replica already
// receives the parts before it.
func TestReplication_SnapshotCarriesTheUncheckpointedWALOfALargeDatabase(t *testing.T) {
	RequireFUSE(t)
	const name = "big-wal.db"
	p := StartNode(t, NodeOptions{Retention: "1s", RetentionInterval: "200ms"})
	db := openSingleConn(t, p.DBPath(name), "_journal_mode=WAL&_sync=NORMAL")
	defer closeDB(t, db)
	mustExec(t, db, "PRAGMA wal_autocheckpoint=0")
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
	mustExec(t, db, `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 3000)
		INSERT INTO t(v) SELECT randomblob(3000) FROM s`)
	for id := 1; id <= 3000; id += 499 { // later versions of pages spread over the file
		mustExec(t, db, "UPDATE t SET v = randomblob(3000) WHERE id = ?", id)
	}
	waitHistoryGone(t, p, name) // so the new replica needs a snapshot
	r := StartNode(t, NodeOptions{Primary: p})
	want := waitConverged(t, ConvergeTimeout, p, []*Node{r}, name)
	requireLogMentions(t, "new replica", r.Log(), "snapshot applied", name)
	requireSameContent(t, p, r, want, name)
}
