package fuse

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"github.com/litefs/litefs"
)

// Names in the mount. Every name that is not one of these patterns names a
// database; a side-file name whose database does not exist, and SQLite's
// super-journals, are plain local files (kept, not replicated).
const (
	primaryFileName = ".primary"
	lagFileName     = ".lag"
)

// superJournalRE matches SQLite's transient super-journal names.
var superJournalRE = regexp.MustCompile(`-mj[0-9A-Fa-f]{8,}$`)

// entry is what a name in the mount refers to.
type entry struct {
	kind    entryKind
	db      string          // database name (for database, side and pos files)
	file    litefs.FileKind // which file of the database
	virtual string          // for entryVirtual: the virtual file's name
}

type entryKind int

const (
	entryDatabase entryKind = iota // the database or one of its side files
	entryPos                       // NAME-pos
	entryVirtual                   // .primary, .lag
	entryLocal                     // plain local file
)

// classify says what a name refers to. It does not check existence.
func (f *FS) classify(name string) entry {
	switch name {
	case primaryFileName, lagFileName:
		return entry{kind: entryVirtual, virtual: name}
	}
	if superJournalRE.MatchString(name) {
		return entry{kind: entryLocal}
	}
	sides := []struct {
		suffix string
		kind   litefs.FileKind
	}{
		{litefs.SuffixJournal, litefs.FileJournal}, {litefs.SuffixWAL, litefs.FileWAL},
		{litefs.SuffixSHM, litefs.FileSHM}, {litefs.SuffixLock, litefs.FileLock},
	}
	for _, s := range sides {
		if base, ok := strings.CutSuffix(name, s.suffix); ok && f.store.DB(base) != nil {
			return entry{kind: entryDatabase, db: base, file: s.kind}
		}
	}
	if base, ok := strings.CutSuffix(name, litefs.SuffixPos); ok && f.store.DB(base) != nil {
		return entry{kind: entryPos, db: base}
	}
	if f.store.DB(name) == nil && f.localExists(name) {
		return entry{kind: entryLocal}
	}
	for _, s := range append(sides, struct {
		suffix string
		kind   litefs.FileKind
	}{litefs.SuffixPos, 0}) {
		if strings.HasSuffix(name, s.suffix) {
			return entry{kind: entryLocal} // side file of a database that does not exist
		}
	}
	return entry{kind: entryDatabase, db: name, file: litefs.FileDatabase}
}

func (f *FS) localPath(name string) string { return filepath.Join(f.store.LocalDir(), name) }

func (f *FS) localExists(name string) bool {
	_, err := os.Lstat(f.localPath(name))
	return err == nil
}

// rootNode is the mount's only directory.
type rootNode struct{ fs *FS }

// Attr describes the root directory.
func (r *rootNode) Attr(ctx context.Context, a *fuse.Attr) error {
	a.Inode = 1
	a.Mode = os.ModeDir | 0o755
	a.Nlink = 2
	if fi, err := os.Stat(r.fs.store.LocalDir()); err == nil {
		a.Mtime, a.Ctime, a.Atime = fi.ModTime(), fi.ModTime(), fi.ModTime()
	}
	a.Valid = attrValid
	return nil
}

// Lookup finds a name in the mount.
func (r *rootNode) Lookup(ctx context.Context, name string) (fs.Node, error) {
	e := r.fs.classify(name)
	switch e.kind {
	case entryVirtual:
		if name == primaryFileName && r.fs.primaryText() == "" {
			return nil, syscall.ENOENT
		}
		return r.fs.virtualNode(name), nil
	case entryLocal:
		if !r.fs.localExists(name) {
			return nil, syscall.ENOENT
		}
		return r.fs.localNode(name), nil
	case entryPos:
		return r.fs.posNode(e.db), nil
	}
	db := r.fs.store.DB(e.db)
	if db == nil || !db.Exists(e.file) {
		return nil, syscall.ENOENT
	}
	return r.fs.fileNode(db, e.file), nil
}

// ReadDirAll lists databases, their existing side files, the virtual files
// and local files. NAME-pos and NAME-lock are hidden (they open by name):
// programs that copy or delete "NAME*" must not meet files they cannot copy
// or delete, as SQLite's own test suite does.
func (r *rootNode) ReadDirAll(ctx context.Context) ([]fuse.Dirent, error) {
	var out []fuse.Dirent
	for _, name := range []string{primaryFileName, lagFileName} {
		if name == primaryFileName && r.fs.primaryText() == "" {
			continue
		}
		out = append(out, fuse.Dirent{Name: name, Type: fuse.DT_File})
	}
	for _, db := range r.fs.store.DBs() {
		out = append(out, fuse.Dirent{Name: db.Name(), Type: fuse.DT_File})
		for _, k := range []litefs.FileKind{litefs.FileJournal, litefs.FileWAL, litefs.FileSHM} {
			if db.Exists(k) {
				out = append(out, fuse.Dirent{Name: db.Name() + suffixOf(k), Type: fuse.DT_File})
			}
		}
	}
	ents, err := os.ReadDir(r.fs.store.LocalDir())
	if err != nil {
		return nil, r.fs.errno("readdir", err)
	}
	for _, e := range ents {
		out = append(out, fuse.Dirent{Name: e.Name(), Type: fuse.DT_File})
	}
	return out, nil
}

