package monitor

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/health-agent/health-agent/pkg/breakers"
)

// renderCache keeps what a snapshot's JSON is assembled from between snapshots, so that a new snapshot
// encodes only what changed. It belongs to the Monitor and is guarded by Monitor.mu.
type renderCache struct {
	breakers map[string]*renderedBreaker

	container []byte   // data.container of the running config; nil after a reload
	byName    []int    // indices of the checks sorted by name (encoding/json's order of map keys)
	names     []string // the names byName was computed for
}

// renderedBreaker is one breaker's member of the circuit-breakers document, and the stats it shows.
type renderedBreaker struct {
	key     breakerKey
	probes  []string
	frag    []byte                           // `"name":{…}`
	history renderedList[breakers.Execution] // where frag has the history's entries
}

// breakerKey is everything of breakers.Stats the rendered member shows, but the history, which only
// ever grows at its end: its length and last entry tell whether it changed.
type breakerKey struct {
	state                    string
	retryDue                 bool
	failureRate, successRate float64
	executions               uint
	failures, successes      uint
	remainingMs              int64
	lastStateChange          time.Time
	transitions              uint64
	historyLen               int
	lastAt                   time.Time
	lastOutcome              string
}

func keyOf(b *breakers.Stats) breakerKey {
	k := breakerKey{
		state: b.State, retryDue: b.RetryDue, failureRate: b.FailureRate, successRate: b.SuccessRate,
		executions: b.Executions, failures: b.Failures, successes: b.Successes,
		remainingMs: b.RemainingDelay.Milliseconds(), lastStateChange: b.LastStateChange,
		transitions: b.Transitions, historyLen: len(b.History),
	}
	if n := len(b.History); n > 0 {
		k.lastAt, k.lastOutcome = b.History[n-1].At, b.History[n-1].Outcome
	}
	return k
}

// breaker returns b's member of the circuit-breakers document, rendering it only when b changed.
func (r *renderCache) breaker(b *breakers.Stats) ([]byte, error) {
	if r.breakers == nil {
		r.breakers = map[string]*renderedBreaker{}
	}
	k := keyOf(b)
	rb := r.breakers[b.Name]
	if rb != nil && rb.key == k && slices.Equal(rb.probes, b.Probes) {
		return rb.frag, nil
	}
	if rb == nil {
		rb = &renderedBreaker{}
	}
	frag, history, err := breakerMember(b, rb)
	if err != nil {
		return nil, fmt.Errorf("breaker %q: %w", b.Name, err)
	}
	r.breakers[b.Name] = rb
	if !slices.Equal(rb.probes, b.Probes) {
		rb.probes = slices.Clone(b.Probes)
	}
	rb.key, rb.frag, rb.history = k, frag, history
	return frag, nil
}

// breakerMember renders b as a member of the circuit-breakers document, `"name":{…}`: byte for byte
// what json.Marshal makes of toBreakerJSON(*b), the reference renderer in render_test.go. Like
// serviceJSON, it appends to one buffer sized after prev, and copies the history entries prev already
// rendered.
func breakerMember(b *breakers.Stats, prev *renderedBreaker) ([]byte, renderedList[breakers.Execution], error) {
	var history renderedList[breakers.Execution]
	size := len(prev.frag)
	if size == 0 {
		size = 384 + 128*len(b.History)
	}
	out := make([]byte, 0, size+64)
	out = append(appendString(out, b.Name), `:{"state":`...)
	out = appendString(out, b.State)
	out = append(out, `,"retryDue":`...)
	out = strconv.AppendBool(out, b.RetryDue)
	out = append(out, `,"failureRate":`...)
	out, err := appendFloat(out, b.FailureRate, 64)
	if err != nil {
		return nil, history, err
	}
	out = append(out, `,"successRate":`...)
	if out, err = appendFloat(out, b.SuccessRate, 64); err != nil {
		return nil, history, err
	}
	out = append(out, `,"executions":`...)
	out = strconv.AppendUint(out, uint64(b.Executions), 10)
	out = append(out, `,"failures":`...)
	out = strconv.AppendUint(out, uint64(b.Failures), 10)
	out = append(out, `,"successes":`...)
	out = strconv.AppendUint(out, uint64(b.Successes), 10)
	out = append(out, `,"remainingDelayMs":`...)
	out = strconv.AppendInt(out, b.RemainingDelay.Milliseconds(), 10)
	out = append(out, `,"lastStateChange":`...)
	if b.LastStateChange.IsZero() {
		out = append(out, "null"...)
	} else if out, err = appendTime(out, b.LastStateChange); err != nil {
		return nil, history, err
	}
	out = append(out, `,"transitions":`...)
	out = strconv.AppendUint(out, b.Transitions, 10)
	out = append(out, `,"probes":`...)
	out = appendStrings(out, nonNil(b.Probes))
	out = append(out, `,"history":`...)
	// The reference (toBreakerJSON) makes the history non-nil: [] rather than null.
	if out, history, err = appendList(out, b.History, &prev.history, prev.frag, appendExecution); err != nil {
		return nil, history, err
	}
	out = append(out, '}')
	return out[:len(out):len(out)], history, nil
}

