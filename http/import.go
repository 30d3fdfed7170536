package http

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/litefs/litefs"
	_ "github.com/mattn/go-sqlite3" // PRAGMA integrity_check of imported files
	"github.com/superfly/ltx"
)

// sqliteMagic is the first 16 bytes of every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// ImportResponse is the body of a successful POST /import.
type ImportResponse struct {
	Name    string  `json:"name"`
	Pos     PosJSON `json:"pos"`
	Created bool    `json:"created"`
}

// handleImport answers POST /import?name=N: the body, a SQLite database
// file, replaces (or creates) database N. Only the primary accepts it. The
// file is validated completely before anything changes.
func (s *Server) handleImport(w nethttp.ResponseWriter, r *nethttp.Request) {
	if !s.store.IsPrimary() {
		host, url := s.primaryInfo()
		httpError(w, nethttp.StatusForbidden, fmt.Sprintf("this node is a replica: import on the primary %s (%s)", host, url))
		return
	}
	name, ok := nameParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	start := time.Now()
	src, size, code, err := s.receiveFile(w, r)
	if err != nil {
		httpError(w, code, err.Error())
		return
	}
	defer removeTemp(src)
	pageSize, pageN, err := validateSQLiteFile(ctx, src, size)
	if err != nil {
		httpError(w, nethttp.StatusBadRequest, fmt.Sprintf("import %q refused, nothing changed: %v", name, err))
		return
	}
	pos, created, err := s.importFile(ctx, name, src, pageSize, pageN)
	if err != nil {
		httpError(w, nethttp.StatusInternalServerError, fmt.Sprintf("import %q: %v", name, err))
		return
	}
	metrics.importsTotal.Add(1)
	s.log.Info("database imported", "db", name, "txid", pos.TXID.String(), "bytes", size,
		"created", created, "duration", time.Since(start).Round(time.Millisecond))
	w.Header().Set(HeaderPos, pos.String())
	writeJSON(w, nethttp.StatusOK, ImportResponse{Name: name, Pos: NewPosJSON(pos), Created: created})
}

// receiveFile copies the request body into a temporary file, refusing
// bodies over MaxImportSize. It returns the file positioned at its start.
func (s *Server) receiveFile(w nethttp.ResponseWriter, r *nethttp.Request) (*os.File, int64, int, error) {
	if r.ContentLength > s.opts.MaxImportSize {
		return nil, 0, nethttp.StatusRequestEntityTooLarge,
			fmt.Errorf("import body is %d bytes, the limit is %d", r.ContentLength, s.opts.MaxImportSize)
	}
	f, err := os.CreateTemp(s.opts.TempDir, "litefs-import-*.db")
	if err != nil {
		return nil, 0, nethttp.StatusInternalServerError, fmt.Errorf("create import temp file: %w", err)
	}
	rc := nethttp.NewResponseController(w)
	body := &deadlineReader{r: nethttp.MaxBytesReader(w, r.Body, s.opts.MaxImportSize), rc: rc, timeout: s.opts.WriteTimeout}
	n, err := io.Copy(f, body)
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		removeTemp(f)
		var mbe *nethttp.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, 0, nethttp.StatusRequestEntityTooLarge, fmt.Errorf("import body exceeds the limit of %d bytes", mbe.Limit)
		}
		return nil, 0, nethttp.StatusBadRequest, fmt.Errorf("read import body after %d bytes: %w", n, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		removeTemp(f)
		return nil, 0, nethttp.StatusInternalServerError, fmt.Errorf("rewind import temp file: %w", err)
	}
	return f, n, 0, nil
}

// validateSQLiteFile checks that f (size bytes) is a whole, intact SQLite
// database: header magic, page size, size a whole number of pages that
// agrees with the header, and PRAGMA integrity_check. It returns the page
// size and the number of pages.
func validateSQLiteFile(ctx context.Context, f *os.File, size int64) (uint32, uint32, error) {
	if size < 100 {
		return 0, 0, fmt.Errorf("file is %d bytes: too short for a SQLite database (its header alone is 100 bytes)", size)
	}
	hdr := make([]byte, 100)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return 0, 0, fmt.Errorf("read header: %w", err)
	}
	if string(hdr[:16]) != sqliteMagic {
		return 0, 0, errors.New(`not a SQLite database: the file does not start with "SQLite format 3"`)
	}
	pageSize := uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if !ltx.IsValidPageSize(pageSize) {
		return 0, 0, fmt.Errorf("invalid page size %d in the header: want a power of two from 512 to 65536", pageSize)
	}
	if size%int64(pageSize) != 0 {
		return 0, 0, fmt.Errorf("file size %d is not a whole number of %d-byte pages: truncated or damaged", size, pageSize)
	}
	if size/int64(pageSize) > int64(^uint32(0)-1) {
		return 0, 0, fmt.Errorf("file has %d pages: too many", size/int64(pageSize))
	}
	pageN := uint32(size / int64(pageSize))
	// The in-header size counts only when the change counter (24) equals
	// version-valid-for (92), as SQLite decides.
	if binary.BigEndian.Uint32(hdr[24:28]) == binary.BigEndian.Uint32(hdr[92:96]) {
		if n := binary.BigEndian.Uint32(hdr[28:32]); n != 0 && n != pageN {
			return 0, 0, fmt.Errorf("file has %d pages but its header says %d: truncated or padded", pageN, n)
		}
	}
	if err := integrityCheck(ctx, f.Name()); err != nil {
		return 0, 0, err
	}
	return pageSize, pageN, nil
}

