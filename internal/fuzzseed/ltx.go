package fuzzseed

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/superfly/ltx"
)

// ReencodeLTX decodes the LTX file b and encodes it again with its header
// changed by edit: a file whose checksums are all right but whose header
// says something else (another commit size, say). Pages past the new commit
// size are left out; the post-apply checksum is kept.
func ReencodeLTX(b []byte, edit func(*ltx.Header)) ([]byte, error) {
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		return nil, fmt.Errorf("reencode ltx: %w", err)
	}
	hdr := dec.Header()
	type page struct {
		pgno uint32
		data []byte
	}
	var pages []page
	for {
		var ph ltx.PageHeader
		data := make([]byte, hdr.PageSize)
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reencode ltx: %w", err)
		}
		pages = append(pages, page{ph.Pgno, data})
	}
	if err := dec.Close(); err != nil {
		return nil, fmt.Errorf("reencode ltx: %w", err)
	}
	edit(&hdr)
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		return nil, fmt.Errorf("reencode ltx: %w", err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		return nil, fmt.Errorf("reencode ltx: %w", err)
	}
	for _, p := range pages {
		if p.pgno > hdr.Commit && !hdr.IsSnapshot() {
			continue
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
			return nil, fmt.Errorf("reencode ltx: page %d: %w", p.pgno, err)
		}
	}
	enc.SetPostApplyChecksum(dec.Trailer().PostApplyChecksum)
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("reencode ltx: %w", err)
	}
	return buf.Bytes(), nil
}
