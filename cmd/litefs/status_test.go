package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// infoServer imitates GET /info answering body.
func infoServer(t *testing.T, body string) string {
	t.Helper()
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/info" {
			http.Error(w, "wrong endpoint", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	})
	return srv.URL
}

// lineMatching reports whether some line of out matches the regexp re.
func lineMatching(out, re string) bool {
	r := regexp.MustCompile(re)
	for _, l := range strings.Split(out, "\n") {
		if r.MatchString(l) {
			return true
		}
	}
	return false
}

func TestStatusPrintsRoleAndDatabaseTable(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name  string
		body  string
		lines []string // regexps, each must match one line
	}{
		{"primary", `{"nodeID":"00000000000000a1","clusterID":"LFSC0123456789ABCDEF","role":"primary","candidate":true,
			"primary":{"hostname":"host-a","url":"http://host-a:20202"},"connected":true,"lagMillis":0,
			"dbs":{"b.db":{"txid":"0000000000000002","checksum":"8000000000000002"},"a.db":{"txid":"0000000000000010","checksum":"9000000000000010"}}}`,
			[]string{`^node id:\s+00000000000000a1$`, `^role:\s+primary$`, `^cluster id:\s+LFSC0123456789ABCDEF$`, `^candidate:\s+yes$`,
				`^DATABASE\s+TXID\s+CHECKSUM\s+LAG\s+HALT HOLDER$`,
				`^a\.db\s+0000000000000010\s+9000000000000010\s+-\s+-$`, `^b\.db\s+0000000000000002\s+8000000000000002\s+-\s+-$`}},
		{"replica connected", `{"nodeID":"00000000000000b2","role":"replica","candidate":false,
			"primary":{"hostname":"host-a","url":"http://host-a:20202"},"connected":true,"lagMillis":1500,
			"dbs":{"app":{"txid":"0000000000000005","checksum":"8000000000000005","haltHolder":"host-b"}}}`,
			[]string{`^role:\s+replica connected to host-a \(http://host-a:20202\)$`, `^lag:\s+1\.5s$`, `^candidate:\s+no$`,
				`^cluster id:\s+-$`, `^app\s+0000000000000005\s+8000000000000005\s+1\.5s\s+host-b$`}},
		{"static lease and an open API", `{"nodeID":"00000000000000a1","role":"primary","lease":"static",
			"primary":{"hostname":"host-a"},"dbs":{},"warnings":["no auth token is set and the API listens on :20202"]}`,
			[]string{`^lease:\s+static$`, `^WARNING: no auth token is set and the API listens on :20202$`}},
		{"replica disconnected", `{"nodeID":"00000000000000c3","role":"replica","primary":{},"connected":false,
			"lagMillis":2147483647,"dbs":{}}`,
			[]string{`^role:\s+replica disconnected$`, `^lag:\s+not caught up yet$`, `^candidate:\s+-$`, `^no databases$`}},
		{"replica without connected field", `{"nodeID":"00000000000000d4","role":"replica","primary":{"hostname":"host-z"},
			"dbs":{"x":{"txid":"0000000000000001","checksum":"8000000000000001","lagMillis":20}},"futureField":[1,2]}`,
			[]string{`^role:\s+replica connected to host-z$`, `^lag:\s+-$`, `^x\s+0000000000000001\s+8000000000000001\s+20ms\s+-$`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, "status", "-url", infoServer(t, tt.body))
			if res.code != 0 {
				t.Fatalf("exit code %d: %s", res.code, res.stderr)
			}
			for _, re := range tt.lines {
				if !lineMatching(res.stdout, re) {
					t.Errorf("no line matches %q in:\n%s", re, res.stdout)
				}
			}
		})
	}
}

func TestStatusDatabasesSortedByName(t *testing.T) {
	clearToken(t)
	url := infoServer(t, `{"nodeID":"1","role":"primary","dbs":{"zz":{},"aa":{},"mm":{}}}`)
	res := runCLI(t, "status", "-url", url)
	a, m, z := strings.Index(res.stdout, "\naa "), strings.Index(res.stdout, "\nmm "), strings.Index(res.stdout, "\nzz ")
	if res.code != 0 || a < 0 || !(a < m && m < z) {
		t.Errorf("exit %d, want databases sorted by name:\n%s", res.code, res.stdout)
	}
}

func TestStatusJSONPrintsServerJSONIndented(t *testing.T) {
	clearToken(t)
	body := `{"nodeID":"00000000000000a1","role":"primary","unknown":{"kept":true},"dbs":{"app":{"txid":"0000000000000001","checksum":"8000000000000001"}}}`
	res := runCLI(t, "status", "-json", "-url", infoServer(t, body))
	if res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	var want bytes.Buffer
	if err := json.Indent(&want, []byte(body), "", "  "); err != nil {
		t.Fatal(err)
	}
	want.WriteByte('\n')
	if res.stdout != want.String() {
		t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, want.String())
	}
}

func TestStatusRejectsInvalidJSON(t *testing.T) {
	clearToken(t)
	url := infoServer(t, `<html>not json</html>`)
	for _, args := range [][]string{{"status", "-url", url}, {"status", "-json", "-url", url}} {
		res := runCLI(t, args...)
		if res.code != 1 || !strings.Contains(res.stderr, url+"/info answered with invalid JSON") {
			t.Errorf("%q: exit %d stderr %q, want an error naming the URL", args, res.code, res.stderr)
		}
	}
}
