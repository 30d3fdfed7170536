package fuse

import (
	"fmt"
	"strings"

	"bazil.org/fuse/fs"
	"github.com/litefs/litefs"
)

// Node identity: the kernel must see one inode per file, or two processes
// would get separate page caches (and separate mmaps of -shm). So each file
// has one node object, cached here until the file is removed.

func fileKey(db string, kind litefs.FileKind) string { return fmt.Sprintf("d\x00%s\x00%d", db, kind) }
func posKey(db string) string                        { return "p\x00" + db }
func localKey(name string) string                    { return "l\x00" + name }
func virtualKey(name string) string                  { return "v\x00" + name }

// node returns the cached node for key, creating it with mk.
func (f *FS) node(key string, mk func() fs.Node) fs.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[key]; ok {
		return n
	}
	n := mk()
	f.nodes[key] = n
	return n
}

// forget drops a cached node so that a file created later under the same
// name is a new inode.
func (f *FS) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, key)
}

// forgetDB drops every cached node of a database.
func (f *FS) forgetDB(db string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key := range f.nodes {
		if strings.HasPrefix(key, "d\x00"+db+"\x00") || key == posKey(db) {
			delete(f.nodes, key)
		}
	}
}

func (f *FS) fileNode(db *litefs.DB, kind litefs.FileKind) *fileNode {
	key := fileKey(db.Name(), kind)
	n := f.node(key, func() fs.Node { return &fileNode{fs: f, db: db, kind: kind} }).(*fileNode)
	if n.db != db {
		// The database was deleted and created again (a replica following
		// its primary): a new inode for the new database.
		f.forget(key)
		n = f.node(key, func() fs.Node { return &fileNode{fs: f, db: db, kind: kind} }).(*fileNode)
	}
	return n
}

func (f *FS) posNode(db string) fs.Node {
	return f.node(posKey(db), func() fs.Node { return &textNode{fs: f, name: db + litefs.SuffixPos, text: f.posText(db)} })
}

func (f *FS) virtualNode(name string) fs.Node {
	text := f.lagText
	if name == primaryFileName {
		text = f.primaryFileText
	}
	return f.node(virtualKey(name), func() fs.Node { return &textNode{fs: f, name: name, text: text} })
}

func (f *FS) localNode(name string) *localNode {
	return f.node(localKey(name), func() fs.Node { return &localNode{fs: f, name: name, locks: litefs.NewLockTable()} }).(*localNode)
}
