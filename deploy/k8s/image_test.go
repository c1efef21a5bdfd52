package k8s_test

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImage checks the Dockerfile without a container engine: the build stage's COPY lines, cut down
// by .dockerignore, hold everything `go build` needs (a new top-level package directory missing from
// them would break the image build), and the runtime stage is static, non-root, with a HEALTHCHECK.
func TestImage(t *testing.T) {
	root := filepath.Join("..", "..")
	lines := dockerfile(t, filepath.Join(root, "Dockerfile"))
	ignore := readLines(t, filepath.Join(root, ".dockerignore"))

	var sources []string
	var final []string // the runtime stage's instructions
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case f[0] == "FROM":
			final = nil
		case f[0] == "COPY" && !strings.HasPrefix(f[1], "--from"):
			sources = append(sources, f[1:len(f)-1]...)
		}
		final = append(final, l)
	}

	t.Run("the build context holds what go build needs", func(t *testing.T) {
		if !slices.Contains(ignore, "*") || !slices.Contains(ignore, "**/*_test.go") {
			t.Fatalf(".dockerignore %q: want an allowlist (*) that also drops tests", ignore)
		}
		ctx := t.TempDir()
		for _, src := range sources {
			if !slices.Contains(ignore, "!"+src) && !slices.Contains(ignore, "!"+src+"/") {
				t.Errorf("COPY %s, but .dockerignore does not allow it", src)
			}
			copyTree(t, filepath.Join(root, src), filepath.Join(ctx, src))
		}
		bin := filepath.Join(t.TempDir(), "agent")
		build, err := imageBuild(filepath.Join(root, "Dockerfile"), "image-test", bin)
		if err != nil {
			t.Fatal(err)
		}
		build.Dir = ctx
		build.Env = append(build.Env, "GOFLAGS=-buildvcs=false")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build in the image's context (%v): %v\n%s", sources, err, out)
		}
		out, err := exec.Command(bin, "version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "health-agent image-test" {
			t.Errorf("agent version = %q, %v: -X github.com/health-agent/health-agent/pkg/version.value did not take", out, err)
		}
	})

	t.Run("build flags", func(t *testing.T) {
		// What README and BENCHMARKS.md say of the image's binary: static, stripped, reproducible
		// paths, without gin's MessagePack codec.
		build, err := imageBuild(filepath.Join(root, "Dockerfile"), "x", "/out/agent")
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Join(build.Args, " ")
		for _, w := range []string{"go build ", " -tags nomsgpack ", " -trimpath ", ` -ldflags -s -w -X github.com/health-agent/health-agent/pkg/version.value=x `, " -o /out/agent ./cmd/agent"} {
			if !strings.Contains(args, w) {
				t.Errorf("the image builds with %q: want %q in it", args, w)
			}
		}
		if !slices.Contains(build.Env, "CGO_ENABLED=0") {
			t.Errorf("the image builds with %q in the environment: want CGO_ENABLED=0", build.Env)
		}
	})

	t.Run("runtime stage", func(t *testing.T) {
		want := []string{
			"FROM gcr.io/distroless/static-debian12:nonroot",
			"USER 65532:65532",
			`HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/agent", "healthcheck"]`,
			`ENTRYPOINT ["/agent"]`,
		}
		for _, w := range want {
			if !slices.Contains(final, w) {
				t.Errorf("the runtime stage lacks %q; it has %q", w, final)
			}
		}
	})
}

// imageBuild returns the Dockerfile's `go build` as a command that writes out, with ${VERSION} as
// version, for this machine's platform: the tests build the agent as the image does.
func imageBuild(dockerfilePath, version, out string) (*exec.Cmd, error) {
	lines, err := instructions(dockerfilePath)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "RUN ") || !strings.Contains(l, " go build ") {
			continue
		}
		words := shellWords(l[strings.Index(l, " go build ")+1:])
		var env []string
		for _, f := range strings.Fields(l[:strings.Index(l, " go build ")]) {
			if k, v, ok := strings.Cut(f, "="); ok && k == "CGO_ENABLED" {
				env = append(env, k+"="+v)
			}
		}
		for i, w := range words {
			words[i] = strings.ReplaceAll(w, "${VERSION}", version)
			if i > 0 && words[i-1] == "-o" {
				words[i] = out
			}
		}
		cmd := exec.Command(words[0], words[1:]...)
		cmd.Env = append(os.Environ(), env...)
		return cmd, nil
	}
	return nil, fmt.Errorf("%s: no RUN … go build", dockerfilePath)
}

// shellWords splits s at spaces outside double quotes, dropping the quotes: enough for a RUN line.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
			}
			inWord = false
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// dockerfile returns the Dockerfile's instructions, continuation lines joined, comments dropped.
func dockerfile(t *testing.T, path string) []string {
	t.Helper()
	out, err := instructions(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func instructions(path string) ([]string, error) {
	lines, err := nonComments(path)
	if err != nil {
		return nil, err
	}
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		out = append(out, strings.Join(strings.Fields(cur.String()), " "))
		cur.Reset()
	}
	return out, nil
}

// readLines returns path's non-blank lines that are not comments, trimmed.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	out, err := nonComments(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func nonComments(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// copyTree copies src to dst as the build context would have it: without tests and testdata.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == "testdata":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case strings.HasSuffix(d.Name(), "_test.go"):
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}
