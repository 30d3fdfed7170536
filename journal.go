package litefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// JournalMagic is the first 8 bytes of a valid rollback journal header.
var JournalMagic = []byte{0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7}

// Rollback journal layout (see https://www.sqlite.org/fileformat2.html#rollbackjournal).
const (
	journalHeaderFields = 28    // magic 8, nRec 4, nonce 4, initial size 4, sector size 4, page size 4
	journalMinSector    = 32    // smallest sector size SQLite accepts in a journal header
	journalMaxSector    = 65536 // MAX_SECTOR_SIZE
	journalMinPage      = 512   // smallest page size
	journalMaxPage      = 65536 // SQLITE_MAX_PAGE_SIZE
	journalDefaultPage  = 4096  // SQLITE_DEFAULT_PAGE_SIZE, for a page size SQLite never recorded
	journalNRecToEOF    = ^uint32(0)
	journalSuperTrailer = 16  // name length 4, name checksum 4, magic 8
	journalSuperMaxName = 512 // the unix VFS's mxPathname; longer names are ignored
)

// JournalHeaderIsHot reports whether b (the first bytes of a journal file)
// starts with the journal magic, i.e. the journal is live (not deleted, not
// truncated to zero, not zeroed by PERSIST mode or exclusive locking mode).
func JournalHeaderIsHot(b []byte) bool {
	return len(b) >= len(JournalMagic) && bytes.Equal(b[:len(JournalMagic)], JournalMagic)
}

// RollbackJournal plays back a hot rollback journal into the database file,
// as SQLite's hot-journal rollback does:
//
//   - If the journal names a super-journal (multi-database transaction) and
//     superExists reports that it no longer exists, the transaction committed,
//     the journal is not hot and nothing is played back. A nil superExists
//     treats every super-journal as missing. SQLite's unix VFS counts an
//     empty file as missing, and superExists should too. A name that is
//     corrupt (bad checksum) or not shaped like SQLite's "<db>-mjXXXXXX9XX"
//     names is ignored and the journal is played back, as recent SQLite
//     versions do.
//   - An empty database file is never rolled back (SQLite deletes the journal).
//   - The first journal header must carry the magic and a power-of-two page
//     size (512..65536) and sector size (32..65536); otherwise nothing is done.
//   - db is resized to the header's initial size in pages, then every journal
//     segment (a header at a sector boundary followed by nRec page records) is
//     played in order. nRec 0xFFFFFFFF means "records up to the end of the
//     file". nRec 0 means the segment holds no synced records, so none are
//     played from it: SQLite computes a count from the file size only when
//     rolling back its own live transaction, never for a hot journal, because
//     unsynced records may be torn and the database has not been written from
//     them yet.
//   - Each record's original page is written back at (pgno-1)*pageSize.
//     Records for pages past the initial size are skipped; playback stops at
//     the first truncated record, a record for page 0 or for the lock-byte
//     page (the super-journal pointer), or a record whose checksum is wrong.
//
// Finally db is fsynced. The journal is not deleted; the caller does that.
// rolledBack reports whether the journal was hot and played back; pages is
// the number of page records written to db.
func RollbackJournal(journal io.ReaderAt, journalSize int64, db *os.File, superExists func(name string) bool) (pages int, rolledBack bool, err error) {
	super, err := readSuperJournalName(journal, journalSize)
	if err != nil {
		return 0, false, err
	}
	if super != "" && (superExists == nil || !superExists(super)) {
		return 0, false, nil
	}
	fi, err := db.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("rollback journal: stat database: %w", err)
	}
	if fi.Size() == 0 {
		return 0, false, nil
	}

	p := journalPlayback{journal: journal, size: journalSize, db: db}
	hdr, ok, err := p.readFirstHeader()
	if err != nil || !ok {
		return 0, false, err
	}
	if err := p.resizeDB(fi.Size(), hdr.dbSize); err != nil {
		return 0, false, err
	}
	if err := p.play(hdr); err != nil {
		return p.pages, false, err
	}
	if err := db.Sync(); err != nil {
		return p.pages, false, fmt.Errorf("rollback journal: sync database: %w", err)
	}
	return p.pages, true, nil
}

