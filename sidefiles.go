package litefs

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Side files that exist before their database (docs/ARCHITECTURE.md, "Names
// in the mount"). A program that restores files by copying them in (SQLite's
// own tests, a backup tool, `cp *`) may write NAME-journal or NAME-wal
// before NAME. Until NAME exists such a file is a plain local file; when the
// mount creates NAME it becomes NAME's side file, moved into the database's
// directory before the database is visible, so that SQLite opening NAME
// finds the hot journal (and rolls it back) or the WAL (and recovers its
// frames), as on a local disk.
//
//   - An adopted journal whose header is hot makes the database's pages a
//     transaction in progress: the copy's writes are recorded only when the
//     journal stops being hot, that is after SQLite rolled it back, so the
//     first LTX file holds the rolled-back content, whole.
//   - An adopted WAL stays inactive (walAdopted) until the program that
//     created the database closes it: its writes are then recorded as the
//     first transaction, whole, and the WAL's committed transactions after
//     it, one LTX file each.
//
// A database created any other way (by replication, by an import) does not
// adopt: its local side files are renamed aside (NAME-journal.orphaned-<ns>)
// so that they stay visible and removable and never pose as the side files
// of a database they do not belong to.

// adoptableKinds are the side files a new database takes over.
var adoptableKinds = []FileKind{FileJournal, FileWAL, FileSHM}

// sideSuffix returns the mount-name suffix of an adoptable side file kind.
func sideSuffix(k FileKind) string {
	switch k {
	case FileJournal:
		return SuffixJournal
	case FileWAL:
		return SuffixWAL
	case FileSHM:
		return SuffixSHM
	}
	return ""
}

// CreateDBAdopting creates an empty database as CreateDB does and adopts the
// local files NAME-journal, NAME-wal and NAME-shm as its side files, in the
// same step. It returns the mount names of the adopted files. The FUSE layer
// uses it for a database created through the mount.
func (s *Store) CreateDBAdopting(name string) (*DB, []string, error) {
	return s.createDB(name, true)
}

// adoptSideFiles moves the local side files of db into its directory and
// opens them. s.mu is held and db is not yet visible.
func (s *Store) adoptSideFiles(db *DB) ([]string, error) {
	var adopted []string
	for _, k := range adoptableKinds {
		local := filepath.Join(s.LocalDir(), db.name+sideSuffix(k))
		if _, err := os.Lstat(local); os.IsNotExist(err) {
			continue
		} else if err != nil {
			return adopted, fmt.Errorf("adopt %s: %w", filepath.Base(local), err)
		}
		if err := os.Rename(local, db.path(k)); err != nil {
			return adopted, fmt.Errorf("adopt %s: %w", filepath.Base(local), err)
		}
		adopted = append(adopted, db.name+sideSuffix(k))
		if err := db.openFile(k, false); err != nil {
			return adopted, err
		}
		if err := db.adopted(k); err != nil {
			return adopted, err
		}
	}
	if len(adopted) > 0 {
		s.log.Info("side files adopted by their new database", "db", db.name, "files", adopted)
		if err := syncDir(s.LocalDir()); err != nil && !s.opts.SkipSync {
			return adopted, err
		}
	}
	return adopted, nil
}

// adopted sets up the commit state for an adopted side file of kind.
func (db *DB) adopted(kind FileKind) error {
	switch kind {
	case FileJournal:
		hdr := make([]byte, len(JournalMagic))
		n, err := db.file(FileJournal).ReadAt(hdr, 0)
		if err != nil && !isEOF(err) {
			return fmt.Errorf("read adopted journal of %s: %w", db.name, err)
		}
		db.journalHot = JournalHeaderIsHot(hdr[:n])
	case FileWAL:
		db.walAdopted.Store(true)
	case FileSHM:
		db.walIndexInvalid()
	}
	return nil
}

// activateAdoptedWAL ends the inactive state of an adopted WAL, once the
// database file it belongs to is recorded, and records the WAL's committed
// transactions. While database writes are still unrecorded (another writer
// holds RESERVED) the WAL stays inactive. db.mu is held.
func (db *DB) activateAdoptedWAL() error {
	if len(db.dirty) > 0 || db.sizeDirty || !db.walAdopted.Swap(false) {
		return nil
	}
	db.log.Info("adopted WAL activated")
	return db.commitWAL()
}

// orphanSideFiles renames aside the local side files of database name, for a
// database that does not adopt them.
func (s *Store) orphanSideFiles(name string) {
	for _, k := range adoptableKinds {
		local := filepath.Join(s.LocalDir(), name+sideSuffix(k))
		if _, err := os.Lstat(local); err != nil {
			continue
		}
		aside := fmt.Sprintf("%s.orphaned-%d", local, time.Now().UnixNano())
		if err := os.Rename(local, aside); err != nil {
			s.log.Warn("could not rename aside a local side file", "file", filepath.Base(local), "error", err)
			continue
		}
		s.log.Warn("local side file renamed aside: its database was not created through the mount",
			"db", name, "file", filepath.Base(local), "now", filepath.Base(aside))
	}
}
