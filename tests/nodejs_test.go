package tests

import (
	"os"
	"strconv"
	"testing"
)

// End-to-end test of a Node.js application using the npm package litefs-js
// (installed at test time, see harness_nodejs_test.go) against a primary and
// a replica. Node stats every file it reads with statx(STATX_BTIME); while
// the mount answered that with ENOTDIR, litefs-js swallowed the error and
// said every node was the primary and every TXID was 0.

// litefsJSProbe is the Node script: argv is the litefs-js module path, the
// mode ("probe" or "wait") and, for "wait", the TXID to wait for. It prints
// "waiting" before it waits, then one JSON object.
const litefsJSProbe = `
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [modPath, mode, target] = process.argv.slice(2)
const lfs = await import(pathToFileURL(modPath).href)
const dir = process.env.LITEFS_DIR
const db = process.env.DATABASE_FILENAME
const attempt = async fn => {
	try { return { value: await fn() } } catch (e) { return { error: String((e && e.code) || e) } }
}
const out = { exports: Object.keys(lfs).sort() }
out.info = await attempt(() => lfs.getInstanceInfo())
out.infoSync = await attempt(() => lfs.getInstanceInfoSync())
out.txNumber = await attempt(() => lfs.getTxNumber())
if (typeof lfs.getTxNumberSync === 'function') out.txNumberSync = await attempt(() => lfs.getTxNumberSync())
out.stat = {}
for (const name of [db, db + '-pos', '.primary', '.lag', '']) {
	out.stat[name] = await attempt(() => fs.statSync(path.join(dir, name)).size)
}
if (mode === 'wait') {
	const want = Number(target)
	out.before = await lfs.getTxNumber()
	console.log('waiting')
	const start = Date.now()
	let ok = false
	// waitForUpToDateTxNumber gives up after about one interval once it
	// has seen an old TXID (its loop condition is inverted in 2.0.2), so
	// it is asked again until the overall limit.
	while (!ok && Date.now() - start < 20000) {
		ok = await lfs.waitForUpToDateTxNumber(want, { litefsDir: dir, databaseFilename: db, timeoutMs: 100, intervalMs: 20 })
	}
	out.waited = { ok, ms: Date.now() - start, after: await lfs.getTxNumber() }
}
console.log(JSON.stringify(out))
`

// jsResult is a value or the error a litefs-js call threw.
type jsResult[T any] struct {
	Value T
	Error string
}

type jsInstanceInfo struct {
	PrimaryInstance  string
	CurrentInstance  string
	CurrentIsPrimary bool
}

// litefsJSOut is the probe script's output.
type litefsJSOut struct {
	Exports        []string
	Info, InfoSync jsResult[jsInstanceInfo]
	TxNumber       jsResult[uint64]
	TxNumberSync   *jsResult[uint64]
	Stat           map[string]jsResult[int64]
	Before         uint64
	Waited         *struct {
		OK    bool
		MS    int64
		After uint64
	}
}

// startLitefsJS starts the probe script against node n's mount.
func startLitefsJS(t *testing.T, mod string, n *Node, db, mode string, target uint64) *nodeRun {
	t.Helper()
	env := []string{"LITEFS_DIR=" + n.MountDir, "DATABASE_FILENAME=" + db}
	return startNodeScript(t, litefsJSProbe, env, mod, mode, strconv.FormatUint(target, 10))
}

// probeLitefsJS runs the probe script once against node n.
func probeLitefsJS(t *testing.T, mod string, n *Node, db string) litefsJSOut {
	t.Helper()
	var out litefsJSOut
	startLitefsJS(t, mod, n, db, "probe", 0).result(t, &out)
	t.Logf("%s: litefs-js exports %v; getInstanceInfo %+v; getTxNumber %+v; stat %+v", n.Name, out.Exports, out.Info, out.TxNumber, out.Stat)
	return out
}

// checkLitefsJS checks what litefs-js said on one node: who the primary
// is and the TXID, and that Node could stat every file that exists.
func checkLitefsJS(t *testing.T, role string, out litefsJSOut, primary string, isPrimary bool, txid uint64) {
	t.Helper()
	for _, info := range []struct {
		fn  string
		got jsResult[jsInstanceInfo]
	}{{"getInstanceInfo", out.Info}, {"getInstanceInfoSync", out.InfoSync}} {
		want := jsInstanceInfo{PrimaryInstance: primary, CurrentInstance: info.got.Value.CurrentInstance, CurrentIsPrimary: isPrimary}
		if info.got.Error != "" || info.got.Value != want {
			t.Errorf("%s: %s() = %+v, want %+v", role, info.fn, info.got, want)
		}
	}
	txs := []jsResult[uint64]{out.TxNumber}
	if out.TxNumberSync != nil {
		txs = append(txs, *out.TxNumberSync)
	}
	for _, tx := range txs {
		if tx.Error != "" || tx.Value != txid {
			t.Errorf("%s: getTxNumber = %+v, want %d (the -pos file's TXID)", role, tx, txid)
		}
	}
	for name, st := range out.Stat {
		wantErr := ""
		if name == ".primary" && isPrimary {
			wantErr = "ENOENT"
		}
		if st.Error != wantErr {
			t.Errorf("%s: fs.statSync(%q) error %q, want %q", role, name, st.Error, wantErr)
		}
	}
}

// TestNodeJS_LitefsJSSeesPrimaryReplicaTxNumberAndWaitsForReplication runs
// litefs-js's getInstanceInfo(Sync), getTxNumber and waitForUpToDateTxNumber
// in Node.js on a primary and its replica.
func TestNodeJS_LitefsJSSeesPrimaryReplicaTxNumberAndWaitsForReplication(t *testing.T) {
	RequireFUSE(t)
	mod := requireLitefsJS(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	const name = "app.db"
	db := OpenDB(t, p.DBPath(name), "_journal_mode=DELETE")
	mustExec(t, db, "CREATE TABLE t(v TEXT)")
	mustExec(t, db, "INSERT INTO t VALUES ('a')")
	mustExec(t, db, "INSERT INTO t VALUES ('b')")
	want := waitConverged(t, ConvergeTimeout, p, rs, name)[name]
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if host == p.Name {
		t.Fatalf("the primary's lease hostname %q equals this machine's: the test could not tell the nodes apart", host)
	}

	checkLitefsJS(t, "primary", probeLitefsJS(t, mod, p, name), host, true, want.txid)
	checkLitefsJS(t, "replica", probeLitefsJS(t, mod, r, name), p.Name, false, want.txid)

	// A write on the primary while the replica's application waits for it.
	next := want.txid + 1
	run := startLitefsJS(t, mod, r, name, "wait", next)
	if line := run.next(t); line != "waiting" {
		t.Fatalf("node script: %q, want \"waiting\"", line)
	}
	mustExec(t, db, "INSERT INTO t VALUES ('c')")
	if got := readPos(t, p, name).txid; got != next {
		t.Fatalf("primary TXID %d after one more write, want %d", got, next)
	}
	var out litefsJSOut
	run.result(t, &out)
	t.Logf("replica waitForUpToDateTxNumber(%d): TXID before %d, %+v", next, out.Before, out.Waited)
	switch {
	case out.Waited == nil:
		t.Fatal("the script did not wait")
	case out.Before >= next:
		t.Fatalf("the replica was at TXID %d before the write, want below %d", out.Before, next)
	case !out.Waited.OK || out.Waited.After != next:
		t.Fatalf("replica: waitForUpToDateTxNumber(%d) returned %t after %d ms, TXID %d then", next, out.Waited.OK, out.Waited.MS, out.Waited.After)
	}
}
