package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/litefs/litefs/consul"
)

// Figures and reporting of the failover section.

// Targets of issue 4 (docs/lifecycle.md).
const (
	crashFailoverTarget = 5 * time.Second
	handoffGapTarget    = 300 * time.Millisecond
)

// failoverKind is one way the section moves the primary role.
type failoverKind int

const (
	kindCrash   failoverKind = iota // SIGKILL the primary's process group
	kindHandoff                     // SIGTERM the primary: graceful handoff
	kindPromote                     // POST /promote on a replica
	kindCount
)

// failoverKinds lists the kinds in the order they run and print.
var failoverKinds = []failoverKind{kindCrash, kindHandoff, kindPromote}

// String returns the kind's short name, used in progress lines.
func (k failoverKind) String() string {
	return [...]string{"crash", "handoff", "promote"}[k]
}

// label returns the kind's row name in the table.
func (k failoverKind) label() string {
	return [...]string{
		"crash (SIGKILL primary) -> writable elsewhere",
		"clean handoff (SIGTERM primary) write gap",
		"POST /promote write gap",
	}[k]
}

// measure says what the kind's figure is, for progress lines.
func (k failoverKind) measure() string {
	if k == kindCrash {
		return "writable again after"
	}
	return "longest write gap"
}

// limit returns the kind's target: the figure must not exceed it.
func (k failoverKind) limit() time.Duration {
	if k == kindCrash {
		return crashFailoverTarget
	}
	return handoffGapTarget
}

// limitString formats the target: "<= 5 s", "<= 300 ms".
func (k failoverKind) limitString() string {
	if k == kindCrash {
		return fmt.Sprintf("<= %g s", k.limit().Seconds())
	}
	return fmt.Sprintf("<= %d ms", k.limit().Milliseconds())
}

