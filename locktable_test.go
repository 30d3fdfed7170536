package litefs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lockStep is one TryLock call of a table-driven test.
type lockStep struct {
	owner, handle uint64
	typ           LockType
	start, end    uint64
	ok            bool // expected result
}

// runSteps applies steps (pid = 100*owner) to a new table, checking each
// result, and returns it.
func runSteps(t *testing.T, steps []lockStep) *LockTable {
	t.Helper()
	tbl := NewLockTable()
	for i, s := range steps {
		if got := tbl.TryLock(s.owner, s.handle, uint32(100*s.owner), s.typ, s.start, s.end); got != s.ok {
			t.Fatalf("step %d: TryLock(owner=%d %v [%d,%d]) = %v, want %v; locks=%v",
				i, s.owner, s.typ, s.start, s.end, got, s.ok, tbl.Locks())
		}
	}
	return tbl
}

// lk builds an expected lock set by runSteps with handle = owner.
func lk(owner uint64, typ LockType, start, end uint64) Lock {
	return Lock{Owner: owner, Handle: owner, Type: typ, Start: start, End: end, PID: uint32(100 * owner)}
}

func TestLockTable_SplitMerge(t *testing.T) {
	const A, B = 1, 2
	const R, W, U = LockRead, LockWrite, LockUnlock
	eof := uint64(math.MaxInt64)
	tests := []struct {
		name  string
		steps []lockStep
		want  []Lock
	}{
		{"UnlockMiddleSplitsRange", []lockStep{{A, A, W, 0, 99, true}, {A, A, U, 40, 59, true}},
			[]Lock{lk(A, W, 0, 39), lk(A, W, 60, 99)}},
		{"UpgradePartOfReadRange", []lockStep{{A, A, R, 0, 99, true}, {A, A, W, 40, 59, true}},
			[]Lock{lk(A, R, 0, 39), lk(A, W, 40, 59), lk(A, R, 60, 99)}},
		{"DowngradeWholeRange", []lockStep{{A, A, W, 0, 99, true}, {A, A, R, 0, 99, true}},
			[]Lock{lk(A, R, 0, 99)}},
		{"DowngradeOverlappingEdge", []lockStep{{A, A, W, 10, 19, true}, {A, A, R, 15, 30, true}},
			[]Lock{lk(A, W, 10, 14), lk(A, R, 15, 30)}},
		{"AdjacentSameTypeMerge", []lockStep{{A, A, R, 0, 9, true}, {A, A, R, 10, 19, true}},
			[]Lock{lk(A, R, 0, 19)}},
		{"OverlappingSameTypeMerge", []lockStep{{A, A, R, 5, 9, true}, {A, A, R, 0, 6, true}, {A, A, R, 8, 12, true}},
			[]Lock{lk(A, R, 0, 12)}},
		{"MergeBridgesTwoRanges", []lockStep{{A, A, R, 0, 9, true}, {A, A, R, 20, 29, true}, {A, A, R, 10, 19, true}},
			[]Lock{lk(A, R, 0, 29)}},
		{"ReplaceMiddleThenMergeBack", []lockStep{{A, A, R, 0, 29, true}, {A, A, W, 10, 19, true}, {A, A, R, 10, 19, true}},
			[]Lock{lk(A, R, 0, 29)}},
		{"AdjacentDifferentTypeStaySeparate", []lockStep{{A, A, R, 0, 9, true}, {A, A, W, 10, 19, true}},
			[]Lock{lk(A, R, 0, 9), lk(A, W, 10, 19)}},
		{"AdjacentDifferentHandleStaySeparate", []lockStep{{A, 7, R, 0, 9, true}, {A, A, R, 10, 19, true}},
			[]Lock{{Owner: A, Handle: 7, Type: R, Start: 0, End: 9, PID: 100 * A}, lk(A, R, 10, 19)}},
		{"OverlapDifferentHandleReplaces", []lockStep{{A, 7, R, 0, 9, true}, {A, A, R, 5, 14, true}},
			[]Lock{{Owner: A, Handle: 7, Type: R, Start: 0, End: 4, PID: 100 * A}, lk(A, R, 5, 14)}},
		{"UnlockToEOF", []lockStep{{A, A, W, 0, 99, true}, {A, A, U, 50, math.MaxUint64, true}},
			[]Lock{lk(A, W, 0, 49)}},
		{"LockToEOFClamps", []lockStep{{A, A, R, 100, math.MaxUint64, true}, {A, A, R, 50, 99, true}},
			[]Lock{lk(A, R, 50, eof)}},
		{"UnlockEverything", []lockStep{{A, A, R, 0, 9, true}, {A, A, W, 20, 29, true}, {A, A, U, 0, eof, true}}, nil},
		{"UnlockUnheldRangeIsNoop", []lockStep{{A, A, W, 0, 9, true}, {A, A, U, 10, 19, true}},
			[]Lock{lk(A, W, 0, 9)}},
		{"EmptyRangeChangesNothing", []lockStep{{A, A, W, 0, 9, true}, {A, A, U, 5, 4, true}},
			[]Lock{lk(A, W, 0, 9)}},
		{"OtherOwnersUntouched", []lockStep{
			{A, A, R, 0, 9, true}, {B, B, R, 5, 14, true}, {A, A, U, 0, eof, true},
			{B, B, W, 0, 4, true},
		}, []Lock{lk(B, W, 0, 4), lk(B, R, 5, 14)}},
		{"SortedByStartThenOwner", []lockStep{{B, B, R, 0, 9, true}, {A, A, R, 0, 4, true}, {A, A, W, 20, 29, true}},
			[]Lock{lk(A, R, 0, 4), lk(B, R, 0, 9), lk(A, W, 20, 29)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := runSteps(t, tt.steps)
			if got := tbl.Locks(); !reflect.DeepEqual(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
				t.Fatalf("locks:\n got  %v\n want %v", got, tt.want)
			}
		})
	}
}

