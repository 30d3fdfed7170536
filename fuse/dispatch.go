package fuse

import (
	"context"
	"syscall"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
)

// dispatch answers one request. Every path responds exactly once, except
// NOTIFY_REPLY, which expects no answer.
func (s *server) dispatch(req fuse.Request) {
	ctx := context.Background()
	switch r := req.(type) {
	case *fuse.ForgetRequest:
		s.forget(r.Node, r.N)
		r.Respond()
	case *fuse.BatchForgetRequest:
		for _, item := range r.Forget {
			s.forget(item.NodeID, item.N)
		}
		r.Respond()
	case *fuse.InterruptRequest:
		s.interrupt(r.IntrID)
		r.Respond()
	case *fuse.StatfsRequest:
		resp := &fuse.StatfsResponse{}
		respond(r, s.fs.Statfs(ctx, r, resp), func() { r.Respond(resp) })
	case *fuse.ReadRequest, *fuse.WriteRequest, *fuse.FlushRequest, *fuse.ReleaseRequest,
		*fuse.LockRequest, *fuse.LockWaitRequest, *fuse.UnlockRequest, *fuse.QueryLockRequest:
		s.dispatchHandle(ctx, req)
	case *fuse.GetxattrRequest, *fuse.ListxattrRequest, *fuse.SetxattrRequest, *fuse.RemovexattrRequest,
		*fuse.FAllocateRequest, *fuse.PollRequest:
		// ENOSYS tells the kernel never to ask again: without it every
		// write would cost an extra getxattr("security.capability") trip.
		req.RespondError(syscall.ENOSYS)
	case *fuse.UnrecognizedRequest:
		req.RespondError(nodeRefusal(r, nil))
	case *fuse.DestroyRequest:
		r.Respond()
	case *fuse.NotifyReply:
		// The kernel's data for a NOTIFY_RETRIEVE, which this server never
		// sends; it expects no answer.
	default:
		s.dispatchNode(ctx, req)
	}
}

// respond sends ok() on success or the error.
func respond(req fuse.Request, err error, ok func()) {
	if err != nil {
		req.RespondError(err)
		return
	}
	ok()
}

// dispatchNode answers requests about a node (by node id).
func (s *server) dispatchNode(ctx context.Context, req fuse.Request) {
	n := s.node(req.Hdr().Node)
	if n == nil {
		req.RespondError(syscall.ESTALE)
		return
	}
	if errno := nodeRefusal(req, n); errno != 0 {
		req.RespondError(errno)
		return
	}
	switch r := req.(type) {
	case *fuse.GetattrRequest:
		resp := &fuse.GetattrResponse{}
		respond(r, s.attr(ctx, n, r.Node, &resp.Attr), func() { r.Respond(resp) })
	case *fuse.SetattrRequest:
		resp := &fuse.SetattrResponse{}
		var err error
		if sa, ok := n.(fs.NodeSetattrer); ok {
			err = sa.Setattr(ctx, r, resp)
		} else {
			err = n.Attr(ctx, &resp.Attr)
		}
		if err == nil && resp.Attr.Inode == 0 {
			resp.Attr.Inode = uint64(r.Node)
		}
		respond(r, err, func() { r.Respond(resp) })
	case *fuse.AccessRequest:
		r.Respond()
	case *fuse.OpenRequest:
		s.open(ctx, n, r)
	case *fuse.FsyncRequest:
		fsy, ok := n.(fs.NodeFsyncer)
		if !ok || r.Dir {
			r.Respond()
			return
		}
		// An fsync waits for the disk: keep the reader free meanwhile.
		s.offload(func() { respond(r, fsy.Fsync(ctx, r), r.Respond) })
	default:
		s.dispatchDir(ctx, n, req)
	}
}

// open answers OPEN and OPENDIR.
func (s *server) open(ctx context.Context, n fs.Node, r *fuse.OpenRequest) {
	resp := &fuse.OpenResponse{}
	var h fs.Handle
	var err error
	switch {
	case r.Dir:
		h, err = s.readdir(ctx)
	default:
		op, ok := n.(fs.NodeOpener)
		if !ok {
			err = syscall.EPERM
			break
		}
		h, err = op.Open(ctx, r, resp)
	}
	if err != nil {
		r.RespondError(err)
		return
	}
	resp.Handle = s.saveHandle(h)
	r.Respond(resp)
}

// dispatchDir answers directory requests; only the root is a directory
// (nodeRefusal has answered ENOTDIR for any other node).
func (s *server) dispatchDir(ctx context.Context, n fs.Node, req fuse.Request) {
	root, ok := n.(*rootNode)
	if !ok {
		req.RespondError(syscall.ENOTDIR)
		return
	}
	switch r := req.(type) {
	case *fuse.LookupRequest:
		child, err := root.Lookup(ctx, r.Name)
		resp := &fuse.LookupResponse{}
		if err == nil {
			err = s.entry(ctx, child, resp)
		}
		respond(r, err, func() { r.Respond(resp) })
	case *fuse.CreateRequest:
		resp := &fuse.CreateResponse{}
		child, h, err := root.Create(ctx, r, resp)
		if err == nil {
			err = s.entry(ctx, child, &resp.LookupResponse)
		}
		if err != nil {
			r.RespondError(err)
			return
		}
		resp.Handle = s.saveHandle(h)
		r.Respond(resp)
	case *fuse.RemoveRequest:
		respond(r, root.Remove(ctx, r), r.Respond)
	case *fuse.RenameRequest:
		respond(r, root.Rename(ctx, r, root), r.Respond)
	case *fuse.MkdirRequest:
		_, err := root.Mkdir(ctx, r)
		r.RespondError(err)
	case *fuse.MknodRequest, *fuse.SymlinkRequest, *fuse.LinkRequest:
		s.fs.log.Warn("refused: only regular files can be created in the mount", "request", req.String())
		req.RespondError(syscall.EPERM)
	default:
		req.RespondError(syscall.ENOSYS)
	}
}

