package litefs

import (
	"bytes"
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

// LTXFile is an open LTX file: on disk, or in memory while the background
// writer has not written it yet (so a replica never waits for the disk).
type LTXFile struct {
	r    io.ReadSeeker
	at   io.ReaderAt
	c    io.Closer
	size int64
}

// Read reads from the file.
func (f *LTXFile) Read(p []byte) (int, error) { return f.r.Read(p) }

// ReadAt reads from the file at off.
func (f *LTXFile) ReadAt(p []byte, off int64) (int, error) { return f.at.ReadAt(p, off) }

// Seek moves the read position.
func (f *LTXFile) Seek(off int64, whence int) (int64, error) { return f.r.Seek(off, whence) }

// Size returns the file's size in bytes.
func (f *LTXFile) Size() int64 { return f.size }

// Close releases the file.
func (f *LTXFile) Close() error {
	if f.c != nil {
		return f.c.Close()
	}
	return nil
}

// OpenLTX opens the LTX file whose range starts at txid. It returns
// ErrLTXNotFound when no such file exists (retention removed it, or the
// transaction does not exist yet).
func (db *DB) OpenLTX(txid ltx.TXID) (*LTXFile, error) {
	name := ltxFileName(txid, txid)
	// db.mu: a rollback-mode commit writes its file under it. The background
	// writer keeps a file visible to lookup until it is complete on disk.
	db.mu.Lock()
	data := db.ltxw.lookup(name)
	var f *os.File
	var err error
	if data == nil {
		if f, err = os.Open(filepath.Join(db.LTXDir(), name)); os.IsNotExist(err) {
			f, err = db.openRangeLTX(txid)
		}
	}
	db.mu.Unlock()
	if data != nil {
		r := bytes.NewReader(data)
		return &LTXFile{r: r, at: r, size: int64(len(data))}, nil
	} else if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat ltx %s of %s: %w", txid, db.name, err)
	}
	return &LTXFile{r: f, at: f, c: f, size: fi.Size()}, nil
}

// openRangeLTX opens a file covering several transactions starting at txid.
func (db *DB) openRangeLTX(txid ltx.TXID) (*os.File, error) {
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