func TestLockTable_Conflicts(t *testing.T) {
	const A, B, C = 1, 2, 3
	const R, W, U = LockRead, LockWrite, LockUnlock
	const pending, reserved = PendingByte, ReservedByte
	const shared0, shared1 = SharedFirst, SharedFirst + SharedSize - 1
	tests := []struct {
		name  string
		steps []lockStep
		want  []Lock // nil: not checked
	}{
		{"ReadReadShare", []lockStep{{A, A, R, 0, 9, true}, {B, B, R, 5, 14, true}}, nil},
		{"ReadBlocksWrite", []lockStep{{A, A, R, 0, 9, true}, {B, B, W, 9, 20, false}}, nil},
		{"WriteBlocksRead", []lockStep{{A, A, W, 0, 9, true}, {B, B, R, 0, 0, false}}, nil},
		{"WriteBlocksWrite", []lockStep{{A, A, W, 10, 19, true}, {B, B, W, 0, 10, false}}, nil},
		{"DisjointWritesShareFile", []lockStep{{A, A, W, 0, 9, true}, {B, B, W, 10, 19, true}}, nil},
		{"SameOwnerNeverConflicts", []lockStep{{A, A, R, 0, 9, true}, {A, 9, W, 0, 9, true}, {A, A, R, 5, 5, true}}, nil},
		{"UpgradeFailsWhileOtherReads", []lockStep{{A, A, R, 0, 9, true}, {B, B, R, 0, 9, true}, {A, A, W, 0, 9, false}},
			[]Lock{lk(A, R, 0, 9), lk(B, R, 0, 9)}},
		{"FailedRequestChangesNothing", []lockStep{{A, A, W, 0, 9, true}, {B, B, R, 20, 29, true}, {B, B, W, 5, 25, false}},
			[]Lock{lk(A, W, 0, 9), lk(B, R, 20, 29)}},
		{"OtherOwnerUnlockIsNoop", []lockStep{{A, A, W, 0, 9, true}, {B, B, U, 0, 9, true}, {B, B, R, 0, 0, false}}, nil},
		{"WriteToEOFConflictsFarAway", []lockStep{{A, A, W, 100, math.MaxInt64, true}, {B, B, R, 1 << 40, 1 << 40, false}}, nil},
		{"SQLiteSharedReservedExclusive", []lockStep{
			// Two readers take SHARED the way unix VFS does: PENDING, SHARED range, drop PENDING.
			{A, A, R, pending, pending, true}, {A, A, R, shared0, shared1, true}, {A, A, U, pending, pending, true},
			{B, B, R, pending, pending, true}, {B, B, R, shared0, shared1, true}, {B, B, U, pending, pending, true},
			// A takes RESERVED while B still reads; B cannot.
			{A, A, W, reserved, reserved, true}, {B, B, W, reserved, reserved, false},
			// A takes PENDING, then EXCLUSIVE fails while B holds SHARED.
			{A, A, W, pending, pending, true}, {A, A, W, shared0, shared1, false},
			// A new reader cannot get SHARED past PENDING.
			{C, C, R, pending, pending, false},
			// B finishes; EXCLUSIVE now succeeds and blocks readers.
			{B, B, U, 0, math.MaxInt64, true}, {A, A, W, shared0, shared1, true}, {C, C, R, shared0, shared0, false},
		}, []Lock{lk(A, W, pending, shared1)}},
		{"SQLiteWALWriteLock", []lockStep{
			{A, A, R, WALDMSByte, WALDMSByte, true}, {B, B, R, WALDMSByte, WALDMSByte, true},
			{A, A, R, WALReadLockByte0 + 1, WALReadLockByte0 + 1, true}, {B, B, R, WALReadLockByte0 + 1, WALReadLockByte0 + 1, true},
			{A, A, W, WALWriteLockByte, WALWriteLockByte, true}, {B, B, W, WALWriteLockByte, WALWriteLockByte, false},
			{B, B, W, WALCheckpointLockByte, WALCheckpointLockByte, true},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := runSteps(t, tt.steps)
			if got := tbl.Locks(); tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("locks:\n got  %v\n want %v", got, tt.want)
			}
		})
	}
}

