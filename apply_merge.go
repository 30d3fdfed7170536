package litefs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/superfly/ltx"
)

// A replica that fell behind applies the files that already arrived in one
// batch (ApplySpooled). Decision, measured: the consecutive small files of a
// batch go into the history as ONE LTX file covering their TXIDs, holding
// the newest version of each page they changed, and each of those pages is
// written into the database file once. Creating a file per transaction was
// most of a busy replica's CPU on this machine's ext4 (no journal): after
// many recent deletions every new inode costs a scan past the recently
// deleted ones (perf: 48% of the replica's CPU in ext4's recently_deleted,
// 300 µs per file instead of 25 µs). A run of one file is stored as it
// arrived. The history stays valid LTX: recovery re-applies a merged file
// like any other (whole pages over the state before it), and a primary
// serves it from its first TXID (OpenLTX); a replica whose position falls
// inside such a range after a failover gets a snapshot.

// mergeRun is the run of files of one batch that are applied to db.pos and
// db.sums but whose history file and pages are not written yet. db.mu is
// held from the run's first file to its flush, so nobody sees the position
// ahead of the files.
type mergeRun struct {
	db    *DB
	ins   []*incomingLTX
	pages map[uint32][]byte       // newest version of each page of the run
	old   map[uint32]ltx.Checksum // checksums before the run, of the pages it changed
	prev  ltx.Pos                 // position before the run
	prevN uint32                  // database size in pages before the run
}

// accepts reports whether in can join the run: a small file received into
// memory with its decoded pages, of the database's page size, that does not
// shrink the database (a shrink would leave pages of earlier files beyond
// the end). db.mu is held.
func (m *mergeRun) accepts(in *incomingLTX) bool {
	db := m.db
	return in.mem != nil && (in.mem.pages != nil || len(in.pages) == 0) && !in.hdr.IsSnapshot() &&
		in.hdr.PageSize == db.pageSize && in.hdr.Commit >= db.sums.PageN()
}

// add applies a checked file to db.pos and db.sums and keeps its pages for
// flush. db.mu is held.
func (m *mergeRun) add(in *incomingLTX) (ltx.Pos, error) {
	db := m.db
	if err := db.stillFollows(in.hdr); err != nil {
		return ltx.Pos{}, err
	}
	if len(m.ins) == 0 {
		if err := db.prepareApply(); err != nil {
			return ltx.Pos{}, err
		}
		m.prev, m.prevN = db.pos, db.sums.PageN()
		m.pages, m.old = make(map[uint32][]byte), make(map[uint32]ltx.Checksum)
	}
	ps := int(in.hdr.PageSize)
	for i, p := range in.pages {
		if _, seen := m.old[p.pgno]; !seen && p.pgno <= m.prevN {
			m.old[p.pgno] = db.sums.Get(p.pgno)
		}
		m.pages[p.pgno] = in.mem.pages[i*ps : (i+1)*ps]
		db.sums.Set(p.pgno, p.sum)
	}
	db.sums.Truncate(in.hdr.Commit)
	db.pos = ltx.Pos{TXID: in.hdr.MaxTXID, PostApplyChecksum: in.trailer.PostApplyChecksum}
	m.ins = append(m.ins, in)
	if got := db.sums.Checksum(); got != db.pos.PostApplyChecksum {
		m.undo()
		return ltx.Pos{}, fmt.Errorf("%s after TXID %s: %w: %s, want %s", db.name, in.hdr.MaxTXID, ErrChecksumMismatch, got, in.trailer.PostApplyChecksum)
	}
	return db.pos, nil
}

// undo puts db.pos and db.sums back to the state before the run and empties
// it. db.mu is held.
func (m *mergeRun) undo() {
	db := m.db
	db.sums.Truncate(m.prevN)
	for pgno, sum := range m.old {
		db.sums.Set(pgno, sum)
	}
	db.pos = m.prev
	m.ins, m.pages, m.old = nil, nil, nil
}

// flush writes the run's history file, then its pages into the database
// file, and empties the run. On failure nothing of the run stays applied.
// db.mu is held.
func (m *mergeRun) flush() error {
	if len(m.ins) == 0 {
		return nil
	}
	db := m.db
	first, last := m.ins[0], m.ins[len(m.ins)-1]
	pgnos := m.sortedPgnos()
	data := first.mem.buf.Bytes()
	if len(m.ins) > 1 {
		var err error
		if data, err = m.encode(first.hdr, last, pgnos); err != nil {
			m.undo()
			return err
		}
	}
	path := filepath.Join(db.LTXDir(), ltxFileName(first.hdr.MinTXID, last.hdr.MaxTXID))
	if err := writeFile(path, data, false); err != nil {
		m.undo()
		return fmt.Errorf("store ltx for %s: %w", db.name, err)
	}
	db.unsynced = true
	if err := m.writePages(last.hdr, pgnos); err != nil {
		_ = os.Remove(path)
		m.undo()
		return fmt.Errorf("apply ltx to %s: %w", db.name, err)
	}
	db.resetDirty()
	db.dropSnapshotMarker()
	m.ins, m.pages, m.old = nil, nil, nil
	return nil
}

// sortedPgnos returns the run's page numbers in ascending order.
func (m *mergeRun) sortedPgnos() []uint32 {
	pgnos := make([]uint32, 0, len(m.pages))
	for pgno := range m.pages {
		pgnos = append(pgnos, pgno)
	}
	slices.Sort(pgnos)
	return pgnos
}

// encode returns one LTX file going from the state before the run's first
// file (hdr) to the state after last, with the pages pgnos.
func (m *mergeRun) encode(hdr ltx.Header, last *incomingLTX, pgnos []uint32) ([]byte, error) {
	db := m.db
	hdr.MaxTXID, hdr.Commit, hdr.Timestamp = last.hdr.MaxTXID, last.hdr.Commit, last.hdr.Timestamp
	hdr.WALOffset, hdr.WALSize, hdr.WALSalt1, hdr.WALSalt2 = 0, 0, 0, 0
	var buf bytes.Buffer
	enc, err := db.encoders.get(&buf)
	if err != nil {
		return nil, fmt.Errorf("ltx encoder: %w", err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return nil, fmt.Errorf("encode merged ltx header for %s: %w", db.name, err)
	}
	for _, pgno := range pgnos {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, m.pages[pgno]); err != nil {
			return nil, fmt.Errorf("encode merged ltx page %d for %s: %w", pgno, db.name, err)
		}
	}
	enc.SetPostApplyChecksum(last.trailer.PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("finish merged ltx for %s: %w", db.name, err)
	}
	return buf.Bytes(), nil
}

// writePages writes the newest version of each page pgnos into the
// database file and sets its size to the last file's.
func (m *mergeRun) writePages(last ltx.Header, pgnos []uint32) error {
	f, ps := m.db.file(FileDatabase), int64(last.PageSize)
	for _, pgno := range pgnos {
		if _, err := f.WriteAt(m.pages[pgno], int64(pgno-1)*ps); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
	}
	if err := f.Truncate(int64(last.Commit) * ps); err != nil {
		return fmt.Errorf("truncate database: %w", err)
	}
	return nil
}
