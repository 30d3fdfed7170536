package litefs

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/superfly/ltx"
)

// ltxFileName returns the file name of the LTX file covering [min, max].
func ltxFileName(min, max ltx.TXID) string { return ltx.FormatFilename(min, max) }

// writeFileAtomic writes data to dir/name through a temporary file and a
// rename, so the name never holds a partial file. With sync it fsyncs the file
// before the rename and the directory after it.
func writeFileAtomic(dir, name string, data []byte, sync bool) error {
	tmp := name + ".tmp"
	if err := writeFile(filepath.Join(dir, tmp), data, sync); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, tmp), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

// writeFile creates (or truncates) path and writes data, fsyncing with sync.
func writeFile(path string, data []byte, sync bool) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		// A disk that is full leaves a short file: remove it, so no
		// name ever holds a partial LTX file of a failed commit.
		_ = f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			_ = os.Remove(path)
			return fmt.Errorf("fsync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so that renames and removals in it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// ltxRange is the TXID range of one LTX file in a database's history.
type ltxRange struct{ min, max ltx.TXID }

// listLTX returns the LTX files in dir sorted by TXID.
func listLTX(dir string) ([]ltxRange, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("read ltx dir: %w", err)
	}
	var out []ltxRange
	for _, e := range ents {
		min, max, err := ltx.ParseFilename(e.Name())
		if err != nil {
			continue // not ours; leave it alone
		}
		out = append(out, ltxRange{min, max})
	}
	slices.SortFunc(out, func(a, b ltxRange) int { return cmp.Compare(a.min, b.min) })
	return out, nil
}

// readLTXFile decodes and verifies a whole LTX file, calling fn for each page.
func readLTXFile(path string, fn func(hdr ltx.Header, pgno uint32, data []byte) error) (ltx.Header, ltx.Trailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("open ltx: %w", err)
	}
	defer f.Close()
	return decodeLTX(f, fn)
}

// decodeLTX decodes and verifies an LTX stream, calling fn (if not nil) for each page.
func decodeLTX(r io.Reader, fn func(hdr ltx.Header, pgno uint32, data []byte) error) (ltx.Header, ltx.Trailer, error) {
	dec := ltx.NewDecoder(r)
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("decode ltx header: %w", err)
	}
	hdr := dec.Header()
	data := make([]byte, hdr.PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return hdr, ltx.Trailer{}, fmt.Errorf("decode ltx page: %w", err)
		}
		if fn != nil {
			if err := fn(hdr, ph.Pgno, data); err != nil {
				return hdr, ltx.Trailer{}, err
			}
		}
	}
	if err := dec.Close(); err != nil {
		return hdr, ltx.Trailer{}, fmt.Errorf("verify ltx: %w", err)
	}
	return hdr, dec.Trailer(), nil
}

// removeTempFiles deletes temporary files left in dir by an interrupted
// write, spool or snapshot (only safe before anything else uses dir).
func removeTempFiles(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read ltx dir: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove leftover %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}