// appendExecution writes h as encoding/json writes the reference renderer's history entry for it.
func appendExecution(dst []byte, h *breakers.Execution) ([]byte, error) {
	dst = append(dst, `{"at":`...)
	dst, err := appendTime(dst, h.At)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `,"outcome":`...)
	dst = appendString(dst, h.Outcome)
	dst = append(dst, `,"durationMs":`...)
	dst = appendMs(dst, h.Duration)
	if h.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, h.Error)
	}
	if h.Source != "" {
		dst = append(dst, `,"source":`...)
		dst = appendString(dst, h.Source)
	}
	return append(dst, '}'), nil
}

// prune forgets breakers a reload removed.
func (r *renderCache) prune(current []breakers.Stats) {
	if len(r.breakers) <= len(current) {
		return
	}
	keep := make(map[string]bool, len(current))
	for _, b := range current {
		keep[b.Name] = true
	}
	maps.DeleteFunc(r.breakers, func(name string, _ *renderedBreaker) bool { return !keep[name] })
}

// sortedByName returns the indices of checks in name order, computed again only when the names change.
func (r *renderCache) sortedByName(checks []CheckView) []int {
	same := len(r.names) == len(checks)
	for i := 0; same && i < len(checks); i++ {
		same = r.names[i] == checks[i].Name
	}
	if same {
		return r.byName
	}
	r.names = make([]string, len(checks))
	r.byName = make([]int, len(checks))
	for i := range checks {
		r.names[i], r.byName[i] = checks[i].Name, i
	}
	slices.SortFunc(r.byName, func(a, b int) int { return strings.Compare(checks[a].Name, checks[b].Name) })
	r.container = nil // the probes changed: so may their dependencies
	return r.byName
}

// containerJSON is data.container, which only a reload changes.
func (r *renderCache) containerJSON(s *Snapshot) ([]byte, error) {
	if r.container != nil {
		return r.container, nil
	}
	deps := make(map[string][]string, len(s.Checks))
	for i := range s.Checks {
		deps[s.Checks[i].Name] = nonNil(s.Checks[i].DependsOn)
	}
	b, err := json.Marshal(map[string]any{
		"probes":       len(s.Checks),
		"order":        nonNil(s.Order),
		"dependencies": deps,
	})
	if err != nil {
		return nil, err
	}
	r.container = b
	return b, nil
}

// invalidate drops what a reload may have changed.
func (r *renderCache) invalidate() {
	r.container, r.names, r.byName = nil, nil, nil
}

