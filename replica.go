package litefs

import (
	"fmt"
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
	// LTX files are written in place (no rename), by the background writer
	// or under db.mu: wait for both so a file is never read half-written.
	db.mu.Lock()
	err := db.ltxw.drain()
	db.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	f, err := os.Open(filepath.Join(db.LTXDir(), ltxFileName(txid, txid)))
	if err == nil {
		return f, nil
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("open ltx %s of %s: %w", txid, db.name, err)
	}
	files, err := listLTX(db.LTXDir())
	if err != nil {
		return nil, err
	}
	for _, r := range files {
		if r.min == txid {
			return os.Open(filepath.Join(db.LTXDir(), ltxFileName(r.min, r.max)))
		}
	}
	return nil, fmt.Errorf("%s txid %s: %w", db.name, txid, ErrLTXNotFound)
}
