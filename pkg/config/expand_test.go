package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestExpandString(t *testing.T) {
	env := envOf(map[string]string{
		"HOST":  "db.local",
		"PORT":  "5432",
		"EMPTY": "",
		"DOLLA": "$HOME ${NOT_EXPANDED_AGAIN}",
	})
	tests := []struct {
		name     string
		in       string
		want     string
		warnings []string // substrings, one per warning
		err      string   // substring; "" means no error
	}{
		{name: "no reference", in: "plain", want: "plain"},
		{name: "set", in: "${HOST}", want: "db.local"},
		{name: "in text", in: "tcp://${HOST}:${PORT}/x", want: "tcp://db.local:5432/x"},
		{name: "unset warns", in: "a${MISSING}b", want: "ab", warnings: []string{"p.q: environment variable MISSING is not set"}},
		{name: "empty does not warn", in: "a${EMPTY}b", want: "ab"},
		{name: "default when unset", in: "${MISSING:-fallback}", want: "fallback"},
		{name: "default when empty", in: "${EMPTY:-fallback}", want: "fallback"},
		{name: "default not used", in: "${HOST:-fallback}", want: "db.local"},
		{name: "empty default", in: "${MISSING:-}", want: ""},
		{name: "default with colon and slash", in: "${MISSING:-http://127.0.0.1:3007/api}", want: "http://127.0.0.1:3007/api"},
		{name: "nested default", in: "${MISSING:-${HOST}:${PORT}}", want: "db.local:5432"},
		{name: "unused default does not warn", in: "${HOST:-${MISSING}}", want: "db.local"},
		{name: "used default warns", in: "${EMPTY:-${MISSING}}", want: "", warnings: []string{"MISSING is not set"}},
		{name: "required set", in: "${HOST:?need a host}", want: "db.local"},
		{name: "required unset", in: "${MISSING:?need a host}", err: "p.q: environment variable MISSING is required: need a host"},
		{name: "required empty", in: "${EMPTY:?}", err: "environment variable EMPTY is required: set it to a non-empty value"},
		{name: "two required", in: "${A:?a}${B:?b}", err: "B is required: b"},
		{name: "dollar dollar", in: "$$", want: "$"},
		{name: "escaped reference", in: "$${HOST}", want: "${HOST}"},
		{name: "escaped then reference", in: "$$${HOST}", want: "$db.local"},
		{name: "lone dollar", in: "cost: 5$", want: "cost: 5$"},
		{name: "dollar word", in: "$HOME/x", want: "$HOME/x"},
		{name: "dollar in default", in: "${MISSING:-a$$b$c}", want: "a$b$c"},
		{name: "value not expanded again", in: "${DOLLA}", want: "$HOME ${NOT_EXPANDED_AGAIN}"},
		{name: "unclosed", in: "x${HOST", err: `unclosed "${" at offset 1`},
		{name: "unclosed default", in: "${HOST:-x", err: `unclosed "${"`},
		{name: "unclosed nested", in: "${A:-${B}", err: `unclosed "${"`},
		{name: "empty name", in: "${}", err: `invalid variable name ""`},
		{name: "bad name", in: "${A-B}", err: `invalid variable name "A-B"`},
		{name: "digit first", in: "${1A}", err: `invalid variable name "1A"`},
		{name: "bad operator", in: "${A:=x}", err: `expected ":-" or ":?" after "${A:"`},
		{name: "colon at end", in: "${A:", err: `expected ":-" or ":?"`},
		{name: "too deep", in: strings.Repeat("${A:-", 20) + strings.Repeat("}", 20), err: "nested deeper than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := expandString(tt.in, "p.q", env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Path != "p.q" {
					t.Errorf("err = %#v, want a FieldError at p.q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings = %q, want %d", warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q, want %q", warnings[i], w)
				}
			}
		})
	}
}

