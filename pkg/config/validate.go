package config

import (
	"cmp"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// invalidError is a config that does not validate: every problem found, each a *FieldError, in the
// order found. errors.Is(err, ErrInvalid) holds, and Flatten(err) gives the problems one by one.
type invalidError struct{ errs []error }

func (e *invalidError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

func (e *invalidError) Unwrap() []error { return e.errs }

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// validation collects the problems and warnings of one Validate.
type validation struct {
	errs     []error
	warnings []string
}

func (v *validation) fail(path, format string, args ...any) {
	v.errs = append(v.errs, Errorf(path, format, args...))
}

// Validate checks c and returns every problem at once, joined in an error that wraps ErrInvalid, each a
// FieldError naming its path and the bad value (e.g. "probes[2].timeout: must be > 0, got -1s"). It
// checks each probe's kind and options through kinds (nil skips those checks) and sets Probe.Local
// from it. A value a probe inherited from `defaults` is reported once, at `defaults`. Warnings are
// conditions that do not stop the agent (a secret not set yet), each prefixed by its path.
func (c *Config) Validate(kinds ProbeKinds) (warnings []string, err error) {
	v := &validation{}
	v.server(c.Server)
	v.scheduler(c.Scheduler)
	v.policy("defaults", c.Defaults, func(...string) bool { return true }, false)
	v.probes(c, kinds)
	v.egress(c)
	if kinds != nil {
		v.errs = append(v.errs, Flatten(c.CheckSelfTargets(kinds, c.Server.Listen))...)
	}
	_, graphErrs := c.dependencyGraph()
	v.errs = append(v.errs, graphErrs...)
	if len(v.errs) == 0 {
		return v.warnings, nil
	}
	return v.warnings, newInvalid(v.errs)
}

// newInvalid returns the problems as one error, in the order of the file's sections (server,
// scheduler, defaults, then probe by probe), keeping the order found within each.
func newInvalid(errs []error) *invalidError {
	errs = slices.Clone(errs)
	slices.SortStableFunc(errs, func(a, b error) int { return cmp.Compare(sectionRank(pathOf(a)), sectionRank(pathOf(b))) })
	return &invalidError{errs: errs}
}

// sectionRank orders a path by where it sits in a config file.
func sectionRank(path string) int {
	section, _, _ := strings.Cut(path, ".")
	if rest, ok := strings.CutPrefix(section, "probes["); ok {
		if i, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil && i >= 0 {
			return 5 + i
		}
	}
	switch section {
	case "server":
		return 1
	case "scheduler":
		return 2
	case "defaults":
		return 3
	case "probes":
		return 4
	case "egress":
		return math.MaxInt
	default: // the root, an unknown top-level key
		return 0
	}
}

func (v *validation) server(s Server) {
	if !validListen(s.Listen) {
		v.fail("server.listen", `must be host:port with a port in 0-65535, like ":3008" or "127.0.0.1:3008", got %s`, quoteShort(s.Listen))
	}
	if s.ShutdownDelay < 0 {
		v.fail("server.shutdownDelay", "must be >= 0, got %s", s.ShutdownDelay)
	}
}

func (v *validation) scheduler(s Scheduler) {
	if s.MaxConcurrentProbes < 1 {
		v.fail("scheduler.maxConcurrentProbes", "must be >= 1, got %d", s.MaxConcurrentProbes)
	}
	v.fraction("scheduler.jitter", s.Jitter)
}

func (v *validation) positive(path string, d time.Duration) {
	if d <= 0 {
		v.fail(path, "must be > 0, got %s", d)
	}
}

func (v *validation) atLeast(path string, n, min int) {
	if n < min {
		v.fail(path, "must be >= %d, got %d", min, n)
	}
}

// fraction checks f is in [0, 1); written so that NaN fails too.
func (v *validation) fraction(path string, f float64) {
	if !(f >= 0 && f < 1) {
		v.fail(path, "must be in [0, 1), got %v", f)
	}
}

// policy checks a Policy at path. own reports whether any of the keys a rule reads was set at path
// itself (not inherited): a rule is reported only where one of its inputs was written. Local probes
// have no retry, breaker or rate limit, so those are not checked for them.
func (v *validation) policy(path string, p Policy, own func(keys ...string) bool, local bool) {
	at := func(key string) string { return path + "." + key }
	if own("interval") {
		v.positive(at("interval"), p.Interval)
	}
	if own("timeout") {
		v.positive(at("timeout"), p.Timeout)
	}
	if own("failuresBeforeUnhealthy") {
		v.atLeast(at("failuresBeforeUnhealthy"), p.FailuresBeforeUnhealthy, 1)
	}
	if own("successesBeforeHealthy") {
		v.atLeast(at("successesBeforeHealthy"), p.SuccessesBeforeHealthy, 1)
	}
	if local {
		return
	}
	if own("maxRetryAfter") {
		v.positive(at("maxRetryAfter"), p.MaxRetryAfter)
	}

	r := p.Retry
	if own("retry.maxRetries") {
		v.atLeast(at("retry.maxRetries"), r.MaxRetries, 0)
	}
	if r.MaxRetries > 0 {
		if own("retry.maxRetries", "retry.backoff") && r.Backoff <= 0 {
			v.fail(at("retry.backoff"), "must be > 0 when maxRetries > 0, got %s", r.Backoff)
		}
		if own("retry.maxRetries", "retry.backoff", "retry.maxBackoff") && r.Backoff > 0 && r.MaxBackoff < r.Backoff {
			v.fail(at("retry.maxBackoff"), "must be >= backoff (%s), got %s", r.Backoff, r.MaxBackoff)
		}
	}
	if own("retry.jitter") {
		v.fraction(at("retry.jitter"), r.Jitter)
	}

	b := p.Breaker
	if own("breaker.failureThreshold") {
		v.atLeast(at("breaker.failureThreshold"), b.FailureThreshold, 1)
	}
	if own("breaker.window", "breaker.failureThreshold") && b.Window < b.FailureThreshold {
		v.fail(at("breaker.window"), "must be >= failureThreshold (%d), got %d", b.FailureThreshold, b.Window)
	}
	if own("breaker.delay") {
		v.positive(at("breaker.delay"), b.Delay)
	}
	if own("breaker.successThreshold") {
		v.atLeast(at("breaker.successThreshold"), b.SuccessThreshold, 1)
	}

	if rl := p.RateLimit; rl != nil {
		if own("rateLimit.max") {
			v.atLeast(at("rateLimit.max"), rl.Max, 1)
		}
		if own("rateLimit.per") {
			v.positive(at("rateLimit.per"), rl.Per)
		}
		// The schedule alone must fit in the limit, or executions are turned away every period. Retries
		// take permits too; they are not counted, as they only come with failures.
		if own("interval", "rateLimit.max", "rateLimit.per") && rl.Max >= 1 && rl.Per > 0 && p.Interval > 0 {
			if need := (rl.Per + p.Interval - 1) / p.Interval; int64(rl.Max) < int64(need) {
				v.fail(at("rateLimit.max"), "allows %d executions per %s, but interval %s schedules %d per %s: "+
					"raise max to at least %d, or lengthen per or the interval", rl.Max, rl.Per, p.Interval, need, rl.Per, need)
			}
		}
	}
}

// owns reports whether p set any of keys itself rather than inheriting it from `defaults`.
func (p *Probe) owns(keys ...string) bool {
	for _, k := range keys {
		if !inheritedKey(p.inherited, k) {
			return true
		}
	}
	return false
}

func (v *validation) probes(c *Config, kinds ProbeKinds) {
	if len(c.Probes) == 0 {
		v.fail("probes", "at least one probe is required")
	}
	firstByName := map[string]int{}
	legacy := -1
	for i := range c.Probes {
		p := &c.Probes[i]
		path := fmt.Sprintf("probes[%d]", i)
		v.name(path+".name", p.Name)
		if j, dup := firstByName[p.Name]; dup && p.Name != "" {
			v.fail(path+".name", "duplicate name %q: probes[%d] already has it", p.Name, j)
		} else if !dup {
			firstByName[p.Name] = i
		}

		v.kind(path, p, kinds)
		v.literalCredentialHeaders(path, p)
		v.policy(path, p.Policy, p.owns, p.Local)
		if p.Local {
			v.ignoredPolicies(path, p, c.Defaults)
		}

		if p.BreakerName != "" {
			switch {
			case p.Local:
				v.fail(path+".breaker", "kind %s checks the agent itself and has no breaker, got breaker %q", p.Kind, p.BreakerName)
			case !validName(p.BreakerName):
				v.fail(path+".breaker", "a breaker name must match [a-zA-Z0-9_-]+, got %s", quoteShort(p.BreakerName))
			}
		}

		if p.Legacy {
			if p.Kind != "http" {
				v.fail(path+".legacy", "only an http probe can be legacy, got kind %q", p.Kind)
			}
			if legacy >= 0 {
				v.fail(path+".legacy", "only one probe can be legacy, and probes[%d] (%s) already is", legacy, c.Probes[legacy].Name)
			} else {
				legacy = i
			}
		}
	}
	v.sharedBreakers(c.Probes)
}

// kind checks p's kind and options through kinds and records whether the kind is local.
func (v *validation) kind(path string, p *Probe, kinds ProbeKinds) {
	if p.Kind == "" {
		v.fail(path+".kind", "is required")
		return
	}
	if kinds == nil {
		return
	}
	local, warnings, err := kinds.CheckProbe(p)
	p.Local = local
	for _, w := range warnings {
		v.warnings = append(v.warnings, prefixWarning(path, p, w))
	}
	v.errs = append(v.errs, Flatten(Prefix(path, err))...)
}

// prefixWarning puts path before a kind's warning. A warning about one of the probe's options
// ("tokenEnv: …", "headers[X-Api-Key]: …") gets the option's path, as errors do; any other warning
// becomes "probes[3]: …".
func prefixWarning(path string, p *Probe, w string) string {
	if key, _, ok := strings.Cut(w, ": "); ok && key != "" && !strings.ContainsAny(key, " \t") {
		option := key
		if i := strings.IndexAny(key, ".["); i >= 0 {
			option = key[:i]
		}
		for k := range p.Options {
			if strings.EqualFold(k, option) {
				return path + "." + w
			}
		}
	}
	return path + ": " + w
}

// ignoredPolicies warns about retry, breaker or rate-limit settings on a local probe: they have no effect.
func (v *validation) ignoredPolicies(path string, p *Probe, defaults Policy) {
	const why = "ignored: kind %s checks the agent itself and has no retry, breaker or rate limit"
	if p.Retry != defaults.Retry {
		v.warnings = append(v.warnings, fmt.Sprintf(path+".retry: "+why, p.Kind))
	}
	if p.Policy.Breaker != defaults.Breaker {
		v.warnings = append(v.warnings, fmt.Sprintf(path+".breaker: "+why, p.Kind))
	}
	if p.RateLimit != nil && (defaults.RateLimit == nil || *p.RateLimit != *defaults.RateLimit) {
		v.warnings = append(v.warnings, fmt.Sprintf(path+".rateLimit: "+why, p.Kind))
	}
}

// sharedBreakers checks that the probes sharing a breaker agree on its policy: a breaker has one.
func (v *validation) sharedBreakers(probes []Probe) {
	first := map[string]int{}
	for i := range probes {
		p := &probes[i]
		name := p.Breaker()
		if p.Local || name == "" {
			continue
		}
		j, ok := first[name]
		if !ok {
			first[name] = i
			continue
		}
		q := &probes[j]
		if diff := breakerDiff(p.Policy.Breaker, q.Policy.Breaker); diff != "" {
			v.fail(fmt.Sprintf("probes[%d].breaker", i),
				"probes[%d] (%s) and probes[%d] (%s) share breaker %q, so their breaker policies must be the same, got %s",
				j, q.Name, i, p.Name, name, diff)
		}
	}
}

// breakerDiff lists the fields in which a differs from b ("window 10 vs 5"), or "" when equal.
func breakerDiff(a, b BreakerPolicy) string {
	var d []string
	if a.FailureThreshold != b.FailureThreshold {
		d = append(d, fmt.Sprintf("failureThreshold %d vs %d", a.FailureThreshold, b.FailureThreshold))
	}
	if a.Window != b.Window {
		d = append(d, fmt.Sprintf("window %d vs %d", a.Window, b.Window))
	}
	if a.Delay != b.Delay {
		d = append(d, fmt.Sprintf("delay %s vs %s", a.Delay, b.Delay))
	}
	if a.SuccessThreshold != b.SuccessThreshold {
		d = append(d, fmt.Sprintf("successThreshold %d vs %d", a.SuccessThreshold, b.SuccessThreshold))
	}
	return strings.Join(d, ", ")
}

// name checks a probe's or a route's name: set, and [a-zA-Z0-9_-]+. It reports whether it is.
func (v *validation) name(path, name string) bool {
	switch {
	case name == "":
		v.fail(path, "is required")
	case !validName(name):
		v.fail(path, "must match [a-zA-Z0-9_-]+, got %s", quoteShort(name))
	default:
		return true
	}
	return false
}

// validName reports whether s matches [a-zA-Z0-9_-]+ (probe and breaker names: they become metric
// labels, JSON keys and URL path segments).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validListen reports whether s is host:port with a numeric port; the host may be empty (all
// interfaces), an IP address or a host name.
func validListen(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" || len(port) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
		n = n*10 + int(port[i]-'0')
	}
	if n > 65535 {
		return false
	}
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return validHostname(host)
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}
