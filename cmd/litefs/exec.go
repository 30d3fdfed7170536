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
		cmd := execCommand(c.Cmd)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("exec %q: %w", c.Cmd, err)
		}
		sigs := make(chan os.Signal, 2)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		err := waitForwardingSignals(cmd, sigs)
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

// waitForwardingSignals waits for the started cmd to exit, passing every
// signal received on sigs on to it.
func waitForwardingSignals(cmd *exec.Cmd, sigs <-chan os.Signal) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
		case err := <-done:
			return err
		}
	}
}
