package footprint

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"syscall"
	"testing"
)

// Written before Release and read after it: they live in the test binary's writable data mapping,
// which Release must never advise (MADV_DONTNEED there would bring back the values in the file).
var (
	dataWord  = 7
	dataBytes = []byte("initial")
)

const madvPopulateRead = 22 // Linux 5.14+: fault the pages in, as if read

// populate maps in every page of the test binary that Release may advise, so that what it drops
// does not depend on what this process happened to run before (-count=3 runs Release again).
func populate(t *testing.T) bool {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := parseMappings(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range releasable(ms, exe) {
		if err := madvise(m.start, m.end-m.start, madvPopulateRead); err != nil {
			if errors.Is(err, syscall.EINVAL) {
				return false // a kernel before 5.14
			}
			t.Fatalf("MADV_POPULATE_READ: %v", err)
		}
	}
	return true
}

// work runs code from several packages and checks its results: the process works after Release.
func work(t *testing.T) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"status": "healthy", "probes": []int{1, 2, 3}})
	if err != nil || string(b) != `{"probes":[1,2,3],"status":"healthy"}` {
		t.Errorf("json.Marshal = %s, %v", b, err)
	}
	if m := regexp.MustCompile(`^(\w+)-(\d+)$`).FindStringSubmatch("probe-42"); !slices.Equal(m, []string{"probe-42", "probe", "42"}) {
		t.Errorf("regexp submatch = %q", m)
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	_, _ = w.Write(bytes.Repeat([]byte("health-agent "), 1000))
	_ = w.Close()
	r, err := gzip.NewReader(&z)
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil || len(out) != 13000 {
		t.Errorf("gzip round trip: %d bytes, %v", len(out), err)
	}
}

func TestRelease(t *testing.T) {
	work(t)
	dataWord = 42
	dataBytes[0] = 'X'
	populated := populate(t)

	rep, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)

	if dataWord != 42 || string(dataBytes) != "Xnitial" {
		t.Fatalf("writable data lost: %d, %q", dataWord, dataBytes)
	}
	work(t)
	if rep.Mappings == 0 || rep.AdvisedBytes <= 0 || !slices.Contains(rep.Advice, DontNeed) {
		t.Fatalf("nothing advised: %+v", rep)
	}
	if rep.Before.FileBytes <= 0 || rep.Before.AnonBytes <= 0 || rep.After.FileBytes <= 0 || rep.After.AnonBytes <= 0 {
		t.Errorf("usage not read: %+v", rep)
	}
	drop := rep.Before.FileBytes - rep.After.FileBytes
	if drop <= 0 {
		t.Fatalf("RssFile %d -> %d bytes: no drop", rep.Before.FileBytes, rep.After.FileBytes)
	}
	if !populated {
		t.Logf("no MADV_POPULATE_READ (kernel before 5.14): only the drop is checked")
		return
	}
	// Every advised page was resident. Some come back before After is read: those the process (test
	// runner, runtime, race detector) touches again, each with its neighbours still in the page cache
	// (fault-around): about half of the resident bytes stay out here.
	if rep.ResidentBytes < rep.AdvisedBytes/2 {
		t.Errorf("%d of %d advised bytes resident after MADV_POPULATE_READ", rep.ResidentBytes, rep.AdvisedBytes)
	}
	if drop < rep.ResidentBytes/4 {
		t.Errorf("RssFile fell by %d bytes; %d of the executable's were resident", drop, rep.ResidentBytes)
	}
}

// TestAdviseFallsBack drives the advice sequence with a stand-in for madvise(2): a kernel before 5.4
// (EINVAL for MADV_COLD) still gets MADV_DONTNEED on every mapping and no error; an error on one
// mapping is reported and the others are still advised. MADV_PAGEOUT is never given.
func TestAdviseFallsBack(t *testing.T) {
	const madvPageOut = 21
	targets := []mapping{
		{start: 0x1000, end: 0x5000, perms: "r--p", rssKiB: 8},
		{start: 0x9000, end: 0xa000, perms: "r-xp", rssKiB: 4},
	}
	tests := []struct {
		name         string
		fail         func(addr uint64, advice uintptr) error
		wantAdvice   []Advice
		wantMappings int
		wantErr      string
	}{
		{"kernel 5.4+", func(uint64, uintptr) error { return nil }, []Advice{Cold, DontNeed}, 2, ""},
		{"kernel before 5.4", func(_ uint64, a uintptr) error {
			if a == madvCold {
				return syscall.EINVAL
			}
			return nil
		}, []Advice{DontNeed}, 2, ""},
		{"DONTNEED refused on one mapping", func(addr uint64, a uintptr) error {
			if a == syscall.MADV_DONTNEED && addr == 0x1000 {
				return syscall.EPERM
			}
			return nil
		}, []Advice{Cold, DontNeed}, 1, "footprint: MADV_DONTNEED on r--p 1000-5000: operation not permitted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []uintptr
			var rep Report
			errs := advise(&rep, targets, func(addr, length uint64, advice uintptr) error {
				calls = append(calls, advice)
				return tt.fail(addr, advice)
			})
			if !slices.Equal(rep.Advice, tt.wantAdvice) || rep.Mappings != tt.wantMappings {
				t.Errorf("advice %v, %d mappings; want %v, %d", rep.Advice, rep.Mappings, tt.wantAdvice, tt.wantMappings)
			}
			if err := errors.Join(errs...); (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if n := slices.Index(calls, syscall.MADV_DONTNEED); n < 0 || len(calls)-n != len(targets) {
				t.Errorf("madvise calls %v: want MADV_DONTNEED last, once per mapping", calls)
			}
			if slices.Contains(calls, madvPageOut) {
				t.Errorf("madvise calls %v: MADV_PAGEOUT given", calls)
			}
		})
	}
}
