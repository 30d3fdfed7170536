package main

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/litefs/litefs/internal/fuzzseed"
)

// Fuzz targets for what the daemon reads from its config file. See
// docs/ARCHITECTURE.md, "Fuzzing".

// FuzzParseConfig parses an arbitrary config file, with and without
// environment expansion. It must not panic or hang; an error must say
// something; the same text must give the same result twice; and what
// parses must survive Validate without a panic.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("../../litefs.yml.example")
	if err != nil {
		f.Fatal(err)
	}
	fuzzseed.Add(f, "example", example, true)
	fuzzseed.Add(f, "example-truncated", fuzzseed.Truncated(example), false)
	fuzzseed.Add(f, "example-flipped", fuzzseed.Flipped(example, len(example)/3), true)
	for name, doc := range map[string]string{
		"alias":         "fuse: &f\n  dir: /litefs\ndata: *f\n",
		"exec-string":   "exec: \"myapp serve\"\n",
		"env":           "fuse:\n  dir: ${HOST}\nlease:\n  candidate: ${FLY_REGION == PRIMARY}\n",
		"two-documents": "fuse:\n  dir: /a\n---\nfuse:\n  dir: /b\n",
		"unknown-key":   "fuse:\n  dri: /litefs\n",
		"recursive":     "a: &a [*a]\n",
	} {
		fuzzseed.Add(f, name, []byte(doc), true)
	}
	f.Fuzz(func(t *testing.T, doc []byte, expand bool) {
		cfg, err := ParseConfig(doc, expand, testEnv)
		again, err2 := ParseConfig(doc, expand, testEnv)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || !reflect.DeepEqual(cfg, again) {
			t.Fatalf("two parses differ: %v / %v", err, err2)
		}
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = cfg.Validate()
	})
}

// FuzzExpandEnv expands arbitrary text. With no variable set, expansion
// never lengthens the text ("$$" is "$", a variable is "", a comparison is
// "true" or "false", anything else is kept), and text without a '$' is
// kept as it is.
func FuzzExpandEnv(f *testing.F) {
	for i, s := range []string{
		"dir: $HOST/${FLY_REGION}",
		"candidate: ${FLY_REGION == \"den\"}",
		"x: ${ PRIMARY != 'ord' }",
		"price: $$5 ${unclosed",
		"quoted: ${A == \"}\"}",
		"${A == B == C}",
	} {
		fuzzseed.Add(f, "text-"+string(rune('a'+i)), s)
	}
	none := func(string) (string, bool) { return "", false }
	f.Fuzz(func(t *testing.T, s string) {
		out := ExpandEnv(s, none)
		if len(out) > len(s) {
			t.Fatalf("ExpandEnv(%q) = %q: longer with no variable set", s, out)
		}
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("ExpandEnv(%q) = %q: text without '$' changed", s, out)
		}
		_ = ExpandEnv(s, testEnv)
	})
}
