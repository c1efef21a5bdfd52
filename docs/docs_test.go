package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"go.uber.org/goleak"

	"github.com/health-agent/health-agent/pkg/config"
	"github.com/health-agent/health-agent/pkg/monitor"
	"github.com/health-agent/health-agent/pkg/probes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// root is the repository root, seen from this package's directory (where `go test` runs it).
const root = ".."

// markdownFiles are the pages whose links must resolve: README.md, docs/*.md, the demo's README and
// every README under deploy/.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "examples/demo/README.md"}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, rel)
	}
	err = filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "README.md" {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// page is a Markdown file split into the lines outside fenced code blocks.
type page struct {
	path  string   // relative to the repository root
	lines []string // outside code fences; fenced lines are blanked so line numbers stay right
}

func readPage(t *testing.T, rel string) page {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	fenced := false
	for i, l := range lines {
		trimmed := strings.TrimSpace(l)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return page{path: rel, lines: lines}
}

var headingRE = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)

// heading returns the text of line if it is an ATX heading, and its level.
func heading(line string) (text string, level int, ok bool) {
	m := headingRE.FindStringSubmatch(line)
	if m == nil {
		return "", 0, false
	}
	return m[2], len(m[1]), true
}

var (
	inlineLinkRE = regexp.MustCompile(`\[([^\]]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)`)
	codeSpanRE   = regexp.MustCompile("`[^`]*`")
)

// slug is GitHub's anchor for a heading: the rendered text, lower-cased, with every character but
// letters, marks, numbers, '_', '-' and spaces dropped, and spaces turned into '-'.
func slug(text string) string {
	text = inlineLinkRE.ReplaceAllString(text, "$1")
	text = strings.ReplaceAll(text, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of p's headings, numbered as GitHub numbers repeated ones (x, x-1, x-2).
func (p page) anchors() map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range p.lines {
		text, _, ok := heading(l)
		if !ok {
			continue
		}
		s := slug(text)
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ heading, want string }{
		{"How it decides", "how-it-decides"},
		{"`http`: request a URL", "http-request-a-url"},
		{"`memory`: the app's memory", "memory-the-apps-memory"},
		{"`/livez`, `/readyz`, `/startupz`", "livez-readyz-startupz"},
		{"Egress: the app's calls through the agent (opt-in)", "egress-the-apps-calls-through-the-agent-opt-in"},
		{"snake_case and [a link](x.md)", "snake_case-and-a-link"},
	} {
		if got := slug(c.heading); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.heading, got, c.want)
		}
	}
}

// TestLinksResolve checks every relative link of the docs: its file exists and its #anchor is a heading
// of the target page.
func TestLinksResolve(t *testing.T) {
	pages := map[string]page{}
	load := func(rel string) page {
		if p, ok := pages[rel]; ok {
			return p
		}
		p := readPage(t, rel)
		pages[rel] = p
		return p
	}
	files := markdownFiles(t)
	if len(files) < 8 {
		t.Fatalf("found only %d Markdown files: %v", len(files), files)
	}
	links := 0
	for _, rel := range files {
		p := load(rel)
		for i, l := range p.lines {
			for _, m := range inlineLinkRE.FindAllStringSubmatch(codeSpanRE.ReplaceAllString(l, "``"), -1) {
				target := m[2]
				where := p.path + ":" + strconv.Itoa(i+1)
				if target == "" {
					t.Errorf("%s: empty link target", where)
					continue
				}
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				links++
				file, anchor, _ := strings.Cut(target, "#")
				dest := p.path
				if file != "" {
					dest = filepath.Clean(filepath.Join(filepath.Dir(p.path), file))
					if strings.HasPrefix(dest, "..") {
						t.Errorf("%s: link %q leaves the repository", where, target)
						continue
					}
					if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
						t.Errorf("%s: link %q: %s does not exist", where, target, dest)
						continue
					}
				}
				if anchor == "" {
					continue
				}
				if !strings.HasSuffix(dest, ".md") {
					t.Errorf("%s: link %q: an anchor into %s, which is not Markdown", where, target, dest)
					continue
				}
				if !load(dest).anchors()[anchor] {
					t.Errorf("%s: link %q: %s has no heading with anchor #%s", where, target, dest, anchor)
				}
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative links found: the link pattern is broken")
	}
}

// table is a Markdown table: its header cells and its rows' cells.
type table struct {
	header []string
	rows   [][]string
	line   int // of the header, 1-based
}

func cells(line string) []string {
	line = strings.TrimSpace(line)
	line = strings.TrimPrefix(strings.TrimSuffix(line, "|"), "|")
	// A '|' inside a code span (escaped as \|) is not a separator.
	line = strings.ReplaceAll(line, `\|`, "\x00")
	var out []string
	for _, c := range strings.Split(line, "|") {
		out = append(out, strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|")))
	}
	return out
}

// tables returns the tables in lines[from:to].
func (p page) tables(from, to int) []table {
	var out []table
	for i := from; i < to; i++ {
		l := strings.TrimSpace(p.lines[i])
		if !strings.HasPrefix(l, "|") || i+1 >= to || !strings.HasPrefix(strings.TrimSpace(p.lines[i+1]), "|---") {
			continue
		}
		tb := table{header: cells(l), line: i + 1}
		j := i + 2
		for ; j < to && strings.HasPrefix(strings.TrimSpace(p.lines[j]), "|"); j++ {
			tb.rows = append(tb.rows, cells(p.lines[j]))
		}
		out = append(out, tb)
		i = j - 1
	}
	return out
}

// firstColumn returns the code span of each row's first cell, from the tables whose first header cell
// is name.
func firstColumn(t *testing.T, p page, from, to int, name string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tb := range p.tables(from, to) {
		if len(tb.header) == 0 || tb.header[0] != name {
			continue
		}
		for k, r := range tb.rows {
			key := strings.Trim(r[0], "`")
			if key == r[0] || strings.Contains(key, "`") {
				t.Errorf("%s:%d: the %s cell %q must be one code span", p.path, tb.line+2+k, name, r[0])
				continue
			}
			if _, dup := out[key]; dup {
				t.Errorf("%s:%d: %s %q documented twice", p.path, tb.line+2+k, name, key)
			}
			out[key] = tb.line + 2 + k
		}
	}
	return out
}

// schemaKeys lists the leaf keys of a config struct as paths (`server.listen`, `probes[].name`), from
// its mapstructure tags. squashed collects the types squashed into a list element, by the list's path.
func schemaKeys(typ reflect.Type, prefix string, keys map[string]bool, squashed map[string]reflect.Type) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opt, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		switch {
		case name == "-", opt == "remain": // not a key, or a probe's kind-specific options
			continue
		case opt == "squash":
			squashed[strings.TrimSuffix(prefix, ".")] = f.Type
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[config.Value]():
			schemaKeys(ft, prefix+name+".", keys, squashed)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			schemaKeys(ft.Elem(), prefix+name+"[].", keys, squashed)
		default:
			keys[prefix+name] = true
		}
	}
}

