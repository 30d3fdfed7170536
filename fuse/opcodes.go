package fuse

import (
	"syscall"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
)

// Opcodes that bazil.org/fuse does not decode. It speaks protocol 7.33 and
// hands every request it cannot parse (BMAP on purpose, newer opcodes such
// as STATX because it does not know them) to the server as a
// *fuse.UnrecognizedRequest carrying the raw opcode. The numbers are the
// kernel's (include/uapi/linux/fuse.h). docs/fuse-opcodes.md gives the
// answer to every opcode and why.
const (
	opBmap          = 37
	opIoctl         = 39
	opReaddirplus   = 44
	opRename2       = 45
	opLseek         = 46
	opCopyFileRange = 47
	opSetupMapping  = 48
	opRemoveMapping = 49
	opSyncfs        = 50
	opTmpfile       = 51
	opStatx         = 52
)

// unrecognizedErrno answers an opcode the library did not decode. ENOSYS
// means "never implemented": for STATX, LSEEK, COPY_FILE_RANGE, RENAME2,
// TMPFILE and SYNCFS the kernel remembers it and falls back (GETATTR, a
// generic seek, a splice copy) or reports EOPNOTSUPP/EINVAL to the caller.
// An ioctl the file system does not know is ENOTTY, as on any file.
func unrecognizedErrno(op uint32) syscall.Errno {
	if op == opIoctl {
		return syscall.ENOTTY
	}
	return syscall.ENOSYS
}

// isDirOp reports whether req only makes sense on a directory: these are
// answered ENOTDIR on any other node.
func isDirOp(req fuse.Request) bool {
	switch r := req.(type) {
	case *fuse.LookupRequest, *fuse.CreateRequest, *fuse.MkdirRequest, *fuse.MknodRequest,
		*fuse.SymlinkRequest, *fuse.LinkRequest, *fuse.RemoveRequest, *fuse.RenameRequest:
		return true
	case *fuse.OpenRequest:
		return r.Dir
	}
	return false
}

// isNodeOp reports whether req is a per-node request the dispatcher serves
// (on any node kind) rather than refuses.
func isNodeOp(req fuse.Request) bool {
	switch req.(type) {
	case *fuse.GetattrRequest, *fuse.SetattrRequest, *fuse.AccessRequest,
		*fuse.OpenRequest, *fuse.FsyncRequest:
		return true
	}
	return isDirOp(req)
}

// nodeRefusal returns the errno that answers req on node n without serving
// it, or 0 when the request is to be served. Only the root is a directory.
func nodeRefusal(req fuse.Request, n fs.Node) syscall.Errno {
	_, isRoot := n.(*rootNode)
	switch r := req.(type) {
	case *fuse.UnrecognizedRequest:
		return unrecognizedErrno(r.Opcode)
	case *fuse.ReadlinkRequest:
		return syscall.EINVAL // readlink(2) on anything but a symlink
	case *fuse.OpenRequest:
		if isRoot && !r.Dir {
			return syscall.EISDIR
		}
	}
	switch {
	case isDirOp(req) && !isRoot:
		return syscall.ENOTDIR
	case !isNodeOp(req):
		return syscall.ENOSYS
	}
	return 0
}

// handleRefusal returns the errno that answers a handle request on h
// without serving it, or 0. Directory and file handles do not mix.
func handleRefusal(req fuse.Request, h fs.Handle) syscall.Errno {
	_, isDir := h.(*dirHandle)
	switch r := req.(type) {
	case *fuse.ReadRequest:
		switch {
		case r.Dir && !isDir:
			return syscall.ENOTDIR
		case !r.Dir && isDir:
			return syscall.EISDIR
		}
	case *fuse.ReleaseRequest:
		return 0
	default:
		if isDir {
			return syscall.EISDIR
		}
	}
	return 0
}
