package consul

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/internal/consultest"
	"github.com/superfly/ltx"
)

// Environment of the helper process that holds a lease until it is killed.
const (
	envHolder    = "LITEFS_CONSUL_TEST_HOLDER"
	envHolderURL = "LITEFS_CONSUL_TEST_URL"
)

const testKey = "primary"
const testClusterID = "LFSC000000000000000000000001"

// TestMain runs the holder helper when the test binary is started as one
// (see startHolderProcess), else the tests.
func TestMain(m *testing.M) {
	if os.Getenv(envHolder) == "1" {
		os.Exit(runHolder())
	}
	os.Exit(m.Run())
}

// runHolder acquires the lease, prints "ACQUIRED <session>" and waits to
// be killed: a primary that crashes without releasing anything.
func runHolder() int {
	l, err := New(Config{URL: os.Getenv(envHolderURL), Key: testKey, Logger: quietLogger()})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, err := l.Acquire(ctx, testInfo("crasher", nil))
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("ACQUIRED", lease.(*Lease).SessionID())
	<-lease.Done()
	fmt.Println("LOST", lease.Err())
	return 1
}

// startHolderProcess starts the helper and waits until it holds the lease.
func startHolderProcess(t *testing.T, a *consultest.Agent, url string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHolder+"=1", envHolderURL+"="+url)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("holder stdout: %v", err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start holder process: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			select {
			case line <- s.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "ACQUIRED ") {
			t.Fatalf("holder process: %s", l)
		}
	case <-time.After(25 * time.Second):
		t.Fatalf("holder process did not acquire the lease in time\n%s", a.Logs())
	}
	return cmd
}

// testContext returns a context cancelled at the end of the test or after d.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// quietLogger discards logs: lease goroutines may log after a test ended.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newLeaser returns a Leaser on the agent with the test key and cfg's
// tuning, closed at the end of the test.
func newLeaser(t *testing.T, url string, cfg Config) *Leaser {
	t.Helper()
	cfg.URL, cfg.Key, cfg.Logger = url, testKey, quietLogger()
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// testInfo is the LeaseInfo of node host.
func testInfo(host string, positions map[string]ltx.Pos) litefs.LeaseInfo {
	return litefs.LeaseInfo{
		PrimaryInfo: litefs.PrimaryInfo{Hostname: host, AdvertiseURL: "http://" + host + ":20202"},
		ClusterID:   testClusterID,
		Positions:   positions,
	}
}

// releaseAtEnd releases lease when the test ends, whatever its state.
func releaseAtEnd(t *testing.T, lease litefs.Lease) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = lease.Release(ctx, lease.Info())
	})
}

// acquireWhenFree plays a candidate's loop: watch until nobody holds the
// lease, then acquire. It returns the lease and when the watch saw the key
// free.
func acquireWhenFree(ctx context.Context, l *Leaser, info litefs.LeaseInfo) (litefs.Lease, time.Time, error) {
	st, err := l.State(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	for st.Held {
		if st, err = l.Watch(ctx, st); err != nil {
			return nil, time.Time{}, err
		}
	}
	freeAt := time.Now()
	lease, err := l.Acquire(ctx, info)
	return lease, freeAt, err
}

// waitDone waits for lease to end, failing the test after d.
func waitDone(t *testing.T, lease litefs.Lease, d time.Duration) time.Time {
	t.Helper()
	select {
	case <-lease.Done():
		return time.Now()
	case <-time.After(d):
		t.Fatalf("lease still held after %s", d)
		return time.Time{}
	}
}

// startWatcher plays a replica: it follows the lease with Watch in the
// background. next returns the next state seen, failing the test if it
// came more than 500ms after since.
func startWatcher(t *testing.T, ctx context.Context, l *Leaser) (<-chan litefs.LeaseState, func(what string, since time.Time) litefs.LeaseState) {
	states := make(chan litefs.LeaseState, 16)
	go func() {
		defer close(states)
		var prev litefs.LeaseState
		for {
			st, err := l.Watch(ctx, prev)
			if err != nil {
				return
			}
			states <- st
			prev = st
		}
	}()
	next := func(what string, since time.Time) litefs.LeaseState {
		t.Helper()
		select {
		case st, ok := <-states:
			if !ok {
				t.Fatalf("watch ended before %s", what)
			}
			d := time.Since(since)
			t.Logf("replica saw %s after %s", what, d.Round(time.Millisecond))
			if d > 500*time.Millisecond {
				t.Fatalf("replica saw %s %s late", what, d)
			}
			return st
		case <-time.After(5 * time.Second):
			t.Fatalf("replica did not see %s", what)
			return litefs.LeaseState{}
		}
	}
	return states, next
}
