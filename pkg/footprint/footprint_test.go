package footprint

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// A static build's /proc/self/maps: no smaps fields, so nothing is known to be clean.
const staticMaps = `00400000-00a5f000 r-xp 00000000 fe:00 1234                               /agent
00a5f000-0120c000 r--p 0065f000 fe:00 1234                               /agent
0120c000-0125a000 rw-p 00e0c000 fe:00 1234                               /agent
0125a000-012a1000 rw-p 00000000 00:00 0
c000000000-c000400000 rw-p 00000000 00:00 0
7ffd5c3a2000-7ffd5c3c3000 rw-p 00000000 00:00 0                          [stack]
7ffd5c3f6000-7ffd5c3f8000 r-xp 00000000 00:00 0                          [vdso]
`

// smaps of the agent after its file was replaced (an upgrade in place): the path ends in " (deleted)",
// as readlink /proc/self/exe says too. A private mapping shared with nobody.
const deletedSmaps = `00400000-00a5f000 r-xp 00000000 fe:00 1234                               /agent (deleted)
Rss:                9600 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
00a5f000-0120c000 r--p 0065f000 fe:00 1234                               /agent (deleted)
Rss:                8300 kB
Anonymous:             0 kB
0120c000-0125a000 rw-p 00e0c000 fe:00 1234                               /agent (deleted)
Rss:                 300 kB
Anonymous:           120 kB
01300000-01301000 r--s 00000000 fe:00 1234                               /agent (deleted)
Rss:                   4 kB
Anonymous:             0 kB
01400000-01401000 rw-s 00000000 fe:00 1234                               /agent (deleted)
Rss:                   4 kB
Anonymous:             0 kB
`

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type span struct {
	start, end uint64
	perms      string
}

func spans(ms []mapping) []span {
	var out []span
	for _, m := range ms {
		out = append(out, span{m.start, m.end, m.perms})
	}
	return out
}

func TestReleasable(t *testing.T) {
	pie := readTestdata(t, "smaps-pie.txt") // a real capture of a -buildmode=pie binary, path renamed
	tests := []struct {
		name  string
		input string
		exe   string
		want  []span
	}{
		{
			// text and rodata; not the RELRO r--p (relocations written at load: anonymous pages), not
			// the data, not another file's or an anonymous mapping.
			name: "PIE build, path with spaces", input: pie, exe: "/opt/health agent/agent",
			want: []span{{0x55acebf73000, 0x55acec01e000, "r-xp"}, {0x55acec01e000, 0x55acec102000, "r--p"}},
		},
		{
			name: "replaced binary: (deleted) on both sides", input: deletedSmaps, exe: "/agent (deleted)",
			want: []span{{0x400000, 0xa5f000, "r-xp"}, {0xa5f000, 0x120c000, "r--p"}, {0x1300000, 0x1301000, "r--s"}},
		},
		{name: "the path must match whole", input: deletedSmaps, exe: "/agent"},
		{name: "another file", input: pie, exe: "/opt/health"},
		{name: "no executable path", input: staticMaps, exe: ""},
		{name: "maps without smaps fields: cleanliness unknown, nothing taken", input: staticMaps, exe: "/agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := parseMappings(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			got := releasable(ms, tt.exe)
			if !slices.Equal(spans(got), tt.want) {
				t.Errorf("releasable = %x, want %x", spans(got), tt.want)
			}
			for _, m := range got {
				if m.perms[1] == 'w' || m.anonKiB != 0 {
					t.Errorf("%x-%x %s (anonymous %d kB) taken: it may hold data", m.start, m.end, m.perms, m.anonKiB)
				}
			}
		})
	}
}