// TestExpandTypes: a plain scalar takes the type of its expanded text; a quoted one stays a string.
func TestExpandTypes(t *testing.T) {
	const cfg = `
server:
  listen: ":${PORT:-8080}"
scheduler:
  maxConcurrentProbes: ${MAX_CONCURRENT:-8}
  jitter: ${JITTER}
probes:
  - name: ${NAME:-db}
    kind: tcp
    critical: ${CRITICAL:-false}
    interval: ${INTERVAL:-3s}
    portPlain: ${PORT:-8080}
    portQuoted: "${PORT:-8080}"
    portTagged: !!str ${PORT:-8080}
    flag: ${CRITICAL}
    nothing: ${UNSET_FOR_TEST}
    list:
      - ${PORT}
      - "${PORT}"
`
	l := mustLoad(t, cfg, map[string]string{"PORT": "9000", "CRITICAL": "true", "JITTER": "0.5"})
	c := l.Config
	if c.Server.Listen != ":9000" || c.Scheduler.MaxConcurrentProbes != 8 || c.Scheduler.Jitter != 0.5 {
		t.Errorf("server %+v scheduler %+v", c.Server, c.Scheduler)
	}
	p := c.Probes[0]
	if p.Name != "db" || !p.Critical || p.Interval.String() != "3s" {
		t.Errorf("probe = %+v", p)
	}
	want := map[string]any{
		"portPlain":  9000,
		"portQuoted": "9000",
		"portTagged": "9000",
		"flag":       true,
		"nothing":    "",
		"list":       []any{9000, "9000"},
	}
	if !reflect.DeepEqual(p.Options, want) {
		t.Errorf("Options = %#v\nwant %#v", p.Options, want)
	}
	if !containsLine(l.Warnings, "probes[0].nothing: environment variable UNSET_FOR_TEST is not set") {
		t.Errorf("warnings = %q", l.Warnings)
	}
}

// TestExpandInjection: a variable's value is data. It can never add keys, list items or documents.
func TestExpandInjection(t *testing.T) {
	evil := []string{
		"a\nb: c",
		"x\nprobes:\n  - {name: evil, kind: tcp}",
		"{name: evil, kind: tcp}",
		"[1, 2]",
		"*anchor",
		"&anchor x",
		"!!int 5",
		"- item",
		"x\n---\nprobes: []",
		"# comment",
		"'quoted'",
		"${OTHER}",
	}
	for _, v := range evil {
		t.Run(v, func(t *testing.T) {
			const cfg = `
probes:
  - name: db
    kind: tcp
    plain: ${EVIL}
    quoted: "${EVIL}"
    inList:
      - ${EVIL}
`
			l := mustLoad(t, cfg, map[string]string{"EVIL": v, "OTHER": "other"})
			if n := len(l.Config.Probes); n != 1 {
				t.Fatalf("%d probes: the value added structure", n)
			}
			p := l.Config.Probes[0]
			if len(p.Options) != 3 {
				t.Errorf("Options = %#v: the value added keys", p.Options)
			}
			for _, got := range []any{p.Options["plain"], p.Options["quoted"], p.Options["inList"].([]any)[0]} {
				if got != v {
					t.Errorf("got %#v, want the string %q", got, v)
				}
			}
		})
	}
}

// TestExpandKeysUntouched: references in keys are not expanded (keys are structure).
func TestExpandKeysUntouched(t *testing.T) {
	const cfg = `
probes:
  - name: db
    kind: tcp
    headers:
      ${HEADER}: value
`
	p := mustLoad(t, cfg, map[string]string{"HEADER": "X-Injected"}).Config.Probes[0]
	h := p.Options["headers"].(map[string]any)
	if _, ok := h["${HEADER}"]; !ok || len(h) != 1 {
		t.Errorf("headers = %v, want the key as written", h)
	}
}

func TestExpandAnchorsOnce(t *testing.T) {
	l, err := LoadFile("testdata/good/anchors.yaml", fakeKinds{}, envOf(map[string]string{"TARGET_URL": "http://t/h"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Config.Probes {
		if p.Options["url"] != "http://t/h" || p.Kind != "http" {
			t.Errorf("%s = %+v", p.Name, p)
		}
	}
	if l.Config.Probes[1].Interval.String() != "1m0s" {
		t.Errorf("two.interval = %v", l.Config.Probes[1].Interval)
	}
}

func TestLookupEnvDefault(t *testing.T) {
	t.Setenv("HEALTH_AGENT_CONFIG_TEST_ADDR", "127.0.0.1:7")
	l, err := Load("x", []byte("probes: [{name: db, kind: tcp, address: \"${HEALTH_AGENT_CONFIG_TEST_ADDR}\"}]"), fakeKinds{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Config.Probes[0].Options["address"]; got != "127.0.0.1:7" {
		t.Errorf("address = %v: a nil lookupEnv must read the process environment", got)
	}
}
