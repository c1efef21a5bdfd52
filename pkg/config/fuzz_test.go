package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/health-agent/health-agent/configs"
)

func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"", "plain", "$", "$$", "$$$", "${", "${}", "${A", "${A}", "${A:-}", "${A:-b}", "${A:?m}", "${A:?}",
		"${A:-${B:-${C}}}", "${A:-${B}", "a$b${c}$$d", "${A:=x}", "${A:", "}{$", "${" + strings.Repeat("A", 300) + "}",
		strings.Repeat("${A:-", 12) + strings.Repeat("}", 12),
	} {
		f.Add(s)
	}
	env := envOf(map[string]string{"A": "a", "B": "", "C": "${A}"})
	f.Fuzz(func(t *testing.T, s string) {
		out, _, err := expandString(s, "p", env)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Path != "p" {
				t.Fatalf("error %v is not a FieldError at p", err)
			}
			return
		}
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("%q without a $ expanded to %q", s, out)
		}
	})
}

func FuzzLoad(f *testing.F) {
	f.Add(string(configs.Default))
	for _, s := range []string{
		"",
		"probes: [{name: a, kind: tcp}]",
		"probes:\n  - name: a\n    kind: tcp\n    breaker: {name: x, window: 2}\n    dependsOn: [a]\n",
		"server: {listen: '${PORT:-:1}'}\nprobes: [{name: a, kind: http, url: \"${U:?}\"}]",
		"a: &x [*x]",
		"probes:\n  - &p {name: a, kind: tcp}\n  - <<: *p\n    name: b\n",
		"defaults: {interval: 10 seconds}\nprobes: [{name: a, kind: tcp}, {name: b, kind: tcp, dependsOn: [a, b, c]}]",
		"- 1\n- 2",
		"1: 2\nprobes: [{1: 2}]",
		"probes: [null, 5, {name: a}]",
		"{{",
		"---\n---\n",
	} {
		f.Add(s)
	}
	kinds := fakeKinds{}
	env := envOf(map[string]string{"PORT": ":9"})
	f.Fuzz(func(t *testing.T, s string) {
		l, err := Load("fuzz", []byte(s), kinds, env)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if len(l.Config.Probes) == 0 {
			t.Fatal("a config without probes loaded")
		}
		if _, err := l.Config.Order(); err != nil {
			t.Fatalf("a loaded config has no order: %v", err)
		}
	})
}
