package probes

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONPathLookup(t *testing.T) {
	doc, err := decodeJSONBody([]byte(`{"status":"ok","data":{"items":[{"name":"a"},{"name":"b"}],"7":"seven"},"list":[[1,2],[3]]}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want string // the value as JSON; empty: not found
	}{
		{path: "status", want: `"ok"`},
		{path: "data.items.1.name", want: `"b"`},
		{path: "data.7", want: `"seven"`},
		{path: "list.0.1", want: `2`},
		{path: "data.items", want: `[{"name":"a"},{"name":"b"}]`},
		{path: "data.items.2.name"},
		{path: "data.items.-1.name"},
		{path: "data.items.+1.name"},
		{path: "data.items.name"},
		{path: "status.x"},
		{path: "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := parseJSONPath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := p.lookup(doc)
			if tt.want == "" {
				if ok {
					t.Fatalf("found %v, want not found", v)
				}
				return
			}
			b, _ := json.Marshal(v)
			if !ok || string(b) != tt.want {
				t.Fatalf("lookup = %s, %v; want %s", b, ok, tt.want)
			}
		})
	}
}

func TestNumbersEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"3", "3", true},
		{"3", "3.0", true},
		{"100", "1e2", true},
		{"0", "-0", true},
		{"-0", "0.0", true},
		{"3", "4", false},
		{"-3", "3", false},
		{"0.1", "0.10", true},
		{"12345678901234567890123", "12345678901234567890123", true},
		{"12345678901234567890123", "12345678901234567890124", false}, // equal as float64, not as integers
		{"1e400", "1e400", true},
		{"1e400", "2e400", false},
	}
	for _, tt := range tests {
		if got := numbersEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("numbersEqual(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := numbersEqual(tt.b, tt.a); got != tt.want {
			t.Errorf("numbersEqual(%s, %s) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestRenderJSONValueClips(t *testing.T) {
	long := strings.Repeat("é", 100)
	got := renderJSONValue(long)
	if len(got) > 64+len("…") || !strings.HasSuffix(got, "…") || !json.Valid([]byte(strings.TrimSuffix(got, "…")+`"`)) {
		t.Fatalf("renderJSONValue = %q, want a clipped, rune-aligned rendering", got)
	}
}

// FuzzJSONPath evaluates conditions on arbitrary bodies, paths and wanted values: it must never panic,
// and a value found at a path must equal itself.
func FuzzJSONPath(f *testing.F) {
	f.Add([]byte(`{"status":"ok"}`), "status", `"ok"`)
	f.Add([]byte(`{"data":{"items":[{"name":"a"}]}}`), "data.items.0.name", `"a"`)
	f.Add([]byte(`[1,2,3]`), "2", `3.0`)
	f.Add([]byte(`{"n":1e400}`), "n", `1e400`)
	f.Add([]byte(`{"a":null}`), "a", `null`)
	f.Add([]byte(`not json`), "a..b", `{}`)
	f.Add([]byte(`{"a":{"b":[[[]]]}}`), "a.b.0.0.99999999999999999999", `true`)
	f.Fuzz(func(t *testing.T, body []byte, path, equals string) {
		doc, bodyErr := decodeJSONBody(body)
		var want any
		if err := json.Unmarshal([]byte(equals), &want); err != nil {
			want = equals
		}
		c, err := newJSONCondition(path, want)
		if err != nil {
			return
		}
		if bodyErr != nil {
			return
		}
		_ = c.check(doc)
		if v, ok := c.Path.lookup(doc); ok && !isComposite(v) && !jsonEqual(v, v) {
			t.Fatalf("value at %q does not equal itself: %v", path, v)
		}
	})
}

func isComposite(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}
