package main

import (
	"os/exec"
	"strings"
)

// shellMeta are the characters that make a command need a shell when they
// appear outside quotes.
const shellMeta = "|&;<>()$`*?[]{}~#\n"

// execCommand returns the process for an exec entry. A plain command line
// (words, quotes, backslashes) is split into arguments and run directly, so
// that signals forwarded by the daemon reach the application itself and its
// exit code is the daemon's; anything that needs a shell (pipes, lists,
// variables, globs, redirections) runs under "sh -c".
func execCommand(line string) *exec.Cmd {
	if args, ok := splitWords(line); ok && len(args) > 0 {
		return exec.Command(args[0], args[1:]...)
	}
	return exec.Command("sh", "-c", line)
}

// splitWords splits line into words as a POSIX shell would, honouring
// single quotes, double quotes and backslashes. It reports false when the
// line holds a shell metacharacter outside quotes, a "$" or "`" inside
// double quotes, or an unterminated quote.
func splitWords(line string) ([]string, bool) {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
			continue
		case c == '\\':
			if i+1 >= len(line) {
				return nil, false
			}
			i++
			cur.WriteByte(line[i])
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, false
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			j, ok := readDoubleQuoted(line, i+1, &cur)
			if !ok {
				return nil, false
			}
			i = j
		case strings.IndexByte(shellMeta, c) >= 0:
			return nil, false
		default:
			cur.WriteByte(c)
		}
		inWord = true
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, true
}

// readDoubleQuoted copies the double-quoted text starting at line[i] into
// cur and returns the index of the closing quote.
func readDoubleQuoted(line string, i int, cur *strings.Builder) (int, bool) {
	for ; i < len(line); i++ {
		switch c := line[i]; c {
		case '"':
			return i, true
		case '$', '`':
			return 0, false // expansion: leave it to the shell
		case '\\':
			if i+1 < len(line) && strings.IndexByte("\"\\$`", line[i+1]) >= 0 {
				i++
			}
			cur.WriteByte(line[i])
		default:
			cur.WriteByte(c)
		}
	}
	return 0, false
}
