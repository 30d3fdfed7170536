package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/litefs/litefs/internal/s3test"
)

const (
	backupDB           = "backup.db"      // the lag and commit-rate database, on both primaries
	backupBucket       = "litefs-bench"   // the bucket created in the local store
	backupPrefix       = "bench"          // backup.path
	backupSyncInterval = time.Second      // backup.sync-interval
	backupSeenTimeout  = 30 * time.Second // after the last commit, wait this long for the bucket to hold it
	backupRounds       = 4                // full-rate rounds, each with a run on both primaries
	backupTimeout      = 20 * time.Minute // the whole section
)

// backupLag summarizes the backup lag of one rate.
type backupLag struct {
	name     string
	duration time.Duration // timed length of the commits (all rounds)
	commits  int
	lags     []time.Duration // sorted
}

// rate is the achieved commits per second.
func (l backupLag) rate() float64 { return float64(l.commits) / l.duration.Seconds() }

// backupResult holds the figures of the backup section.
type backupResult struct {
	steady, full backupLag
	puts         int64 // objects uploaded during the steady run
	errors       int64 // failed syncs during the lag runs
	offRate      float64
	restore      snapStats // bytes, restore time (catchUp) and plain copy time
	backupMB     int
}

// runBackup starts versitygw on 127.0.0.1 and a second static primary with
// backup to it, measures backup lag, PUTs, commit rate with backup on vs
// off (off: the benchmark's main primary, same binary and config without
// backup) and a restore next to a plain copy. Server, daemon and files are
// removed on every path out.
func runBackup(ctx context.Context, opts options, w *workDir, off *daemon, progress io.Writer) (res backupResult, err error) {
	ctx, cancel := context.WithTimeout(ctx, backupTimeout)
	defer cancel()
	res.backupMB = opts.backupMB
	bin, err := s3test.FindBinary()
	if err != nil {
		return res, fmt.Errorf("backup needs the S3 server (make s3): %w", err)
	}
	srv, err := s3test.Launch(bin, filepath.Join(w.root, "s3"), backupBucket, s3test.TLS{})
	if srv != nil {
		defer srv.Close()
	}
	if err != nil {
		return res, fmt.Errorf("start versitygw: %w", err)
	}
	fmt.Fprintf(progress, "==> backup: versitygw at %s, primary with backup in %s\n", srv.Endpoint, w.backup.mnt)
	on, err := startBackupDaemon(ctx, opts.litefs, w.backup, srv)
	if err != nil {
		return res, err
	}
	defer func() {
		if stopErr := on.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop litefs (backup): %w", stopErr))
		}
	}()
	if err := measureBackup(ctx, opts, off, on, &res, progress); err != nil {
		return res, err
	}
	res.restore, err = measureRestore(ctx, opts, w, on, progress)
	return res, err
}

// backupYAML is the backup section of the primary with backup on.
func backupYAML(srv *s3test.Server) string {
	return fmt.Sprintf(`backup:
  type: s3
  bucket: %q
  path: %q
  endpoint: %q
  region: %q
  force-path-style: true
  sync-interval: %s
`, srv.Bucket, backupPrefix, srv.Endpoint, s3test.Region, backupSyncInterval)
}

// startBackupDaemon starts a static primary on dirs with backup to srv and
// waits for its mount. The AWS credentials reach it through the
// environment (s3test.Launch set them).
func startBackupDaemon(ctx context.Context, bin string, dirs mountDirs, srv *s3test.Server) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d, err := launch(bin, dirs, configYAML(dirs.data, dirs.mnt, port)+backupYAML(srv), nil)
	if err != nil {
		return nil, err
	}
	d.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := d.waitReady(ctx); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// openBackupWriter creates backup.db in mnt (WAL, synchronous=NORMAL, the
// lag table) and prepares its single-row insert.
func openBackupWriter(ctx context.Context, mnt string) (*lagWriter, error) {
	db, err := openFreshSchema(ctx, mnt, backupDB, "WAL", "NORMAL", lagSchema)
	if err != nil {
		return nil, err
	}
	stmt, err := db.PrepareContext(ctx, "INSERT INTO lag (id, t) VALUES (?, ?)")
	if err != nil {
		return nil, errors.Join(fmt.Errorf("prepare insert: %w", err), db.Close())
	}
	return &lagWriter{db: db, stmt: stmt}, nil
}

