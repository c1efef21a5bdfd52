package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/health-agent/health-agent/internal/testkit"
)

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	mkfifo(t, fifo)
	linkToFifo := filepath.Join(dir, "link-to-fifo")
	if err := os.Symlink(fifo, linkToFifo); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 101), 0o600); err != nil {
		t.Fatal(err)
	}
	exact := filepath.Join(dir, "exact")
	if err := os.WriteFile(exact, []byte(strings.Repeat("x", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	linkToExact := filepath.Join(dir, "link-to-exact")
	if err := os.Symlink(exact, linkToExact); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		path    string
		wantIs  error
		wantMsg string
	}{
		{"a FIFO", fifo, ErrNotRegular, "it is a named pipe (FIFO)"},
		{"a symlink to a FIFO", linkToFifo, ErrNotRegular, "it is a named pipe (FIFO)"},
		{"/dev/zero", "/dev/zero", ErrNotRegular, "it is a character device"},
		{"a directory", dir, ErrNotRegular, "it is a directory"},
		{"an oversized file", big, ErrTooLarge, "larger than the 100 bytes limit"},
		{"a missing file", filepath.Join(dir, "absent"), fs.ErrNotExist, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.path); tt.wantIs != fs.ErrNotExist && err != nil {
				t.Skipf("%s: %v", tt.path, err)
			}
			var b []byte
			err := testkit.Returns(t, 5*time.Second, func() (err error) { b, err = ReadFile(tt.path, 100); return err })
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.path) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("ReadFile = %v, want %v naming %s and saying %q", err, tt.wantIs, tt.path, tt.wantMsg)
			}
			if b != nil {
				t.Errorf("got %d bytes with the error", len(b))
			}
		})
	}
	t.Run("a FIFO swapped in after the first check", func(t *testing.T) {
		err := testkit.Returns(t, 5*time.Second, func() error { _, err := readOpened(fifo, 100); return err })
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), fifo) {
			t.Errorf("readOpened = %v, want a prompt not-regular error naming %s", err, fifo)
		}
	})
	t.Run("a regular file at the limit, through a symlink", func(t *testing.T) {
		b, err := ReadFile(linkToExact, 100)
		if err != nil || len(b) != 100 {
			t.Errorf("ReadFile = %d bytes, %v; want 100 bytes", len(b), err)
		}
	})
}

// Every reader of a file the config names uses ReadFile: the config itself and {file: …} values.
func TestFileReadersRefuseFIFOs(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "agent.yaml")
	mkfifo(t, fifo)

	t.Run("LoadFile", func(t *testing.T) {
		err := testkit.Returns(t, 5*time.Second, func() error { _, err := LoadFile(fifo, fakeKinds{}, envOf(nil)); return err })
		if !errors.Is(err, ErrNotRegular) || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fifo) {
			t.Errorf("LoadFile = %v, want a not-regular error naming %s", err, fifo)
		}
	})
	t.Run("LoadFile of an oversized config", func(t *testing.T) {
		big := filepath.Join(dir, "big.yaml")
		if err := os.WriteFile(big, []byte("probes: []\n"+strings.Repeat("#\n", MaxConfigBytes)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(big, fakeKinds{}, envOf(nil))
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "4 MiB") {
			t.Errorf("LoadFile = %v, want a too-large error naming %s and 4 MiB", err, big)
		}
	})
	t.Run("Value.Resolve", func(t *testing.T) {
		err := testkit.Returns(t, 5*time.Second, func() error { _, err := Value{File: fifo}.Resolve(nil); return err })
		if !errors.Is(err, ErrNotRegular) || errors.Is(err, ErrSecretAbsent) || !strings.Contains(err.Error(), fifo) {
			t.Errorf("Resolve = %v, want a not-regular error naming %s", err, fifo)
		}
	})
	t.Run("Value.Resolve of an oversized secret", func(t *testing.T) {
		big := filepath.Join(dir, "secret")
		if err := os.WriteFile(big, make([]byte, MaxSecretBytes+1), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Value{File: big}.Resolve(nil)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), big) {
			t.Errorf("Resolve = %v, want a too-large error naming %s", err, big)
		}
	})
}

func TestValueResolveSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("  from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name       string
		v          Value
		env        map[string]string
		want, from string
		absent     []string // the error wraps ErrSecretAbsent and names each of these
	}{
		{"literal", Value{Value: "v"}, nil, "v", "value", nil},
		{"env", Value{Env: "A", Prefix: "Bearer "}, map[string]string{"A": "x"}, "Bearer x", "env A", nil},
		{"env unset", Value{Env: "A"}, nil, "", "", []string{"set the environment variable A"}},
		{"file, trimmed", Value{File: file}, nil, "from-the-file", "file " + file, nil},
		{"file missing", Value{File: missing}, nil, "", "", []string{missing, "mount the Secret there"}},
		{"env first", Value{Env: "A", File: file}, map[string]string{"A": "x"}, "x", "env A", nil},
		{"file when env is unset", Value{Env: "A", File: file}, nil, "from-the-file", "file " + file, nil},
		{"file when env is blank", Value{Env: "A", File: file}, map[string]string{"A": " "}, "from-the-file", "file " + file, nil},
		{"neither there", Value{Env: "A", File: missing}, nil, "", "", []string{"set the environment variable A or mount the Secret at " + missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, from, err := tt.v.ResolveSource(envOf(tt.env))
			if tt.absent != nil {
				if !errors.Is(err, ErrSecretAbsent) {
					t.Fatalf("err = %v, want ErrSecretAbsent", err)
				}
				for _, w := range tt.absent {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("err = %v, want it to name %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tt.want || from != tt.from {
				t.Errorf("ResolveSource = %q, %q, %v; want %q, %q", got, from, err, tt.want, tt.from)
			}
		})
	}
}

func TestValueValidateSecret(t *testing.T) {
	for _, tt := range []struct {
		v    Value
		want string // "" valid
	}{
		{Value{Env: "A"}, ""},
		{Value{File: "/f"}, ""},
		{Value{Env: "A", File: "/f"}, ""},
		{Value{Value: "x"}, "must come from env or file"},
		{Value{Value: "x", Env: "A"}, "must come from env or file"},
		{Value{Prefix: "Bearer "}, "set env"},
	} {
		err := tt.v.ValidateSecret()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: ValidateSecret = %v, want %q", tt.v, err, tt.want)
		}
	}
}