// integrityCheck runs PRAGMA integrity_check on the file at path, opened
// read-only and immutable (no side files are created).
func integrityCheck(ctx context.Context, path string) error {
	dsn := (&url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&immutable=1"}).String()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return fmt.Errorf("open for integrity check: %w", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return fmt.Errorf("integrity check failed: %w", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		if len(msgs) < 5 {
			msgs = append(msgs, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check failed: %w", err)
	}
	if len(msgs) != 1 || msgs[0] != "ok" {
		return fmt.Errorf("integrity check failed: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// importFile replaces (or creates) database name with the validated SQLite
// file src through the database's apply path. It retries when a commit
// moved the database between building the LTX file and applying it.
func (s *Server) importFile(ctx context.Context, name string, src *os.File, pageSize, pageN uint32) (ltx.Pos, bool, error) {
	db, created := s.store.DB(name), false
	if db == nil {
		var err error
		if db, err = s.store.CreateDB(name); errors.Is(err, litefs.ErrDatabaseExists) && db != nil {
			err = nil
		} else if err == nil {
			created = true
		}
		if err != nil {
			return ltx.Pos{}, false, fmt.Errorf("create database: %w", err)
		}
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var pos ltx.Pos
		pos, err = s.applyImport(ctx, db, src, pageSize, pageN)
		if err == nil {
			return pos, created, nil
		} else if !errors.Is(err, litefs.ErrPosMismatch) {
			break
		}
	}
	if created && db.Pos().TXID == 0 {
		_ = s.store.DeleteDB(name) // leave nothing behind
	}
	return ltx.Pos{}, false, err
}

// applyImport builds an LTX file taking db from its current position to
// the content of src, and applies it.
func (s *Server) applyImport(ctx context.Context, db *litefs.DB, src *os.File, pageSize, pageN uint32) (ltx.Pos, error) {
	f, err := os.CreateTemp(s.opts.TempDir, "litefs-import-*.ltx")
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("create ltx temp file: %w", err)
	}
	defer removeTemp(f)
	from := db.Pos()
	// Connections in rollback mode keep their page cache while the header's
	// change counter is unchanged: the imported page 1 must carry a newer one.
	var cur [4]byte
	if _, err := db.ReadAt(litefs.FileDatabase, cur[:], 24); err != nil {
		cur = [4]byte{}
	}
	if err := s.encodeImportLTX(ctx, f, src, from, pageSize, pageN, binary.BigEndian.Uint32(cur[:])); err != nil {
		return ltx.Pos{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ltx.Pos{}, fmt.Errorf("rewind ltx temp file: %w", err)
	}
	pos, err := db.ApplyLTX(ctx, f)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("apply import at txid %s: %w", from.TXID+1, err)
	}
	return pos, nil
}

// encodeImportLTX writes to w an LTX file holding every page of src: a
// transaction following from (or a snapshot when the database is empty),
// whose post-apply checksum is the checksum of src.
func (s *Server) encodeImportLTX(ctx context.Context, w io.Writer, src *os.File, from ltx.Pos, pageSize, pageN, counter uint32) error {
	hdr := ltx.Header{
		Version:   ltx.Version,
		PageSize:  pageSize,
		Commit:    pageN,
		MinTXID:   from.TXID + 1,
		MaxTXID:   from.TXID + 1,
		Timestamp: time.Now().UnixMilli(),
		NodeID:    s.store.NodeID(),
	}
	if from.TXID > 0 {
		hdr.PreApplyChecksum = from.PostApplyChecksum
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	enc, err := ltx.NewEncoder(bw)
	if err != nil {
		return fmt.Errorf("ltx encoder: %w", err)
	}
	enc.SetSpillDir(s.opts.TempDir)
	defer func() { _ = enc.Cleanup() }()
	if err := enc.EncodeHeader(hdr); err != nil {
		return fmt.Errorf("encode ltx header: %w", err)
	}
	sum, err := encodePages(ctx, enc, src, pageSize, pageN, counter)
	if err != nil {
		return err
	}
	enc.SetPostApplyChecksum(sum)
	if err := enc.Close(); err != nil {
		return fmt.Errorf("close ltx encoder: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write ltx temp file: %w", err)
	}
	return nil
}

// encodePages encodes pages 1..pageN of src (except the lock page) and
// returns the database checksum of those pages. Page 1's change counter (and
// version-valid-for number) is set above counter, the database's current one.
func encodePages(ctx context.Context, enc *ltx.Encoder, src *os.File, pageSize, pageN, counter uint32) (ltx.Checksum, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(src, 0, int64(pageN)*int64(pageSize)), 256<<10)
	lockPgno := ltx.LockPgno(pageSize)
	page := make([]byte, pageSize)
	sum := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= pageN; pgno++ {
		if pgno%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		if _, err := io.ReadFull(r, page); err != nil {
			return 0, fmt.Errorf("read page %d of the import: %w", pgno, err)
		}
		if pgno == lockPgno {
			continue
		}
		if pgno == 1 && binary.BigEndian.Uint32(page[24:28]) <= counter {
			binary.BigEndian.PutUint32(page[24:28], counter+1)
			binary.BigEndian.PutUint32(page[92:96], counter+1)
		}
		sum ^= ltx.ChecksumPage(pgno, page)
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			return 0, fmt.Errorf("encode page %d: %w", pgno, err)
		}
	}
	return ltx.ChecksumFlag | sum, nil
}
