package litefs

import (
	"context"
	"testing"
	"time"
)

func TestYieldToLocalWriter_HaltWaitsForARefusedLocalWriterBoundedByItsGrace(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(db *DB)
		serveIn  time.Duration // >0: the refused writer gets the lock after this
		min, max time.Duration
	}{
		{"no local writer: no wait", func(db *DB) {}, 0, 0, 20 * time.Millisecond},
		{"refused writer: wait until it has the lock, then the window", func(db *DB) { db.LocalWriteLock(false) },
			30 * time.Millisecond, 30*time.Millisecond + localWindowMin, 30*time.Millisecond + localWriterGrace},
		{"refused writer that gave up: at most the grace", func(db *DB) { db.LocalWriteLock(false) },
			0, localWriterGrace - 10*time.Millisecond, localWriterGrace + 100*time.Millisecond},
		{"contended last HALT: a window of three times its hold", func(db *DB) {
			db.haltEnded(15 * time.Millisecond)
			db.LocalWriteLock(false)
			db.LocalWriteLock(true)
		}, 0, 40 * time.Millisecond, 45*time.Millisecond + 100*time.Millisecond},
		{"served before the HALT was granted: no window", func(db *DB) {
			db.haltEnded(15 * time.Millisecond)
			db.LocalWriteLock(false)
			db.LocalWriteLock(true)
			db.haltGranted()
		}, 0, 0, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &DB{}
			tt.setup(db)
			if tt.serveIn > 0 {
				time.AfterFunc(tt.serveIn, func() { db.LocalWriteLock(true) })
			}
			start := time.Now()
			db.yieldToLocalWriter(context.Background())
			if d := time.Since(start); d < tt.min || d > tt.max {
				t.Fatalf("waited %s, want %s to %s", d, tt.min, tt.max)
			}
		})
	}
}

func TestYieldToLocalWriter_EndsWithTheContext(t *testing.T) {
	db := &DB{}
	db.LocalWriteLock(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	db.yieldToLocalWriter(ctx)
	if d := time.Since(start); d > localWriterGrace/2 {
		t.Fatalf("waited %s after the context ended", d)
	}
}
