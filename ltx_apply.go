package litefs

import (
	"fmt"
	"os"

	"github.com/superfly/ltx"
)

// applyLTXFile writes every page of the LTX file at path into the database
// file f and sets f's size to the file's commit size. The LTX file is fully
// verified (its own checksum) before any page is written, so a damaged file
// changes nothing.
func applyLTXFile(path string, f *os.File) (ltx.Header, ltx.Trailer, error) {
	if _, _, err := readLTXFile(path, nil); err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("verify %s: %w", path, err)
	}
	return writeLTXPages(path, f)
}

// writeLTXPages writes the pages of an LTX file already verified into f and
// sets f's size to the file's commit size.
func writeLTXPages(path string, f *os.File) (ltx.Header, ltx.Trailer, error) {
	hdr, trailer, err := readLTXFile(path, func(hdr ltx.Header, pgno uint32, data []byte) error {
		if _, err := f.WriteAt(data, int64(pgno-1)*int64(hdr.PageSize)); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
		return nil
	})
	if err != nil {
		return hdr, trailer, err
	}
	if err := f.Truncate(int64(hdr.Commit) * int64(hdr.PageSize)); err != nil {
		return hdr, trailer, fmt.Errorf("truncate database: %w", err)
	}
	return hdr, trailer, nil
}
