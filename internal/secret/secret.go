// Package secret reads the secrets actions need (API tokens, webhook
// credentials) from the environment or from mounted files, never from an
// event, and masks their values wherever text leaves the provider: log
// lines, errors and finished messages.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Mask is what a secret value is replaced with.
const Mask = "***"

// Ref names one secret. Exactly one of Env and File is set.
type Ref struct {
	// Env is an environment variable holding the value.
	Env string `json:"env,omitempty"`
	// File is a path to a file holding the value, e.g. a key of a mounted
	// Kubernetes Secret. Surrounding whitespace is trimmed.
	File string `json:"file,omitempty"`
}

// String names the secret without its value: "env UNLEASH_TOKEN".
func (r Ref) String() string {
	if r.File != "" {
		return "file " + r.File
	}
	return "env " + r.Env
}

// Source is where secrets are read from; the zero value reads the process
// environment and the file system.
type Source struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// Resolve reads the secret. An empty value is an error: a missing token is
// better refused at start-up than sent as "Bearer ".
func (s Source) Resolve(r Ref) (string, error) {
	lookup, read := s.LookupEnv, s.ReadFile
	if lookup == nil {
		lookup = os.LookupEnv
	}
	if read == nil {
		read = os.ReadFile
	}
	var v string
	switch {
	case r.Env != "" && r.File != "":
		return "", errors.New(`a secret is either "env" or "file", not both`)
	case r.Env != "":
		var ok bool
		if v, ok = lookup(r.Env); !ok {
			return "", fmt.Errorf("environment variable %s is not set", r.Env)
		}
	case r.File != "":
		b, err := read(r.File)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		v = string(b)
	default:
		return "", errors.New(`a secret needs "env" or "file"`)
	}
	if v = strings.TrimSpace(v); v == "" {
		return "", fmt.Errorf("secret %s is empty", r)
	}
	return v, nil
}

// Error returns err with its text masked, still wrapping err for errors.Is
// and errors.As; nil stays nil.
func (m *Masker) Error(err error) error {
	if err == nil {
		return nil
	}
	if masked := m.String(err.Error()); masked != err.Error() {
		return &maskedError{text: masked, err: err}
	}
	return err
}

type maskedError struct {
	text string
	err  error
}

func (e *maskedError) Error() string { return e.text }
func (e *maskedError) Unwrap() error { return e.err }
