package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxExpandDepth bounds ${A:-${B:-…}} nesting, so a hostile value cannot exhaust the stack.
const maxExpandDepth = 8

// expander expands environment references in the scalar values of a parsed YAML document. It works on
// values only, never on keys, and never re-parses an expanded value as YAML: a variable can change a
// value but cannot add structure to the config.
type expander struct {
	lookup   func(string) (string, bool)
	warnings []string
	errs     []error
	// templated holds the paths of the scalars that held a reference (their value came from outside).
	templated map[string]bool
}

func newExpander(lookup func(string) (string, bool)) *expander {
	return &expander{lookup: lookup, templated: map[string]bool{}}
}

// node expands every scalar value under n; path is n's field path.
func (e *expander) node(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			e.node(c, path)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			e.node(c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			e.node(n.Content[i+1], joinPath(path, n.Content[i].Value))
		}
	case yaml.ScalarNode:
		e.scalar(n, path)
	case yaml.AliasNode:
		// Its anchor is expanded where it is defined; expanding here too would do it twice.
	}
}

func (e *expander) scalar(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "$") {
		return
	}
	out, ws, err := expandString(n.Value, path, e.lookup)
	e.warnings = append(e.warnings, ws...)
	if err != nil {
		e.errs = append(e.errs, Flatten(err)...)
		return
	}
	if strings.Contains(n.Value, "${") {
		e.templated[path] = true
	}
	if out == n.Value {
		return
	}
	n.Value = out
	const quoted = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if n.Style&(quoted|yaml.TaggedStyle) != 0 {
		return // quoted or explicitly tagged: the author chose the type
	}
	if out == "" {
		n.Tag = "!!str" // an empty expansion is an empty string, not null
		return
	}
	// A plain scalar's type comes from its text, as if the value had been written there:
	// "${PORT:-8080}" decodes as the integer 8080. Only the type is re-resolved, never the structure.
	n.Tag = ""
}

// expandString expands ${VAR}, ${VAR:-default}, ${VAR:?message} and $$ in s. path names the field in
// errors and warnings.
func expandString(s, path string, lookup func(string) (string, bool)) (string, []string, error) {
	p := &templateParser{s: s}
	segs, err := p.parse(0, false)
	if err != nil {
		return "", nil, &FieldError{Path: path, Msg: err.Error()}
	}
	ev := &evaluator{path: path, lookup: lookup}
	out := ev.eval(segs)
	return out, ev.warnings, errors.Join(ev.errs...)
}

// segment is literal text or, when ref is set, a variable reference.
type segment struct {
	lit string
	ref *varRef
}

type varRef struct {
	name string
	op   byte      // 0 for ${VAR}, '-' for ${VAR:-word}, '?' for ${VAR:?word}
	word []segment // the default or the message, itself expanded
}

type templateParser struct {
	s string
	i int
}

// parse reads segments up to the end of s or, inWord, up to the '}' that closes the enclosing
// reference (which it leaves for the caller).
func (p *templateParser) parse(depth int, inWord bool) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for p.i < len(p.s) {
		c := p.s[p.i]
		next := byte(0)
		if p.i+1 < len(p.s) {
			next = p.s[p.i+1]
		}
		switch {
		case inWord && c == '}':
			flush()
			return segs, nil
		case c == '$' && next == '$':
			lit.WriteByte('$')
			p.i += 2
		case c == '$' && next == '{':
			flush()
			start := p.i
			p.i += 2
			ref, err := p.ref(depth+1, start)
			if err != nil {
				return nil, err
			}
			segs = append(segs, segment{ref: ref})
		default:
			lit.WriteByte(c)
			p.i++
		}
	}
	if inWord {
		return nil, fmt.Errorf("unclosed \"${\" in %s", quoteShort(p.s))
	}
	flush()
	return segs, nil
}

// ref reads a reference whose "${" started at start and has been consumed.
func (p *templateParser) ref(depth, start int) (*varRef, error) {
	if depth > maxExpandDepth {
		return nil, fmt.Errorf("references nested deeper than %d in %s", maxExpandDepth, quoteShort(p.s))
	}
	end := strings.IndexAny(p.s[p.i:], ":}")
	if end < 0 {
		return nil, fmt.Errorf("unclosed \"${\" at offset %d in %s", start, quoteShort(p.s))
	}
	name := p.s[p.i : p.i+end]
	if !validVarName(name) {
		return nil, fmt.Errorf("invalid variable name %s in %s (use ${NAME}, ${NAME:-default}, ${NAME:?message}, or $$ for a literal $)",
			quoteShort(name), quoteShort(p.s))
	}
	p.i += end
	r := &varRef{name: name}
	if p.s[p.i] == '}' {
		p.i++
		return r, nil
	}
	if p.i+1 >= len(p.s) || (p.s[p.i+1] != '-' && p.s[p.i+1] != '?') {
		return nil, fmt.Errorf("expected \":-\" or \":?\" after \"${%s:\" in %s", name, quoteShort(p.s))
	}
	r.op = p.s[p.i+1]
	p.i += 2
	word, err := p.parse(depth, true)
	if err != nil {
		return nil, err
	}
	p.i++ // the closing '}'
	r.word = word
	return r, nil
}

// evaluator resolves parsed segments against the environment. A default or message is only expanded
// when it is used, so a reference inside an unused default neither warns nor fails.
type evaluator struct {
	path     string
	lookup   func(string) (string, bool)
	warnings []string
	errs     []error
}

func (ev *evaluator) eval(segs []segment) string {
	var b strings.Builder
	for _, s := range segs {
		if s.ref == nil {
			b.WriteString(s.lit)
			continue
		}
		r := s.ref
		val, ok := ev.lookup(r.name)
		switch r.op {
		case '-':
			if !ok || val == "" {
				val = ev.eval(r.word)
			}
		case '?':
			if !ok || val == "" {
				msg := ev.eval(r.word)
				if msg == "" {
					msg = "set it to a non-empty value"
				}
				ev.errs = append(ev.errs, Errorf(ev.path, "environment variable %s is required: %s", r.name, msg))
			}
		default:
			if !ok {
				ev.warnings = append(ev.warnings,
					fmt.Sprintf("%s: environment variable %s is not set; using an empty value", ev.path, r.name))
			}
		}
		b.WriteString(val)
	}
	return b.String()
}

// validVarName reports whether s is a POSIX-style environment variable name.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// quoteShort quotes s for a message, cut to a readable length.
func quoteShort(s string) string {
	const limit = 80
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "…"
	}
	return strconv.Quote(s)
}

// joinPath appends key to a field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
