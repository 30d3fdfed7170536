package main

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file decodes a yaml.Node tree into Config by walking the tree next to
// the struct, so every error can name the full dotted key path and the line.
// Rules:
//   - a null value (absent, "~", "null" or nothing after the colon) keeps
//     the default;
//   - a key that is not a yaml tag of the target struct is an error, as is a
//     key given twice in the same mapping;
//   - lists replace the default list, they are not appended to.

// keyError is a decoding error located at one key of the file.
type keyError struct {
	Line int    // Line is the 1-based line of the offending key or value.
	Key  string // Key is the dotted key path, e.g. "lease.consul.ttl".
	Msg  string // Msg says what is wrong and what to do.
}

// Error formats the error as "line N: MSG".
func (e *keyError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

var (
	durationType    = reflect.TypeFor[time.Duration]()
	execConfigsType = reflect.TypeFor[ExecConfigs]()
)

// decodeDocument decodes a document node into cfg.
func decodeDocument(doc *yaml.Node, cfg *Config) error {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	return decodeValue(n, reflect.ValueOf(cfg).Elem(), "")
}

// decodeValue decodes n into v; path is the dotted path of v ("" for the root).
func decodeValue(n *yaml.Node, v reflect.Value, path string) error {
	n = resolveAlias(n)
	if isNull(n) {
		return nil
	}
	switch v.Type() {
	case durationType:
		return decodeDuration(n, v, path)
	case execConfigsType:
		return decodeExec(n, path, v.Addr().Interface().(*ExecConfigs))
	}
	switch v.Kind() {
	case reflect.Struct:
		return decodeStruct(n, v, path)
	case reflect.Bool:
		return decodeBool(n, v, path)
	case reflect.String:
		return decodeString(n, v, path)
	case reflect.Slice:
		return decodeSlice(n, v, path)
	}
	return fmt.Errorf("internal error: config field %s has unsupported type %s", path, v.Type())
}

// resolveAlias follows *alias references to their anchored node.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty or null scalar.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// joinPath appends key to the dotted path prefix.
func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// displayPath names path in messages; the root is "the config file".
func displayPath(path string) string {
	if path == "" {
		return "the config file"
	}
	return path
}

// kindName describes a node's kind for type errors.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported YAML node"
}

// decodeStruct decodes a mapping into the struct v, field by yaml tag.
func decodeStruct(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.MappingNode {
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: expected a mapping of keys, got %s: write one \"key: value\" per line under it",
			displayPath(path), kindName(n))}
	}
	fields := structFields(v.Type())
	seen := make(map[string]int)
	var errs []error
	for i := 0; i+1 < len(n.Content); i += 2 {
		keyNode, valNode := resolveAlias(n.Content[i]), n.Content[i+1]
		key := keyNode.Value
		keyPath := joinPath(path, key)
		if first, dup := seen[key]; dup {
			errs = append(errs, &keyError{Line: keyNode.Line, Key: keyPath, Msg: fmt.Sprintf(
				"duplicate key %q (first set at line %d): keep only one", keyPath, first)})
			continue
		}
		seen[key] = keyNode.Line
		idx, ok := fields[key]
		if !ok || keyNode.Kind != yaml.ScalarNode {
			errs = append(errs, unknownKeyError(keyNode, keyPath, fields))
			continue
		}
		if err := decodeValue(valNode, v.Field(idx), keyPath); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// structFields maps the yaml tag names of t's fields to field indexes.
func structFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// unknownKeyError reports a key that the section does not have, suggesting
// the closest known key when one is near.
func unknownKeyError(keyNode *yaml.Node, keyPath string, fields map[string]int) error {
	msg := fmt.Sprintf("unknown key %q", keyPath)
	if keyNode.Kind != yaml.ScalarNode {
		msg = fmt.Sprintf("unsupported key (%s) in %s: keys are plain names",
			kindName(keyNode), displayPath(strings.TrimSuffix(keyPath, "."+keyNode.Value)))
		return &keyError{Line: keyNode.Line, Key: keyPath, Msg: msg}
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	// The first closest name in sorted order: the same message every time,
	// whichever order the map gives ("uase" is as near "fuse" as "lease").
	best, bestDist := "", 3 // suggest only within an edit distance of 2
	for _, name := range names {
		if d := editDistance(keyNode.Value, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" {
		prefix := strings.TrimSuffix(keyPath, keyNode.Value)
		msg += fmt.Sprintf(": did you mean %q?", prefix+best)
	} else {
		msg += fmt.Sprintf(": known keys here are %s", strings.Join(names, ", "))
	}
	return &keyError{Line: keyNode.Line, Key: keyPath, Msg: msg}
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeBool accepts true/false (and YAML 1.1's yes/no/on/off), in any case
// and quoted or not, so "${VAR == "x"}" works inside quotes too.
func decodeBool(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.ScalarNode {
		switch strings.ToLower(n.Value) {
		case "true", "yes", "on":
			v.SetBool(true)
			return nil
		case "false", "no", "off":
			v.SetBool(false)
			return nil
		}
	}
	return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
		"%s: expected true or false, got %s", path, kindName(n))}
}

// decodeString accepts any scalar and keeps its text as written.
func decodeString(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: expected a string, got %s", path, kindName(n))}
	}
	v.SetString(n.Value)
	return nil
}

// decodeDuration parses a Go duration such as "10s", "500ms" or "1m30s".
func decodeDuration(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.ScalarNode {
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: expected a duration such as 10s, got %s", path, kindName(n))}
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: invalid duration %q: write a number with a unit, such as 10s, 500ms or 1m30s", path, n.Value)}
	}
	v.SetInt(int64(d))
	return nil
}

// decodeSlice decodes a list into a new slice that replaces v.
func decodeSlice(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind != yaml.SequenceNode {
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: expected a list, got %s: write [a, b] or one \"- item\" per line", path, kindName(n))}
	}
	out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	var errs []error
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = resolveAlias(item)
		if isNull(item) {
			errs = append(errs, &keyError{Line: item.Line, Key: itemPath, Msg: fmt.Sprintf(
				"%s: empty list item: remove it or give it a value", itemPath)})
			continue
		}
		if err := decodeValue(item, out.Index(i), itemPath); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.Set(out)
	return nil
}

// decodeExec decodes the exec key: one string becomes one command; a list
// holds {cmd, if-candidate} mappings or plain command strings.
func decodeExec(n *yaml.Node, path string, out *ExecConfigs) error {
	n = resolveAlias(n)
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.ScalarNode && n.Value == "":
		*out = nil // exec: "" means no command
		return nil
	case n.Kind == yaml.ScalarNode:
		*out = ExecConfigs{{Cmd: n.Value}}
		return nil
	case n.Kind != yaml.SequenceNode:
		return &keyError{Line: n.Line, Key: path, Msg: fmt.Sprintf(
			"%s: expected a command string or a list of {cmd, if-candidate}, got %s", path, kindName(n))}
	}
	list := make(ExecConfigs, len(n.Content))
	var errs []error
	for i, item := range n.Content {
		itemPath := fmt.Sprintf("%s[%d]", path, i)
		item = resolveAlias(item)
		var err error
		if item.Kind == yaml.ScalarNode && !isNull(item) {
			list[i].Cmd = item.Value
		} else {
			err = decodeStruct(item, reflect.ValueOf(&list[i]).Elem(), itemPath)
		}
		if err == nil && list[i].Cmd == "" {
			err = &keyError{Line: item.Line, Key: itemPath + ".cmd", Msg: fmt.Sprintf(
				"%s.cmd is missing or empty: give the command to run", itemPath)}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	*out = list
	return nil
}
