package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
	litefsgo "github.com/superfly/litefs-go"
)

// The HALT section (SPEC section 8): the latency and rate of single-row
// writes forwarded from a replica under the HALT lock, and what repeated
// HALTs cost the primary's own writers.

const (
	haltDB       = "halt.db"
	haltSchema   = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"
	haltInsert   = "INSERT INTO t (v) VALUES (?)"
	haltBatch    = 10 // inserts under one HALT for the batched figure
	haltWarmup   = 20 // untimed iterations before each timed loop
	haltStallMax = 100 * time.Millisecond
	// haltErrorLimit is how many failed HALT iterations the contended run
	// tolerates before it gives up: a few can be a fault worth reporting,
	// many mean the run measures nothing.
	haltErrorLimit = 50
	// haltGrace is how long the watchdog waits after the section's context
	// ended (deadline or signal) before it kills the section's daemons, so
	// that a call blocked in the mount (a HALT wait is not interruptible)
	// returns and cleanup can run.
	haltGrace = 5 * time.Second
)

// haltReferenceNote gives the figures of the system litefs replaces.
const haltReferenceNote = "reference: LiteFS v0.5 on this machine class: forwarded write ~10 ms, ~90 writes/s; " +
	"the primary keeps 7-24% of its write rate under repeated HALTs, with single writes stalled up to 2.7 s"

// writeRun is one timed loop: the duration of each iteration, the rows it
// committed and the wall time.
type writeRun struct {
	lat     []time.Duration // one per iteration, sorted
	writes  int             // rows committed in the timed part
	elapsed time.Duration
	busy    int // writes that failed with SQLITE_BUSY (primary under HALTs)
}

// rate returns committed rows per second.
func (r writeRun) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.writes) / r.elapsed.Seconds()
}

// pct returns the p-th percentile iteration time.
func (r writeRun) pct(p float64) time.Duration { return percentile(r.lat, p) }

// halterStats describe the replica's take-HALT/insert/release loop that
// runs against the primary's writer.
type halterStats struct {
	iters   []time.Duration // Halt called -> Unhalt returned, successful iterations, sorted
	maxHold time.Duration   // longest Halt returned -> Unhalt returned
	writes  int             // rows the halter committed
	errors  int             // failed iterations
	lastErr error
}

// haltResult holds the HALT section's figures.
type haltResult struct {
	primary   writeRun // single-row inserts directly on the primary (baseline)
	forwarded writeRun // replica: Halt, one insert, Unhalt per iteration
	batched   writeRun // replica: Halt, haltBatch inserts, Unhalt per iteration
	alone     writeRun // primary insert loop alone
	contended writeRun // the same loop while the replica halts continuously
	halter    halterStats
	base      uint64 // primary's TXID of halt.db once created
	txid      uint64 // primary's TXID of halt.db at the end
	committed uint64 // insert transactions the section committed to halt.db
}

// haltSection runs the HALT measurements on halt.db of primary with a
// replica started on dirs.
type haltSection struct {
	primary, replica *daemon
	pdb              *sql.DB // primary connection (WAL, NORMAL, busy_timeout 5 s)
	pins             *sql.Stmt
	rdb              *sql.DB // replica connection, opened once
	rins             *sql.Stmt
	lock             *os.File // the replica's halt.db-lock, opened once
	pool             []string
	n                int
	duration         time.Duration
	base             uint64 // primary's TXID of halt.db once created
	committed        uint64 // single-row insert transactions committed since
}

// haltTimeout bounds the whole section: five timed loops of d, warm-ups,
// starting and catching up a replica, and slack.
func haltTimeout(d time.Duration) time.Duration {
	return 6*d + readyTimeout + catchUpTimeout + 30*time.Second
}

