package litefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"
)

// Invalidator drops the kernel's cached data of a file in the mount after
// the store changed it underneath (a replica applying a transaction). The
// FUSE layer implements it.
type Invalidator interface {
	InvalidateFile(db string, kind FileKind) error
}

// SetInvalidator installs the FUSE layer's cache invalidation.
func (s *Store) SetInvalidator(inv Invalidator) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inv = inv
}

func (s *Store) invalidate(db string, kind FileKind) error {
	s.mu.RLock()
	inv := s.inv
	s.mu.RUnlock()
	if inv == nil {
		return nil
	}
	return inv.InvalidateFile(db, kind)
}

// OpenLTX opens the LTX file whose range starts at txid. It returns
// ErrLTXNotFound when no such file exists (retention removed it, or the
// transaction does not exist yet).
func (db *DB) OpenLTX(txid ltx.TXID) (*os.File, error) {
	path := filepath.Join(db.LTXDir(), ltxFileName(txid, txid))
	f, err := os.Open(path)
	if err == nil {
		return f, nil
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("open ltx %s of %s: %w", txid, db.name, err)
	}
	// Maybe still queued for the background writer, or a range file.
	db.mu.Lock()
	derr := db.ltxw.drain()
	db.mu.Unlock()
	if derr != nil {
		return nil, fmt.Errorf("write ltx for %s: %w", db.name, derr)
	}
	if f, err = os.Open(path); err == nil {
		return f, nil
	}
	files, lerr := listLTX(db.LTXDir())
	if lerr != nil {
		return nil, lerr
	}
	for _, r := range files {
		if r.min == txid {
			return os.Open(filepath.Join(db.LTXDir(), ltxFileName(r.min, r.max)))
		}
	}
	return nil, fmt.Errorf("%s txid %s: %w", db.name, txid, ErrLTXNotFound)
}

// errNotImplemented marks API that is being built.
var errNotImplemented = errors.New("not implemented yet")

// WriteSnapshot writes the committed database as a snapshot LTX file (every
// page; MinTXID 1, MaxTXID the current TXID) to w and returns its position.
// Commits are held back only while the database is copied to a temporary
// file; streaming to w happens after, so memory stays flat and writers wait
// for a local copy, never for the network.
func (db *DB) WriteSnapshot(ctx context.Context, w io.Writer) (ltx.Pos, error) {
	return ltx.Pos{}, errNotImplemented
}

// ApplyLTX applies an LTX file received from the primary (a replica's
// stream, or an import on the primary): a snapshot replaces the database,
// any other file must start exactly at this database's position
// (ErrPosMismatch otherwise). The whole file is read and verified before
// the database is touched; readers in the mount wait only for the local
// write, and see all of it or none of it.
func (db *DB) ApplyLTX(ctx context.Context, r io.Reader) (ltx.Pos, error) {
	return ltx.Pos{}, errNotImplemented
}
