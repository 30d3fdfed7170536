package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
)

const exportSynopsis = "litefs export -name NAME [-url URL] PATH"

// runExport implements "litefs export": it downloads a consistent copy of a
// database from GET /export and installs it at PATH atomically. PATH is
// never half-written: on any error it is left as it was.
func runExport(ctx context.Context, args []string, stdout io.Writer) error {
	o, help, err := parseTransferFlags("export", exportSynopsis, "name of the database to export (required)", "where to write the copy", args, stdout)
	if help || err != nil {
		return err
	}
	c, err := newAPIClient("export", o.url)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(o.path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("export: %s is a %s: give the path of a file to create or replace", o.path, describeMode(fi.Mode()))
	}
	req, err := c.newRequest(ctx, http.MethodGet, "/export", url.Values{"name": {o.name}}, nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return fmt.Errorf("export %q: %w", o.name, err)
	}
	defer resp.Body.Close()
	n, err := installDownload(o.path, resp.Body, resp.ContentLength, newProgress("export "+o.name, resp.ContentLength))
	if err != nil {
		return fmt.Errorf("export %q to %s: %w; %s was not changed", o.name, o.path, err, o.path)
	}
	fmt.Fprintf(stdout, "exported %s to %s (%d bytes)\n", o.name, o.path, n)
	return nil
}

// installDownload copies body into a temporary file next to path, checks
// it (length, SQLite header), fsyncs it and renames it over path. want is
// the expected length, -1 if unknown. On error the temporary file is
// removed and path is untouched.
func installDownload(path string, body io.Reader, want int64, p *progress) (n int64, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".litefs-export-*")
	if err != nil {
		return 0, fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err = io.Copy(tmp, &progressReader{r: body, p: p})
	p.finish()
	if err != nil {
		return n, fmt.Errorf("download failed after %d bytes: %w", n, err)
	}
	if want >= 0 && n != want {
		return n, fmt.Errorf("download truncated: got %d of %d bytes", n, want)
	}
	if err := checkDownloadedHeader(tmp, n); err != nil {
		return n, err
	}
	if err := tmp.Chmod(exportMode(path)); err != nil {
		return n, err
	}
	if err := tmp.Sync(); err != nil {
		return n, fmt.Errorf("fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return n, err
	}
	syncDir(dir)
	return n, nil
}

// checkDownloadedHeader checks that the n bytes written to f look like a
// SQLite database. An empty file is accepted: SQLite reads it as an empty
// database, and the daemon exports a never-written database that way.
func checkDownloadedHeader(f *os.File, n int64) error {
	if n == 0 {
		return nil
	}
	hdr := make([]byte, len(sqliteHeader))
	if _, err := f.ReadAt(hdr, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the server sent %d bytes, not a SQLite database", n)
		}
		return fmt.Errorf("read back: %w", err)
	}
	if string(hdr) != sqliteHeader {
		return fmt.Errorf("the server sent something that is not a SQLite database (no SQLite header)")
	}
	return nil
}

// exportMode is the permission of the exported file: that of the file it
// replaces, or 0644 for a new file.
func exportMode(path string) os.FileMode {
	if fi, err := os.Stat(path); err == nil {
		return fi.Mode().Perm()
	}
	return 0o644
}

// syncDir fsyncs a directory so that a rename in it is durable. Errors are
// ignored: some filesystems do not support fsync on directories.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