// TestConfigKeysDocumented checks that the key tables of docs/configuration.md (and of any other page
// that documents a config section, such as docs/egress.md) list exactly the schema's keys.
func TestConfigKeysDocumented(t *testing.T) {
	want := map[string]bool{}
	squashed := map[string]reflect.Type{}
	schemaKeys(reflect.TypeFor[config.Config](), "", want, squashed)
	// A probe's breaker is written `breaker: NAME` or `breaker: {name: NAME, …policy}`: the schema
	// (pkg/config/raw.go, configSchema) turns it into breakerName, which users never write.
	delete(want, "probes[].breakerName")
	want["probes[].breaker"] = true
	want["probes[].breaker.name"] = true

	got := map[string]string{} // key -> where it is documented
	var conf page
	for _, rel := range []string{"docs/configuration.md", "docs/egress.md"} {
		if _, err := os.Stat(filepath.Join(root, rel)); err != nil && rel != "docs/configuration.md" {
			continue
		}
		p := readPage(t, rel)
		if rel == "docs/configuration.md" {
			conf = p
		}
		for k, line := range firstColumn(t, p, 0, len(p.lines), "key") {
			where := rel + ":" + strconv.Itoa(line)
			if first, dup := got[k]; dup {
				t.Errorf("%s: key %q documented twice (first at %s)", where, k, first)
			}
			got[k] = where
		}
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("config key %s is in the schema (pkg/config) but not documented in a key table", k)
		}
	}
	for k, where := range got {
		if !want[k] {
			t.Errorf("%s: documented key %s is not in the schema", where, k)
		}
	}

	// A probe inherits the `defaults` keys (config.Policy, squashed into config.Probe): the page says so
	// in one sentence, which must name every one of them.
	policy, ok := squashed["probes[]"]
	if !ok || policy != reflect.TypeFor[config.Policy]() {
		t.Fatalf("config.Probe no longer squashes config.Policy (got %v): update this test and the page", policy)
	}
	var sentence string
	for i, l := range conf.lines {
		if strings.HasPrefix(l, "A probe may also set any `defaults` key") {
			sentence = strings.Join(conf.lines[i:min(i+3, len(conf.lines))], " ")
		}
	}
	if sentence == "" {
		t.Fatal("docs/configuration.md: the sentence \"A probe may also set any `defaults` key (…)\" is missing")
	}
	for i := range policy.NumField() {
		name, _, _ := strings.Cut(policy.Field(i).Tag.Get("mapstructure"), ",")
		if !strings.Contains(sentence, "`"+name+"`") {
			t.Errorf("docs/configuration.md: the sentence on keys a probe may override lacks `%s`", name)
		}
	}
}

