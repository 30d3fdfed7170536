package main

import (
	"os"
	"strings"
)

// ExpandEnv expands environment variables in s, the text of a config file,
// using lookup (os.LookupEnv when nil). The forms are:
//
//	$NAME  ${NAME}            the variable's value; "" when unset
//	${NAME == "text"}         "true" or "false"; 'text' may be single-quoted
//	${NAME != 'text'}
//	${NAME == OTHER}          compares with the value of variable OTHER
//	$$                        a literal "$" (the escape for a dollar sign)
//
// NAME is a letter or '_' followed by letters, digits and '_'. Spaces and
// tabs around operands and operators are ignored; either side of a
// comparison may be a name or a quoted string. Quoted text has no escapes
// and may contain '}'. A "$" not followed by one of these forms, and a
// "${...}" that is not a valid expression or is not closed on its line, are
// left as written, so the YAML decoder shows them to the user.
//
// Expansion is textual and happens before YAML parsing: a value holding YAML
// syntax (": ", "#", a newline) changes the document, so quote such values.
func ExpandEnv(s string, lookup func(string) (string, bool)) string {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i += 2
		case next == '{':
			end := closingBrace(s, i+2)
			if end < 0 {
				b.WriteString("${")
				i += 2
				continue
			}
			if val, ok := evalExpr(s[i+2:end], lookup); ok {
				b.WriteString(val)
			} else {
				b.WriteString(s[i : end+1])
			}
			i = end + 1
		case isNameStart(next):
			j := i + 2
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			val, _ := lookup(s[i+1 : j])
			b.WriteString(val)
			i = j
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String()
}

// closingBrace returns the index of the '}' that closes an expression
// starting at s[start], skipping quoted text, or -1 if the line ends first.
func closingBrace(s string, start int) int {
	var quote byte
	for i := start; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n':
			return -1
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '}':
			return i
		}
	}
	return -1
}

// evalExpr evaluates the inside of "${...}". ok is false when expr is not a
// variable name or a comparison.
func evalExpr(expr string, lookup func(string) (string, bool)) (string, bool) {
	left, i, ok := parseOperand(expr, 0, lookup)
	if !ok {
		return "", false
	}
	i = skipSpace(expr, i)
	if i == len(expr) {
		if !left.isName {
			return "", false // ${"text"} is not an expression
		}
		return left.value, true
	}
	if i+2 > len(expr) {
		return "", false
	}
	op := expr[i : i+2]
	if op != "==" && op != "!=" {
		return "", false
	}
	right, i, ok := parseOperand(expr, i+2, lookup)
	if !ok || skipSpace(expr, i) != len(expr) {
		return "", false
	}
	if (left.value == right.value) == (op == "==") {
		return "true", true
	}
	return "false", true
}

// operand is one side of a comparison, already resolved to its value.
type operand struct {
	value  string
	isName bool
}

// parseOperand reads a variable name or a quoted string at expr[i:], after
// optional spaces, and returns its value and the index after it.
func parseOperand(expr string, i int, lookup func(string) (string, bool)) (operand, int, bool) {
	i = skipSpace(expr, i)
	if i == len(expr) {
		return operand{}, i, false
	}
	if q := expr[i]; q == '"' || q == '\'' {
		end := strings.IndexByte(expr[i+1:], q)
		if end < 0 {
			return operand{}, i, false
		}
		return operand{value: expr[i+1 : i+1+end]}, i + end + 2, true
	}
	if !isNameStart(expr[i]) {
		return operand{}, i, false
	}
	j := i + 1
	for j < len(expr) && isNameChar(expr[j]) {
		j++
	}
	val, _ := lookup(expr[i:j])
	return operand{value: val, isName: true}, j, true
}

// skipSpace returns the index of the first byte at or after i that is not
// a space or a tab.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isNameStart reports whether c may start a variable name.
func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// isNameChar reports whether c may continue a variable name.
func isNameChar(c byte) bool {
	return isNameStart(c) || ('0' <= c && c <= '9')
}
