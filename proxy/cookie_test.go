package proxy

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseTargets_Cookies(t *testing.T) {
	tests := []struct {
		name    string
		cookies string // Cookie header
		want    Targets
		wantErr string
	}{
		{"none", "", Targets{}, ""},
		{"other cookies only", "session=abc", Targets{}, ""},
		{"txid of the default db", "__txid=000000000000002a", Targets{"app.db": 42}, ""},
		{"upper-case hex", "__txid=00000000000000FF", Targets{"app.db": 255}, ""},
		{"short", "__txid=2a", nil, "want 16 hex digits"},
		{"not hex", "__txid=zzzzzzzzzzzzzzzz", nil, "want 16 hex digits"},
		{"several databases", "__txid=0000000000000001; __txids=b.db=0000000000000007&c%20d.db=0000000000000009",
			Targets{"app.db": 1, "b.db": 7, "c d.db": 9}, ""},
		{"txids naming the default db keeps the higher", "__txid=0000000000000005; __txids=app.db=0000000000000003",
			Targets{"app.db": 5}, ""},
		{"bad txids value", "__txids=b.db=12", nil, "database \"b.db\""},
		{"bad txids encoding", "__txids=%zz", nil, "name=<16 hex> pairs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.cookies != "" {
				r.Header.Set("Cookie", tt.cookies)
			}
			got, err := ParseTargets(r, "app.db")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTargets_SetCookiesRoundTrip(t *testing.T) {
	in := Targets{"app.db": 0x10, "x&y.db": 3, "b.db": 0xffff}
	h := http.Header{}
	in.setCookies(h, "app.db", 5*time.Minute)
	set := h.Values("Set-Cookie")
	if len(set) != 2 {
		t.Fatalf("Set-Cookie = %q, want two", set)
	}
	for _, s := range set {
		for _, attr := range []string{"Path=/", "HttpOnly", "Max-Age=300"} {
			if !strings.Contains(s, attr) {
				t.Errorf("%q lacks %s", s, attr)
			}
		}
	}
	resp := http.Response{Header: h}
	r := httptest.NewRequest("GET", "/", nil)
	for _, c := range resp.Cookies() {
		r.AddCookie(c)
	}
	got, err := ParseTargets(r, "app.db")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("round trip = %v, want %v", got, in)
	}
}
