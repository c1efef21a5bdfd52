package config

import (
	"errors"
	"fmt"
)

// ErrInvalid wraps every validation failure, so callers can tell a bad config (exit 2) from an I/O error.
var ErrInvalid = errors.New("invalid config")

// FieldError is one problem with one field, named by its path (e.g. "probes[2].timeout").
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Prefix prepends prefix to the path of every FieldError in err (which may be joined), and wraps other
// errors as a FieldError at prefix.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		switch {
		case errors.As(e, &fe) && fe.Path == "":
			out = append(out, &FieldError{Path: prefix, Msg: fe.Msg})
		case errors.As(e, &fe):
			out = append(out, &FieldError{Path: prefix + "." + fe.Path, Msg: fe.Msg})
		default:
			out = append(out, &FieldError{Path: prefix, Msg: e.Error()})
		}
	}
	return errors.Join(out...)
}

// Flatten returns the leaves of a tree of joined errors, in order.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
