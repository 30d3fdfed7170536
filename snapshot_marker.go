package litefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/superfly/ltx"
)

// A replica writes a received snapshot's pages once: into the new database
// file. Decision, measured: keeping the snapshot as its history file too
// wrote every page twice (200 MB of a 200 MB catch-up), about half of the
// replica's copying in `perf`; alternating runs of a 200 MB catch-up took
// 812, 550 and 502 ms with it, 511, 494 and 454 ms without. Instead, before the
// staged database file replaces the old one, a second name for it records
// its position: `snapshot-<TXID>-<checksum>` in the database's directory (a
// hard link: no data is written). The history is emptied (it led to the old
// state), and the next history file the replica writes (its next apply)
// makes the marker obsolete, so it is removed then.
//
// Recovery (recoverSnapshotMarker) uses a marker only when the history does
// not reach its TXID: it checksums the marker's file, moves it into place if
// it is not the database file already, and writes the snapshot LTX file for
// it from the database file (the one case where the pages are written
// twice, at start-up). A marker whose checksum does not match is removed
// and the history decides, as without it.

// snapshotMarkerPrefix starts the name of a snapshot marker.
const snapshotMarkerPrefix = "snapshot-"

// snapshotMarkerName returns the marker name for a snapshot at pos.
func snapshotMarkerName(pos ltx.Pos) string {
	return snapshotMarkerPrefix + pos.TXID.String() + "-" + pos.PostApplyChecksum.String()
}

// snapshotMarkers returns the markers in the database's directory, by name.
func (db *DB) snapshotMarkers() ([]string, error) {
	names, err := filepath.Glob(filepath.Join(db.dir, snapshotMarkerPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("list snapshot markers of %s: %w", db.name, err)
	}
	return names, nil
}

// removeSnapshotMarkers removes every marker of the database.
func (db *DB) removeSnapshotMarkers() {
	names, _ := db.snapshotMarkers()
	for _, name := range names {
		if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
			db.log.Warn("remove snapshot marker", "file", filepath.Base(name), "error", err)
		}
	}
	db.snapMarker = false
}

// dropSnapshotMarker removes the marker once a history file after it is
// written. db.mu is held.
func (db *DB) dropSnapshotMarker() {
	if db.snapMarker {
		db.removeSnapshotMarkers()
	}
}

// installSnapshot makes the staged database file at pos the database: marker
// first, then the history goes, then the file replaces the old one. Every
// connection is locked out; db.mu is held.
func (db *DB) installSnapshot(staged string, pos ltx.Pos) error {
	db.removeSnapshotMarkers()
	if err := os.Link(staged, filepath.Join(db.dir, snapshotMarkerName(pos))); err != nil {
		return fmt.Errorf("mark snapshot of %s: %w", db.name, err)
	}
	db.snapMarker = true
	db.removeHistoryBefore("")
	return db.replaceDatabaseFile(staged)
}

// recoverSnapshotMarker settles a snapshot marker at start-up, before the
// database file is opened: it reports whether it wrote a history file.
func (db *DB) recoverSnapshotMarker(last *lastLTX) (bool, error) {
	names, err := db.snapshotMarkers()
	if err != nil || len(names) == 0 {
		return false, err
	}
	path := names[len(names)-1] // the newest: TXIDs are fixed-width hex
	for _, old := range names[:len(names)-1] {
		_ = os.Remove(old)
	}
	pos, err := ltx.ParsePos(strings.Replace(strings.TrimPrefix(filepath.Base(path), snapshotMarkerPrefix), "-", "/", 1))
	if err != nil {
		db.log.Warn("removing a snapshot marker with a bad name", "file", filepath.Base(path), "error", err)
		return false, removeMarker(path)
	}
	if last != nil && last.hdr.MaxTXID >= pos.TXID {
		return false, removeMarker(path) // the history went on from it
	}
	ps, n, sum, err := checksumFile(path)
	if err != nil || sum != pos.PostApplyChecksum {
		// The history decides, as without the marker; at worst this node
		// starts behind and gets a snapshot again.
		db.log.Warn("removing a snapshot marker that does not match its file", "file", filepath.Base(path),
			"checksum", sum.String(), "error", err)
		return false, removeMarker(path)
	}
	if err := os.Rename(path, db.path(FileDatabase)); err != nil { // a no-op if it is the database file
		return false, fmt.Errorf("install snapshot of %s: %w", db.name, err)
	}
	db.removeHistoryBefore("")
	if err := db.writeSnapshotFile(pos, ps, n); err != nil {
		return false, err // the marker (if it is another name) stays for the next start
	}
	db.log.Info("snapshot recorded in the history at start-up", "txid", pos.TXID.String())
	return true, removeMarker(path)
}

// removeMarker removes a settled marker; it may already be gone (renamed).
func removeMarker(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove snapshot marker: %w", err)
	}
	return nil
}

// checksumFile returns the page size, page count and checksum of the SQLite
// database file at path, which must not be empty (an empty file has no page
// size to record).
func checksumFile(path string) (uint32, uint32, ltx.Checksum, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	var sums pageChecksums
	ps, err := loadFileSums(&sums, f, 0, nil)
	if err == nil && ps == 0 {
		err = errors.New("empty database file")
	}
	if err != nil {
		return 0, 0, 0, err
	}
	return ps, sums.PageN(), sums.Checksum(), nil
}

// writeSnapshotFile encodes the database file (n pages of size ps, at pos)
// as the snapshot LTX file of the history, durably.
func (db *DB) writeSnapshotFile(pos ltx.Pos, ps, n uint32) (err error) {
	src, err := os.Open(db.path(FileDatabase))
	if err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	defer src.Close()
	f, err := os.CreateTemp(db.LTXDir(), ".snapshot-ltx-*.tmp")
	if err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := encodeSnapshot(context.Background(), f, src, pos, ps, n, db.opts.Compress); err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(db.LTXDir(), ltxFileName(1, pos.TXID))); err != nil {
		return fmt.Errorf("record snapshot of %s: %w", db.name, err)
	}
	return syncDir(db.LTXDir())
}
