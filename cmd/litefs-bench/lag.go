package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	lagDB          = "lag.db"
	lagSchema      = "CREATE TABLE lag (id INTEGER PRIMARY KEY, t INTEGER)"
	lagSeenTimeout = 10 * time.Second            // after the last commit, wait this long for the replica to show it
	reconnectMark  = "disconnected from primary" // a replica's log line when its stream broke
)

// lagPhase is one replication-lag run: commits at rate per second (0: as
// fast as the primary takes them) for duration.
type lagPhase struct {
	name     string
	rate     float64
	duration time.Duration
}

// lagPhases are the lag runs of issue 3: a steady 100 tx/s, then the
// highest rate the primary sustains.
func lagPhases() []lagPhase {
	return []lagPhase{
		{name: "100 tx/s", rate: 100, duration: 5 * time.Second},
		{name: "max rate", rate: 0, duration: 3 * time.Second},
	}
}

// lagStats summarizes one lag run.
type lagStats struct {
	phase    lagPhase
	rate     float64       // achieved commits per second on the primary
	n        int           // transactions measured
	p50, p99 time.Duration // commit returned on the primary -> TXID visible on the replica
	max      time.Duration
	poll     time.Duration // mean time of one -pos read on the replica: the resolution
	// reconnects counts the replica's stream reconnects during the run;
	// each one holds replication back by lease.reconnect-delay.
	reconnects int
}

// lagWriter commits one row per transaction to lag.db on the primary.
type lagWriter struct {
	db   *sql.DB
	stmt *sql.Stmt
	id   int64 // id of the last row inserted
}

// runLag creates lag.db on the primary, waits for replica to have it and
// runs every phase, then checks that a new SQL read on the replica sees the
// last row.
func runLag(ctx context.Context, primary, replica *daemon, progress io.Writer) ([]lagStats, error) {
	db, err := openFreshSchema(ctx, primary.mnt, lagDB, "WAL", "NORMAL", lagSchema)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	stmt, err := db.PrepareContext(ctx, "INSERT INTO lag (id, t) VALUES (?, ?)")
	if err != nil {
		return nil, fmt.Errorf("prepare lag insert: %w", err)
	}
	defer stmt.Close()
	w := &lagWriter{db: db, stmt: stmt}

	var stats []lagStats
	for _, ph := range lagPhases() {
		st, err := w.phase(ctx, ph, primary, replica)
		if err != nil {
			return nil, fmt.Errorf("replication lag, %s: %w", ph.name, err)
		}
		fmt.Fprintf(progress, "    %-45s p50 %s, p99 %s, max %s (%.0f tx/s, %d transactions, %d stream reconnects)\n",
			"replication lag, "+ph.name, formatMS(st.p50), formatMS(st.p99), formatMS(st.max), st.rate, st.n, st.reconnects)
		stats = append(stats, st)
	}
	if err := replica.waitSamePos(ctx, primary, lagDB, time.Millisecond); err != nil {
		return nil, fmt.Errorf("replica catching up on %s: %w", lagDB, err)
	}
	if err := checkMaxID(ctx, replica.mnt, w.id); err != nil {
		return nil, err
	}
	return stats, closeDB(db, stmt)
}

// phase runs one lag phase: it waits until the replica is level with the
// primary, commits while a poller watches the replica's position, and
// turns the two sets of times into lag figures.
func (w *lagWriter) phase(ctx context.Context, ph lagPhase, primary, replica *daemon) (lagStats, error) {
	if err := replica.waitSamePos(ctx, primary, lagDB, time.Millisecond); err != nil {
		return lagStats{}, fmt.Errorf("replica catching up: %w", err)
	}
	base, err := readTXID(primary.mnt, lagDB)
	if err != nil {
		return lagStats{}, err
	}
	drops, err := countLines(replica.log, reconnectMark)
	if err != nil {
		return lagStats{}, err
	}
	p, err := startPosPoller(ctx, filepath.Join(replica.mnt, lagDB+"-pos"), base)
	if err != nil {
		return lagStats{}, err
	}
	began := time.Now()
	commits, err := w.commitFor(ctx, ph)
	elapsed := time.Since(began)
	seen, polls, pollErr := p.wait(base + uint64(len(commits)))
	if err := errors.Join(err, pollErr); err != nil {
		return lagStats{}, err
	}
	// Each INSERT must be exactly one TXID, or the times do not pair up.
	if txid, err := readTXID(primary.mnt, lagDB); err != nil {
		return lagStats{}, err
	} else if want := base + uint64(len(commits)); txid != want {
		return lagStats{}, fmt.Errorf("primary is at TXID %d after %d commits from TXID %d, want %d", txid, len(commits), base, want)
	}
	lags := lagsOf(commits, seen)
	slices.Sort(lags)
	st := lagStats{phase: ph, n: len(lags), rate: float64(len(commits)) / elapsed.Seconds(),
		p50: percentile(lags, 50), p99: percentile(lags, 99), max: percentile(lags, 100)}
	if st.reconnects, err = countLines(replica.log, reconnectMark); err != nil {
		return lagStats{}, err
	}
	st.reconnects -= drops
	if polls > 0 {
		st.poll = p.elapsed / time.Duration(polls)
	}
	return st, nil
}

