package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

const (
	snapDB     = "snap.db"
	snapSchema = "CREATE TABLE big (id INTEGER PRIMARY KEY, b BLOB)"
	snapBlob   = 4000 // bytes of random blob per row: one 4 KiB page each
	snapTxns   = 4    // the database is written in this many transactions
	mib        = 1 << 20
)

// snapStats are the snapshot catch-up figures.
type snapStats struct {
	bytes    int64         // size of the primary's database file
	catchUp  time.Duration // new replica started -> its position equals the primary's
	copyTime time.Duration // plain copy of the database file, with fsync
}

// rate returns the catch-up rate in MB/s (1 MB = 2^20 bytes).
func (s snapStats) rate() float64 { return mbPerSec(s.bytes, s.catchUp) }

// copyRate returns the file-copy baseline in MB/s.
func (s snapStats) copyRate() float64 { return mbPerSec(s.bytes, s.copyTime) }

// mbPerSec returns bytes/d in MB/s (1 MB = 2^20 bytes), 0 if d is not
// positive.
func mbPerSec(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / mib / d.Seconds()
}

// snapRows returns the number of one-page rows that make a database of
// about mb MB.
func snapRows(mb int) int { return mb * (mib / 4096) }

// runSnapshot creates a database of about mb MB on the primary, times a
// plain copy of its file, then times a new, empty replica catching up on it.
func runSnapshot(ctx context.Context, bin string, w *workDir, primary *daemon, mb int, progress io.Writer) (snapStats, error) {
	began := time.Now()
	if err := createBigDB(ctx, primary.mnt, snapRows(mb)); err != nil {
		return snapStats{}, err
	}
	if err := primary.check(); err != nil {
		return snapStats{}, fmt.Errorf("after creating %s: %w", snapDB, err)
	}
	src := filepath.Join(w.data, "dbs", snapDB, "database")
	info, err := os.Stat(src)
	if err != nil {
		return snapStats{}, fmt.Errorf("primary database file: %w", err)
	}
	st := snapStats{bytes: info.Size()}
	fmt.Fprintf(progress, "    %-45s %.1f MB in %s\n", "created "+snapDB+" on the primary",
		float64(st.bytes)/mib, time.Since(began).Round(time.Millisecond))

	if st.copyTime, err = timeCopy(src, filepath.Join(w.root, "snap-copy")); err != nil {
		return snapStats{}, err
	}
	fmt.Fprintf(progress, "    %-45s %.0f MB/s\n", "plain copy of its database file + fsync", st.copyRate())
	if st.catchUp, err = timeCatchUp(ctx, bin, w.snap, primary, snapRows(mb)); err != nil {
		return snapStats{}, err
	}
	fmt.Fprintf(progress, "    %-45s %.0f MB/s (%s)\n", "snapshot catch-up of a new replica",
		st.rate(), st.catchUp.Round(time.Millisecond))
	return st, nil
}

// createBigDB creates snap.db in mnt with rows random 4000-byte blobs,
// written in snapTxns transactions in rollback-journal mode, so that the
// whole database is in its database file.
func createBigDB(ctx context.Context, mnt string, rows int) error {
	return fillBigDB(ctx, mnt, snapDB, rows, snapTxns)
}

// fillBigDB creates database name in mnt (table big, snapSchema) with rows
// random, incompressible 4000-byte blobs, one 4 KiB page each, written in
// txns transactions in rollback-journal mode.
func fillBigDB(ctx context.Context, mnt, name string, rows, txns int) error {
	db, err := openFreshSchema(ctx, mnt, name, "DELETE", "NORMAL", snapSchema)
	if err != nil {
		return err
	}
	defer db.Close()
	const insert = `WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?)
		INSERT INTO big (b) SELECT randomblob(?) FROM s`
	for i, n := range splitRows(rows, txns) {
		if _, err := db.ExecContext(ctx, insert, n, snapBlob); err != nil {
			return fmt.Errorf("fill %s (transaction %d of %d): %w", name, i+1, txns, err)
		}
	}
	return closeDB(db, nil)
}

// splitRows splits rows into at most parts positive, nearly equal counts
// that add up to rows.
func splitRows(rows, parts int) []int {
	var out []int
	for i := range parts {
		if n := rows/parts + min(1, max(0, rows%parts-i)); n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// timeCopy copies src to the new file dst through a 1 MB user-space buffer
// (no copy_file_range or reflink shortcut), fsyncs it, and returns how long
// that took. dst is removed afterwards.
func timeCopy(src, dst string) (elapsed time.Duration, err error) {
	began := time.Now()
	in, err := os.Open(src)
	if err != nil {
		return 0, fmt.Errorf("copy baseline: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("copy baseline: %w", err)
	}
	defer func() { err = errors.Join(err, os.Remove(dst)) }()
	// The anonymous structs hide ReadFrom/WriteTo, so the buffer is used.
	_, err = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, mib))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("copy baseline to %s: %w", dst, err)
	}
	return time.Since(began), nil
}

// timeCatchUp starts a replica of primary that replicates only snap.db, on
// dirs with an empty data directory, and returns the time from its start
// until its snap.db position equals the primary's. It then checks with a
// new SQL read that the replica has all rows, and stops the replica.
func timeCatchUp(ctx context.Context, bin string, dirs mountDirs, primary *daemon, rows int) (elapsed time.Duration, err error) {
	began := time.Now()
	d, err := launchReplica(bin, dirs, primary, []string{snapDB})
	if err != nil {
		return 0, err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop snapshot replica: %w", stopErr))
		}
	}()
	if err := d.waitSamePos(ctx, primary, snapDB, 2*time.Millisecond); err != nil {
		return 0, fmt.Errorf("snapshot replica: %w", err)
	}
	elapsed = time.Since(began)
	if err := checkRowCount(ctx, dirs.mnt, rows); err != nil {
		return 0, err
	}
	return elapsed, nil
}

// checkRowCount checks through a new read-only connection that snap.db in
// mnt has its last row.
func checkRowCount(ctx context.Context, mnt string, rows int) error {
	path := filepath.Join(mnt, snapDB)
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("open %s on the snapshot replica: %w", snapDB, err)
	}
	defer db.Close()
	var got sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(id) FROM big").Scan(&got); err != nil {
		return fmt.Errorf("read %s on the snapshot replica: %w", snapDB, err)
	}
	if !got.Valid || got.Int64 != int64(rows) {
		return fmt.Errorf("%s on the snapshot replica has max(id) = %d, want %d", snapDB, got.Int64, rows)
	}
	return closeDB(db, nil)
}
