package fuse

import (
	"context"
	"hash/fnv"
	"sync"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
)

// server reads FUSE requests and answers them. bazil.org/fuse's own fs.Server
// starts a goroutine per request; on a 2-core machine each of those hand-offs
// costs tens of microseconds, several times the cost of the operation, and a
// SQLite transaction is nine requests. Here the reader that reads a request
// handles it inline, so the common case needs no hand-off at all (see
// readers.go for how many readers there are). Only requests that may block
// indefinitely (F_SETLKW) or that wait for the disk (fsync) get a goroutine.
type server struct {
	fs   *FS
	conn *fuse.Conn

	mu       sync.Mutex
	nodes    map[fuse.NodeID]*nodeRef
	ids      map[fs.Node]fuse.NodeID
	nextID   fuse.NodeID
	handles  map[fuse.HandleID]fs.Handle
	nextH    fuse.HandleID
	inflight map[fuse.RequestID]context.CancelFunc // interruptible requests
	debug    bool                                  // log every request
	wg       sync.WaitGroup                        // requests handled off the readers
	readers  readerPool
}

// nodeRef is a node the kernel knows, with its lookup count.
type nodeRef struct {
	node fs.Node
	refs uint64
}

func newServer(f *FS, conn *fuse.Conn) *server {
	s := &server{
		fs: f, conn: conn,
		nodes:    map[fuse.NodeID]*nodeRef{fuse.RootID: {node: f.root, refs: 1}},
		ids:      map[fs.Node]fuse.NodeID{f.root: fuse.RootID},
		nextID:   fuse.RootID + 1,
		handles:  make(map[fuse.HandleID]fs.Handle),
		nextH:    1,
		inflight: make(map[fuse.RequestID]context.CancelFunc),
	}
	return s
}

// node returns the node a request is about.
func (s *server) node(id fuse.NodeID) fs.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref := s.nodes[id]; ref != nil {
		return ref.node
	}
	return nil
}

// saveNode registers n with the kernel (one more lookup) and returns its id.
func (s *server) saveNode(n fs.Node) fuse.NodeID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.ids[n]; ok {
		s.nodes[id].refs++
		return id
	}
	id := s.nextID
	s.nextID++
	s.nodes[id] = &nodeRef{node: n, refs: 1}
	s.ids[n] = id
	return id
}

// forget drops n lookups of a node; at zero the kernel no longer knows it.
func (s *server) forget(id fuse.NodeID, n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := s.nodes[id]
	if ref == nil || id == fuse.RootID {
		return
	}
	if ref.refs <= n {
		delete(s.nodes, id)
		delete(s.ids, ref.node)
		return
	}
	ref.refs -= n
}

func (s *server) saveHandle(h fs.Handle) fuse.HandleID {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextH
	s.nextH++
	s.handles[id] = h
	return id
}

func (s *server) handle(id fuse.HandleID) fs.Handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handles[id]
}

func (s *server) dropHandle(id fuse.HandleID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handles, id)
}

// attr fills a with n's attributes, using the node id as inode number.
func (s *server) attr(ctx context.Context, n fs.Node, id fuse.NodeID, a *fuse.Attr) error {
	if err := n.Attr(ctx, a); err != nil {
		return err
	}
	if a.Inode == 0 {
		a.Inode = uint64(id)
	}
	return nil
}

// entry answers a lookup or create: registers n and fills the response.
func (s *server) entry(ctx context.Context, n fs.Node, resp *fuse.LookupResponse) error {
	id := s.saveNode(n)
	if err := s.attr(ctx, n, id, &resp.Attr); err != nil {
		s.forget(id, 1)
		return err
	}
	resp.Node = id
	// Names are not cached by the kernel (EntryValid 0): the store deletes
	// and creates files on its own (a database's side files go with it, a
	// replica follows its primary), and a cached name would outlive them.
	resp.EntryValid = 0
	return nil
}

// dirHandle is an open directory: its listing is taken at open.
type dirHandle struct{ data []byte }

// readdir lists the root directory in the kernel's dirent format.
func (s *server) readdir(ctx context.Context) (*dirHandle, error) {
	ents, err := s.fs.root.ReadDirAll(ctx)
	if err != nil {
		return nil, err
	}
	var data []byte
	for _, e := range append([]fuse.Dirent{{Name: ".", Type: fuse.DT_Dir, Inode: 1}, {Name: "..", Type: fuse.DT_Dir, Inode: 1}}, ents...) {
		if e.Inode == 0 {
			h := fnv.New64a()
			_, _ = h.Write([]byte(e.Name))
			e.Inode = h.Sum64() | 1<<62
		}
		data = fuse.AppendDirent(data, e)
	}
	return &dirHandle{data: data}, nil
}

// interruptible runs fn in its own goroutine with a context that the
// kernel's INTERRUPT for this request cancels.
func (s *server) interruptible(id fuse.RequestID, fn func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.inflight[id] = cancel
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.inflight, id)
			s.mu.Unlock()
			cancel()
		}()
		fn(ctx)
	}()
}

func (s *server) interrupt(id fuse.RequestID) {
	s.mu.Lock()
	cancel := s.inflight[id]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