// format formats a figure of the kind: seconds for a crash, else ms.
func (k failoverKind) format(d time.Duration) string {
	if k == kindCrash {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return formatMS(d)
}

// figure computes a round's figure from its acknowledged inserts (in
// order), the primary's index old and the time t0 the role was disrupted.
// A crash's figure is t0 to the first insert another node acknowledged; a
// handoff's or promote's is the longest time between two consecutive
// acknowledged inserts on different nodes. It also returns the node that
// took the writes.
func (k failoverKind) figure(acks []failAck, old int, t0 time.Time) (time.Duration, int, error) {
	if k == kindCrash {
		for _, a := range acks {
			if a.node != old && a.at.After(t0) {
				return a.at.Sub(t0), a.node, nil
			}
		}
		return 0, 0, errors.New("no other node acknowledged an insert")
	}
	gap, to := time.Duration(-1), 0
	for i := 1; i < len(acks); i++ {
		if acks[i].node != acks[i-1].node {
			if d := acks[i].at.Sub(acks[i-1].at); d > gap {
				gap, to = d, acks[i].node
			}
		}
	}
	if gap < 0 {
		return 0, 0, errors.New("the writes never moved to another node")
	}
	return gap, to, nil
}

// ackedRow is an insert acknowledged during a round: its row id, the
// round, the node that acknowledged it and when, relative to the
// disruption (note).
type ackedRow struct {
	id    int64
	round int
	node  string
	after time.Duration
	note  string
}

// failoverResult holds the failover section's figures.
type failoverResult struct {
	rounds       [kindCount][]time.Duration // one figure per round, in run order
	acked        [kindCount][]ackedRow      // the inserts acknowledged during each kind's rounds
	missing      [kindCount]int             // of those, missing on the final primary
	lost         []string                   // the first few missing of handoff and promote rounds
	promoteCalls []time.Duration            // how long each POST /promote took to answer
	err          error                      // why the section could not run (no consul binary)
}

// countMissing reads the ids of table t on the primary and counts, per
// kind of round, the acknowledged inserts that are not there.
func (c *failCluster) countMissing(ctx context.Context, res *failoverResult) error {
	path := filepath.Join(c.nodes[c.primary].dirs.mnt, failoverDB)
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT id FROM t")
	if err != nil {
		return fmt.Errorf("read ids of %s: %w", path, err)
	}
	defer rows.Close()
	have := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("read ids of %s: %w", path, err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read ids of %s: %w", path, err)
	}
	for _, k := range failoverKinds {
		for _, a := range res.acked[k] {
			if have[a.id] {
				continue
			}
			res.missing[k]++
			if k != kindCrash && len(res.lost) < 5 {
				res.lost = append(res.lost, fmt.Sprintf("row %d acknowledged by %s in %s round %d, %s after %s",
					a.id, a.node, k, a.round, formatMS(a.after), a.note))
			}
		}
	}
	return nil
}

// failoverStats are the median, min and max of a kind's rounds.
type failoverStats struct{ median, min, max time.Duration }

// summarize summarizes durations (nearest-rank median); ok is false for none.
func summarize(ds []time.Duration) (failoverStats, bool) {
	if len(ds) == 0 {
		return failoverStats{}, false
	}
	sorted := slices.Sorted(slices.Values(ds))
	return failoverStats{median: percentile(sorted, 50), min: sorted[0], max: sorted[len(sorted)-1]}, true
}

// failed returns why the section could not run; nil for a section that
// ran or was not selected (r is nil).
func (r *failoverResult) failed() error {
	if r == nil {
		return nil
	}
	return r.err
}

// printFailover writes the failover table and its notes, or the line
// saying why the section could not run; nothing when r is nil (the section
// was not selected). With blank, a blank line separates it from the table
// before.
func printFailover(w io.Writer, r *failoverResult, blank bool) error {
	if r == nil {
		return nil
	}
	if blank {
		fmt.Fprintln(w)
	}
	if r.err != nil {
		if _, err := fmt.Fprintf(w, "failover  ERROR: %v\n", r.err); err != nil {
			return fmt.Errorf("write failover error: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "failover (%d candidates, Consul lease, %d rounds each)\tmedian\tmin\tmax\ttarget\tconfigured\tresult\n",
		failoverNodes, failoverRounds)
	for _, k := range failoverKinds {
		s, ok := summarize(r.rounds[k])
		judged := math.NaN()
		if ok {
			judged = ms(s.median)
		}
		configured := "-"
		if k == kindCrash {
			configured = fmt.Sprintf("session TTL %s, check TTL %s, lock-delay %s", failoverSessionTTL, consul.DefaultCheckTTL, failoverLockDelay)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.label(), k.format(s.median), k.format(s.min), k.format(s.max),
			k.limitString(), configured, atMost(ms(k.limit())).verdict(judged))
	}
	lost := r.missing[kindHandoff] + r.missing[kindPromote]
	fmt.Fprintf(tw, "acknowledged inserts lost, handoff + promote\t%d of %d\t-\t-\t0\t-\t%s\n",
		lost, len(r.acked[kindHandoff])+len(r.acked[kindPromote]), atMost(0).verdict(float64(lost)))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write failover table: %w", err)
	}
	if _, err := io.WriteString(w, r.notes()); err != nil {
		return fmt.Errorf("write failover notes: %w", err)
	}
	return nil
}

// notes returns the footnotes of the failover table: every round's
// figure, how the writer works and what the loss counts mean.
func (r *failoverResult) notes() string {
	list := func(ds []time.Duration, format func(time.Duration) string) string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = format(d)
		}
		return strings.Join(out, ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "crash: SIGKILL of the primary's process group -> first INSERT another node acknowledged; rounds: %s\n",
		list(r.rounds[kindCrash], kindCrash.format))
	fmt.Fprintf(&b, "handoff, promote: longest time between two consecutive acknowledged INSERTs on different nodes; "+
		"handoff rounds: %s; promote rounds: %s (POST /promote answered 200 after %s)\n",
		list(r.rounds[kindHandoff], formatMS), list(r.rounds[kindPromote], formatMS), list(r.promoteCalls, formatMS))
	b.WriteString("writer: INSERT of one row per transaction into whichever node accepts it, one connection per node " +
		"(busy_timeout 20 ms, journal_mode DELETE), next node after a refusal with a 1 ms pause; " +
		"the stopped node is restarted on its directories and rejoins as a replica before the next round\n")
	fmt.Fprintf(&b, "lost: acknowledged inserts missing on the final primary; in crash rounds %d of %d (acknowledged by the killed "+
		"primary before it replicated them: replication is asynchronous, no target)\n", r.missing[kindCrash], len(r.acked[kindCrash]))
	for _, l := range r.lost {
		fmt.Fprintf(&b, "lost: %s\n", l)
	}
	return b.String()
}
