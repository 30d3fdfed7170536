package main

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

const (
	valueSize    = 100 // bytes of text per inserted row
	warmupTxns   = 200 // untimed transactions before a write-rate run
	valuePoolLen = 1024
)

// unit says what a workload measures, which decides how its figures are
// formatted and how the litefs/plain ratio reads.
type unit int

const (
	unitRate    unit = iota // transactions per second: higher is better
	unitSeconds             // wall time: lower is better
)

// measurement is the outcome of one workload run in one directory.
type measurement struct {
	value     float64 // in the workload's unit
	committed uint64  // write transactions committed to the database
}

// workload is one benchmark. It runs once in a plain directory (the
// baseline) and once in the litefs mount, each time on a fresh database file
// named db in that directory. Later workloads (replication lag, HALT
// forwarding) are added by appending to workloads().
type workload struct {
	name   string
	db     string
	unit   unit
	target target
	run    func(ctx context.Context, dir, db string) (measurement, error)
}

// config holds the command-line settings the workloads depend on.
type config struct {
	duration   time.Duration
	rows       int
	snapshotMB int // size of the database for the snapshot catch-up figure
}

// workloads returns the benchmark's workloads in the order they run and
// print.
func workloads(cfg config) []workload {
	return []workload{
		{
			name: "write tx/s, WAL + synchronous=NORMAL", db: "wal-normal.db",
			unit: unitRate, target: atLeast(0.20),
			run: writeRate("WAL", "NORMAL", cfg.duration),
		},
		{
			name: "write tx/s, WAL + synchronous=FULL", db: "wal-full.db",
			unit: unitRate, target: noTarget(),
			run: writeRate("WAL", "FULL", cfg.duration),
		},
		{
			name: "write tx/s, DELETE + synchronous=FULL", db: "delete-full.db",
			unit: unitRate, target: atLeast(0.80),
			run: writeRate("DELETE", "FULL", cfg.duration),
		},
		{
			name: fmt.Sprintf("bulk insert %d rows, 1 tx, WAL+NORMAL", cfg.rows), db: "bulk.db",
			unit: unitSeconds, target: atMost(1.5),
			run: bulkInsert("WAL", "NORMAL", cfg.rows),
		},
	}
}

// dsn returns a go-sqlite3 data source name for path.
func dsn(path, journal, sync string) string {
	q := url.Values{}
	q.Set("_journal_mode", journal)
	q.Set("_sync", sync)
	q.Set("_busy_timeout", "5000")
	return "file:" + path + "?" + q.Encode()
}

// openFresh opens a new database at dir/name on one connection, checks the
// journal mode took effect and creates table t. The CREATE TABLE counts as
// one committed write transaction.
func openFresh(ctx context.Context, dir, name, journal, sync string) (*sql.DB, error) {
	return openFreshSchema(ctx, dir, name, journal, sync, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
}

// openFreshSchema is openFresh with the table-creating statement schema.
func openFreshSchema(ctx context.Context, dir, name, journal, sync, schema string) (*sql.DB, error) {
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("database %s already exists; each run needs a fresh one", path)
	}
	db, err := sql.Open("sqlite3", dsn(path, journal, sync))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		db.Close()
		return nil, fmt.Errorf("read journal mode of %s: %w", path, err)
	}
	if !strings.EqualFold(mode, journal) {
		db.Close()
		return nil, fmt.Errorf("journal mode of %s is %q, want %q", path, mode, journal)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create table in %s: %w", path, err)
	}
	return db, nil
}

// valuePool returns distinct ~100-byte random text values (fixed seed, so
// every run writes the same data).
func valuePool() []string {
	r := rand.New(rand.NewPCG(1, 2))
	raw := make([]byte, valueSize/2)
	pool := make([]string, valuePoolLen)
	for i := range pool {
		for j := range raw {
			raw[j] = byte(r.Uint32())
		}
		pool[i] = hex.EncodeToString(raw)
	}
	return pool
}

// writeRate returns a run function that commits single-row INSERT
// transactions for d after a warm-up and reports transactions per second.
func writeRate(journal, sync string, d time.Duration) func(context.Context, string, string) (measurement, error) {
	return func(ctx context.Context, dir, name string) (measurement, error) {
		db, err := openFresh(ctx, dir, name, journal, sync)
		if err != nil {
			return measurement{}, err
		}
		defer db.Close()
		stmt, err := db.PrepareContext(ctx, "INSERT INTO t (v) VALUES (?)")
		if err != nil {
			return measurement{}, fmt.Errorf("prepare insert: %w", err)
		}
		defer stmt.Close()

		pool := valuePool()
		m := measurement{committed: 1} // CREATE TABLE
		insert := func() error {
			if _, err := stmt.ExecContext(ctx, pool[m.committed%valuePoolLen]); err != nil {
				return fmt.Errorf("insert (transaction %d): %w", m.committed+1, err)
			}
			m.committed++
			return nil
		}
		for range warmupTxns {
			if err := insert(); err != nil {
				return m, fmt.Errorf("warm-up: %w", err)
			}
		}
		start := m.committed
		began := time.Now()
		var elapsed time.Duration
		for elapsed < d {
			if err := insert(); err != nil {
				return m, err
			}
			elapsed = time.Since(began)
		}
		m.value = float64(m.committed-start) / elapsed.Seconds()
		return m, closeDB(db, stmt)
	}
}

// bulkInsert returns a run function that inserts rows rows in one
// transaction and reports the wall time from BEGIN to the end of COMMIT.
func bulkInsert(journal, sync string, rows int) func(context.Context, string, string) (measurement, error) {
	return func(ctx context.Context, dir, name string) (measurement, error) {
		db, err := openFresh(ctx, dir, name, journal, sync)
		if err != nil {
			return measurement{}, err
		}
		defer db.Close()
		pool := valuePool()
		m := measurement{committed: 1} // CREATE TABLE

		began := time.Now()
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return m, fmt.Errorf("begin bulk transaction: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // no-op after Commit
		stmt, err := tx.PrepareContext(ctx, "INSERT INTO t (v) VALUES (?)")
		if err != nil {
			return m, fmt.Errorf("prepare bulk insert: %w", err)
		}
		for i := range rows {
			if _, err := stmt.ExecContext(ctx, pool[i%valuePoolLen]); err != nil {
				return m, fmt.Errorf("bulk insert row %d: %w", i+1, err)
			}
		}
		if err := stmt.Close(); err != nil {
			return m, fmt.Errorf("close bulk statement: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return m, fmt.Errorf("commit bulk transaction: %w", err)
		}
		m.value = time.Since(began).Seconds()
		m.committed++
		return m, closeDB(db, nil)
	}
}

// closeDB closes a statement (if any) and the database, reporting the first
// error: a failed close can mean the last transaction's files were not
// released cleanly.
func closeDB(db *sql.DB, stmt *sql.Stmt) error {
	if stmt != nil {
		if err := stmt.Close(); err != nil {
			return fmt.Errorf("close statement: %w", err)
		}
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	return nil
}