// runHalt measures HALT write forwarding against primary. It starts its own
// replica on w.halt and stops it again on every path out. The section is
// bounded by haltTimeout: past it, a watchdog kills the daemons so that no
// call stays blocked in a mount.
func runHalt(ctx context.Context, opts options, w *workDir, primary *daemon, progress io.Writer) (res haltResult, err error) {
	if err := primary.check(); err != nil {
		return res, fmt.Errorf("before HALT: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, haltTimeout(opts.duration))
	defer cancel()

	s := &haltSection{primary: primary, pool: valuePool(), duration: opts.duration}
	if s.pdb, err = openFreshSchema(ctx, primary.mnt, haltDB, "WAL", "NORMAL", haltSchema); err != nil {
		return res, err
	}
	defer s.pdb.Close()
	// Creating the database takes more than one transaction (the switch
	// to WAL, CREATE TABLE): count from where it ended.
	if s.base, err = readTXID(primary.mnt, haltDB); err != nil {
		return res, err
	}
	if s.pins, err = s.pdb.PrepareContext(ctx, haltInsert); err != nil {
		return res, fmt.Errorf("prepare insert on the primary: %w", err)
	}
	defer s.pins.Close()

	fmt.Fprintf(progress, "==> starting a replica of %s in %s\n", haltDB, w.halt.mnt)
	began := time.Now()
	if s.replica, err = launchReplica(opts.litefs, w.halt, primary, []string{haltDB}); err != nil {
		return res, err
	}
	defer func() {
		if stopErr := s.replica.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop HALT replica: %w", stopErr))
		}
	}()
	stopWatchdog := watchdog(ctx, progress, primary, s.replica)
	defer stopWatchdog()
	if err := s.replica.waitReady(ctx); err != nil {
		return res, fmt.Errorf("HALT replica: %w", err)
	}
	if err := s.replica.waitSamePos(ctx, primary, haltDB, time.Millisecond); err != nil {
		return res, fmt.Errorf("HALT replica catching up: %w", err)
	}
	fmt.Fprintf(progress, "    %-45s %s\n", "replica started and caught up", time.Since(began).Round(time.Millisecond))
	if err := s.openReplica(ctx); err != nil {
		return res, err
	}
	defer s.closeReplica()

	if res, err = s.run(ctx, progress); err != nil {
		return res, err
	}
	txid, err := s.checkRecorded(ctx)
	if err = errors.Join(err, primary.check(), s.replica.check()); err != nil {
		return res, fmt.Errorf("after HALT: %w", err)
	}
	res.base, res.txid, res.committed = s.base, txid, s.committed
	return res, s.closeReplica()
}

// run runs the timed loops in order and logs each.
func (s *haltSection) run(ctx context.Context, progress io.Writer) (res haltResult, err error) {
	logRun := func(name string, r writeRun) {
		fmt.Fprintf(progress, "    %-45s p50 %s, p99 %s, max %s, %.0f writes/s (%d writes)\n",
			name, formatMS(r.pct(50)), formatMS(r.pct(99)), formatMS(r.pct(100)), r.rate(), r.writes)
	}
	if res.primary, err = s.timed(ctx, s.primaryInsert(false)); err != nil {
		return res, fmt.Errorf("insert on the primary: %w", err)
	}
	logRun("insert on the primary", res.primary)
	if err := s.level(ctx); err != nil {
		return res, err
	}
	if res.forwarded, err = s.timed(ctx, s.forward(1)); err != nil {
		return res, fmt.Errorf("forwarded write: %w", err)
	}
	logRun("forwarded: Halt, insert, Unhalt", res.forwarded)
	if err := s.level(ctx); err != nil {
		return res, err
	}
	if res.batched, err = s.timed(ctx, s.forward(haltBatch)); err != nil {
		return res, fmt.Errorf("forwarded writes, %d per HALT: %w", haltBatch, err)
	}
	logRun(fmt.Sprintf("forwarded: Halt, %d inserts, Unhalt", haltBatch), res.batched)
	if err := s.level(ctx); err != nil {
		return res, err
	}
	if res.alone, err = s.timed(ctx, s.primaryInsert(true)); err != nil {
		return res, fmt.Errorf("primary writer alone: %w", err)
	}
	logRun("primary writer alone", res.alone)
	if err := s.level(ctx); err != nil {
		return res, err
	}
	if res.contended, res.halter, err = s.contend(ctx); err != nil {
		return res, err
	}
	logRun("primary writer under repeated HALTs", res.contended)
	h := res.halter
	fmt.Fprintf(progress, "    %-45s %d HALTs, p50 %s, max %s (held max %s), %d errors\n", "replica halter",
		len(h.iters), formatMS(percentile(h.iters, 50)), formatMS(percentile(h.iters, 100)), formatMS(h.maxHold), h.errors)
	return res, nil
}

// timed runs op haltWarmup times untimed, then for the section's duration,
// and returns the timed iterations. op returns the rows it committed.
func (s *haltSection) timed(ctx context.Context, op func(context.Context) (int, bool, error)) (writeRun, error) {
	var r writeRun
	for range haltWarmup {
		if _, _, err := op(ctx); err != nil {
			return r, fmt.Errorf("warm-up: %w", err)
		}
	}
	began := time.Now()
	for r.elapsed < s.duration {
		t0 := time.Now()
		n, busy, err := op(ctx)
		now := time.Now()
		if err != nil {
			return r, err
		}
		if busy {
			r.busy++
		}
		r.lat = append(r.lat, now.Sub(t0))
		r.writes += n
		r.elapsed = now.Sub(began)
	}
	slices.Sort(r.lat)
	return r, nil
}

// primaryInsert returns an op that inserts one row on the primary. With
// tolerateBusy an SQLITE_BUSY (busy_timeout ran out) counts as a stalled
// write instead of failing the run.
func (s *haltSection) primaryInsert(tolerateBusy bool) func(context.Context) (int, bool, error) {
	return func(ctx context.Context) (int, bool, error) {
		s.n++
		_, err := s.pins.ExecContext(ctx, s.pool[s.n%valuePoolLen])
		if err != nil {
			if tolerateBusy && isBusy(err) {
				return 0, true, nil
			}
			return 0, false, fmt.Errorf("insert on the primary: %w", err)
		}
		s.committed++
		return 1, false, nil
	}
}

// forward returns an op that takes the HALT on the replica, inserts n rows
// (one transaction each, each forwarded before its COMMIT returns) and
// releases the HALT.
func (s *haltSection) forward(n int) func(context.Context) (int, bool, error) {
	return func(ctx context.Context) (int, bool, error) {
		if err := litefsgo.Halt(s.lock); err != nil {
			return 0, false, fmt.Errorf("Halt: %w", err)
		}
		for i := range n {
			s.n++
			if _, err := s.rins.ExecContext(ctx, s.pool[s.n%valuePoolLen]); err != nil {
				return i, false, errors.Join(fmt.Errorf("insert under HALT: %w", err), unhalt(s.lock))
			}
			s.committed++
		}
		if err := unhalt(s.lock); err != nil {
			return n, false, err
		}
		return n, false, nil
	}
}

// unhalt releases the HALT lock held on f.
func unhalt(f *os.File) error {
	if err := litefsgo.Unhalt(f); err != nil {
		return fmt.Errorf("Unhalt: %w", err)
	}
	return nil
}

// contend runs the primary's insert loop while a goroutine on the replica
// loops take-HALT/insert/release. The primary's loop starts once the
// halter has completed its first iteration and the halter stops after it.
func (s *haltSection) contend(ctx context.Context) (writeRun, halterStats, error) {
	hctx, stopHalter := context.WithCancel(ctx)
	defer stopHalter()
	first := make(chan struct{})
	var (
		h  halterStats
		wg sync.WaitGroup
	)
	pool := valuePool()
	wg.Add(1)
	go func() {
		defer wg.Done()
		h = halterLoop(hctx, s.lock, s.rins, pool, first)
	}()
	var r writeRun
	var err error
	select {
	case <-first:
		r, err = s.timed(ctx, s.primaryInsert(true))
	case <-hctx.Done():
		err = fmt.Errorf("the halter never completed a HALT: %w", hctx.Err())
	}
	stopHalter()
	wg.Wait()
	s.committed += uint64(h.writes)
	slices.Sort(h.iters)
	if err != nil {
		return r, h, fmt.Errorf("primary writer under repeated HALTs: %w", err)
	}
	if h.errors > haltErrorLimit || len(h.iters) == 0 {
		return r, h, fmt.Errorf("replica halter: %d failed iterations, %d succeeded; last error: %w", h.errors, len(h.iters), h.lastErr)
	}
	return r, h, nil
}

// halterLoop takes the HALT on lock, inserts one row through stmt and
// releases, until ctx ends or too many iterations failed. It closes first
// after the first successful iteration, or when it gives up.
func halterLoop(ctx context.Context, lock *os.File, stmt *sql.Stmt, pool []string, first chan struct{}) halterStats {
	var h halterStats
	signal := sync.OnceFunc(func() { close(first) })
	defer signal()
	for i := 0; ctx.Err() == nil && h.errors <= haltErrorLimit; i++ {
		t0 := time.Now()
		if err := litefsgo.Halt(lock); err != nil {
			h.errors++
			h.lastErr = fmt.Errorf("Halt: %w", err)
			time.Sleep(time.Millisecond) // do not spin on an immediate failure
			continue
		}
		t1 := time.Now()
		// A fresh context: the insert must not be cut short by the end of
		// the run, or the iteration would count as a failure.
		_, err := stmt.ExecContext(context.Background(), pool[i%valuePoolLen])
		uerr := unhalt(lock)
		t2 := time.Now()
		if err = errors.Join(err, uerr); err != nil {
			h.errors++
			h.lastErr = err
			continue
		}
		h.writes++
		h.iters = append(h.iters, t2.Sub(t0))
		h.maxHold = max(h.maxHold, t2.Sub(t1))
		signal()
	}
	return h
}

// isBusy reports whether err is SQLite's SQLITE_BUSY or SQLITE_LOCKED.
func isBusy(err error) bool {
	var e sqlite3.Error
	return errors.As(err, &e) && (e.Code == sqlite3.ErrBusy || e.Code == sqlite3.ErrLocked)
}

// level waits until the replica is at the primary's position of halt.db.
func (s *haltSection) level(ctx context.Context) error {
	if err := s.replica.waitSamePos(ctx, s.primary, haltDB, time.Millisecond); err != nil {
		return fmt.Errorf("HALT replica catching up: %w", err)
	}
	return nil
}

// openReplica opens the replica's connection to halt.db and its -lock file,
// once, before any timed loop, and checks the connection reads the table.
func (s *haltSection) openReplica(ctx context.Context) error {
	path := filepath.Join(s.replica.mnt, haltDB)
	var err error
	if s.rdb, err = sql.Open("sqlite3", dsn(path, "WAL", "NORMAL")); err != nil {
		return fmt.Errorf("open %s on the replica: %w", haltDB, err)
	}
	s.rdb.SetMaxOpenConns(1)
	var n int
	if err := s.rdb.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		return fmt.Errorf("read %s on the replica: %w", haltDB, err)
	}
	if s.rins, err = s.rdb.PrepareContext(ctx, haltInsert); err != nil {
		return fmt.Errorf("prepare insert on the replica: %w", err)
	}
	if s.lock, err = os.OpenFile(path+"-lock", os.O_RDWR, 0); err != nil {
		return fmt.Errorf("open the HALT lock file: %w", err)
	}
	return nil
}

