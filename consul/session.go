package consul

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/litefs/litefs"
)

// serviceName is the Consul service every lease session registers.
const serviceName = "litefs"

// deregisterCriticalAfter removes the service (and its check) of a holder
// that died without cleaning up. One minute is Consul's minimum.
const deregisterCriticalAfter = "1m"

// session is one Consul session with the service and TTL check it is bound
// to, registered on the agent the Leaser talks to.
//
// Invariant: while the check is passing and the session exists, the session
// may hold the lock. The check goes critical no earlier than CheckTTL after
// the agent received the last pass, so a holder that passed it at time t
// (measured before sending) cannot lose the session to the check before
// t + CheckTTL; another session can then lock the key only after lock-delay.
type session struct {
	client    *api.Client
	cfg       Config
	id        string // Consul session ID
	serviceID string
	checkID   string
	// alive is when the last successful pass of the check was sent (or the
	// check registered, passing). Only one goroutine at a time uses it.
	alive time.Time
}

// openSession registers a service with a TTL check on the agent and creates
// a session bound to that check and to the agent's serfHealth.
//
// serfHealth stays in the session's checks (Consul's default, which naming
// any check would drop): the TTL check runs on the agent, so if the agent's
// whole node dies the check can no longer go critical, and only serfHealth
// (the servers' failure detector) invalidates the session.
func openSession(ctx context.Context, client *api.Client, cfg Config, info litefs.LeaseInfo) (*session, error) {
	suffix, err := randomSuffix()
	if err != nil {
		return nil, err
	}
	s := &session{client: client, cfg: cfg, serviceID: "litefs-" + suffix, checkID: "litefs-lease-" + suffix}
	start := time.Now() // the check's TTL starts no earlier than this
	reg := &api.AgentServiceRegistration{
		ID:   s.serviceID,
		Name: serviceName,
		Meta: map[string]string{"hostname": info.Hostname, "advertise-url": info.AdvertiseURL},
		Check: &api.AgentServiceCheck{
			CheckID:                        s.checkID,
			Name:                           "litefs lease holder " + info.Hostname,
			TTL:                            cfg.CheckTTL.String(),
			Status:                         api.HealthPassing,
			DeregisterCriticalServiceAfter: deregisterCriticalAfter,
		},
	}
	if err := client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("register service %s with check %s: %w", s.serviceID, s.checkID, err)
	}
	if err := s.create(ctx, info.Hostname); err != nil {
		s.deregister()
		return nil, err
	}
	s.alive = start
	return s, nil
}

// create creates the session. The agent syncs the new check to the servers
// asynchronously, so "missing check" answers are retried until ctx is done.
func (s *session) create(ctx context.Context, hostname string) error {
	entry := &api.SessionEntry{
		Name:          "litefs lease " + hostname,
		Behavior:      api.SessionBehaviorRelease,
		TTL:           s.cfg.TTL.String(),
		LockDelay:     s.cfg.LockDelay,
		NodeChecks:    []string{"serfHealth"},
		ServiceChecks: []api.ServiceCheck{{ID: s.checkID}},
	}
	for {
		id, _, err := s.client.Session().Create(entry, (&api.WriteOptions{}).WithContext(ctx))
		if err == nil {
			s.id = id
			return nil
		}
		if !strings.Contains(err.Error(), "Missing check") && !strings.Contains(err.Error(), "Missing node registration") {
			return fmt.Errorf("create session bound to check %s: %w", s.checkID, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create session: check %s never reached the Consul servers: %w", s.checkID, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// keepAlive passes the check and renews the session once. It returns
// errSessionGone if Consul no longer knows the session.
func (s *session) keepAlive(ctx context.Context) error {
	start := time.Now()
	if err := s.client.Agent().UpdateTTLOpts(s.checkID, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("pass check %s: %w", s.checkID, err)
	}
	entry, _, err := s.client.Session().Renew(s.id, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("renew session %s: %w", s.id, err)
	}
	if entry == nil {
		return fmt.Errorf("renew session %s: %w", s.id, errSessionGone)
	}
	s.alive = start
	return nil
}

// errSessionGone means Consul invalidated the session: the lock is lost.
var errSessionGone = errors.New("session no longer exists (invalidated by a failed check or TTL)")

// close destroys the session (Consul then releases its locks, applying the
// lock-delay, so release the key explicitly first) and removes the service.
// Best effort, bounded by a few seconds: a dead agent must not hang the
// caller, and the session's check and TTL clean up after it anyway.
func (s *session) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var errs []error
	if s.id != "" {
		if _, err := s.client.Session().Destroy(s.id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("destroy session %s: %w", s.id, err))
		}
	}
	if err := s.deregisterCtx(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deregister removes the service and its check, best effort.
func (s *session) deregister() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = s.deregisterCtx(ctx)
}

func (s *session) deregisterCtx(ctx context.Context) error {
	if err := s.client.Agent().ServiceDeregisterOpts(s.serviceID, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("deregister service %s: %w", s.serviceID, err)
	}
	return nil
}

// randomSuffix returns 16 random hex digits for service and check ids.
func randomSuffix() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate service id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
