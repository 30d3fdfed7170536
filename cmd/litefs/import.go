package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/litefs/litefs"
)

const importSynopsis = "litefs import -name NAME [-url URL] PATH"

// transferOptions are the command-line options of "litefs import" and
// "litefs export": a database name, the daemon's URL and a local path.
type transferOptions struct {
	name string
	url  string
	path string
}

// parseTransferFlags parses the command line of import or export (cmd).
func parseTransferFlags(cmd, synopsis, nameHelp, pathHelp string, args []string, stdout io.Writer) (*transferOptions, bool, error) {
	var o transferOptions
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&o.name, "name", "", nameHelp)
	fs.StringVar(&o.url, "url", defaultURL, "URL of the local litefs daemon's HTTP API")
	pos, help, err := parseCommandFlags(fs, args, synopsis, stdout)
	if help || err != nil {
		return nil, help, err
	}
	if err := checkNameFlag(cmd, o.name); err != nil {
		return nil, false, err
	}
	if len(pos) != 1 {
		return nil, false, &usageError{msg: fmt.Sprintf("%s: want exactly one PATH argument (%s), got %d", cmd, pathHelp, len(pos))}
	}
	o.path = pos[0]
	return &o, false, nil
}

// checkNameFlag checks the required -name flag of import and export.
func checkNameFlag(cmd, name string) error {
	if name == "" {
		return &usageError{msg: cmd + ": missing required flag -name (the database name)"}
	}
	if err := litefs.ValidateName(name); err != nil {
		return &usageError{msg: fmt.Sprintf("%s: bad -name %q: %v (a database name is a plain file name)", cmd, name, err)}
	}
	return nil
}

// runImport implements "litefs import": it checks that PATH looks like a
// SQLite database, then streams it to POST /import on the daemon, which
// validates it fully and replaces or creates the database.
func runImport(ctx context.Context, args []string, stdout io.Writer) error {
	o, help, err := parseTransferFlags("import", importSynopsis, "name of the database to create or replace (required)", "the SQLite file to import", args, stdout)
	if help || err != nil {
		return err
	}
	c, err := newAPIClient("import", o.url)
	if err != nil {
		return err
	}
	f, size, err := openSQLiteFile(o.path)
	if err != nil {
		return err
	}
	defer f.Close()
	warnUncheckpointedWAL(o.path)

	p := newProgress("import "+o.name, size)
	req, err := c.newRequest(ctx, http.MethodPost, "/import", url.Values{"name": {o.name}}, &progressReader{r: f, p: p})
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/vnd.sqlite3")
	resp, err := c.do(req)
	p.finish()
	if err != nil {
		return fmt.Errorf("import %s as %q: %w", o.path, o.name, err)
	}
	defer resp.Body.Close()
	txid, checksum := importedPos(resp)
	fmt.Fprintf(stdout, "imported %s as %s: txid %s checksum %s\n", o.path, o.name, txid, checksum)
	return nil
}

// openSQLiteFile opens path for import after checking that it is a regular
// file that starts with a SQLite header with a valid page size. It returns
// the open file, positioned at its start, and its size.
func openSQLiteFile(path string) (*os.File, int64, error) {
	// Stat before opening: opening a named pipe would block.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("import: cannot read %s: %w", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("import: %s is a %s, not a regular file: give the path of a SQLite database file", path, describeMode(fi.Mode()))
	}
	f, err := os.Open(path)
	if err == nil {
		fi, err = f.Stat()
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, 0, fmt.Errorf("import: cannot read %s: %w", path, unwrapPathError(err))
	}
	if err := checkSQLiteHeader(f, fi.Size()); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("import: %s is not a SQLite database: %v; nothing was sent", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("import: %s: %w", path, err)
	}
	return f, fi.Size(), nil
}

// checkSQLiteHeader reads the first 100 bytes of r (the SQLite database
// header) and checks the magic string and the page size.
func checkSQLiteHeader(r io.Reader, size int64) error {
	if size == 0 {
		return fmt.Errorf("the file is empty")
	}
	var hdr [100]byte
	n, err := io.ReadFull(r, hdr[:])
	if n < len(sqliteHeader) || string(hdr[:len(sqliteHeader)]) != sqliteHeader {
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return fmt.Errorf("read header: %v", err)
		}
		return fmt.Errorf("it does not start with the header %q", strings.TrimSuffix(sqliteHeader, "\x00"))
	}
	if err != nil {
		return fmt.Errorf("the file is %d bytes, too short for the 100-byte SQLite header", n)
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return fmt.Errorf("bad page size %d in the header (want a power of two from 512 to 65536)", pageSize)
	}
	if size%pageSize != 0 {
		return fmt.Errorf("the file size %d is not a multiple of its page size %d (truncated or corrupt)", size, pageSize)
	}
	return nil
}

// warnUncheckpointedWAL warns on stderr when path has a non-empty WAL next
// to it: transactions still in the WAL are not part of the imported file.
func warnUncheckpointedWAL(path string) {
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		fmt.Fprintf(progressOut, "litefs: warning: %s-wal is not empty: transactions still in the WAL are not imported; "+
			"run \"PRAGMA wal_checkpoint(TRUNCATE)\" on the source first\n", path)
	}
}

// importedPos returns the new position from a successful import response:
// from the JSON body, either {"txid","checksum"} or {"pos":{"txid",
// "checksum"}}, else from the Litefs-Pos header ("<txid>/<checksum>"),
// else "-" for what is unknown.
func importedPos(resp *http.Response) (txid, checksum string) {
	type pos struct {
		TXID     string `json:"txid"`
		Checksum string `json:"checksum"`
	}
	var body struct {
		pos
		Pos *pos `json:"pos"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	p := body.pos
	if p.TXID == "" && body.Pos != nil {
		p = *body.Pos
	}
	if p.TXID == "" {
		if t, c, ok := strings.Cut(resp.Header.Get("Litefs-Pos"), "/"); ok {
			p.TXID, p.Checksum = t, c
		}
	}
	return orDash(p.TXID), orDash(p.Checksum)
}

// unwrapPathError drops the *os.PathError wrapper, whose path the caller's
// message already names.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// describeMode names the kind of a non-regular file.
func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
