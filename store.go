package litefs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// StoreOptions configures a Store.
type StoreOptions struct {
	Dir               string        // data directory (data.dir)
	StrictVerify      bool          // recompute the full checksum after every commit
	Passthrough       bool          // benchmark baseline only: serve the files, record nothing
	SkipSync          bool          // never fsync (tests, throwaway data)
	Compress          bool          // LZ4-compress snapshot pages (data.compress)
	Retention         time.Duration // keep LTX files this long (the newest is always kept)
	RetentionInterval time.Duration // how often to enforce retention
	Logger            *slog.Logger

	HaltAcquireTimeout time.Duration // halt.acquire-timeout; DefaultHaltAcquireTimeout if 0
	HaltTTL            time.Duration // halt.ttl; DefaultHaltTTL if 0
	HaltRenewInterval  time.Duration // halt.renew-interval; DefaultHaltRenewInterval if 0
}

// Store is the set of databases on this node.
type Store struct {
	opts StoreOptions
	log  *slog.Logger

	mu     sync.RWMutex
	dbs    map[string]*DB
	closed bool

	subs subscribers
	role roleState
	inv  Invalidator // the FUSE layer's kernel cache invalidation

	haltObs    haltObservers
	haltClient HaltClient // a replica's way to the primary's HALT API

	leaseDeadline atomic.Pointer[func() time.Time] // see SetLeaseDeadline
	fence         atomic.Pointer[error]            // see FenceWrites

	refusedWrites atomic.Uint64 // see RefusedWrites
}

// OpenStore opens the data directory, creating it if needed, and recovers
// every database in it (SPEC section 6). A database that cannot be recovered
// to a state its LTX history vouches for is an error: nothing is served.
func OpenStore(ctx context.Context, opts StoreOptions) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{opts: opts, log: opts.Logger, dbs: make(map[string]*DB)}
	for _, dir := range []string{s.dbsDir(), s.LocalDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	if err := s.loadIdentity(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.dbsDir())
	if err != nil {
		return nil, fmt.Errorf("read data directory: %w", err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			s.Close()
			return nil, err
		}
		if !e.IsDir() || ValidateName(e.Name()) != nil {
			continue
		}
		db := newDB(s, e.Name(), filepath.Join(s.dbsDir(), e.Name()))
		if err := db.recover(); err != nil {
			s.Close()
			return nil, fmt.Errorf("open database %q: %w", e.Name(), err)
		}
		s.dbs[db.name] = db
		s.orphanSideFiles(db.name) // left by a version that did not adopt them
	}
	return s, nil
}

func (s *Store) dbsDir() string { return filepath.Join(s.opts.Dir, "dbs") }

// LocalDir is where files that are neither databases nor their side files
// (for example SQLite's transient super-journals) are kept, unreplicated.
func (s *Store) LocalDir() string { return filepath.Join(s.opts.Dir, "local") }

// DB returns the named database, or nil.
func (s *Store) DB(name string) *DB {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.dbs[name]
}

// DBs returns every database, sorted by name.
func (s *Store) DBs() []*DB {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*DB, 0, len(s.dbs))
	for _, db := range s.dbs {
		out = append(out, db)
	}
	slices.SortFunc(out, func(a, b *DB) int {
		if a.name < b.name {
			return -1
		} else if a.name > b.name {
			return 1
		}
		return 0
	})
	return out
}

// CreateDB creates an empty database. It fails with ErrDatabaseExists if the
// name is taken and with ErrInvalidName for a bad name. Local side files of
// the name are renamed aside (see sidefiles.go).
func (s *Store) CreateDB(name string) (*DB, error) {
	db, _, err := s.createDB(name, false)
	return db, err
}

// createDB creates database name; with adopt it takes over the local side
// files of the name, else it renames them aside.
func (s *Store) createDB(name string, adopt bool) (*DB, []string, error) {
	if err := ValidateName(name); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	if db := s.dbs[name]; db != nil {
		return db, nil, fmt.Errorf("create %q: %w", name, ErrDatabaseExists)
	}
	db := newDB(s, name, filepath.Join(s.dbsDir(), name))
	if err := os.MkdirAll(db.LTXDir(), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create database directory for %q: %w", name, err)
	}
	var adopted []string
	if adopt {
		var err error
		if adopted, err = s.adoptSideFiles(db); err != nil {
			s.undoCreate(db, adopted)
			return nil, nil, err
		}
	} else {
		s.orphanSideFiles(name)
	}
	if err := db.openFile(FileDatabase, true); err != nil {
		s.undoCreate(db, adopted)
		return nil, nil, err
	}
	if err := syncDir(s.dbsDir()); err != nil && !s.opts.SkipSync {
		s.undoCreate(db, adopted)
		return nil, nil, err
	}
	s.dbs[name] = db
	s.log.Info("database created", "db", name)
	s.notify()
	return db, adopted, nil
}

// undoCreate puts adopted side files back and removes the directory of a
// database whose creation failed. s.mu is held.
func (s *Store) undoCreate(db *DB, adopted []string) {
	db.closeAll()
	for _, k := range adoptableKinds {
		for _, n := range adopted {
			if n == db.name+sideSuffix(k) {
				if err := os.Rename(db.path(k), filepath.Join(s.LocalDir(), n)); err != nil {
					s.log.Error("could not put back a side file after a failed create", "file", n, "error", err)
					return // keep the directory: the file is in it
				}
			}
		}
	}
	_ = os.RemoveAll(db.dir)
}

// DeleteDB removes a database: its files and its LTX history.
func (s *Store) DeleteDB(name string) error {
	s.mu.Lock()
	db := s.dbs[name]
	delete(s.dbs, name)
	s.mu.Unlock()
	if db == nil {
		return fmt.Errorf("delete %q: %w", name, ErrDatabaseNotFound)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	_ = db.ltxw.drain() // the files are about to go; only wait for the writer
	db.closeAll()
	if err := os.RemoveAll(db.dir); err != nil {
		return fmt.Errorf("delete %q: %w", name, err)
	}
	s.log.Info("database deleted", "db", name)
	s.notify()
	return nil
}

// Close closes every database's files.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var firstErr error
	for _, db := range s.dbs {
		db.mu.Lock()
		if _, err := db.syncLTX(); err != nil && firstErr == nil {
			firstErr = err
		}
		db.closeAll()
		db.mu.Unlock()
	}
	return firstErr
}

// RunRetention removes old LTX files every RetentionInterval until ctx ends.
func (s *Store) RunRetention(ctx context.Context) {
	interval := s.opts.RetentionInterval
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			for _, db := range s.DBs() {
				if err := db.EnforceRetention(time.Now().Add(-s.opts.Retention)); err != nil {
					s.log.Warn("retention failed", "db", db.name, "error", err)
				}
			}
		}
	}
}

// EnforceRetention removes LTX files last modified before cutoff, always
// keeping the newest one.
//
// It runs without db.mu: listing a long history takes a while and must not
// hold commits back. Files written meanwhile are newer than any it removes.
func (db *DB) EnforceRetention(cutoff time.Time) error {
	files, err := listLTX(db.LTXDir())
	if err != nil {
		return err
	}
	removed := 0
	for _, r := range files[:max(len(files)-1, 0)] {
		path := filepath.Join(db.LTXDir(), ltxFileName(r.min, r.max))
		fi, err := os.Stat(path)
		if err != nil || !fi.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		removed++
	}
	if removed > 0 {
		db.log.Debug("ltx files removed by retention", "n", removed)
	}
	return nil
}
