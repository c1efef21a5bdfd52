// Package footprint gives back to the kernel the memory that only the agent's start-up needed.
//
// Most of an idle agent's resident memory is not its heap but its own executable: the kernel maps the
// pages of the binary in as they are first touched, and start-up touches far more of them than the
// steady state does (package initialisation, config decoding and validation, building every probe,
// the first round of checks), and reads ahead around each fault besides. Those pages stay resident,
// and counted in the process's RSS (as RssFile), until memory pressure evicts them. Release hands
// them back once: they are clean copies of the file, so nothing is lost, and a page the agent needs
// again faults back in from the page cache or the disk.
package footprint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Advice names a madvise(2) advice Release gives.
type Advice string

// Release gives two pieces of advice, in this order, each over the same clean read-only mappings.
// Neither takes a page from another process: Cold skips a page that another process also maps, and
// DontNeed unmaps from this process only, so agents on the same node running the same image file keep
// theirs.
//
// MADV_PAGEOUT is deliberately not given. Where the kernel honours it (the process owns or may write its
// binary, e.g. root) it evicts the pages from the page cache, and the pages the steady state then faults
// back in are read again and activated as a refault: the working set the kubelet reports (usage less
// inactive file) rose from 6 to 19 MiB with the default config, while the cgroup's usage did not fall
// (the binary is in the page cache from readahead at exec anyway). bench/scripts/cgroup-release.sh
// measures this.
const (
	// Cold (MADV_COLD, Linux 5.4+) moves the pages to the inactive list, whose pages are reclaimed
	// first and are not in the working set the kubelet reports.
	Cold Advice = "MADV_COLD"
	// DontNeed (MADV_DONTNEED) unmaps the pages, for any process on any kernel: RSS drops. They stay in
	// the page cache until reclaimed; a page that is needed again is mapped back from there, without a
	// read and without being activated.
	DontNeed Advice = "MADV_DONTNEED"
)

// Usage is a process's resident memory, from /proc/self/status.
type Usage struct {
	AnonBytes int64 // RssAnon: private memory (heap, stacks)
	FileBytes int64 // RssFile: file pages mapped in, mostly the executable's own
}

// Report says what Release did.
type Report struct {
	Before, After Usage
	Mappings      int      // read-only mappings of the executable advised
	AdvisedBytes  int64    // their size
	ResidentBytes int64    // how much of them was resident before
	Advice        []Advice // the advice the kernel took, in order
}

// ErrUnsupported is Release's error where the kernel has no such interface (anything but Linux).
var ErrUnsupported = errors.New("footprint: releasing start-up pages is supported on Linux only")

// mapping is one line of /proc/self/maps, with what /proc/self/smaps adds that Release needs.
type mapping struct {
	start, end uint64
	perms      string // e.g. "r-xp"
	path       string // "" for an anonymous mapping; may hold spaces and end in " (deleted)"
	rssKiB     int64  // smaps Rss; 0 when read from maps
	anonKiB    int64  // smaps Anonymous: pages copied on write; -1 when unknown (read from maps)
}

// releasable returns the mappings of the executable exe whose pages are all clean copies of the file:
// not writable, and (from smaps) without a single page copied on write. A writable private mapping
// holds the program's data; a read-only one with anonymous pages holds relocations written at load
// time (RELRO of a position-independent build): dropping either would lose data, so neither is taken,
// nor is a mapping whose smaps were not read.
func releasable(ms []mapping, exe string) []mapping {
	var out []mapping
	for _, m := range ms {
		if exe != "" && m.path == exe && m.perms[1] != 'w' && m.anonKiB == 0 {
			out = append(out, m)
		}
	}
	return out
}

// parseMappings reads /proc/<pid>/maps or /proc/<pid>/smaps. Anything it does not understand is an
// error: Release advises nothing it has not read right.
func parseMappings(r io.Reader) ([]mapping, error) {
	var ms []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		first, _, _ := strings.Cut(line, " ")
		if strings.HasSuffix(first, ":") { // an smaps field of the mapping above
			if len(ms) == 0 {
				return nil, fmt.Errorf("line %d: %q before any mapping", n, first)
			}
			if err := ms[len(ms)-1].setField(line); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			continue
		}
		m, err := parseMapping(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, errors.New("no mappings")
	}
	return ms, nil
}

// parseMapping reads "start-end perms offset dev inode [path]".
func parseMapping(line string) (mapping, error) {
	rest := line
	var f [5]string
	for i := range f {
		rest = strings.TrimLeft(rest, " ")
		f[i], rest, _ = strings.Cut(rest, " ")
		if f[i] == "" {
			return mapping{}, fmt.Errorf("malformed mapping %q", line)
		}
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if !ok || err1 != nil || err2 != nil || start >= end {
		return mapping{}, fmt.Errorf("bad address range %q", f[0])
	}
	p := f[1]
	if len(p) != 4 || !strings.ContainsRune("r-", rune(p[0])) || !strings.ContainsRune("w-", rune(p[1])) ||
		!strings.ContainsRune("x-", rune(p[2])) || !strings.ContainsRune("ps", rune(p[3])) {
		return mapping{}, fmt.Errorf("bad permissions %q", p)
	}
	if _, err := strconv.ParseUint(f[2], 16, 64); err != nil {
		return mapping{}, fmt.Errorf("bad offset %q", f[2])
	}
	if _, _, ok := strings.Cut(f[3], ":"); !ok {
		return mapping{}, fmt.Errorf("bad device %q", f[3])
	}
	if _, err := strconv.ParseUint(f[4], 10, 64); err != nil {
		return mapping{}, fmt.Errorf("bad inode %q", f[4])
	}
	return mapping{start: start, end: end, perms: p, path: strings.TrimLeft(rest, " "), anonKiB: -1}, nil
}

// setField records the smaps fields Release uses; it checks that the others are "Name: value…".
func (m *mapping) setField(line string) error {
	key, val, _ := strings.Cut(line, ":")
	fs := strings.Fields(val)
	switch key {
	case "Rss", "Anonymous":
		if len(fs) != 2 || fs[1] != "kB" {
			return fmt.Errorf("malformed %s: %q", key, line)
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("malformed %s: %q", key, line)
		}
		if key == "Rss" {
			m.rssKiB = n
		} else {
			m.anonKiB = n
		}
	}
	return nil
}

// parseStatus reads RssAnon and RssFile from /proc/<pid>/status.
func parseStatus(r io.Reader) (Usage, error) {
	var u Usage
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "RssAnon" && key != "RssFile") {
			continue
		}
		fs := strings.Fields(val)
		if len(fs) != 2 || fs[1] != "kB" {
			return Usage{}, fmt.Errorf("malformed %s: %q", key, val)
		}
		n, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil || n < 0 {
			return Usage{}, fmt.Errorf("malformed %s: %q", key, val)
		}
		if key == "RssAnon" {
			u.AnonBytes = n << 10
		} else {
			u.FileBytes = n << 10
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		return Usage{}, err
	}
	if seen != 2 {
		return Usage{}, errors.New("RssAnon or RssFile missing")
	}
	return u, nil
}