// journalHeader is one decoded journal header. pageSize and sectorSize are
// only meaningful in the first header; SQLite ignores them in later ones.
type journalHeader struct {
	off        int64 // file offset of the header
	nRec       uint32
	nonce      uint32
	dbSize     uint32 // database size in pages when the transaction started
	sectorSize uint32
	pageSize   uint32
}

// journalPlayback holds the state of one RollbackJournal call.
type journalPlayback struct {
	journal    io.ReaderAt
	size       int64 // journal size in bytes
	db         *os.File
	pageSize   int64
	sectorSize int64
	dbSize     uint32 // pages in the database before the transaction
	pages      int    // records written back so far
	buf        []byte // one record: pgno 4, page, checksum 4
}

// readFirstHeader reads the header at offset 0 and fixes the page and sector
// sizes for the whole journal. ok is false when the journal is not playable.
func (p *journalPlayback) readFirstHeader() (journalHeader, bool, error) {
	hdr, ok, err := p.readHeader(0)
	if err != nil || !ok {
		return hdr, false, err
	}
	if hdr.pageSize == 0 { // written by SQLite before 3.5.8: use the database's
		ps, err := journalDatabasePageSize(p.db)
		if err != nil {
			return hdr, false, err
		}
		hdr.pageSize = ps
	}
	if !journalPowerOfTwo(hdr.pageSize, journalMinPage, journalMaxPage) ||
		!journalPowerOfTwo(hdr.sectorSize, journalMinSector, journalMaxSector) ||
		int64(hdr.sectorSize) > p.size {
		return hdr, false, nil
	}
	p.pageSize, p.sectorSize, p.dbSize = int64(hdr.pageSize), int64(hdr.sectorSize), hdr.dbSize
	p.buf = make([]byte, p.pageSize+8)
	return hdr, true, nil
}

// readHeader reads the journal header at off. ok is false when there is no
// complete header with the magic there.
func (p *journalPlayback) readHeader(off int64) (journalHeader, bool, error) {
	hdr := journalHeader{off: off}
	if off+journalHeaderFields > p.size || (p.sectorSize > 0 && off+p.sectorSize > p.size) {
		return hdr, false, nil
	}
	var b [journalHeaderFields]byte
	if ok, err := journalReadFull(p.journal, b[:], off); err != nil || !ok {
		return hdr, false, err
	}
	if !JournalHeaderIsHot(b[:]) {
		return hdr, false, nil
	}
	hdr.nRec = binary.BigEndian.Uint32(b[8:])
	hdr.nonce = binary.BigEndian.Uint32(b[12:])
	hdr.dbSize = binary.BigEndian.Uint32(b[16:])
	hdr.sectorSize = binary.BigEndian.Uint32(b[20:])
	hdr.pageSize = binary.BigEndian.Uint32(b[24:])
	return hdr, true, nil
}

// play plays back every segment starting with the first header hdr.
func (p *journalPlayback) play(hdr journalHeader) error {
	lockPage := uint32(PendingByte/p.pageSize) + 1
	recSize := p.pageSize + 8
	for {
		off := hdr.off + p.sectorSize
		nRec := int64(hdr.nRec)
		if hdr.nRec == journalNRecToEOF {
			nRec = max(0, (p.size-off)/recSize)
		}
		for range nRec {
			ok, err := journalReadFull(p.journal, p.buf, off)
			if err != nil || !ok {
				return err
			}
			off += recSize
			pgno := binary.BigEndian.Uint32(p.buf[0:])
			if pgno == 0 || pgno == lockPage {
				return nil
			}
			if pgno > p.dbSize {
				continue
			}
			page := p.buf[4 : 4+p.pageSize]
			if journalChecksum(hdr.nonce, page) != binary.BigEndian.Uint32(p.buf[4+p.pageSize:]) {
				return nil
			}
			if _, err := p.db.WriteAt(page, int64(pgno-1)*p.pageSize); err != nil {
				return fmt.Errorf("rollback journal: write page %d: %w", pgno, err)
			}
			p.pages++
		}
		next := (off + p.sectorSize - 1) / p.sectorSize * p.sectorSize
		var ok bool
		var err error
		if hdr, ok, err = p.readHeader(next); err != nil || !ok {
			return err
		}
	}
}

