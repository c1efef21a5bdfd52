package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
)

// DecodeOptions decodes a probe's kind-specific options into out (a pointer to a struct with mapstructure
// tags), rejecting unknown keys. Durations are Go durations; a Value may be written as a plain string.
// Errors are FieldErrors named by the option's key.
func DecodeOptions(raw map[string]any, out any) error {
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           out,
		Metadata:         &md,
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			stringToValueHook,
		),
	})
	if err != nil {
		return err
	}
	return decodeErrors(dec.Decode(raw))
}

var valueType = reflect.TypeOf(Value{})

// stringToValueHook lets `X-Env: production` stand for `X-Env: {value: production}`.
func stringToValueHook(from, to reflect.Type, data any) (any, error) {
	if to == valueType && from.Kind() == reflect.String {
		return map[string]any{"value": data}, nil
	}
	return data, nil
}

// decodeErrors turns mapstructure's errors into FieldErrors.
func decodeErrors(err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range decodeLeaves(err) {
		out = append(out, decodeError(e))
	}
	return errors.Join(out...)
}

// decodeLeaves returns mapstructure's errors one by one. It wraps them all in a single
// fmt.Errorf("decoding failed …: %w", errors.Join(…)), which Flatten alone would keep as one.
func decodeLeaves(err error) []error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*mapstructure.DecodeError); ok {
		return []error{err}
	}
	switch x := err.(type) {
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range x.Unwrap() {
			out = append(out, decodeLeaves(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		if inner := x.Unwrap(); inner != nil {
			return decodeLeaves(inner)
		}
	}
	return []error{err}
}

func decodeError(e error) error {
	msg := e.Error()
	var fe *mapstructure.DecodeError
	if errors.As(e, &fe) {
		msg := fe.Unwrap().Error()
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			msg = "unknown key(s): " + keys
		}
		return &FieldError{Path: fe.Name(), Msg: msg}
	}
	if rest, ok := strings.CutPrefix(msg, "'' has invalid keys: "); ok {
		return &FieldError{Msg: "unknown key(s): " + rest}
	}
	if strings.HasPrefix(msg, "'") {
		if i := strings.Index(msg[1:], "'"); i >= 0 {
			path, rest := msg[1:1+i], strings.TrimSpace(msg[2+i:])
			if keys, ok := strings.CutPrefix(rest, "has invalid keys: "); ok {
				return &FieldError{Path: path, Msg: "unknown key(s): " + keys}
			}
			return &FieldError{Path: path, Msg: rest}
		}
	}
	return &FieldError{Msg: msg}
}

// Value is a string taken literally, from an environment variable, or from a file (a mounted Secret).
// Secrets must use Env or File: the config file itself never holds them.
type Value struct {
	Value string `mapstructure:"value"`
	Env   string `mapstructure:"env"`
	File  string `mapstructure:"file"`
	// Prefix is prepended to what Env or File yields (e.g. "Bearer ").
	Prefix string `mapstructure:"prefix"`
}

// ErrSecretAbsent means a referenced variable is unset or a file is not there (yet). It is a run-time
// condition, not a config error.
var ErrSecretAbsent = errors.New("secret absent")

// Validate reports a Value that names more or less than one source.
func (v Value) Validate() error {
	n := 0
	for _, s := range []string{v.Value, v.Env, v.File} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return errors.New("must set exactly one of value, env or file")
	}
	return nil
}

// ValidateSecret reports a Value that cannot hold a secret: a literal value, or no source at all. A
// secret may name both env and file: the variable is read first, the file when the variable is unset
// or empty (the default config's FIGMA_TOKEN, else the file FIGMA_TOKEN_FILE names).
func (v Value) ValidateSecret() error {
	switch {
	case v.Value != "":
		return errors.New("must come from env or file, never written in the config: write {env: VAR} or {file: /path/to/secret}")
	case v.Env == "" && v.File == "":
		return errors.New("set env (an environment variable) or file (a mounted Secret), e.g. {env: VAR} or {file: /path/to/secret}")
	}
	return nil
}

// IsSecret reports whether the value comes from outside the config (and so must never be shown).
func (v Value) IsSecret() bool { return v.Env != "" || v.File != "" }

// Resolve returns the value, reading the variable or the file now. An unset variable or a missing file
// gives an error wrapping ErrSecretAbsent that names it (never the value).
func (v Value) Resolve(lookup func(string) (string, bool)) (string, error) {
	s, _, err := v.ResolveSource(lookup)
	return s, err
}

// ResolveSource is Resolve that also says where the value came from ("env VAR", "file /path" or
// "value"), never what it is. With both Env and File set, the variable wins when it is set and not
// blank. A file is read with ReadFile (a regular file of at most MaxSecretBytes) and trimmed of
// surrounding white space, as a mounted Secret often ends in a newline.
func (v Value) ResolveSource(lookup func(string) (string, bool)) (value, source string, err error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if v.Env == "" && v.File == "" {
		return v.Value, "value", nil
	}
	if v.Env != "" {
		if s, ok := lookup(v.Env); ok && strings.TrimSpace(s) != "" {
			return v.Prefix + s, "env " + v.Env, nil
		}
		if v.File == "" {
			return "", "", fmt.Errorf("%w: set the environment variable %s", ErrSecretAbsent, v.Env)
		}
	}
	want := "mount the Secret there"
	if v.Env != "" {
		want = "set the environment variable " + v.Env + " or mount the Secret at " + v.File
	}
	b, err := ReadFile(v.File, MaxSecretBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%w: file %s does not exist (%s)", ErrSecretAbsent, v.File, want)
	}
	if err != nil {
		return "", "", fmt.Errorf("secret file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", "", fmt.Errorf("%w: file %s is empty (%s)", ErrSecretAbsent, v.File, want)
	}
	return v.Prefix + s, "file " + v.File, nil
}