// commitFor commits single-row transactions for ph.duration, paced at
// ph.rate if it is positive, and returns when each commit returned.
func (w *lagWriter) commitFor(ctx context.Context, ph lagPhase) ([]time.Time, error) {
	var commits []time.Time
	began := time.Now()
	for i := 0; ; i++ {
		at := time.Now()
		if ph.rate > 0 {
			at = began.Add(time.Duration(float64(i) * float64(time.Second) / ph.rate))
		}
		if at.Sub(began) >= ph.duration {
			return commits, nil
		}
		time.Sleep(time.Until(at)) // no-op when not pacing or behind
		w.id++
		if _, err := w.stmt.ExecContext(ctx, w.id, time.Now().UnixNano()); err != nil {
			return commits, fmt.Errorf("insert row %d: %w", w.id, err)
		}
		commits = append(commits, time.Now())
	}
}

// checkMaxID opens a new connection to lag.db on the replica and checks
// that SELECT max(id) sees the last row inserted on the primary.
func checkMaxID(ctx context.Context, mnt string, want int64) error {
	path := filepath.Join(mnt, lagDB)
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("open %s on the replica: %w", lagDB, err)
	}
	defer db.Close()
	var got sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM lag").Scan(&got); err != nil {
		return fmt.Errorf("read %s on the replica: %w", lagDB, err)
	}
	if !got.Valid || got.Int64 != want {
		return fmt.Errorf("a new read of %s on the replica sees max(id) = %v, want %d", lagDB, got.Int64, want)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close %s on the replica: %w", lagDB, err)
	}
	return nil
}

// posPoller reads a -pos file in a tight loop in its own goroutine and
// records when each TXID after base first showed.
type posPoller struct {
	target  chan uint64 // the last TXID to wait for, once known
	done    chan error
	seen    []time.Time // seen[i]: when TXID base+1+i first showed; owned by the goroutine until done
	polls   int
	elapsed time.Duration
}

// startPosPoller opens path and starts polling it.
func startPosPoller(ctx context.Context, path string, base uint64) (*posPoller, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open replica position: %w", err)
	}
	p := &posPoller{target: make(chan uint64, 1), done: make(chan error, 1)}
	go func() {
		defer f.Close()
		p.done <- p.run(ctx, f, base)
	}()
	return p, nil
}

// run is the polling loop.
func (p *posPoller) run(ctx context.Context, f *os.File, base uint64) error {
	buf := make([]byte, 64)
	last, want := base, uint64(math.MaxUint64)
	var deadline time.Time
	began := time.Now()
	defer func() { p.elapsed = time.Since(began) }()
	for ; last < want; p.polls++ {
		n, err := f.ReadAt(buf, 0)
		now := time.Now()
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read replica position: %w", err)
		}
		txid, err := parsePos(string(buf[:n]))
		if err != nil {
			return fmt.Errorf("replica position: %w", err)
		}
		if txid < last {
			return fmt.Errorf("replica position went back from TXID %d to %d", last, txid)
		}
		for ; last < txid; last++ {
			p.seen = append(p.seen, now)
		}
		select {
		case want = <-p.target:
			deadline = now.Add(lagSeenTimeout)
		case <-ctx.Done():
			return fmt.Errorf("poll replica position: %w", ctx.Err())
		default:
		}
		if !deadline.IsZero() && now.After(deadline) {
			return fmt.Errorf("replica still at TXID %d %s after the last commit (TXID %d)", last, lagSeenTimeout, want)
		}
		pollPause()
	}
	return nil
}

// pollPause sleeps about 20 µs between two reads of the replica's position.
// A poller that never paused would take a whole core of a 2-core machine
// from the daemons it measures; Go's timers cannot sleep this briefly, so
// the thread sleeps in nanosleep(2) directly.
func pollPause() {
	ts := syscall.Timespec{Nsec: 20_000}
	_ = syscall.Nanosleep(&ts, nil)
}

// wait tells the poller the last TXID and waits until the replica showed
// it; it returns when each TXID showed and the number of reads.
func (p *posPoller) wait(last uint64) ([]time.Time, int, error) {
	p.target <- last
	if err := <-p.done; err != nil {
		return nil, 0, err
	}
	return p.seen, p.polls, nil
}

// lagsOf pairs each commit's return time with the time its TXID showed on
// the replica. A TXID that showed before the writer got control back has a
// lag of 0. Commits never seen are left out.
func lagsOf(commits, seen []time.Time) []time.Duration {
	n := min(len(commits), len(seen))
	lags := make([]time.Duration, n)
	for i := range n {
		lags[i] = max(0, seen[i].Sub(commits[i]))
	}
	return lags
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted, by the
// nearest-rank method; 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// formatMS formats a duration in milliseconds: "0.42 ms".
func formatMS(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// countLines returns the number of lines of the file at path that contain
// substr.
func countLines(path, substr string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read log: %w", err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n, nil
}
