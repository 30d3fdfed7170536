package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/litefs/litefs/internal/consultest"
)

// The failover section's Consul agent: a `consul agent -dev` on loopback
// with free ports (internal/consultest, the tests' agent), started and
// killed by the benchmark itself.

// errNoConsul is wrapped by the error of a failover section that could not
// run because the consul binary is missing.
var errNoConsul = errors.New("consul binary not found")

// consulAgent is the section's agent; its output goes to dir/consul.log
// when it stops.
type consulAgent struct {
	*consultest.Agent
	log string
}

// startConsul finds the consul binary and starts a dev agent with its data
// in dir, waiting until it can create sessions. On failure the agent is
// already stopped.
func startConsul(dir string) (*consulAgent, error) {
	bin, err := consultest.FindBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoConsul, err)
	}
	a, err := consultest.Launch(bin, dir, consulNodeName)
	c := &consulAgent{Agent: a, log: filepath.Join(dir, "consul.log")}
	if err != nil {
		if a != nil {
			err = errors.Join(fmt.Errorf("%w; its output is in %s", err, c.log), c.stop())
		}
		return nil, err
	}
	return c, nil
}

// stop kills the agent, waits for it, and saves its output. It is safe to
// call more than once.
func (c *consulAgent) stop() error {
	err := c.Close()
	if werr := os.WriteFile(c.log, []byte(c.Logs()), 0o644); werr != nil {
		err = errors.Join(err, fmt.Errorf("save consul output: %w", werr))
	}
	return err
}
