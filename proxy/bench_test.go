package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkLocalRead compares a GET through the proxy (primary, no cookie)
// with the same GET sent to the application directly, on loopback.
func BenchmarkLocalRead(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer app.Close()
	store := newTestStore(b)
	url := startProxy(b, store, Config{Target: app.URL, Logger: slog.New(slog.DiscardHandler)})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	for _, bb := range []struct{ name, url string }{{"direct", app.URL}, {"proxy", url}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := client.Get(bb.url + "/x")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
