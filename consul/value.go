package consul

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/consul/api"
	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// value is the JSON stored at the lease key, e.g.
//
//	{"hostname":"node1","advertise-url":"http://node1:20202",
//	 "cluster-id":"LFSC...","positions":{"db":"0000000000000003/8f1c0a2b3d4e5f60"}}
//
// A position is ltx.Pos's text form, TXID/post-apply-checksum in hex.
type value struct {
	Hostname     string            `json:"hostname"`
	AdvertiseURL string            `json:"advertise-url"`
	ClusterID    string            `json:"cluster-id,omitempty"`
	Positions    map[string]string `json:"positions,omitempty"`
	HandoffTo    string            `json:"handoff-to,omitempty"`
}

// encodeInfo returns the key's value for info.
func encodeInfo(info litefs.LeaseInfo) ([]byte, error) {
	v := value{Hostname: info.Hostname, AdvertiseURL: info.AdvertiseURL, ClusterID: info.ClusterID, HandoffTo: info.HandoffTo}
	if len(info.Positions) > 0 {
		v.Positions = make(map[string]string, len(info.Positions))
		for name, pos := range info.Positions {
			v.Positions[name] = pos.String()
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode lease value: %w", err)
	}
	return b, nil
}

// decodeInfo parses a key's value. An empty value is the zero LeaseInfo.
func decodeInfo(b []byte) (litefs.LeaseInfo, error) {
	var info litefs.LeaseInfo
	if len(b) == 0 {
		return info, nil
	}
	var v value
	if err := json.Unmarshal(b, &v); err != nil {
		return info, fmt.Errorf("decode lease value %.100q: %w", b, err)
	}
	info.Hostname, info.AdvertiseURL, info.ClusterID = v.Hostname, v.AdvertiseURL, v.ClusterID
	info.HandoffTo = v.HandoffTo
	if len(v.Positions) > 0 {
		info.Positions = make(map[string]ltx.Pos, len(v.Positions))
		for name, s := range v.Positions {
			pos, err := ltx.ParsePos(s)
			if err != nil {
				return info, fmt.Errorf("decode lease value: position of %q: %w", name, err)
			}
			info.Positions[name] = pos
		}
	}
	return info, nil
}

// stateOf turns a KV read of the lease key into a LeaseState; index is the
// read's X-Consul-Index.
func stateOf(key string, pair *api.KVPair, index uint64) (litefs.LeaseState, error) {
	st := litefs.LeaseState{Index: index}
	if pair == nil {
		return st, nil
	}
	info, err := decodeInfo(pair.Value)
	if err != nil {
		return st, fmt.Errorf("key %s: %w", key, err)
	}
	st.Held, st.Info = pair.Session != "", info
	return st, nil
}

// sameState reports whether a and b show the same holder and info.
func sameState(a, b litefs.LeaseState) bool {
	return a.Held == b.Held && a.Info.Equal(b.Info)
}