// serviceJSON renders v as a member of detailed's services: `"name":{…}`, byte for byte what
// encoding/json makes of the map of v's fixed members and its kind's fields (sorted keys, HTML
// escaped), where a fixed member wins over a kind's field of the same name.
//
// A probe's member is rendered again at each of its executions, which makes this the cost of a running
// agent at rest: so it appends to one buffer sized after prev (the check's last rendering) instead of
// building that map, and copies the timeline's points prev already rendered.
func serviceJSON(v *CheckView, prev *renderedCheck) (renderedCheck, error) {
	size := len(prev.detail)
	if size == 0 {
		size = 512 + 64*len(v.Timeline)
	}
	keys := sortedKeys(prev.keys[:0], v.Fields)
	w := memberWriter{b: make([]byte, 0, size+64), fields: v.Fields, keys: keys}
	w.b = append(appendString(w.b, v.Name), ':')
	nameLen := len(w.b)
	w.b = append(w.b, '{')
	// The fixed members, in encoding/json's order of map keys.
	w.key("blockedBy")
	w.b = appendStringOrNull(w.b, v.BlockedBy)
	w.key("breaker")
	w.b = appendStringOrNull(w.b, v.Breaker)
	w.key("consecutiveFailures")
	w.b = strconv.AppendInt(w.b, int64(v.ConsecutiveFailures), 10)
	w.key("critical")
	w.b = strconv.AppendBool(w.b, v.Critical)
	w.key("dependsOn")
	w.b = appendStrings(w.b, nonNil(v.DependsOn))
	w.key("duration")
	w.b = appendMs(w.b, v.Duration)
	w.key("flaps")
	w.b = strconv.AppendUint(w.b, v.Flaps, 10)
	w.key("kind")
	w.b = appendString(w.b, v.Kind)
	w.key("lastAttempt")
	w.time(v.LastAttempt)
	w.key("lastChecked")
	w.time(v.LastChecked)
	w.key("lastSuccess")
	w.time(v.LastSuccess)
	w.key("lastTransition")
	w.time(v.LastTransition)
	w.key("reason")
	w.b = appendString(w.b, v.Reason)
	w.key("status")
	w.b = appendString(w.b, string(v.Status))
	w.key("timeline")
	var points renderedList[Point]
	if v.Timeline == nil {
		w.b = append(w.b, "null"...)
	} else {
		var err error
		if w.b, points, err = appendList(w.b, v.Timeline, &prev.points, prev.detail, appendPoint); err != nil {
			w.fail(err)
		}
	}
	w.key("transitions")
	w.b = strconv.AppendUint(w.b, v.Transitions, 10)
	w.rest()
	w.b = append(w.b, '}')
	if w.err != nil {
		return renderedCheck{}, fmt.Errorf("probe %q: %w", v.Name, w.err)
	}
	return renderedCheck{
		status: string(v.Status), reason: v.Reason, timeline: v.Timeline,
		detail:  w.b[:len(w.b):len(w.b)], // full: nobody's append can write into it
		nameLen: nameLen, points: points, keys: keys,
	}, nil
}

// memberWriter writes a JSON object's members in sorted order: the fixed members, named by the caller
// in order, merged with a kind's fields.
type memberWriter struct {
	b       []byte
	fields  map[string]any
	keys    []string // the fields' names not written yet, sorted
	members int
	err     error // the first error; the output is discarded
}

// sortedKeys appends m's keys to dst in encoding/json's order (strings.Compare).
func sortedKeys(dst []string, m map[string]any) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// key writes the fields that sort before name, then name's key. A field named name is dropped: the
// fixed member wins. name needs no escaping.
func (w *memberWriter) key(name string) {
	w.fieldsBefore(name, true)
	w.comma()
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

// rest writes the fields after the last fixed member.
func (w *memberWriter) rest() { w.fieldsBefore("", false) }

func (w *memberWriter) fieldsBefore(name string, bounded bool) {
	for len(w.keys) > 0 && (!bounded || w.keys[0] <= name) {
		k := w.keys[0]
		w.keys = w.keys[1:]
		if k == name {
			continue
		}
		w.comma()
		w.b = append(appendString(w.b, k), ':')
		var err error
		if w.b, err = appendAny(w.b, w.fields[k]); err != nil {
			w.fail(fmt.Errorf("field %q: %w", k, err))
		}
	}
}

func (w *memberWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *memberWriter) comma() {
	if w.members > 0 {
		w.b = append(w.b, ',')
	}
	w.members++
}

// time writes t as encoding/json does, or null when it is zero.
func (w *memberWriter) time(t time.Time) {
	if t.IsZero() {
		w.b = append(w.b, "null"...)
		return
	}
	var err error
	if w.b, err = appendTime(w.b, t); err != nil {
		w.fail(err)
	}
}

// appendPoint writes p as encoding/json writes a Point.
func appendPoint(dst []byte, p *Point) ([]byte, error) {
	dst = append(dst, `{"at":`...)
	dst, err := appendTime(dst, p.At)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `,"status":`...)
	return append(appendString(dst, string(p.Status)), '}'), nil
}