// Create creates a database, a side file of one, or a local file.
func (r *rootNode) Create(ctx context.Context, req *fuse.CreateRequest, resp *fuse.CreateResponse) (fs.Node, fs.Handle, error) {
	e := r.fs.classify(req.Name)
	switch e.kind {
	case entryVirtual, entryPos:
		r.fs.log.Warn("refused create of a virtual file", "name", req.Name)
		return nil, nil, syscall.EPERM
	case entryLocal:
		n := r.fs.localNode(req.Name)
		h, err := n.open(int(req.Flags) | os.O_CREATE)
		return n, h, err
	}
	db := r.fs.store.DB(e.db)
	if r.fs.readOnly() && e.file == litefs.FileDatabase {
		r.fs.log.Warn("refused create of a database on a replica", "name", req.Name)
		r.fs.store.NoteRefusedWrite()
		return nil, nil, syscall.EROFS
	}
	if r.fs.readOnly() && db != nil && !db.MayCreate(e.file) {
		// SQLite reports EACCES on a new journal as SQLITE_READONLY
		// ("attempt to write a readonly database").
		r.fs.log.Warn("refused write on a replica without the HALT lock (new journal)", "db", e.db)
		r.fs.store.NoteRefusedWrite()
		return nil, nil, syscall.EACCES
	}
	if e.file == litefs.FileDatabase && db == nil {
		// Local NAME-journal/-wal/-shm become the new database's side
		// files (litefs/sidefiles.go). Names are never cached by the
		// kernel (EntryValid 0), so the next lookup of such a name finds
		// the database's file; only the local node goes.
		var adopted []string
		var err error
		if db, adopted, err = r.fs.store.CreateDBAdopting(e.db); err != nil {
			return nil, nil, r.fs.errno("create", err)
		}
		for _, name := range adopted {
			r.fs.forget(localKey(name))
		}
	}
	if err := db.Create(e.file); err != nil {
		return nil, nil, r.fs.errno("create", err)
	}
	if err := db.Chmod(e.file, req.Mode&^req.Umask); err != nil {
		return nil, nil, r.fs.errno("create", err)
	}
	n := r.fs.fileNode(db, e.file)
	if req.Flags&fuse.OpenTruncate != 0 {
		if err := db.Truncate(e.file, 0); err != nil {
			return nil, nil, r.fs.errno("create", err)
		}
	}
	resp.Flags |= openFlags(e.file)
	return n, &fileHandle{node: n}, nil
}

// Remove unlinks a file. Unlinking a database deletes it and its history.
func (r *rootNode) Remove(ctx context.Context, req *fuse.RemoveRequest) error {
	if req.Dir {
		return syscall.ENOTDIR
	}
	e := r.fs.classify(req.Name)
	switch e.kind {
	case entryVirtual, entryPos:
		r.fs.log.Warn("refused unlink of a virtual file", "name", req.Name)
		return syscall.EPERM
	case entryLocal:
		r.fs.forget(localKey(req.Name))
		return r.fs.errno("unlink", os.Remove(r.fs.localPath(req.Name)))
	}
	if e.file == litefs.FileLock {
		return syscall.EPERM
	}
	if r.fs.readOnly() && e.file == litefs.FileDatabase {
		r.fs.log.Warn("refused unlink of a database on a replica", "name", req.Name)
		return syscall.EROFS
	}
	if e.file == litefs.FileDatabase {
		if err := r.fs.store.DeleteDB(e.db); err != nil {
			return r.fs.errno("unlink", err)
		}
		r.fs.forgetDB(e.db)
		return nil
	}
	db := r.fs.store.DB(e.db)
	if db == nil || !db.Exists(e.file) {
		return syscall.ENOENT
	}
	if err := db.Remove(e.file); err != nil {
		return r.fs.errno("unlink", err) // a refused commit: the journal stays
	}
	r.fs.forget(fileKey(e.db, e.file))
	return nil
}

// Rename is supported between local files only.
func (r *rootNode) Rename(ctx context.Context, req *fuse.RenameRequest, newDir fs.Node) error {
	if r.fs.classify(req.OldName).kind == entryLocal && r.fs.classify(req.NewName).kind == entryLocal {
		r.fs.forget(localKey(req.OldName))
		r.fs.forget(localKey(req.NewName))
		return r.fs.errno("rename", os.Rename(r.fs.localPath(req.OldName), r.fs.localPath(req.NewName)))
	}
	r.fs.log.Warn("refused rename: databases and their files cannot be renamed", "from", req.OldName, "to", req.NewName)
	return syscall.EPERM
}

// Mkdir is refused: the mount is one flat directory.
func (r *rootNode) Mkdir(ctx context.Context, req *fuse.MkdirRequest) (fs.Node, error) {
	r.fs.log.Warn("refused mkdir: the mount has no subdirectories", "name", req.Name)
	return nil, syscall.EPERM
}

// suffixOf returns the mount-name suffix of a side file kind.
func suffixOf(k litefs.FileKind) string {
	switch k {
	case litefs.FileJournal:
		return litefs.SuffixJournal
	case litefs.FileWAL:
		return litefs.SuffixWAL
	case litefs.FileSHM:
		return litefs.SuffixSHM
	case litefs.FileLock:
		return litefs.SuffixLock
	}
	return ""
}
