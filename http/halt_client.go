package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"strings"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// HaltClient is a replica's client of the primary's HALT API and of POST
// /handoff (RequestHandoff); it implements litefs.HaltClient. The
// primary's URL is read from the store at every call, so it follows
// primary changes.
type HaltClient struct {
	store     *litefs.Store
	authToken string
	client    *nethttp.Client
}

var _ litefs.HaltClient = (*HaltClient)(nil)

// NewHaltClient returns a HALT API client for store. client may be nil:
// plain HTTP, or HTTPS verified against the system roots. With http.tls
// pass NewPeerClient(LoadTLS(...).Client).
func NewHaltClient(store *litefs.Store, authToken string, client *nethttp.Client) *HaltClient {
	if client == nil {
		client = NewPeerClient(nil)
	}
	return &HaltClient{store: store, authToken: authToken, client: client}
}

// AcquireHalt implements litefs.HaltClient.
func (c *HaltClient) AcquireHalt(ctx context.Context, db string, id uint64, wait bool) (litefs.HaltLock, error) {
	q := url.Values{"name": {db}, "id": {litefs.FormatNodeID(id)}}
	if !wait {
		q.Set("wait", "false")
	}
	var h HaltJSON
	if err := c.call(ctx, nethttp.MethodPost, "/halt", q, nil, &h); err != nil {
		return litefs.HaltLock{}, err
	}
	return h.lock()
}

// RenewHalt implements litefs.HaltClient.
func (c *HaltClient) RenewHalt(ctx context.Context, db string, id uint64) (litefs.HaltLock, error) {
	q := url.Values{"name": {db}, "id": {litefs.FormatNodeID(id)}, "renew": {"true"}}
	var h HaltJSON
	if err := c.call(ctx, nethttp.MethodPost, "/halt", q, nil, &h); err != nil {
		return litefs.HaltLock{}, err
	}
	return h.lock()
}

// ReleaseHalt implements litefs.HaltClient.
func (c *HaltClient) ReleaseHalt(ctx context.Context, db string, id uint64) error {
	q := url.Values{"name": {db}, "id": {litefs.FormatNodeID(id)}}
	return c.call(ctx, nethttp.MethodDelete, "/halt", q, nil, nil)
}

// ForwardTx implements litefs.HaltClient.
func (c *HaltClient) ForwardTx(ctx context.Context, db string, id uint64, r io.Reader) (ltx.Pos, error) {
	q := url.Values{"name": {db}, "id": {litefs.FormatNodeID(id)}}
	var resp struct {
		Pos PosJSON `json:"pos"`
	}
	if err := c.call(ctx, nethttp.MethodPost, "/tx", q, r, &resp); err != nil {
		return ltx.Pos{}, err
	}
	return resp.Pos.Pos()
}

// QueryHalt implements litefs.HaltClient.
func (c *HaltClient) QueryHalt(ctx context.Context, db string) (litefs.HaltLock, bool, error) {
	var h HaltJSON
	if err := c.call(ctx, nethttp.MethodGet, "/halt", url.Values{"name": {db}}, nil, &h); err != nil {
		return litefs.HaltLock{}, false, err
	}
	if !h.Held {
		return litefs.HaltLock{}, false, nil
	}
	l, err := h.lock()
	return l, err == nil, err
}

// lock parses a HaltJSON answer.
func (h HaltJSON) lock() (litefs.HaltLock, error) {
	id, err := parseNodeID(h.ID)
	if err != nil {
		return litefs.HaltLock{}, fmt.Errorf("bad HALT answer: lock id: %w", err)
	}
	holder, err := parseNodeID(h.Holder)
	if err != nil {
		return litefs.HaltLock{}, fmt.Errorf("bad HALT answer: holder: %w", err)
	}
	pos, err := h.Pos.Pos()
	if err != nil {
		return litefs.HaltLock{}, fmt.Errorf("bad HALT answer: %w", err)
	}
	return litefs.HaltLock{ID: id, Holder: holder, Pos: pos, Expires: h.Expires}, nil
}

// call sends one request to the primary and decodes a JSON answer into out.
func (c *HaltClient) call(ctx context.Context, method, path string, q url.Values, body io.Reader, out any) error {
	p := c.store.Primary()
	if p == nil || p.AdvertiseURL == "" {
		return fmt.Errorf("%s %s: %w: no primary known", method, path, litefs.ErrNotPrimary)
	}
	u := strings.TrimRight(p.AdvertiseURL, "/") + path + "?" + q.Encode()
	req, err := nethttp.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set(HeaderNodeID, litefs.FormatNodeID(c.store.NodeID()))
	if c.authToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.authToken)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s on primary %s: %w", method, path, p.Hostname, explainTLSError(err, "the primary"))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s on primary %s: read answer: %w", method, path, p.Hostname, err)
	}
	if resp.StatusCode != nethttp.StatusOK {
		return fmt.Errorf("%s %s: %w", method, path, decodeAPIError(resp.StatusCode, data))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(out); err != nil {
		return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
	}
	return nil
}