// renderedList tells where each entry of a JSON array was rendered, so that the next rendering copies
// the entries the list still has instead of encoding them again: a timeline or a breaker's history
// moves by one entry per execution. Rendering is a function of an entry's value: an equal entry's
// bytes are right wherever they were.
type renderedList[T comparable] struct {
	entries []T
	at      []int // entry i is out[at[i]:at[i+1]-1], out being what the list was rendered in
	spare   []int // the previous rendering's at, for the next one to fill
}

// appendList writes list as a JSON array of entries written by enc, copying those prev rendered in
// prevOut, and tells where it wrote them. The result takes over prev's spare: it replaces prev, or is
// dropped.
func appendList[T comparable](dst []byte, list []T, prev *renderedList[T], prevOut []byte,
	enc func([]byte, *T) ([]byte, error)) ([]byte, renderedList[T], error) {
	next := renderedList[T]{entries: list, at: prev.spare[:0], spare: prev.at}
	shift := -1 // list[i] is likely prev.entries[i+shift]: entries drop off the start
	if len(list) > 0 && len(prev.at) == len(prev.entries)+1 {
		shift = slices.Index(prev.entries, list[0])
	}
	dst = append(dst, '[')
	for i := range list {
		if i > 0 {
			dst = append(dst, ',')
		}
		next.at = append(next.at, len(dst))
		if j := shift + i; shift >= 0 && j < len(prev.entries) && prev.entries[j] == list[i] {
			dst = append(dst, prevOut[prev.at[j]:prev.at[j+1]-1]...)
			continue
		}
		var err error
		if dst, err = enc(dst, &list[i]); err != nil {
			return dst, renderedList[T]{}, err
		}
	}
	dst = append(dst, ']')
	next.at = append(next.at, len(dst))
	return dst, next, nil
}

// renderedCheck is a check's view as last rendered: the timeline and detail member are reused until
// the check changes (gen) or its shown status or reason does (a verdict gone stale).
type renderedCheck struct {
	gen      uint64
	status   string
	reason   string
	timeline []Point
	detail   []byte
	nameLen  int
	points   renderedList[Point] // where detail has timeline's points
	keys     []string            // scratch for the next rendering: the kind's field names
}

// render fills v's timeline and detail from c's cache, rendering them only when c changed.
func (c *check) render(v *CheckView) error {
	r := &c.rendered
	if r.detail != nil && r.gen == c.gen && r.status == string(v.Status) && r.reason == v.Reason {
		v.Timeline, v.detail, v.nameLen = r.timeline, r.detail, r.nameLen
		return nil
	}
	v.Timeline = r.timeline
	if r.gen != c.gen || r.timeline == nil {
		v.Timeline = c.recent()
	}
	next, err := serviceJSON(v, r)
	if err != nil {
		return err
	}
	next.gen = c.gen
	*r = next
	v.detail, v.nameLen = r.detail, r.nameLen
	return nil
}

// The appenders below write values exactly as json.Marshal does (it escapes HTML); render_test.go
// holds them to it.

// appendString writes s as encoding/json quotes a string: <, > and & escaped for HTML, U+2028 and
// U+2029 escaped for JSONP, and invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStringOrNull writes s, or null when it is empty.
func appendStringOrNull(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return appendString(dst, s)
}

// appendStrings writes ss as encoding/json writes a []string: null when nil.
func appendStrings(dst []byte, ss []string) []byte {
	if ss == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// appendMs writes ms(d), which is always finite.
func appendMs(dst []byte, d time.Duration) []byte {
	dst, _ = appendFloat(dst, ms(d), 64)
	return dst
}

// appendFloat writes f as encoding/json writes a float of that many bits: like ES6, shortest
// representation, exponent form only below 1e-6 and from 1e21. NaN and infinities are errors.
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return dst, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, bits)}
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	n0 := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, bits)
	if format == 'e' {
		// e-09 becomes e-9
		if n := len(dst); n-n0 >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendTime writes t as time.Time.MarshalJSON does: RFC 3339 with nanoseconds, an error for a year
// outside 0..9999.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	out, err := t.AppendText(append(dst, '"'))
	if err != nil {
		return dst, err // AppendText returns nil
	}
	return append(out, '"'), nil
}

// appendAny writes a kind's field value: the common scalar types directly, anything else through
// json.Marshal.
func appendAny(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, x), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case uint:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10), nil
	case float64:
		return appendFloat(dst, x, 64)
	case float32:
		return appendFloat(dst, float64(x), 32)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}
