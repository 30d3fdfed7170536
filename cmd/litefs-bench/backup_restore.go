package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

const (
	restoreDB      = "restore.db"    // the database restored from the bucket
	restoreTxns    = 4               // it is written in this many transactions
	restoreTimeout = 5 * time.Minute // its upload, and its restore, each
)

// measureRestore creates a database of about -backup-mb MB of incompressible
// rows on the primary with backup, waits until the bucket holds it, stops
// that primary (so nothing else runs during the timings), then times a plain
// copy of its database file and `litefs restore` of it from the bucket.
func measureRestore(ctx context.Context, opts options, w *workDir, on *daemon, progress io.Writer) (snapStats, error) {
	fmt.Fprintf(progress, "==> backup: restore of a %d MB database\n", opts.backupMB)
	rows := snapRows(opts.backupMB)
	began := time.Now()
	if err := fillBigDB(ctx, on.mnt, restoreDB, rows, restoreTxns); err != nil {
		return snapStats{}, err
	}
	created := time.Since(began)
	txid, err := readTXID(on.mnt, restoreDB)
	if err != nil {
		return snapStats{}, err
	}
	if err := waitBucket(ctx, on, restoreDB, txid, restoreTimeout); err != nil {
		return snapStats{}, fmt.Errorf("backup of %s: %w", restoreDB, err)
	}
	fmt.Fprintf(progress, "    %-45s created in %s, in the bucket %s later\n", restoreDB,
		created.Round(time.Millisecond), (time.Since(began) - created).Round(time.Millisecond))
	if err := on.stop(); err != nil {
		return snapStats{}, fmt.Errorf("stop litefs (backup): %w", err)
	}
	src := filepath.Join(w.backup.data, "dbs", restoreDB, "database")
	info, err := os.Stat(src)
	if err != nil {
		return snapStats{}, fmt.Errorf("database file of %s: %w", restoreDB, err)
	}
	st := snapStats{bytes: info.Size()}
	if st.copyTime, err = timeCopy(src, filepath.Join(w.root, "restore-copy")); err != nil {
		return st, err
	}
	fmt.Fprintf(progress, "    %-45s %.0f MB/s\n", "plain copy of its database file + fsync", st.copyRate())
	out := filepath.Join(w.root, "restored.db")
	if st.catchUp, err = timeRestore(ctx, opts.litefs, w.backup.config, out); err != nil {
		return st, err
	}
	defer os.Remove(out)
	if got, err := os.Stat(out); err != nil {
		return st, fmt.Errorf("restored database: %w", err)
	} else if got.Size() != st.bytes {
		return st, fmt.Errorf("restored database is %d bytes, the primary's %d", got.Size(), st.bytes)
	}
	if err := checkRestored(ctx, out, rows); err != nil {
		return st, err
	}
	fmt.Fprintf(progress, "    %-45s %.0f MB/s (%s)\n", "litefs restore from the bucket", st.rate(), st.catchUp.Round(time.Millisecond))
	return st, nil
}

// timeRestore runs `litefs restore` of restore.db with the backup section of
// config into out and returns how long it took (it checks the restored
// file's checksum against the backup's before it returns).
func timeRestore(ctx context.Context, bin, config, out string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	began := time.Now()
	cmd := exec.CommandContext(ctx, bin, "restore", "-config", config, "-name", restoreDB, "-o", out)
	output, err := cmd.CombinedOutput()
	elapsed := time.Since(began)
	if err != nil {
		_ = os.Remove(out) // a failed restore leaves none; this is only in case
		return 0, fmt.Errorf("litefs restore: %w: %s", err, strings.TrimSpace(string(output)))
	}
	return elapsed, nil
}