// closeReplica closes the replica's statement, connection and lock file
// (which releases a HALT still held). It is safe to call more than once.
func (s *haltSection) closeReplica() error {
	var errs []error
	if s.rins != nil {
		errs = append(errs, s.rins.Close())
		s.rins = nil
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
		s.rdb = nil
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
		s.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close %s on the replica: %w", haltDB, err)
	}
	return nil
}

// checkRecorded checks that every committed insert, local or forwarded,
// advanced the primary's TXID by exactly one and left one row, and that
// the replica ends at the primary's position. It returns the primary's
// TXID.
func (s *haltSection) checkRecorded(ctx context.Context) (uint64, error) {
	if err := s.level(ctx); err != nil {
		return 0, err
	}
	txid, err := readTXID(s.primary.mnt, haltDB)
	if err != nil {
		return 0, err
	}
	if txid != s.base+s.committed {
		return txid, fmt.Errorf("primary's %s went from TXID %d to %d, but the benchmark committed %d insert transactions to it",
			haltDB, s.base, txid, s.committed)
	}
	var rows uint64
	if err := s.pdb.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&rows); err != nil {
		return txid, fmt.Errorf("count rows of %s on the primary: %w", haltDB, err)
	}
	if rows != s.committed {
		return txid, fmt.Errorf("primary's %s has %d rows, want %d", haltDB, rows, s.committed)
	}
	return txid, nil
}

// watchdog kills daemons (SIGKILL to their process groups) if ctx ends,
// after haltGrace, unless the returned stop function was called first. A
// killed daemon fails every call blocked in its mount, so the section
// returns and its deferred cleanup unmounts.
func watchdog(ctx context.Context, progress io.Writer, daemons ...*daemon) (stop func()) {
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		select {
		case <-done:
			return
		case <-time.After(haltGrace):
		}
		fmt.Fprintf(progress, "litefs-bench: section still running %s after it was stopped (%v): killing its daemons\n",
			haltGrace, context.Cause(ctx))
		for _, d := range daemons {
			d.kill()
		}
	}()
	return sync.OnceFunc(func() { close(done) })
}

// kill sends SIGKILL to the daemon's process group if it still runs. The
// mount is left for stop to remove.
func (d *daemon) kill() {
	select {
	case <-d.done:
	default:
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	}
}
