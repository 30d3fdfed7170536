package main

import (
	"slices"
	"testing"
)

func TestSplitWords_PlainCommandLinesRunWithoutAShell(t *testing.T) {
	tests := []struct {
		line string
		want []string
		ok   bool
	}{
		{"myapp -port 8080", []string{"myapp", "-port", "8080"}, true},
		{"  spaced   out  ", []string{"spaced", "out"}, true},
		{`sh -c 'trap "exit 3" TERM; sleep 1'`, []string{"sh", "-c", `trap "exit 3" TERM; sleep 1`}, true},
		{`echo "a b" c\ d ''`, []string{"echo", "a b", "c d", ""}, true},
		{`echo "say \"hi\""`, []string{"echo", `say "hi"`}, true},
		{"migrate && serve", nil, false},
		{"serve | tee log", nil, false},
		{"echo $HOME", nil, false},
		{`echo "$HOME"`, nil, false},
		{"ls *.db", nil, false},
		{"serve > log", nil, false},
		{"echo 'unterminated", nil, false},
		{`echo "unterminated`, nil, false},
		{`trailing\`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, ok := splitWords(tt.line)
			if ok != tt.ok || (ok && !slices.Equal(got, tt.want)) {
				t.Fatalf("splitWords(%q) = %q, %t; want %q, %t", tt.line, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestExecCommand_UsesAShellOnlyWhenTheLineNeedsOne(t *testing.T) {
	if c := execCommand("myapp -x"); c.Args[0] != "myapp" {
		t.Fatalf("plain line ran as %q", c.Args)
	}
	if c := execCommand("migrate && serve"); c.Args[0] != "sh" || c.Args[2] != "migrate && serve" {
		t.Fatalf("shell line ran as %q", c.Args)
	}
}
