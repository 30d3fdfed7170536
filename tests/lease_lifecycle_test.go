package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestConsul_RunPromoteMovesThePrimaryThenRunsTheCommand(t *testing.T) {
	agent := StartConsul(t)
	nodes := startConsulCluster(t, agent, 2)
	createTable(t, nodes[0], nodes, "app.db")
	out, err := runBounded(60*time.Second, daemonPath(t), "run", "-url", nodes[1].URL(), "-promote", "--",
		"sh", "-c", "echo ran")
	if err != nil {
		t.Fatalf("litefs run -promote: %v\n%s", err, out)
	}
	if info, err := infoOf(nodes[1]); err != nil || info.Role != "primary" {
		t.Fatalf("after litefs run -promote, %s is %+v (err %v), want primary", nodes[1].Name, info, err)
	}
	if err := insertOnce(nodes[1], "app.db", 1, 5*time.Second); err != nil {
		t.Fatalf("the promoted node refused a write: %v", err)
	}
}

func TestConsul_ExecRunsIfCandidateOnlyOnCandidatesAndExitsWithTheApp(t *testing.T) {
	agent := StartConsul(t)
	a := consulNode(t, agent, "a", true, NodeOptions{})
	waitRole(t, a, "primary", 15*time.Second)
	marks := t.TempDir()
	tests := []struct {
		name      string
		candidate bool
		migrated  bool
	}{
		{"candidate runs the migration", true, true},
		{"non-candidate skips it", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mark := filepath.Join(marks, fmt.Sprintf("migrated-%t", tt.candidate))
			exec := fmt.Sprintf("exec:\n  - cmd: touch %s\n    if-candidate: true\n  - cmd: sh -c 'exit 7'\n", mark)
			n := consulNode(t, agent, fmt.Sprintf("exec-%t", tt.candidate), tt.candidate, NodeOptions{Extra: exec, NoWait: true})
			code, err := n.WaitExit(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code != 7 {
				t.Fatalf("daemon exit code %d, want the application's 7", code)
			}
			if _, err := os.Stat(mark); (err == nil) != tt.migrated {
				t.Fatalf("if-candidate command ran: %t, want %t", err == nil, tt.migrated)
			}
		})
	}
}

func TestExec_SIGTERMReachesTheApplicationWhoseExitCodeEndsTheDaemon(t *testing.T) {
	marks := t.TempDir()
	ready := filepath.Join(marks, "ready")
	app := fmt.Sprintf(`exec: "sh -c 'trap \"exit 3\" TERM; touch %s; while :; do sleep 0.05; done'"`, ready)
	n := StartNode(t, NodeOptions{Extra: app})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec application did not start:\n%s", n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := n.WaitExit(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 3 {
		t.Fatalf("daemon exit code %d, want 3 (the application's answer to SIGTERM)\n%s", code, n.Log())
	}
}
