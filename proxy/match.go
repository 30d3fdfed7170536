package proxy

import (
	"fmt"
	"regexp"
	"strings"
)

// Pattern is a path pattern of proxy.passthrough: anchored at both ends, where each '*' matches any run of characters
// (including '/' and nothing). "/static/*" matches every path under
// /static/; "*.png" matches every path ending in .png; "/login" matches
// only /login.
type Pattern struct {
	parts []string // the pattern split at '*'
}

// CompilePattern compiles a path pattern.
func CompilePattern(s string) Pattern {
	return Pattern{parts: strings.Split(s, "*")}
}

// Match reports whether path matches the whole pattern.
func (p Pattern) Match(path string) bool {
	if len(p.parts) == 1 {
		return path == p.parts[0]
	}
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(path) < len(first)+len(last) || !strings.HasPrefix(path, first) || !strings.HasSuffix(path, last) {
		return false
	}
	// Greedy left to right over the middle, leftmost match of each part:
	// for '*' globs this finds a match whenever one exists.
	rest := path[len(first) : len(path)-len(last)]
	for _, part := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return true
}

// Patterns is a list of patterns; it matches a path when any one does.
type Patterns []Pattern

// CompilePatterns compiles every pattern of list.
func CompilePatterns(list []string) Patterns {
	ps := make(Patterns, 0, len(list))
	for _, s := range list {
		ps = append(ps, CompilePattern(s))
	}
	return ps
}

// Match reports whether any pattern matches path.
func (ps Patterns) Match(path string) bool {
	for _, p := range ps {
		if p.Match(path) {
			return true
		}
	}
	return false
}

// Regexps is the list of proxy.always-forward: Go regular expressions
// matched anywhere in the path unless anchored (^, $), as LiteFS read them
// ("^/api/auth/callback/").
type Regexps []*regexp.Regexp

// CompileRegexps compiles every expression of list; an invalid one is an
// error naming its index.
func CompileRegexps(key string, list []string) (Regexps, error) {
	rs := make(Regexps, 0, len(list))
	for i, s := range list {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q is not a regular expression: %w", key, i, s, err)
		}
		rs = append(rs, re)
	}
	return rs, nil
}

// Match reports whether any expression matches path.
func (rs Regexps) Match(path string) bool {
	for _, re := range rs {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}