// kindOptions reads pkg/probes' source and returns each kind's options, from the mapstructure tags of
// its `<kind>Options` struct; a field whose type is another struct of the package (TLSOptions) gives
// dotted keys (`tls.caFile`).
func kindOptions(t *testing.T) map[string]map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	structs := map[string]*ast.StructType{}
	files, err := filepath.Glob(filepath.Join(root, "pkg", "probes", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	var keysOf func(st *ast.StructType, prefix string, out map[string]bool)
	keysOf = func(st *ast.StructType, prefix string, out map[string]bool) {
		for _, f := range st.Fields.List {
			if f.Tag == nil {
				continue
			}
			tag, err := strconv.Unquote(f.Tag.Value)
			if err != nil {
				t.Fatal(err)
			}
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("mapstructure"), ",")
			if name == "" || name == "-" {
				continue
			}
			if id, ok := f.Type.(*ast.Ident); ok && structs[id.Name] != nil {
				keysOf(structs[id.Name], prefix+name+".", out)
				continue
			}
			out[prefix+name] = true
		}
	}
	out := map[string]map[string]bool{}
	for _, kind := range monitor.Kinds().Names() {
		opts := map[string]bool{}
		if st := structs[kind+"Options"]; st != nil {
			keysOf(st, "", opts)
		}
		out[kind] = opts
	}
	return out
}

// withOption returns options holding key (dotted for nested keys) with a null value: a kind that knows
// the key decodes it (and may then find other options missing), one that does not reports it unknown.
func withOption(key string) map[string]any {
	parts := strings.Split(key, ".")
	var v any
	for i := len(parts) - 1; i >= 0; i-- {
		v = map[string]any{parts[i]: v}
	}
	return v.(map[string]any)
}

func unknownKey(err error) bool { return err != nil && strings.Contains(err.Error(), "unknown key") }

// TestKindOptionsDocumented checks that each kind's block in docs/configuration.md lists exactly the
// options its options struct decodes, and that each kind accepts every documented option.
func TestKindOptionsDocumented(t *testing.T) {
	p := readPage(t, "docs/configuration.md")
	// Each kind's block runs from its "### `kind`…" heading, under "## Probe kinds", to the next heading
	// of level 3 or less.
	start := -1
	blocks := map[string][2]int{}
	kind, from := "", 0
	for i, l := range p.lines {
		text, level, ok := heading(l)
		if !ok {
			continue
		}
		if kind != "" && level <= 3 {
			blocks[kind] = [2]int{from, i}
			kind = ""
		}
		switch {
		case level == 2:
			if text == "Probe kinds" {
				start = i
			} else if start >= 0 {
				start = -2 // past the section
			}
		case level == 3 && start >= 0 && strings.HasPrefix(text, "`"):
			kind, _, _ = strings.Cut(strings.TrimPrefix(text, "`"), "`")
			from = i
		}
	}
	if kind != "" {
		blocks[kind] = [2]int{from, len(p.lines)}
	}

	fromSource := kindOptions(t)
	for _, k := range monitor.Kinds().Names() {
		t.Run(k, func(t *testing.T) {
			b, ok := blocks[k]
			if !ok {
				t.Fatalf("docs/configuration.md has no \"### `%s`\" block under \"## Probe kinds\"", k)
			}
			doc := firstColumn(t, p, b[0], b[1], "option")
			for o := range fromSource[k] {
				if _, ok := doc[o]; !ok {
					t.Errorf("option %s of kind %s (pkg/probes, %sOptions) is not documented", o, k, k)
				}
			}
			newProbe := monitor.Kinds()[k].New
			for o, line := range doc {
				if !fromSource[k][o] {
					t.Errorf("docs/configuration.md:%d: documented option %s is not in %sOptions", line, o, k)
				}
				if _, err := newProbe(probes.Spec{Name: "p", Options: withOption(o)}); unknownKey(err) {
					t.Errorf("docs/configuration.md:%d: kind %s refuses documented option %s: %v", line, k, o, err)
				}
			}
			// The check above means something only if the kind does refuse what it does not know.
			if _, err := newProbe(probes.Spec{Name: "p", Options: withOption("noSuchOption")}); !unknownKey(err) {
				t.Errorf("kind %s accepts an unknown option (err %v): the documented-option check proves nothing", k, err)
			}
		})
	}
	for k := range blocks {
		if !slices.Contains(monitor.Kinds().Names(), k) {
			t.Errorf("docs/configuration.md documents kind %s, which monitor.Kinds() does not register", k)
		}
	}
}

// TestReadmeIsShort keeps README.md a page a newcomer reads in five minutes, whose test command is the
// one CI runs.
func TestReadmeIsShort(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len([]rune(string(b))); n > 10000 {
		t.Errorf("README.md has %d characters, want at most 10,000: move reference text to docs/", n)
	}
	ci, err := os.ReadFile(filepath.Join(root, ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	// .ci/run marks the command it shares with the README.
	_, after, ok := strings.Cut(string(ci), "# The README's test command.\n")
	if !ok {
		t.Fatal(`.ci/run lacks the line "# The README's test command."`)
	}
	cmd, _, _ := strings.Cut(after, "\n")
	if cmd = strings.TrimSpace(cmd); !regexp.MustCompile("(?m)^" + regexp.QuoteMeta(cmd) + `\s+#`).Match(b) {
		t.Errorf("README.md's quick start lacks the test command .ci/run runs: %q", cmd)
	}
}
