package http

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/litefs/litefs"
)

func TestRequestHandoff_TheReplicaSeesWhyThePrimaryRefused(t *testing.T) {
	tests := []struct {
		name    string
		refuse  error
		wantErr error // nil: success
	}{
		{"handed off", nil, nil},
		{"replica not streaming yet", fmt.Errorf("%w: node x is not streaming", ErrNoHandoffTarget), ErrNoHandoffTarget},
		{"not the primary", fmt.Errorf("handoff: %w", litefs.ErrNotPrimary), litefs.ErrNotPrimary},
		{"took too long", fmt.Errorf("hand off: %w", context.DeadlineExceeded), context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked uint64
			primary := openStore(t)
			_, ts := startServer(t, primary, ServerOptions{Handoff: func(ctx context.Context, nodeID uint64) (HandoffTarget, error) {
				asked = nodeID
				return HandoffTarget{NodeID: nodeID, AdvertiseURL: "http://replica"}, tt.refuse
			}})
			replica := openStore(t)
			replica.SetReplica(&litefs.PrimaryInfo{Hostname: "p", AdvertiseURL: ts.URL})
			err := NewHaltClient(replica, "", nil).RequestHandoff(context.Background())
			if asked != replica.NodeID() {
				t.Fatalf("the primary was asked for node %x, want the replica's %x", asked, replica.NodeID())
			}
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("RequestHandoff: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("RequestHandoff error %v, want one wrapping %v", err, tt.wantErr)
			}
		})
	}
}

func TestHandoffAndPromote_RefusedWithAStaticLease(t *testing.T) {
	_, ts := startServer(t, openStore(t), ServerOptions{})
	for _, path := range []string{"/promote", "/handoff?nodeID=0000000000000001"} {
		code, body := do(t, "POST", ts.URL+path, nil, nil)
		if code != 409 || !contains(body, "static") {
			t.Errorf("POST %s with a static lease: %d %s, want 409 naming lease.type static", path, code, body)
		}
	}
}
