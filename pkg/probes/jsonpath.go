package probes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/redact"
)

// errBodyNotJSON means a body that conditions should be evaluated against is not a JSON document.
var errBodyNotJSON = errors.New("body is not JSON")

// jsonPath is a dotted path into a JSON document: `status`, `data.status`, `items.0.name`. A segment
// indexes an array when it is a decimal number and the value there is an array; otherwise it names an
// object member. Member names containing a dot cannot be addressed.
type jsonPath []string

// parseJSONPath parses a dotted path; empty segments are errors.
func parseJSONPath(s string) (jsonPath, error) {
	if s == "" {
		return nil, errors.New("must not be empty")
	}
	segs := strings.Split(s, ".")
	for _, seg := range segs {
		if seg == "" {
			return nil, fmt.Errorf("empty segment in %q", s)
		}
	}
	return jsonPath(segs), nil
}

func (p jsonPath) String() string { return strings.Join(p, ".") }

// lookup returns the value at p in doc (as decoded by decodeJSONBody) and whether it is there.
func (p jsonPath) lookup(doc any) (any, bool) {
	v := doc
	for _, seg := range p {
		switch t := v.(type) {
		case map[string]any:
			next, ok := t[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, ok := jsonArrayIndex(seg)
			if !ok || i >= len(t) {
				return nil, false
			}
			v = t[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// jsonArrayIndex parses a segment made only of decimal digits.
func jsonArrayIndex(seg string) (int, bool) {
	for _, c := range seg {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(seg)
	return i, err == nil
}

// decodeJSONBody decodes one JSON document, keeping numbers as json.Number so that they compare exactly.
func decodeJSONBody(b []byte) (any, error) {
	if !json.Valid(b) {
		return nil, errBodyNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, errBodyNotJSON
	}
	return v, nil
}

// jsonCondition requires the value at Path to equal Want, compared as JSON values: "3" (a string) is
// not 3 (a number), and 3 equals 3.0.
type jsonCondition struct {
	Path jsonPath
	Want any // a JSON scalar as decodeJSONBody yields it: nil, bool, string or json.Number
}

// newJSONCondition builds a condition from a path and a config value, which must be a scalar. Errors
// are FieldErrors named "path" or "equals".
func newJSONCondition(path string, equals any) (jsonCondition, error) {
	p, err := parseJSONPath(path)
	if err != nil {
		return jsonCondition{}, config.Errorf("path", "%v", err)
	}
	b, err := json.Marshal(equals)
	if err != nil {
		return jsonCondition{}, config.Errorf("equals", "%v", err)
	}
	want, err := decodeJSONBody(b)
	if err != nil {
		return jsonCondition{}, config.Errorf("equals", "%v", err)
	}
	switch want.(type) {
	case nil, bool, string, json.Number:
	default:
		return jsonCondition{}, config.Errorf("equals", "must be a string, number, boolean or null, got %s", redact.Clip(string(b), 40))
	}
	return jsonCondition{Path: p, Want: want}, nil
}

// check evaluates c against doc; the error says what was found, for people.
func (c jsonCondition) check(doc any) error {
	got, ok := c.Path.lookup(doc)
	if !ok {
		return fmt.Errorf("json %s: not found, want %s", c.Path, renderJSONValue(c.Want))
	}
	if !jsonEqual(got, c.Want) {
		return fmt.Errorf("json %s = %s, want %s", c.Path, renderJSONValue(got), renderJSONValue(c.Want))
	}
	return nil
}

// jsonEqual compares two values as decodeJSONBody yields them. Objects and arrays never equal anything:
// conditions compare scalars.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case json.Number:
		y, ok := b.(json.Number)
		return ok && numbersEqual(string(x), string(y))
	default:
		return false
	}
}

// numbersEqual compares JSON numbers. Two integers compare as text, exactly and whatever their size;
// otherwise they compare as float64, so 3 equals 3.0 and 1e2 equals 100.
func numbersEqual(a, b string) bool {
	if isJSONInteger(a) && isJSONInteger(b) {
		// Valid JSON integers have no leading zeros, so equal values have equal text, but for -0.
		return a == b || strings.TrimPrefix(a, "-") == "0" && strings.TrimPrefix(b, "-") == "0"
	}
	x, errX := strconv.ParseFloat(a, 64)
	y, errY := strconv.ParseFloat(b, 64)
	if errX != nil || errY != nil {
		// Out of float64 range: only identical text is known to be equal.
		return a == b
	}
	return x == y
}

// isJSONInteger reports whether a valid JSON number has no fraction and no exponent.
func isJSONInteger(s string) bool { return s != "" && !strings.ContainsAny(s, ".eE") }

// renderJSONValue renders v as compact JSON for a message, truncated: a body is not a secret, but it can be
// long.
func renderJSONValue(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return redact.Clip(string(b), 64)
}
