package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// runExec runs the exec commands in order; the last one is the application
// and its exit code becomes the daemon's. SIGINT and SIGTERM are forwarded.
func runExec(ctx context.Context, cmds ExecConfigs, log *slog.Logger) error {
	for i, c := range cmds {
		last := i == len(cmds)-1
		log.Info("running exec command", "cmd", c.Cmd)
		cmd := exec.Command("sh", "-c", c.Cmd)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("exec %q: %w", c.Cmd, err)
		}
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
	wait:
		for {
			select {
			case sig := <-sigs:
				_ = cmd.Process.Signal(sig)
			case err = <-done:
				break wait
			}
		}
		signal.Stop(sigs)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if last {
				return &exitError{code: ee.ExitCode()}
			}
			return fmt.Errorf("exec %q failed: %w", c.Cmd, err)
		} else if err != nil {
			return fmt.Errorf("exec %q: %w", c.Cmd, err)
		}
	}
	return nil
}
