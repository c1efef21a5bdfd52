package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Size caps for ReadFile.
const (
	// MaxConfigBytes caps a config file: real ones are a few KiB, a thousand probes well under 1 MiB.
	MaxConfigBytes = 4 << 20
	// MaxSecretBytes caps a secret file ({file: …} values, token files): a token is bytes, a CA bundle
	// a few KiB.
	MaxSecretBytes = 64 << 10
)

// ErrNotRegular means a path names something other than a regular file: a named pipe, a device, a
// socket or a directory (directly or through a symlink). Reading one could block forever or never end.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge means a file is larger than the cap its reader set.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads the regular file at path (symlinks followed), at most limit bytes. It can neither
// block nor grow without bound: a FIFO, device, socket or directory is refused before it is opened;
// the open is non-blocking, so a FIFO swapped in after that check cannot block it either, and the
// opened file is checked again; a file larger than limit is an error. Every error is an *fs.PathError
// naming path; a missing file satisfies errors.Is(err, fs.ErrNotExist).
func ReadFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	return readOpened(path, limit)
}

// readOpened is ReadFile after its first check: a FIFO swapped in since then neither blocks the open
// (O_NONBLOCK) nor gets read (the opened file is checked again).
func readOpened(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := regular(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(b)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: larger than the %s limit", ErrTooLarge, sizeWord(limit))}
	}
	return b, nil
}

// regular refuses fi unless it is a regular file, saying what it is.
func regular(path string, fi fs.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() {
		return nil
	}
	var what string
	switch {
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	case m.IsDir():
		what = "a directory"
	default:
		what = "of type " + m.Type().String()
	}
	return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: it is %s", ErrNotRegular, what)}
}

// sizeWord shows a byte count for messages: "4 MiB", "64 KiB", "100 bytes".
func sizeWord(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