// resizeDB sets the database file to dbSize pages the way SQLite does before
// playback: it shrinks a longer file and extends one that is at least a page
// short; a file short by less than a page is left alone.
func (p *journalPlayback) resizeDB(cur int64, dbSize uint32) error {
	want := int64(dbSize) * p.pageSize
	if cur > want || cur+p.pageSize <= want {
		if err := p.db.Truncate(want); err != nil {
			return fmt.Errorf("rollback journal: resize database to %d pages: %w", dbSize, err)
		}
	}
	return nil
}

// journalChecksum is the checksum of a journal page record: the header's
// nonce plus every 200th byte of the page, from pageSize-200 down to (but not
// including) offset 0.
func journalChecksum(nonce uint32, page []byte) uint32 {
	sum := nonce
	for i := len(page) - 200; i > 0; i -= 200 {
		sum += uint32(page[i])
	}
	return sum
}

// readSuperJournalName returns the super-journal name recorded at the end of
// the journal, or "" when there is none. A name whose checksum is wrong, that
// is longer than the VFS's longest path or that is not shaped like a name
// SQLite generates counts as none, as in SQLite: the journal is then rolled
// back. The trailer is: name, name length (4), name checksum (4), journal
// magic (8).
func readSuperJournalName(journal io.ReaderAt, size int64) (string, error) {
	if size < journalSuperTrailer {
		return "", nil
	}
	var t [journalSuperTrailer]byte
	if ok, err := journalReadFull(journal, t[:], size-journalSuperTrailer); err != nil || !ok {
		return "", err
	}
	n := int64(binary.BigEndian.Uint32(t[0:]))
	sum := binary.BigEndian.Uint32(t[4:])
	if !bytes.Equal(t[8:], JournalMagic) || n == 0 || n > journalSuperMaxName || n > size-journalSuperTrailer {
		return "", nil
	}
	name := make([]byte, n)
	if ok, err := journalReadFull(journal, name, size-journalSuperTrailer-n); err != nil || !ok {
		return "", err
	}
	// SQLite sums the name as C chars, which are signed on most platforms and
	// unsigned on some; accept either so a journal written elsewhere still reads.
	var signed, unsigned uint32
	for _, c := range name {
		signed += uint32(int32(int8(c)))
		unsigned += uint32(c)
	}
	if sum != signed && sum != unsigned {
		return "", nil
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	if !journalIsSuperName(name) {
		return "", nil
	}
	return string(name), nil
}

// journalIsSuperName reports whether name has the shape of the super-journal
// names SQLite generates: "<db>-mjXXXXXX9XX" (X a hex digit), or "<db>.9XX"
// in 8.3-filename builds. Recent SQLite versions treat any other name as a
// corrupt pointer and roll the journal back, so that a damaged or crafted
// journal cannot make them probe or delete an arbitrary file.
func journalIsSuperName(name []byte) bool {
	hex := func(b []byte) bool {
		for _, c := range b {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
		return true
	}
	n := len(name)
	if n >= 4 && name[n-4] == '.' && name[n-3] == '9' && hex(name[n-2:]) {
		return true
	}
	return n >= 12 && string(name[n-12:n-9]) == "-mj" && name[n-3] == '9' && hex(name[n-9:])
}

// journalDatabasePageSize reads the page size from the database header, for
// journals that did not record one. It falls back to SQLite's default.
func journalDatabasePageSize(db *os.File) (uint32, error) {
	var b [2]byte
	ok, err := journalReadFull(db, b[:], 16)
	if err != nil || !ok {
		return journalDefaultPage, err
	}
	switch v := uint32(binary.BigEndian.Uint16(b[:])); {
	case v == 1:
		return journalMaxPage, nil
	case journalPowerOfTwo(v, journalMinPage, journalMaxPage):
		return v, nil
	default:
		return journalDefaultPage, nil
	}
}

// journalPowerOfTwo reports whether v is a power of two in [lo, hi].
func journalPowerOfTwo(v, lo, hi uint32) bool {
	return v >= lo && v <= hi && v&(v-1) == 0
}

// journalReadFull reads len(b) bytes at off. ok is false, with a nil error,
// when the file ends first (SQLite's short read).
func journalReadFull(r io.ReaderAt, b []byte, off int64) (ok bool, err error) {
	n, err := r.ReadAt(b, off)
	switch {
	case n == len(b):
		return true, nil
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	default:
		return false, fmt.Errorf("rollback journal: read at offset %d: %w", off, err)
	}
}
