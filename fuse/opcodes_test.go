package fuse

import (
	"syscall"
	"testing"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
)

// The answer the dispatcher gives before serving anything, per request and
// node kind (0: served). A request the mount does not implement must get
// ENOSYS, so that the kernel falls back; ENOTDIR is only for directory
// operations on a file. STATX on a file used to get ENOTDIR, which broke
// every stat of Node.js.
func TestNodeRefusal_AnswersENOSYSForWhatIsNotImplementedAndENOTDIROnlyForDirectoryOps(t *testing.T) {
	const ok = syscall.Errno(0)
	unrec := func(op uint32) fuse.Request { return &fuse.UnrecognizedRequest{Opcode: op} }
	for _, tt := range []struct {
		name       string
		req        fuse.Request
		file, root syscall.Errno
	}{
		{"STATX", unrec(opStatx), syscall.ENOSYS, syscall.ENOSYS},
		{"LSEEK", unrec(opLseek), syscall.ENOSYS, syscall.ENOSYS},
		{"COPY_FILE_RANGE", unrec(opCopyFileRange), syscall.ENOSYS, syscall.ENOSYS},
		{"RENAME2", unrec(opRename2), syscall.ENOSYS, syscall.ENOSYS},
		{"TMPFILE", unrec(opTmpfile), syscall.ENOSYS, syscall.ENOSYS},
		{"SYNCFS", unrec(opSyncfs), syscall.ENOSYS, syscall.ENOSYS},
		{"READDIRPLUS", unrec(opReaddirplus), syscall.ENOSYS, syscall.ENOSYS},
		{"BMAP", unrec(opBmap), syscall.ENOSYS, syscall.ENOSYS},
		{"SETUPMAPPING", unrec(opSetupMapping), syscall.ENOSYS, syscall.ENOSYS},
		{"REMOVEMAPPING", unrec(opRemoveMapping), syscall.ENOSYS, syscall.ENOSYS},
		{"IOCTL", unrec(opIoctl), syscall.ENOTTY, syscall.ENOTTY},
		{"opcode from the future", unrec(4000), syscall.ENOSYS, syscall.ENOSYS},
		{"GETATTR", &fuse.GetattrRequest{}, ok, ok},
		{"SETATTR", &fuse.SetattrRequest{}, ok, ok},
		{"ACCESS", &fuse.AccessRequest{}, ok, ok},
		{"OPEN", &fuse.OpenRequest{}, ok, syscall.EISDIR},
		{"OPENDIR", &fuse.OpenRequest{Dir: true}, syscall.ENOTDIR, ok},
		{"FSYNC", &fuse.FsyncRequest{}, ok, ok},
		{"FSYNCDIR", &fuse.FsyncRequest{Dir: true}, ok, ok},
		{"READLINK", &fuse.ReadlinkRequest{}, syscall.EINVAL, syscall.EINVAL},
		{"LOOKUP", &fuse.LookupRequest{}, syscall.ENOTDIR, ok},
		{"CREATE", &fuse.CreateRequest{}, syscall.ENOTDIR, ok},
		{"MKDIR", &fuse.MkdirRequest{}, syscall.ENOTDIR, ok},
		{"MKNOD", &fuse.MknodRequest{}, syscall.ENOTDIR, ok},
		{"SYMLINK", &fuse.SymlinkRequest{}, syscall.ENOTDIR, ok},
		{"LINK", &fuse.LinkRequest{}, syscall.ENOTDIR, ok},
		{"UNLINK", &fuse.RemoveRequest{}, syscall.ENOTDIR, ok},
		{"RMDIR", &fuse.RemoveRequest{Dir: true}, syscall.ENOTDIR, ok},
		{"RENAME", &fuse.RenameRequest{}, syscall.ENOTDIR, ok},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []struct {
				kind string
				node fs.Node
				want syscall.Errno
			}{
				{"database file", &fileNode{}, tt.file},
				{"virtual file", &textNode{}, tt.file},
				{"local file", &localNode{}, tt.file},
				{"root", &rootNode{}, tt.root},
			} {
				if got := nodeRefusal(tt.req, n.node); got != n.want {
					t.Errorf("on a %s: %v (%d), want %v (%d)", n.kind, got, got, n.want, n.want)
				}
			}
		})
	}
}

// Directory handles and file handles each answer only their own requests.
func TestHandleRefusal_KeepsDirectoryAndFileHandlesApart(t *testing.T) {
	const ok = syscall.Errno(0)
	for _, tt := range []struct {
		name      string
		req       fuse.Request
		file, dir syscall.Errno
	}{
		{"READ", &fuse.ReadRequest{}, ok, syscall.EISDIR},
		{"READDIR", &fuse.ReadRequest{Dir: true}, syscall.ENOTDIR, ok},
		{"WRITE", &fuse.WriteRequest{}, ok, syscall.EISDIR},
		{"FLUSH", &fuse.FlushRequest{}, ok, syscall.EISDIR},
		{"RELEASE", &fuse.ReleaseRequest{}, ok, ok},
		{"RELEASEDIR", &fuse.ReleaseRequest{Dir: true}, ok, ok},
		{"SETLK", &fuse.LockRequest{}, ok, syscall.EISDIR},
		{"GETLK", &fuse.QueryLockRequest{}, ok, syscall.EISDIR},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := handleRefusal(tt.req, &fileHandle{}); got != tt.file {
				t.Errorf("on a file handle: %v, want %v", got, tt.file)
			}
			if got := handleRefusal(tt.req, &dirHandle{}); got != tt.dir {
				t.Errorf("on a directory handle: %v, want %v", got, tt.dir)
			}
		})
	}
}