// measureBackup runs the steady 100 tx/s run on the primary with backup,
// then backupRounds full-rate rounds on each primary, alternating.
func measureBackup(ctx context.Context, opts options, off, on *daemon, res *backupResult, progress io.Writer) (err error) {
	var offW, onW *lagWriter
	for _, side := range []struct {
		d *daemon
		w **lagWriter
	}{{off, &offW}, {on, &onW}} {
		if *side.w, err = openBackupWriter(ctx, side.d.mnt); err != nil {
			return err
		}
		defer func(lw *lagWriter) { err = errors.Join(err, closeDB(lw.db, lw.stmt)) }(*side.w)
	}
	txid, err := readTXID(on.mnt, backupDB)
	if err != nil {
		return err
	}
	if err := waitBucket(ctx, on, backupDB, txid, backupSeenTimeout); err != nil {
		return fmt.Errorf("first backup of %s: %w", backupDB, err)
	}
	steady := lagPhase{name: "100 tx/s", rate: 100, duration: opts.backupDuration}
	run, err := backupPhase(ctx, on, onW, steady, true)
	if err != nil {
		return fmt.Errorf("backup lag, %s: %w", steady.name, err)
	}
	res.steady, res.puts, res.errors = run.lag(steady.name), run.puts, run.errors
	printLag(progress, res.steady, fmt.Sprintf(", %d objects uploaded", run.puts))

	full := lagPhase{name: "full rate", duration: opts.backupDuration / (2 * backupRounds)}
	// A first, unmeasured run on each side: the first full-rate run on a
	// primary was often far slower than the next ones.
	warm := lagPhase{name: "warm-up", duration: time.Second}
	for _, side := range []struct {
		d      *daemon
		w      *lagWriter
		backup bool
	}{{off, offW, false}, {on, onW, true}} {
		if _, err := backupPhase(ctx, side.d, side.w, warm, side.backup); err != nil {
			return fmt.Errorf("full rate warm-up, backup %t: %w", side.backup, err)
		}
	}
	var offRuns, onRuns []phaseRun
	for i := range backupRounds {
		// Off-on, then on-off: a machine that speeds up or slows down
		// during the rounds favours neither side.
		for _, backup := range []bool{i%2 == 1, i%2 == 0} {
			d, lw, runs := off, offW, &offRuns
			if backup {
				d, lw, runs = on, onW, &onRuns
			}
			r, err := backupPhase(ctx, d, lw, full, backup)
			if err != nil {
				return fmt.Errorf("full rate, backup %t, round %d: %w", backup, i+1, err)
			}
			*runs = append(*runs, r)
			res.errors += r.errors
		}
		fmt.Fprintf(progress, "    %-45s off %.0f tx/s, on %.0f tx/s\n", fmt.Sprintf("commit rate, round %d", i+1),
			offRuns[i].lag("").rate(), onRuns[i].lag("").rate())
	}
	res.offRate = joinRuns("", offRuns).rate()
	res.full = joinRuns(full.name, onRuns)
	printLag(progress, res.full, "")
	return nil
}

// printLag logs one lag figure.
func printLag(progress io.Writer, l backupLag, extra string) {
	fmt.Fprintf(progress, "    %-45s p50 %s, p99 %s, max %s (%.0f tx/s, %d tx%s)\n", "backup lag, "+l.name,
		formatMS(percentile(l.lags, 50)), formatMS(percentile(l.lags, 99)), formatMS(percentile(l.lags, 100)),
		l.rate(), l.commits, extra)
}

// phaseRun is one timed run of commits on one primary.
type phaseRun struct {
	elapsed      time.Duration
	commits      int
	lags         []time.Duration // commit returned -> the bucket holds its TXID
	puts, errors int64           // uploads and failed syncs during the run
}

// lag summarizes the run.
func (r phaseRun) lag(name string) backupLag { return joinRuns(name, []phaseRun{r}) }

// joinRuns pools the commits and lags of several runs.
func joinRuns(name string, runs []phaseRun) backupLag {
	l := backupLag{name: name}
	for _, r := range runs {
		l.duration += r.elapsed
		l.commits += r.commits
		l.lags = append(l.lags, r.lags...)
	}
	slices.Sort(l.lags)
	return l
}

// backupPhase commits on d as ph says while a poller reads d's /info; with
// backup it then waits until the bucket holds the last commit and pairs
// commits with the times the bucket first held them.
func backupPhase(ctx context.Context, d *daemon, w *lagWriter, ph lagPhase, backup bool) (phaseRun, error) {
	if err := d.check(); err != nil {
		return phaseRun{}, err
	}
	base, err := readTXID(d.mnt, backupDB)
	if err != nil {
		return phaseRun{}, err
	}
	before, err := readBucket(ctx, d.url, backupDB)
	if err != nil {
		return phaseRun{}, err
	}
	p := startBucketPoller(ctx, d.url, backupDB)
	began := time.Now()
	commits, err := w.commitFor(ctx, ph)
	run := phaseRun{elapsed: time.Since(began), commits: len(commits)}
	after, afterErr := readBucket(ctx, d.url, backupDB)
	want := uint64(0)
	if backup {
		want = base + uint64(len(commits))
	}
	samples, pollErr := p.wait(want)
	if err := errors.Join(err, afterErr, pollErr); err != nil {
		return run, err
	}
	// Each INSERT must be exactly one TXID, or the times do not pair up.
	if txid, err := readTXID(d.mnt, backupDB); err != nil {
		return run, err
	} else if txid != base+uint64(len(commits)) {
		return run, fmt.Errorf("primary is at TXID %d after %d commits from TXID %d", txid, len(commits), base)
	}
	run.puts, run.errors = after.uploads-before.uploads, after.errors-before.errors
	if backup {
		run.lags = backupLags(base, commits, samples)
	}
	return run, nil
}

// waitBucket polls d's /info until the bucket holds database name up to
// txid.
func waitBucket(ctx context.Context, d *daemon, name string, txid uint64, timeout time.Duration) error {
	return d.poll(ctx, timeout, 50*time.Millisecond, func() (bool, error) {
		st, err := readBucket(ctx, d.url, name)
		return st.found && uint64(st.txid) >= txid, err
	})
}

// checkRestored opens the restored database read-only and checks that it
// has rows rows.
func checkRestored(ctx context.Context, path string, rows int) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("open restored database: %w", err)
	}
	defer db.Close()
	var got sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM big").Scan(&got); err != nil {
		return fmt.Errorf("read restored database: %w", err)
	}
	if !got.Valid || got.Int64 != int64(rows) {
		return fmt.Errorf("restored database has max(id) = %d, want %d", got.Int64, rows)
	}
	return closeDB(db, nil)
}
