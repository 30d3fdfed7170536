package litefs

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

// renewClient is a HaltClient whose renewals answer as renew says.
type renewClient struct {
	renew func(ctx context.Context) error
}

func (c *renewClient) AcquireHalt(context.Context, string, uint64, bool) (HaltLock, error) {
	return HaltLock{}, errors.New("not used")
}

func (c *renewClient) RenewHalt(ctx context.Context, _ string, _ uint64) (HaltLock, error) {
	return HaltLock{}, c.renew(ctx)
}

func (c *renewClient) ReleaseHalt(context.Context, string, uint64) error { return nil }

func (c *renewClient) ForwardTx(context.Context, string, uint64, io.Reader) (ltx.Pos, error) {
	return ltx.Pos{}, errors.New("not used")
}

func (c *renewClient) QueryHalt(context.Context, string) (HaltLock, bool, error) {
	return HaltLock{}, false, nil
}

// TestRenewLoop_VoidsTheHaltOnceThePrimaryCannotStillHoldIt: a HALT whose
// renewals go unanswered (a partition) or fail (a refused connection) is
// void halt.ttl after the last answer, not before, and its context ends so
// a forward in flight is given up; a refusal voids it at once; answered
// renewals keep it.
func TestRenewLoop_VoidsTheHaltOnceThePrimaryCannotStillHoldIt(t *testing.T) {
	const ttl = 300 * time.Millisecond
	tests := []struct {
		name     string
		renew    func(ctx context.Context) error
		minVoid  time.Duration // not void before this; 0: at once
		wantVoid bool
	}{
		{"unanswered", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, ttl, true},
		{"connection refused", func(context.Context) error { return errors.New("connection refused") }, ttl, true},
		{"refused by the primary", func(context.Context) error { return ErrHaltNotHeld }, 0, true},
		{"answered", func(context.Context) error { return nil }, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, t.TempDir())
			s.opts.HaltTTL, s.opts.HaltRenewInterval = ttl, 50*time.Millisecond
			db, err := s.CreateDB("a.db")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			h := &remoteHalt{id: 7, ctx: ctx, stop: stop}
			db.rhalt.cur = h
			start := time.Now()
			go db.renewLoop(ctx, &renewClient{renew: tc.renew}, h, start)

			select {
			case <-h.context().Done():
			case <-time.After(4 * ttl):
			}
			took := time.Since(start)
			db.rhalt.mu.Lock()
			void := h.void
			db.rhalt.mu.Unlock()
			switch {
			case !tc.wantVoid && void != nil:
				t.Fatalf("void after %s although every renewal was answered: %v", took, void)
			case !tc.wantVoid:
				return
			case void == nil:
				t.Fatalf("not void %s after the last answer (halt.ttl %s)", took, ttl)
			case took < tc.minVoid:
				t.Fatalf("void after %s, before halt.ttl (%s) since the last answer: %v", took, ttl, void)
			case took > ttl+200*time.Millisecond:
				t.Fatalf("void only after %s (halt.ttl %s)", took, ttl)
			}
		})
	}
}