// dispatchHandle answers requests on an open handle.
func (s *server) dispatchHandle(ctx context.Context, req fuse.Request) {
	var hid fuse.HandleID
	switch r := req.(type) {
	case *fuse.ReadRequest:
		hid = r.Handle
	case *fuse.WriteRequest:
		hid = r.Handle
	case *fuse.FlushRequest:
		hid = r.Handle
	case *fuse.ReleaseRequest:
		hid = r.Handle
	case *fuse.LockRequest:
		hid = r.Handle
	case *fuse.LockWaitRequest:
		hid = r.Handle
	case *fuse.UnlockRequest:
		hid = r.Handle
	case *fuse.QueryLockRequest:
		hid = r.Handle
	}
	h := s.handle(hid)
	if h == nil {
		req.RespondError(syscall.EBADF)
		return
	}
	if errno := handleRefusal(req, h); errno != 0 {
		req.RespondError(errno)
		return
	}
	if d, ok := h.(*dirHandle); ok {
		s.dirHandleRequest(d, hid, req)
		return
	}
	s.fileHandleRequest(ctx, h, hid, req)
}

// dirHandleRequest answers READDIR and RELEASEDIR.
func (s *server) dirHandleRequest(d *dirHandle, hid fuse.HandleID, req fuse.Request) {
	switch r := req.(type) {
	case *fuse.ReadRequest:
		data := d.data
		if r.Offset >= int64(len(data)) {
			data = nil
		} else {
			data = data[r.Offset:]
		}
		if len(data) > r.Size {
			data = data[:r.Size]
			// Cut at a dirent boundary: entries are 8-byte aligned records.
			data = trimDirents(data)
		}
		r.Respond(&fuse.ReadResponse{Data: data})
	case *fuse.ReleaseRequest:
		s.dropHandle(hid)
		r.Respond()
	default:
		req.RespondError(syscall.EISDIR)
	}
}

// trimDirents cuts a dirent buffer at the last complete record.
func trimDirents(b []byte) []byte {
	off := 0
	for off+24 <= len(b) {
		namelen := int(uint32(b[off+16]) | uint32(b[off+17])<<8 | uint32(b[off+18])<<16 | uint32(b[off+19])<<24)
		size := (24 + namelen + 7) &^ 7
		if off+size > len(b) {
			break
		}
		off += size
	}
	return b[:off]
}

// fileHandleRequest answers requests on an open file handle.
func (s *server) fileHandleRequest(ctx context.Context, h fs.Handle, hid fuse.HandleID, req fuse.Request) {
	switch r := req.(type) {
	case *fuse.ReadRequest:
		rd, ok := h.(fs.HandleReader)
		if !ok {
			r.RespondError(syscall.EBADF)
			return
		}
		resp := &fuse.ReadResponse{Data: make([]byte, 0, r.Size)}
		respond(r, rd.Read(ctx, r, resp), func() { r.Respond(resp) })
	case *fuse.WriteRequest:
		wr, ok := h.(fs.HandleWriter)
		if !ok {
			r.RespondError(syscall.EBADF)
			return
		}
		resp := &fuse.WriteResponse{}
		respond(r, wr.Write(ctx, r, resp), func() { r.Respond(resp) })
	case *fuse.FlushRequest:
		var err error
		if fl, ok := h.(fs.HandleFlusher); ok {
			err = fl.Flush(ctx, r)
		}
		respond(r, err, r.Respond)
	case *fuse.ReleaseRequest:
		var err error
		if rl, ok := h.(fs.HandleReleaser); ok {
			err = rl.Release(ctx, r)
		}
		s.dropHandle(hid)
		respond(r, err, r.Respond)
	default:
		s.lockRequest(ctx, h, req)
	}
}

// lockRequest answers the byte-range lock requests. F_SETLKW may wait
// indefinitely, so it runs in its own goroutine and can be interrupted.
func (s *server) lockRequest(ctx context.Context, h fs.Handle, req fuse.Request) {
	lk, ok := h.(fs.HandleLocker)
	if !ok {
		req.RespondError(syscall.ENOLCK)
		return
	}
	switch r := req.(type) {
	case *fuse.LockRequest:
		respond(r, lk.Lock(ctx, r), r.Respond)
	case *fuse.LockWaitRequest:
		s.interruptible(r.ID, func(ctx context.Context) {
			respond(r, lk.LockWait(ctx, r), r.Respond)
		})
	case *fuse.UnlockRequest:
		respond(r, lk.Unlock(ctx, r), r.Respond)
	case *fuse.QueryLockRequest:
		resp := &fuse.QueryLockResponse{}
		respond(r, lk.QueryLock(ctx, r, resp), func() { r.Respond(resp) })
	}
}