func TestLockTable_Query(t *testing.T) {
	const A, B = 1, 2
	tbl := runSteps(t, []lockStep{{A, 10, LockRead, 0, 9, true}, {A, 10, LockWrite, 20, 29, true}, {B, 20, LockRead, 5, 14, true}})
	tests := []struct {
		name       string
		owner      uint64
		typ        LockType
		start, end uint64
		want       Lock
		ok         bool
	}{
		{"ReadVsReadFree", B, LockRead, 0, 9, Lock{}, false},
		{"WriteVsReadReturnsFirst", 3, LockWrite, 0, 99, Lock{Owner: A, Handle: 10, Type: LockRead, Start: 0, End: 9, PID: 100 * A}, true},
		{"WriteSkipsOwnLocks", A, LockWrite, 0, 99, Lock{Owner: B, Handle: 20, Type: LockRead, Start: 5, End: 14, PID: 100 * B}, true},
		{"ReadVsWrite", B, LockRead, 25, math.MaxUint64, Lock{Owner: A, Handle: 10, Type: LockWrite, Start: 20, End: 29, PID: 100 * A}, true},
		{"OwnLocksNeverConflict", A, LockWrite, 20, 29, Lock{}, false},
		{"UnlockNeverConflicts", B, LockUnlock, 0, 99, Lock{}, false},
		{"Unlocked", B, LockWrite, 30, 39, Lock{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tbl.Query(tt.owner, tt.typ, tt.start, tt.end)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("Query = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLockTable_Held(t *testing.T) {
	const A, B = 1, 2
	tbl := runSteps(t, []lockStep{{A, A, LockRead, 0, 9, true}, {B, B, LockWrite, 120, 120, true}})
	tests := []struct {
		name       string
		owner      uint64 // 0: Held, else HeldBy(owner)
		typ        LockType
		start, end uint64
		want       bool
	}{
		{"AnyReadHeld", 0, LockRead, 9, 20, true},
		{"WriteNotHeldOnReadRange", 0, LockWrite, 0, 9, false},
		{"WALWriteLockHeld", 0, LockWrite, 120, 120, true},
		{"WriteCountsAsRead", 0, LockRead, 120, math.MaxUint64, true},
		{"NothingHeld", 0, LockRead, 10, 119, false},
		{"HeldByHolder", B, LockWrite, 100, 200, true},
		{"NotHeldByOther", A, LockRead, 120, 120, false},
		{"HeldByAnyType", A, LockUnlock, 5, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tbl.Held(tt.typ, tt.start, tt.end)
			if tt.owner != 0 {
				got = tbl.HeldBy(tt.owner, tt.typ, tt.start, tt.end)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// lockAsync runs a blocking Lock for owner (handle and pid = owner) in a
// goroutine and returns the channel its result arrives on.
func lockAsync(ctx context.Context, tbl *LockTable, owner uint64, typ LockType, start, end uint64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- tbl.Lock(ctx, owner, owner, uint32(owner), typ, start, end) }()
	return ch
}

// waitWaiters waits until tbl has n blocked waiters.
func waitWaiters(t *testing.T, tbl *LockTable, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		tbl.mu.Lock()
		got := len(tbl.waiters)
		tbl.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("waiters never reached %d", n)
}

// expectResult waits for ch to deliver want.
func expectResult(t *testing.T, ch <-chan error, want error) {
	t.Helper()
	select {
	case err := <-ch:
		if !errors.Is(err, want) {
			t.Fatalf("Lock returned %v, want %v", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Lock did not return")
	}
}

// blockAct is one action of a blocking scenario (see runBlockActs).
type blockAct struct {
	do            string // try, wait, lock, done, pending, cancel, releaseOwner, releaseHandle, held
	owner, handle uint64 // handle defaults to owner
	typ           LockType
	start, end    uint64
	ref           int   // index of the "wait" action that done/pending/cancel refer to
	err           error // expected result of lock/done
}

// runBlockActs runs a scenario: "try" must succeed; "wait" starts a blocking
// Lock that must queue; "lock" is a synchronous Lock; "done"/"pending" check
// a waiter's outcome; "cancel" cancels its context; "held" checks HeldBy.
// At the end no waiter may remain.
func runBlockActs(t *testing.T, acts []blockAct) {
	tbl := NewLockTable()
	chans := make(map[int]<-chan error)
	cancels := make(map[int]context.CancelFunc)
	defer func() {
		for _, cancel := range cancels {
			cancel()
		}
	}()
	queued := 0
	for i, a := range acts {
		if a.handle == 0 {
			a.handle = a.owner
		}
		switch a.do {
		case "try":
			if !tbl.TryLock(a.owner, a.handle, uint32(a.owner), a.typ, a.start, a.end) {
				t.Fatalf("act %d: TryLock failed; locks=%v", i, tbl.Locks())
			}
		case "wait":
			ctx, cancel := context.WithCancel(context.Background())
			chans[i], cancels[i] = lockAsync(ctx, tbl, a.owner, a.typ, a.start, a.end), cancel
			queued++
			waitWaiters(t, tbl, queued)
		case "lock": // must not block: a timeout means it waited
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := tbl.Lock(ctx, a.owner, a.handle, uint32(a.owner), a.typ, a.start, a.end)
			cancel()
			if !errors.Is(err, a.err) {
				t.Fatalf("act %d: Lock = %v, want %v", i, err, a.err)
			}
		case "done":
			expectResult(t, chans[a.ref], a.err)
			queued--
		case "pending": // still blocked after a while
			select {
			case err := <-chans[a.ref]:
				t.Fatalf("act %d: Lock returned %v, want it still blocked", i, err)
			case <-time.After(20 * time.Millisecond):
			}
		case "cancel":
			cancels[a.ref]()
		case "releaseOwner":
			tbl.ReleaseOwner(a.owner)
		case "releaseHandle":
			tbl.ReleaseHandle(a.handle)
		case "held":
			if !tbl.HeldBy(a.owner, a.typ, a.start, a.end) {
				t.Fatalf("act %d: owner %d does not hold %v [%d,%d]; locks=%v", i, a.owner, a.typ, a.start, a.end, tbl.Locks())
			}
		default:
			t.Fatalf("act %d: unknown action %q", i, a.do)
		}
	}
	waitWaiters(t, tbl, 0)
}

func TestLockTable_Blocking(t *testing.T) {
	const A, B, C = 1, 2, 3
	const R, W, U = LockRead, LockWrite, LockUnlock
	tests := []struct {
		name string
		acts []blockAct
	}{
		{"GrantedOnUnlock", []blockAct{
			{do: "try", owner: A, typ: W, end: 9}, {do: "wait", owner: B, typ: R, start: 5, end: 5},
			{do: "pending", ref: 1}, {do: "try", owner: A, typ: U, end: 9},
			{do: "done", ref: 1}, {do: "held", owner: B, typ: R, start: 5, end: 5},
		}},
		{"GrantedOnDowngrade", []blockAct{{do: "try", owner: A, typ: W, end: 9}, {do: "wait", owner: B, typ: R, end: 9},
			{do: "try", owner: A, typ: R, end: 9}, {do: "done", ref: 1}}},
		{"FIFOBetweenWriters", []blockAct{
			{do: "try", owner: A, typ: W}, {do: "wait", owner: B, typ: W}, {do: "wait", owner: C, typ: W},
			{do: "try", owner: A, typ: U}, {do: "done", ref: 1}, {do: "pending", ref: 2},
			{do: "releaseOwner", owner: B}, {do: "done", ref: 2},
		}},
		{"ReaderDoesNotOvertakeQueuedWriter", []blockAct{
			{do: "try", owner: A, typ: R}, {do: "wait", owner: B, typ: W}, {do: "wait", owner: C, typ: R},
			{do: "pending", ref: 2}, {do: "try", owner: A, typ: U}, {do: "done", ref: 1},
			{do: "pending", ref: 2}, {do: "try", owner: B, typ: U}, {do: "done", ref: 2},
		}},
		{"HolderUpgradeBypassesQueue", []blockAct{ // B waits for A: queueing A behind B would deadlock
			{do: "try", owner: A, typ: R}, {do: "wait", owner: B, typ: W, end: 1},
			{do: "lock", owner: A, typ: W, end: 1}, {do: "pending", ref: 1},
			{do: "releaseOwner", owner: A}, {do: "done", ref: 1},
		}},
		{"CancelUnblocksLaterWaiter", []blockAct{
			{do: "try", owner: A, typ: R}, {do: "wait", owner: B, typ: W}, {do: "wait", owner: C, typ: R},
			{do: "cancel", ref: 1}, {do: "done", ref: 1, err: context.Canceled}, {do: "done", ref: 2},
		}},
		{"DeadlockTwoOwners", []blockAct{
			{do: "try", owner: A, typ: W}, {do: "try", owner: B, typ: W, start: 1, end: 1},
			{do: "wait", owner: A, typ: W, start: 1, end: 1}, {do: "lock", owner: B, typ: W, err: ErrDeadlock},
			{do: "releaseOwner", owner: B}, {do: "done", ref: 2},
		}},
		{"DeadlockThreeOwners", []blockAct{
			{do: "try", owner: A, typ: R, start: A, end: A}, {do: "try", owner: B, typ: R, start: B, end: B},
			{do: "try", owner: C, typ: R, start: C, end: C},
			{do: "wait", owner: A, typ: W, start: B, end: B}, {do: "wait", owner: B, typ: W, start: C, end: C},
			{do: "lock", owner: C, typ: W, start: A, end: A, err: ErrDeadlock},
			{do: "releaseOwner", owner: C}, {do: "done", ref: 4}, {do: "releaseOwner", owner: B}, {do: "done", ref: 3},
		}},
		{"ReleaseOwnerWakes", []blockAct{
			{do: "try", owner: A, handle: 10, typ: W, end: 9}, {do: "wait", owner: B, typ: W, end: 9},
			{do: "releaseOwner", owner: C}, {do: "pending", ref: 1},
			{do: "releaseOwner", owner: A}, {do: "done", ref: 1},
		}},
		{"ReleaseHandleWakes", []blockAct{
			{do: "try", owner: A, handle: 10, typ: W, end: 4}, {do: "try", owner: A, handle: 11, typ: W, start: 5, end: 9},
			{do: "wait", owner: B, typ: W, end: 4}, {do: "releaseHandle", handle: 11}, {do: "pending", ref: 2},
			{do: "releaseHandle", handle: 10}, {do: "done", ref: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runBlockActs(t, tt.acts) })
	}
}

func TestLockTable_CancelLeavesNoWaiter(t *testing.T) {
	tbl := NewLockTable()
	tbl.TryLock(1, 1, 1, LockWrite, 0, 9)
	before, goroutines := tbl.Locks(), runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	ch := lockAsync(ctx, tbl, 2, LockWrite, 0, 9)
	waitWaiters(t, tbl, 1)
	cancel()
	expectResult(t, ch, context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := tbl.Lock(ctx, 3, 3, 3, LockRead, 5, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want DeadlineExceeded", err)
	}
	waitWaiters(t, tbl, 0)
	if got := tbl.Locks(); !reflect.DeepEqual(got, before) {
		t.Fatalf("locks changed: %v", got)
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, want <= %d", runtime.NumGoroutine(), goroutines)
		}
	}
}

// stressBytes is the number of contended bytes in the stress test.
const stressBytes = 8

// stressWorker is one owner of the stress test. It mirrors its own locks per
// byte (model) and counts holders per byte in shared counters.
type stressWorker struct {
	t       *testing.T
	tbl     *LockTable
	owner   uint64
	rnd     *rand.Rand
	holders *[stressBytes][3]atomic.Int32 // per byte, indexed by LockType
	typ     [stressBytes]LockType
	handle  [stressBytes]uint64
}

// count adds delta to the number of typ holders of byte b.
func (w *stressWorker) count(typ LockType, b int, delta int32) { w.holders[b][typ].Add(delta) }

// do performs one random operation, keeping the counters an under-estimate
// of what the table grants: holds are counted after they are granted and
// uncounted before they are released.
func (w *stressWorker) do() {
	typ, handle := LockType(w.rnd.Intn(3)), w.owner*10+uint64(w.rnd.Intn(2))
	s := w.rnd.Intn(stressBytes)
	e := s + w.rnd.Intn(stressBytes-s)
	newTyp, newHandle := w.typ, w.handle
	op := w.rnd.Intn(20)
	for b := range stressBytes {
		switch {
		case op == 0: // ReleaseOwner
			newTyp[b] = LockUnlock
		case op == 1: // ReleaseHandle
			if w.handle[b] == handle {
				newTyp[b] = LockUnlock
			}
		case b >= s && b <= e:
			newTyp[b], newHandle[b] = typ, handle
		}
		if newTyp[b] < w.typ[b] {
			w.count(w.typ[b], b, -1)
		}
	}
	ok := true
	switch {
	case op == 0:
		w.tbl.ReleaseOwner(w.owner)
	case op == 1:
		w.tbl.ReleaseHandle(handle)
	case op < 8:
		ok = w.tbl.TryLock(w.owner, handle, uint32(w.owner), typ, uint64(s), uint64(e))
	default: // blocking: a short deadline exercises cancellation; the long one expiring would mean a missed deadlock
		timeout := 10 * time.Second
		if op < 10 {
			timeout = time.Duration(w.rnd.Intn(200)) * time.Microsecond
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := w.tbl.Lock(ctx, w.owner, handle, uint32(w.owner), typ, uint64(s), uint64(e))
		cancel()
		if err != nil && timeout == 10*time.Second && !errors.Is(err, ErrDeadlock) {
			w.t.Errorf("owner %d: Lock: %v", w.owner, err)
		}
		ok = err == nil
	}
	for b := range stressBytes {
		switch {
		case !ok && newTyp[b] < w.typ[b]:
			w.count(w.typ[b], b, +1) // restore
		case ok && newTyp[b] > w.typ[b]:
			w.count(w.typ[b], b, -1)
			w.count(newTyp[b], b, +1)
		case ok && newTyp[b] < w.typ[b]:
			w.count(newTyp[b], b, +1)
		}
	}
	if ok {
		w.typ, w.handle = newTyp, newHandle
	}
	w.check()
}

// check asserts mutual exclusion on the bytes w holds and that the table's
// view of w's locks matches the model.
func (w *stressWorker) check() {
	var got [stressBytes]LockType
	var gotHandle [stressBytes]uint64
	for _, l := range w.tbl.Locks() {
		for b := l.Start; l.Owner == w.owner && b <= l.End && b < stressBytes; b++ {
			got[b], gotHandle[b] = l.Type, l.Handle
		}
	}
	for b := range stressBytes {
		if got[b] != w.typ[b] || (got[b] != LockUnlock && gotHandle[b] != w.handle[b]) {
			w.t.Errorf("owner %d byte %d: table has %v/%d, model %v/%d", w.owner, b, got[b], gotHandle[b], w.typ[b], w.handle[b])
		}
		switch r, wr := w.holders[b][LockRead].Load(), w.holders[b][LockWrite].Load(); {
		case w.typ[b] == LockWrite && (wr != 1 || r != 0):
			w.t.Errorf("owner %d byte %d: write lock shared with %d readers, %d writers", w.owner, b, r, wr)
		case w.typ[b] == LockRead && wr != 0:
			w.t.Errorf("owner %d byte %d: read lock shared with %d writers", w.owner, b, wr)
		}
	}
}

// checkTableInvariants asserts that no two owners hold conflicting locks,
// that locks are sorted and that one owner's locks never overlap.
func checkTableInvariants(t *testing.T, locks []Lock) {
	for i := range locks {
		if i > 0 && lockLess(&locks[i], &locks[i-1]) {
			t.Errorf("locks not sorted: %v", locks)
		}
		for j := i + 1; j < len(locks); j++ {
			a, b := &locks[i], &locks[j]
			if a.conflicts(b) || (a.Owner == b.Owner && a.overlaps(b.Start, b.End)) {
				t.Errorf("conflicting locks %+v and %+v", *a, *b)
			}
		}
	}
}

func TestLockTable_Stress(t *testing.T) {
	const owners, iterations = 8, 1500
	tbl := NewLockTable()
	var holders [stressBytes][3]atomic.Int32

	stop := make(chan struct{})
	checkerDone := make(chan struct{})
	go func() {
		defer close(checkerDone)
		for {
			select {
			case <-stop:
				return
			default:
				checkTableInvariants(t, tbl.Locks())
				runtime.Gosched()
			}
		}
	}()

	var wg sync.WaitGroup
	for o := uint64(1); o <= owners; o++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &stressWorker{t: t, tbl: tbl, owner: o, rnd: rand.New(rand.NewSource(int64(o))), holders: &holders}
			for i := 0; i < iterations && !t.Failed(); i++ {
				w.do()
			}
			for b := range stressBytes {
				w.count(w.typ[b], b, -1)
			}
			tbl.ReleaseOwner(o)
		}()
	}
	wg.Wait()
	close(stop)
	<-checkerDone

	if locks := tbl.Locks(); len(locks) != 0 {
		t.Fatalf("locks left: %v", locks)
	}
	tbl.mu.Lock()
	defer tbl.mu.Unlock()
	if len(tbl.waiters) != 0 {
		t.Fatalf("waiters left: %d", len(tbl.waiters))
	}
}

// BenchmarkLockTable_SQLiteTransaction runs the lock sequence of one SQLite
// WAL write transaction through the unix VFS: SHARED on the database (via
// PENDING), a read-mark and WAL_WRITE_LOCK on -shm, then the unlocks.
func BenchmarkLockTable_SQLiteTransaction(b *testing.B) {
	for _, withReader := range []bool{false, true} {
		b.Run(fmt.Sprintf("OtherReader=%v", withReader), func(b *testing.B) {
			db, shm := NewLockTable(), NewLockTable()
			// Every connection holds the DMS read lock while open.
			shm.TryLock(1, 1, 1, LockRead, WALDMSByte, WALDMSByte)
			if withReader {
				shm.TryLock(2, 2, 2, LockRead, WALDMSByte, WALDMSByte)
				db.TryLock(2, 2, 2, LockRead, SharedFirst, SharedFirst+SharedSize-1)
				shm.TryLock(2, 2, 2, LockRead, WALReadLockByte0+1, WALReadLockByte0+1)
			}
			const readMark = WALReadLockByte0 + 1
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ok := db.TryLock(1, 1, 1, LockRead, PendingByte, PendingByte) &&
					db.TryLock(1, 1, 1, LockRead, SharedFirst, SharedFirst+SharedSize-1) &&
					db.TryLock(1, 1, 1, LockUnlock, PendingByte, PendingByte) &&
					shm.TryLock(1, 1, 1, LockRead, readMark, readMark) &&
					shm.TryLock(1, 1, 1, LockWrite, WALWriteLockByte, WALWriteLockByte) &&
					shm.TryLock(1, 1, 1, LockUnlock, WALWriteLockByte, WALWriteLockByte) &&
					shm.TryLock(1, 1, 1, LockUnlock, readMark, readMark) &&
					db.TryLock(1, 1, 1, LockUnlock, 0, math.MaxInt64)
				if !ok {
					b.Fatal("lock failed")
				}
			}
		})
	}
}
