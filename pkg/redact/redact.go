// Package redact makes text that came from a dependency safe to keep and show: it hides secrets, even
// in pieces, cuts text to a bounded size on a rune boundary, and replaces control characters.
package redact

import (
	"encoding/binary"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Mask replaces a secret in text shown to people.
const Mask = "[redacted]"

// MinRun is the shortest piece of a secret that is hidden wherever it occurs: a dependency that echoes
// half a token, or a message cut through one, must not show the rest. Secrets shorter than this are
// hidden only where they occur whole.
const MinRun = 8

// MaxText is the size to which a dependency's text (an error, a reason, a name) is cut before it is
// kept, logged or served.
const MaxText = 512

// Clip cuts s to at most n bytes on a rune boundary, marking the cut with "…" (counted in n when n
// leaves room for it).
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	if n > len(ellipsis) {
		n -= len(ellipsis)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + ellipsis
}

// Printable replaces every control character but tab (C0, DEL and C1) with a space, so that text from a
// dependency cannot break a line of a text endpoint or a log, or drive a terminal. Invalid UTF-8 becomes
// U+FFFD.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r != '\t' && unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r != '\t' && unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// Text returns s with every secret hidden: a secret of MinRun bytes or more wherever any MinRun-byte
// piece of it occurs (the whole run of such pieces is masked), a shorter one where it occurs whole.
func Text(s string, secrets []string) string {
	if s == "" || len(secrets) == 0 {
		return s
	}
	var marks []bool // byte i of s is part of a secret
	mark := func(from, to int) {
		if marks == nil {
			marks = make([]bool, len(s))
		}
		for i := from; i < to; i++ {
			marks[i] = true
		}
	}
	for _, sec := range secrets {
		switch {
		case sec == "":
		case len(sec) < MinRun:
			for i := 0; ; {
				j := strings.Index(s[i:], sec)
				if j < 0 {
					break
				}
				mark(i+j, i+j+len(sec))
				i += j + len(sec)
			}
		case len(s) >= MinRun:
			grams := make(map[uint64]struct{}, len(sec)-MinRun+1)
			for i := 0; i+MinRun <= len(sec); i++ {
				grams[binary.LittleEndian.Uint64([]byte(sec[i:i+MinRun]))] = struct{}{}
			}
			for i := 0; i+MinRun <= len(s); i++ {
				if _, ok := grams[binary.LittleEndian.Uint64([]byte(s[i:i+MinRun]))]; ok {
					mark(i, i+MinRun)
				}
			}
		}
	}
	if marks == nil {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !marks[i] {
			b.WriteByte(s[i])
			i++
			continue
		}
		for i < len(s) && marks[i] {
			i++
		}
		b.WriteString(Mask)
	}
	return b.String()
}

// Shown is a dependency's text as it may be kept and shown: secrets hidden, then cut to n bytes.
// Hiding comes first, so that a cut through a secret leaves no piece of it.
func Shown(s string, secrets []string, n int) string {
	return Clip(Text(s, secrets), n)
}

// maxSecrets bounds the values a Secrets set remembers: rotations add values, and the oldest are
// forgotten first.
const maxSecrets = 64

// Secrets is the set of secret values the agent has resolved (tokens, header values, passwords), so
// that text from any dependency can be cleaned of all of them. Safe for concurrent use; the zero value
// is an empty set, and a nil *Secrets holds nothing.
type Secrets struct {
	mu     sync.RWMutex
	values []string
}

// Add remembers values (empty ones are ignored).
func (s *Secrets) Add(values ...string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if v == "" || contains(s.values, v) {
			continue
		}
		if len(s.values) == maxSecrets {
			s.values = append(s.values[:0:0], s.values[1:]...)
		}
		s.values = append(s.values, v)
	}
}

// List returns the remembered values; the caller must not modify them.
func (s *Secrets) List() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.values[:len(s.values):len(s.values)]
}

// Text is Text(str, the set's values plus extra).
func (s *Secrets) Text(str string, extra ...string) string {
	list := s.List()
	if len(extra) > 0 {
		list = append(append(make([]string, 0, len(list)+len(extra)), list...), extra...)
	}
	return Text(str, list)
}

func contains(list []string, v string) bool {
	for _, e := range list {
		if e == v {
			return true
		}
	}
	return false
}
