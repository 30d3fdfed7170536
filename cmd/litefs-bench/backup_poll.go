package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// backupPollEvery is how often the bucket's TXID is read from the daemon's
// GET /info: the resolution of the backup lag figures.
const backupPollEvery = 10 * time.Millisecond

// backupInfo is the part of GET /info the benchmark reads.
type backupInfo struct {
	Backup []struct {
		Name       string `json:"name"`
		BucketTXID uint64 `json:"bucketTXID"`
		LocalTXID  uint64 `json:"localTXID"`
		Uploads    int64  `json:"uploads"`
		Errors     int64  `json:"errors"`
		Refused    string `json:"refused"`
	} `json:"backup"`
}

// bucketState is what the daemon says about one database's backup.
type bucketState struct {
	txid, uploads, errors int64
	found                 bool
}

// infoClient reads GET /info of one daemon.
var infoClient = &http.Client{Timeout: 5 * time.Second}

// readBucket returns the backup state of database name from the daemon at
// url. A daemon without backup, or a database not backed up yet, gives
// found == false.
func readBucket(ctx context.Context, url, name string) (bucketState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/info", nil)
	if err != nil {
		return bucketState{}, err
	}
	resp, err := infoClient.Do(req)
	if err != nil {
		return bucketState{}, fmt.Errorf("GET /info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return bucketState{}, fmt.Errorf("GET /info: %s", resp.Status)
	}
	var info backupInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return bucketState{}, fmt.Errorf("GET /info: %w", err)
	}
	for _, b := range info.Backup {
		if b.Name != name {
			continue
		}
		if b.Refused != "" {
			return bucketState{}, fmt.Errorf("backup of %s refused: %s", name, b.Refused)
		}
		return bucketState{txid: int64(b.BucketTXID), uploads: b.Uploads, errors: b.Errors, found: true}, nil
	}
	return bucketState{}, nil
}

// bucketSample is when the bucket was first seen holding txid.
type bucketSample struct {
	at   time.Time
	txid uint64
}

// bucketPoller reads a daemon's /info every backupPollEvery in its own
// goroutine and records each rise of the bucket's TXID. It polls a daemon
// without backup the same way, so both sides of the on/off comparison pay
// for the same requests.
type bucketPoller struct {
	url, name string
	stop      chan uint64 // the TXID to wait for before stopping (0: stop now)
	done      chan error
	samples   []bucketSample // owned by the goroutine until done
}

// startBucketPoller starts polling database name on the daemon at url.
func startBucketPoller(ctx context.Context, url, name string) *bucketPoller {
	p := &bucketPoller{url: url, name: name, stop: make(chan uint64, 1), done: make(chan error, 1)}
	go func() { p.done <- p.run(ctx) }()
	return p
}

// run is the polling loop: after a stop request for TXID want it goes on
// until the bucket holds want or backupSeenTimeout passes.
func (p *bucketPoller) run(ctx context.Context) error {
	tick := time.NewTicker(backupPollEvery)
	defer tick.Stop()
	var last uint64
	want, stopping := uint64(0), false
	var deadline time.Time
	for {
		st, err := readBucket(ctx, p.url, p.name)
		now := time.Now()
		if err != nil {
			return err
		}
		if st.found && uint64(st.txid) > last {
			last = uint64(st.txid)
			p.samples = append(p.samples, bucketSample{at: now, txid: last})
		}
		if stopping && last >= want {
			return nil
		}
		if stopping && now.After(deadline) {
			return fmt.Errorf("bucket still at TXID %d %s after the last commit (TXID %d)", last, backupSeenTimeout, want)
		}
		select {
		case want = <-p.stop:
			stopping, deadline = true, now.Add(backupSeenTimeout)
		case <-ctx.Done():
			return fmt.Errorf("poll backup status: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// wait stops the poller once the bucket holds TXID want (0: at once) and
// returns its samples.
func (p *bucketPoller) wait(want uint64) ([]bucketSample, error) {
	p.stop <- want
	if err := <-p.done; err != nil {
		return nil, err
	}
	return p.samples, nil
}

// backupLags pairs commit i (TXID base+1+i, returned at commits[i]) with
// the first sample whose TXID covers it. Commits never covered are left out.
func backupLags(base uint64, commits []time.Time, samples []bucketSample) []time.Duration {
	var lags []time.Duration
	j := 0
	for i, at := range commits {
		txid := base + 1 + uint64(i)
		for j < len(samples) && samples[j].txid < txid {
			j++
		}
		if j == len(samples) {
			break
		}
		lags = append(lags, max(0, samples[j].at.Sub(at)))
	}
	return lags
}
