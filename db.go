package litefs

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/superfly/ltx"
)

// FileKind names one of the files that make up a database in the mount.
type FileKind int

// The files of one database. FileLock is the virtual NAME-lock file: it has
// no contents, only byte-range locks (byte HaltByte is the HALT lock).
const (
	FileDatabase FileKind = iota
	FileJournal
	FileWAL
	FileSHM
	FileLock
	numFileKinds
)

// fileName returns the name of the kind's backing file in the database directory.
func (k FileKind) fileName() string {
	switch k {
	case FileDatabase:
		return DatabaseFileName
	case FileJournal:
		return JournalFileName
	case FileWAL:
		return WALFileName
	case FileSHM:
		return SHMFileName
	}
	return ""
}

// String returns the kind's name as used in log lines.
func (k FileKind) String() string {
	if k == FileLock {
		return "lock"
	}
	return k.fileName()
}

// DB is one replicated database: its backing files, its position (TXID and
// checksum), and the state that turns SQLite's writes into transactions.
//
// Lock order: mu before fmu. fmu guards only the files array so that reads
// never wait for a commit.
type DB struct {
	name  string
	dir   string
	log   *slog.Logger
	opts  *StoreOptions
	store *Store // the owning store: notified of every commit

	fmu   sync.RWMutex
	files [numFileKinds]*os.File // open backing files; nil when absent

	locks [numFileKinds]*LockTable

	mu         sync.Mutex
	pageSize   uint32              // page size of the committed database; 0 before the first commit
	pos        ltx.Pos             // position of the last committed transaction
	sums       pageChecksums       // checksum of every committed page
	dirty      map[uint32]struct{} // rollback mode: pages written since the last commit
	sizeDirty  bool                // rollback mode: the file was truncated or extended
	forceFull  bool                // next commit must rewrite every page (page size change, foreign write)
	journalHot bool                // the journal header holds the magic: a transaction is in progress
	wal        walCursor           // how far the WAL has been turned into transactions
	walr       *WALReader          // the WAL scan, kept between commits
	walrHdr    WALHeader           // the WAL header walr reads against
	walLow     atomic.Int64        // lowest WAL offset written since the last scan
	walAdopted atomic.Bool         // an adopted WAL not active yet (sidefiles.go)
	walSession atomic.Int64        // lowest WAL offset written since the WAL write lock was last released
	walBehind  atomic.Bool         // a committed WAL transaction could not be recorded yet
	unsynced   bool                // LTX files were written since the last sync
	snapMarker bool                // a snapshot marker may exist (snapshot_marker.go)
	ltxw       *ltxWriter          // background writer of WAL commits' LTX files
	buf        bytes.Buffer        // reused LTX encoding buffer
	page       []byte              // reused page buffer
	encoders   encoderCache        // reused LTX encoder (under mu)

	halt  haltState    // primary side: the HALT granted to a replica
	rhalt replicaHalts // replica side: the HALT this node holds from the primary

	localW localWriters // primary side: local writers a HALT yields to
}

// walCursor remembers the end of the last WAL transaction turned into an LTX file.
type walCursor struct {
	valid        bool
	salt1, salt2 uint32
	off          int64
	s1, s2       uint32
}

// newDB returns a DB of store s for the directory dir; call recover before use.
func newDB(s *Store, name, dir string) *DB {
	opts := &s.opts
	db := &DB{name: name, dir: dir, opts: opts, store: s, dirty: make(map[uint32]struct{}), ltxw: newLTXWriter()}
	db.log = opts.Logger.With("db", name)
	db.walLow.Store(math.MaxInt64)
	db.walSession.Store(math.MaxInt64)
	for i := range db.locks {
		db.locks[i] = NewLockTable()
	}
	return db
}

// Name returns the database name.
func (db *DB) Name() string { return db.name }

// Dir returns the database's directory in the data directory.
func (db *DB) Dir() string { return db.dir }

// LTXDir returns the directory holding the database's LTX files.
func (db *DB) LTXDir() string { return filepath.Join(db.dir, LTXDirName) }

// Pos returns the position of the last committed transaction.
func (db *DB) Pos() ltx.Pos {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.pos
}

// PageSize returns the committed page size, 0 for an empty database.
func (db *DB) PageSize() uint32 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.pageSize
}

// Locks returns the byte-range lock table of one of the database's files.
func (db *DB) Locks(kind FileKind) *LockTable { return db.locks[kind] }

// path returns the backing path of a file kind.
func (db *DB) path(kind FileKind) string { return filepath.Join(db.dir, kind.fileName()) }

// file returns the open backing file of kind, or nil.
func (db *DB) file(kind FileKind) *os.File {
	db.fmu.RLock()
	defer db.fmu.RUnlock()
	return db.files[kind]
}

// Exists reports whether the backing file of kind exists.
func (db *DB) Exists(kind FileKind) bool {
	if kind == FileLock {
		return true
	}
	return db.file(kind) != nil
}

// openFile opens (and with create, creates) the backing file of kind.
func (db *DB) openFile(kind FileKind, create bool) error {
	db.fmu.Lock()
	defer db.fmu.Unlock()
	if db.files[kind] != nil {
		return nil
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(db.path(kind), flag, 0o644)
	if err != nil {
		return fmt.Errorf("open %s %s: %w", db.name, kind, err)
	}
	db.files[kind] = f
	return nil
}

// closeFile closes the backing file of kind, if open.
func (db *DB) closeFile(kind FileKind) {
	db.fmu.Lock()
	defer db.fmu.Unlock()
	if f := db.files[kind]; f != nil {
		_ = f.Close()
		db.files[kind] = nil
	}
}

// closeAll closes every backing file.
func (db *DB) closeAll() {
	for k := FileKind(0); k < numFileKinds; k++ {
		db.closeFile(k)
	}
}

// Stat returns the backing file's information, or nil for a missing file
// (and for the lock file, which has no backing file).
func (db *DB) Stat(kind FileKind) (os.FileInfo, error) {
	f := db.file(kind)
	if f == nil {
		return nil, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s %s: %w", db.name, kind, err)
	}
	return fi, nil
}

// ReadAt reads from the backing file of kind. Reads never wait for commits.
func (db *DB) ReadAt(kind FileKind, p []byte, off int64) (int, error) {
	f := db.file(kind)
	if f == nil {
		return 0, os.ErrNotExist
	}
	n, err := f.ReadAt(p, off)
	if err != nil && n < len(p) && isEOF(err) {
		err = nil // short read at end of file is not an error for FUSE
	}
	return n, err
}

// walMode reports whether the database is in WAL mode: its WAL file exists.
// Database-file writes in WAL mode are checkpoints, not transactions. An
// adopted WAL does not count until its database is recorded (sidefiles.go).
func (db *DB) walMode() bool { return db.file(FileWAL) != nil && !db.walAdopted.Load() }

// markDirty records the pages covered by a write of n bytes at off.
func (db *DB) markDirty(off int64, n int) {
	if db.pageSize == 0 {
		db.forceFull = true
		return
	}
	ps := int64(db.pageSize)
	for pg := off / ps; pg <= (off+int64(n)-1)/ps; pg++ {
		db.dirty[uint32(pg+1)] = struct{}{}
	}
}
