package fuse

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"bazil.org/fuse"
	"github.com/litefs/litefs"
)

// A handle's caching must not depend on whether SQLite created the file or
// opened it: a WAL created by the first connection used to be cached, which
// made each WAL frame cost three write requests instead of two.
func TestOpenAndCreate_GiveTheSameCaching(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := litefs.OpenStore(context.Background(), litefs.StoreOptions{Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := NewFS(store, log)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		direct bool // uncached: every read and write goes to the daemon as made
	}{
		{"app.db", false},
		{"app.db-journal", false},
		{"app.db-wal", true},
		{"app.db-shm", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var created fuse.CreateResponse
			n, h, err := f.root.Create(ctx, &fuse.CreateRequest{Name: tt.name, Flags: fuse.OpenReadWrite | fuse.OpenCreate, Mode: 0o644}, &created)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if err := h.(*fileHandle).Release(ctx, &fuse.ReleaseRequest{}); err != nil {
				t.Fatalf("release: %v", err)
			}
			var opened fuse.OpenResponse
			if _, err := n.(*fileNode).Open(ctx, &fuse.OpenRequest{Flags: fuse.OpenReadWrite}, &opened); err != nil {
				t.Fatalf("open: %v", err)
			}
			if created.Flags != opened.Flags {
				t.Fatalf("created with flags %v, opened with %v", created.Flags, opened.Flags)
			}
			if got := opened.Flags&fuse.OpenDirectIO != 0; got != tt.direct {
				t.Fatalf("direct I/O %t, want %t", got, tt.direct)
			}
			if opened.Flags&fuse.OpenKeepCache == 0 {
				t.Fatal("the kernel is told to drop its cache at every open")
			}
		})
	}
}
