package fuse

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
)

// textNode is a read-only virtual file whose content is computed at each
// read (NAME-pos, .lag, .primary). It is opened with direct I/O so the kernel
// never serves a stale copy.
type textNode struct {
	fs   *FS
	name string
	text func() string
}

// Attr reports the current text's size.
func (n *textNode) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Mode = 0o444
	a.Size = uint64(len(n.text()))
	a.Nlink = 1
	a.Mtime = time.Now()
	a.Ctime, a.Atime = a.Mtime, a.Mtime
	return nil
}

// Open returns a handle reading the text.
func (n *textNode) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fs.Handle, error) {
	if !req.Flags.IsReadOnly() {
		n.fs.log.Warn("refused write open of a read-only file", "name", n.name)
		return nil, syscall.EACCES
	}
	resp.Flags |= fuse.OpenDirectIO
	return n, nil
}

// Setattr refuses a size change (truncate(2) needs no open, so Open's
// refusal of writers does not cover it); other attributes are fixed.
func (n *textNode) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		n.fs.log.Warn("refused truncate of a read-only file", "name", n.name)
		return syscall.EACCES
	}
	return n.Attr(ctx, &resp.Attr)
}

// Read returns part of the current text.
func (n *textNode) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	text := n.text()
	if req.Offset >= int64(len(text)) {
		return nil
	}
	end := min(int64(len(text)), req.Offset+int64(req.Size))
	resp.Data = []byte(text[req.Offset:end])
	return nil
}

// posText returns the NAME-pos text of a database.
func (f *FS) posText(name string) func() string {
	return func() string {
		db := f.store.DB(name)
		if db == nil {
			return ""
		}
		pos := db.Pos()
		return fmt.Sprintf("%016x/%016x\n", uint64(pos.TXID), uint64(pos.PostApplyChecksum))
	}
}

// lagText returns the .lag text: milliseconds behind the primary (0 on the
// primary, 2147483647 before a replica's first catch-up).
func (f *FS) lagText() string {
	return fmt.Sprintf("%+011d\n", f.store.Lag().Milliseconds())
}

// primaryFileText returns the .primary text; empty means "this is the primary".
func (f *FS) primaryFileText() string { return f.primaryText() }

// primaryText returns the primary's hostname and a newline on a replica
// that has reached it, and "" where .primary does not exist: on the primary,
// and on a replica that has not been connected yet.
func (f *FS) primaryText() string {
	if p := f.store.ReachedPrimary(); p != nil {
		return p.Hostname + "\n"
	}
	return ""
}
