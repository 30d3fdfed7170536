package litefs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/superfly/ltx"
)

// WriteSnapshot writes the committed database as a snapshot LTX file (every
// page; MinTXID 1, MaxTXID the current TXID) to w and returns its position.
// It is PrepareSnapshot, then Encode. An empty database (TXID 0) has no
// snapshot: ErrEmptyDatabase.
func (db *DB) WriteSnapshot(ctx context.Context, w io.Writer) (ltx.Pos, error) {
	snap, err := db.PrepareSnapshot(ctx)
	if err != nil {
		return ltx.Pos{}, err
	}
	defer snap.Close()
	if _, err := snap.Encode(ctx, w); err != nil {
		return ltx.Pos{}, err
	}
	return snap.Pos(), nil
}

// Snapshot is a private copy of one committed state of a database, to be
// encoded as a snapshot LTX file. Close removes it.
type Snapshot struct {
	db  *DB
	img *dbImage
}

// PrepareSnapshot starts copying the committed database to a temporary
// file and returns once the copy has begun. Commits are held back only while
// it is copied; Encode may start at once and reads each part as soon as it
// is copied, so writers wait for a local copy, never for the network. An
// empty database (TXID 0) has no snapshot: ErrEmptyDatabase.
func (db *DB) PrepareSnapshot(ctx context.Context) (*Snapshot, error) {
	img, err := db.copyCommitted(ctx)
	if err != nil {
		return nil, err
	}
	return &Snapshot{db: db, img: img}, nil
}

// Pos is the position of the snapshot's state.
func (s *Snapshot) Pos() ltx.Pos { return s.img.pos }

// Close removes the snapshot's copy.
func (s *Snapshot) Close() { s.img.close() }

// Encode writes the snapshot as an LTX file to w and returns its size. Pages
// are LZ4-compressed when data.compress is on (pages that do not shrink are
// stored as they are); the encoding and the writes to w (with the file
// checksum) run on two goroutines.
func (s *Snapshot) Encode(ctx context.Context, w io.Writer) (int64, error) {
	img := s.img
	n, err := encodeSnapshot(ctx, w, io.NewSectionReader(img, 0, img.size()), img.pos, img.pageSize, img.commit, s.db.opts.Compress)
	if err != nil {
		return n, fmt.Errorf("snapshot of %s: %w", s.db.name, err)
	}
	return n, nil
}

// encodeSnapshot writes the database image r (n pages of size ps, the state
// at pos) to w as a snapshot LTX file and returns its size.
func encodeSnapshot(ctx context.Context, w io.Writer, r io.Reader, pos ltx.Pos, ps, n uint32, compress bool) (int64, error) {
	enc, err := newSnapshotEncoder(w, ltx.Header{
		Version: ltx.Version, PageSize: ps, Commit: n,
		MinTXID: 1, MaxTXID: pos.TXID, Timestamp: time.Now().UnixMilli(),
	}, compress)
	if err != nil {
		return 0, err
	}
	defer enc.abort()
	buf, lockPgno := make([]byte, ps), ltx.LockPgno(ps)
	pages := bufio.NewReaderSize(r, 1<<20)
	for pgno := uint32(1); pgno <= n; pgno++ {
		if pgno%1024 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if _, err := io.ReadFull(pages, buf); err != nil {
			return 0, fmt.Errorf("read page %d: %w", pgno, err)
		}
		if pgno == lockPgno {
			continue
		}
		if err := enc.encodePage(pgno, buf); err != nil {
			return 0, err
		}
	}
	return enc.close(pos.PostApplyChecksum)
}

// recordedWALPages maps each page to the WAL offset of its newest version
// among the transactions already recorded (up to the cursor). db.mu is held.
func (db *DB) recordedWALPages() (map[uint32]int64, error) {
	wal := db.file(FileWAL)
	if wal == nil || !db.wal.valid {
		return nil, nil
	}
	var hb [WALHeaderSize]byte
	if _, err := wal.ReadAt(hb[:], 0); err != nil {
		return nil, fmt.Errorf("read wal header: %w", err)
	}
	hdr, err := ParseWALHeader(hb[:])
	if err != nil {
		return nil, fmt.Errorf("parse wal header: %w", err)
	}
	pages := make(map[uint32]int64)
	r := NewWALReader(wal, hdr)
	for r.Offset() < db.wal.off {
		c, ok, err := r.Next()
		if err != nil {
			return nil, err
		} else if !ok {
			break
		}
		for pgno, off := range c.Pages {
			pages[pgno] = off
		}
	}
	return pages, nil
}

// sharedLock takes SQLite's SHARED lock on the database as the daemon, the
// way SQLite does (through PENDING), so no writer can change the file.
func (db *DB) sharedLock(ctx context.Context) (release func(), err error) {
	t := db.locks[FileDatabase]
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := t.Lock(ctx, daemonOwner, daemonHandle, 0, LockRead, PendingByte, PendingByte); err != nil {
		return nil, err
	}
	err = t.Lock(ctx, daemonOwner, daemonHandle, 0, LockRead, SharedFirst, SharedFirst+SharedSize-1)
	t.TryLock(daemonOwner, daemonHandle, 0, LockUnlock, PendingByte, PendingByte)
	if err != nil {
		return nil, err
	}
	return func() { t.TryLock(daemonOwner, daemonHandle, 0, LockUnlock, SharedFirst, SharedFirst+SharedSize-1) }, nil
}
