// Package litefs is the core of the litefs daemon: the set of replicated SQLite
// databases on one node, their transaction history as LTX files, and the
// rules that turn SQLite's own file writes into those transactions.
//
// The root package imports none of its sub-packages. The FUSE layer (package
// fuse) translates system calls into calls on Store and DB; the HTTP layer
// (package http) moves LTX files between nodes.
package litefs

import (
	"errors"
	"fmt"
	"strings"
)

// SQLite lock byte offsets in the database file (see SQLite's os.h).
const (
	PendingByte  = 0x40000000      // PENDING lock byte; its page is never used (the lock page)
	ReservedByte = PendingByte + 1 // RESERVED lock byte
	SharedFirst  = PendingByte + 2 // first byte of the SHARED range
	SharedSize   = 510             // size of the SHARED range
)

// WAL-index (shm) lock byte offsets (see SQLite's wal.c).
const (
	WALWriteLockByte      = 120 // WAL_WRITE_LOCK
	WALCheckpointLockByte = 121 // WAL_CKPT_LOCK
	WALRecoverLockByte    = 122 // WAL_RECOVER_LOCK
	WALReadLockByte0      = 123 // first of the five read-mark locks (123..127)
	WALDMSByte            = 128 // dead-man switch
)

// HaltByte is the byte of NAME-lock whose OFD lock is the HALT lock.
const HaltByte = 72

// File name suffixes inside the mount.
const (
	SuffixJournal = "-journal"
	SuffixWAL     = "-wal"
	SuffixSHM     = "-shm"
	SuffixPos     = "-pos"
	SuffixLock    = "-lock"
)

// File names inside a database's directory under <data.dir>/dbs/<name>/.
const (
	DatabaseFileName = "database"
	JournalFileName  = "journal"
	WALFileName      = "wal"
	SHMFileName      = "shm"
	LTXDirName       = "ltx"
)

// MaxNameLen is the longest database name accepted, in bytes.
const MaxNameLen = 255

// Errors returned by the core. Callers compare with errors.Is.
var (
	ErrInvalidName      = errors.New("invalid database name")
	ErrDatabaseNotFound = errors.New("database not found")
	ErrDatabaseExists   = errors.New("database already exists")
	ErrReadOnlyReplica  = errors.New("database is read-only on a replica")
	ErrChecksumMismatch = errors.New("checksum mismatch")
	ErrClosed           = errors.New("store closed")
	ErrWALExclusive     = errors.New("locking_mode=EXCLUSIVE is not supported in WAL mode")
	ErrClusterMismatch  = errors.New("cluster id mismatch")
	ErrLTXNotFound      = errors.New("ltx file not found")
	ErrPosMismatch      = errors.New("position mismatch")
	ErrEmptyDatabase    = errors.New("database is empty")
)

// ValidateName reports whether name may name a database: a plain file name,
// not empty, no '/', not "." or "..", no NUL, at most MaxNameLen bytes. The
// error says which rule was broken.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: name is empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name is %d bytes, the limit is %d", ErrInvalidName, len(name), MaxNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is not a file name", ErrInvalidName, name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: %q contains '/'", ErrInvalidName, name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%w: name contains a NUL byte", ErrInvalidName)
	}
	return nil
}