func TestParseMappings(t *testing.T) {
	t.Run("maps", func(t *testing.T) {
		ms, err := parseMappings(strings.NewReader(staticMaps))
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 7 {
			t.Fatalf("%d mappings, want 7", len(ms))
		}
		want := mapping{start: 0xa5f000, end: 0x120c000, perms: "r--p", path: "/agent", anonKiB: -1}
		if ms[1] != want {
			t.Errorf("mapping 1 = %+v, want %+v", ms[1], want)
		}
		if ms[3].path != "" || ms[5].path != "[stack]" {
			t.Errorf("paths %q, %q; want \"\", [stack]", ms[3].path, ms[5].path)
		}
	})
	t.Run("smaps", func(t *testing.T) {
		ms, err := parseMappings(strings.NewReader(readTestdata(t, "smaps-pie.txt")))
		if err != nil {
			t.Fatal(err)
		}
		relro := ms[3]
		if relro.perms != "r--p" || relro.path != "/opt/health agent/agent" || relro.rssKiB != 152 || relro.anonKiB != 152 {
			t.Errorf("RELRO mapping = %+v, want r--p of the agent with 152 kB resident, all anonymous", relro)
		}
	})

	bad := []struct{ name, input string }{
		{"empty", ""},
		{"blank lines only", "\n\n"},
		{"a field before any mapping", "Rss: 4 kB\n"},
		{"too few fields", "00400000-00a5f000 r-xp 00000000 fe:00\n"},
		{"no dash in the range", "00400000 r-xp 00000000 fe:00 1 /agent\n"},
		{"range not hex", "0040000g-00a5f000 r-xp 00000000 fe:00 1 /agent\n"},
		{"empty range", "00a5f000-00a5f000 r-xp 00000000 fe:00 1 /agent\n"},
		{"reversed range", "00a5f000-00400000 r-xp 00000000 fe:00 1 /agent\n"},
		{"range past 64 bits", "00400000-1ffffffffffffffff r-xp 00000000 fe:00 1 /agent\n"},
		{"perms too short", "00400000-00a5f000 r-x 00000000 fe:00 1 /agent\n"},
		{"perms unknown", "00400000-00a5f000 rzxp 00000000 fe:00 1 /agent\n"},
		{"offset not hex", "00400000-00a5f000 r-xp zz fe:00 1 /agent\n"},
		{"device without colon", "00400000-00a5f000 r-xp 00000000 fe00 1 /agent\n"},
		{"inode not a number", "00400000-00a5f000 r-xp 00000000 fe:00 x /agent\n"},
		{"Anonymous not a number", "00400000-00a5f000 r-xp 00000000 fe:00 1 /agent\nAnonymous: lots kB\n"},
		{"Anonymous negative", "00400000-00a5f000 r-xp 00000000 fe:00 1 /agent\nAnonymous: -4 kB\n"},
		{"Rss without unit", "00400000-00a5f000 r-xp 00000000 fe:00 1 /agent\nRss: 4\n"},
		{"binary noise", "\x00\xff\x10-\x7f ::: \n"},
		{"a status file", "Name:\tagent\nVmRSS:\t 23000 kB\n"},
	}
	for _, tt := range bad {
		t.Run("error: "+tt.name, func(t *testing.T) {
			if ms, err := parseMappings(strings.NewReader(tt.input)); err == nil {
				t.Errorf("no error; parsed %+v", ms)
			}
		})
	}
}

// FuzzParseMappings: any input gives mappings that make sense, or an error; never a panic.
func FuzzParseMappings(f *testing.F) {
	f.Add(staticMaps)
	f.Add(deletedSmaps)
	f.Add("00400000-00a5f000 r-xp 00000000 fe:00 1 /agent\nAnonymous: 0 kB\n")
	f.Add("Rss: 4 kB\n")
	f.Fuzz(func(t *testing.T, input string) {
		ms, err := parseMappings(strings.NewReader(input))
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.start >= m.end || len(m.perms) != 4 || m.anonKiB < -1 || m.rssKiB < 0 {
				t.Errorf("accepted a bad mapping %+v from %q", m, input)
			}
		}
		for _, m := range releasable(ms, "/agent") {
			if m.perms[1] == 'w' || m.anonKiB != 0 {
				t.Errorf("releasable took %+v", m)
			}
		}
	})
}

func TestParseStatus(t *testing.T) {
	const status = "Name:\tagent\nVmRSS:\t   23100 kB\nRssAnon:\t    5120 kB\nRssFile:\t   17980 kB\nRssShmem:\t       0 kB\nThreads:\t8\n"
	u, err := parseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{AnonBytes: 5120 << 10, FileBytes: 17980 << 10}); u != want {
		t.Errorf("usage %+v, want %+v", u, want)
	}
	for _, bad := range []string{"", "Name:\tagent\n", "RssAnon:\t5 kB\n", "RssAnon:\tfive kB\nRssFile:\t1 kB\n", "RssAnon:\t5\nRssFile:\t1 kB\n"} {
		if u, err := parseStatus(strings.NewReader(bad)); err == nil {
			t.Errorf("parseStatus(%q) = %+v, no error", bad, u)
		}
	}
}
