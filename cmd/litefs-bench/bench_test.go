package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestTargetVerdict(t *testing.T) {
	tests := []struct {
		name    string
		target  target
		ratio   float64
		str     string
		verdict string
	}{
		{"min met", atLeast(0.20), 0.25, ">= 0.20", "PASS"},
		{"min exact", atLeast(0.80), 0.80, ">= 0.80", "PASS"},
		{"min missed", atLeast(0.20), 0.01, ">= 0.20", "MISS"},
		{"max met", atMost(1.5), 1.2, "<= 1.50", "PASS"},
		{"max exact", atMost(1.5), 1.5, "<= 1.50", "PASS"},
		{"max missed", atMost(1.5), 4.4, "<= 1.50", "MISS"},
		{"no target", noTarget(), 0.10, "-", "-"},
		{"no target NaN", noTarget(), math.NaN(), "-", "-"},
		{"min NaN", atLeast(0.20), math.NaN(), ">= 0.20", "MISS"},
		{"max NaN", atMost(1.5), math.NaN(), "<= 1.50", "MISS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.target.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.target.verdict(tt.ratio); got != tt.verdict {
				t.Errorf("verdict(%v) = %q, want %q", tt.ratio, got, tt.verdict)
			}
		})
	}
}

func TestRatioAndFormat(t *testing.T) {
	tests := []struct {
		plain, litefs float64
		want          string
	}{
		{1000, 250, "0.25x"},
		{0.2, 0.88, "4.40x"},
		{100, 100, "1.00x"},
		{0, 5, "n/a"},
		{-1, 5, "n/a"},
		{math.NaN(), 5, "n/a"},
		{5, math.NaN(), "n/a"},
	}
	for _, tt := range tests {
		if got := formatRatio(ratio(tt.plain, tt.litefs)); got != tt.want {
			t.Errorf("formatRatio(ratio(%v, %v)) = %q, want %q", tt.plain, tt.litefs, got, tt.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		unit unit
		v    float64
		want string
	}{
		{unitRate, 12345.6, "12346 tx/s"},
		{unitRate, 0, "0 tx/s"},
		{unitSeconds, 0.4123, "0.412 s"},
		{unitSeconds, 12, "12.000 s"},
	}
	for _, tt := range tests {
		if got := formatValue(tt.unit, tt.v); got != tt.want {
			t.Errorf("formatValue(%v, %v) = %q, want %q", tt.unit, tt.v, got, tt.want)
		}
	}
}

func TestParsePos(t *testing.T) {
	tests := []struct {
		text    string
		want    uint64
		wantErr bool
	}{
		{"0000000000000a02/1234567890abcdef\n", 0xa02, false},
		{"0000000000000000/0000000000000000\n", 0, false},
		{"", 0, true},
		{"\n", 0, true},
		{"zz/00", 0, true},
		{"0000000000000001", 0, true},
	}
	for _, tt := range tests {
		got, err := parsePos(tt.text)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parsePos(%q) = %d, %v; want %d, error %v", tt.text, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMountPoint(t *testing.T) {
	tests := []struct {
		line, want string
	}{
		{"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw", "/mnt2"},
		{`50 30 0:45 / /tmp/a\040b/mnt rw - fuse.litefs litefs rw`, "/tmp/a b/mnt"},
		{`50 30 0:45 / /tmp/x\134y rw - fuse x rw`, `/tmp/x\y`},
		{`50 30 0:45 / /tmp/end\04 rw - fuse x rw`, `/tmp/end\04`},
		{"short line", ""},
	}
	for _, tt := range tests {
		if got := mountPoint(tt.line); got != tt.want {
			t.Errorf("mountPoint(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

func TestConfigYAML(t *testing.T) {
	got := configYAML("/tmp/b/data", "/tmp/b/mnt", 4321)
	for _, want := range []string{
		`dir: "/tmp/b/data"`, `dir: "/tmp/b/mnt"`, `addr: "127.0.0.1:4321"`,
		"type: static", "candidate: true", "hostname: primary",
		`advertise-url: "http://127.0.0.1:4321"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{nil, false},
		{[]string{"-duration", "2s", "-rows", "10", "-keep", "-json"}, false},
		{[]string{"-duration", "0s"}, true},
		{[]string{"-rows", "0"}, true},
		{[]string{"-snapshot-mb", "20"}, false},
		{[]string{"-snapshot-mb", "0"}, true},
		{[]string{"-snapshot-mb", "-5"}, true},
		{[]string{"extra"}, true},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args, &strings.Builder{})
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFlags(%q) error = %v, want error %v", tt.args, err, tt.wantErr)
		}
	}
	o, err := parseFlags(nil, &strings.Builder{})
	if err != nil || o.litefs != "bin/litefs" || o.duration != 3*time.Second || o.rows != 100000 || o.snapshotMB != 200 {
		t.Errorf("defaults = %+v, %v", o, err)
	}
}
