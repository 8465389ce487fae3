package secret

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestResolve(t *testing.T) {
	src := Source{
		LookupEnv: func(k string) (string, bool) {
			v, ok := map[string]string{"TOKEN": " s3cr3t-token\n", "EMPTY": ""}[k]
			return v, ok
		},
		ReadFile: func(p string) ([]byte, error) {
			if p == "/var/run/secrets/unleash/token" {
				return []byte("file-token\n"), nil
			}
			return nil, fs.ErrNotExist
		},
	}
	tests := []struct {
		ref     Ref
		want    string
		wantErr string
	}{
		{Ref{Env: "TOKEN"}, "s3cr3t-token", ""},
		{Ref{File: "/var/run/secrets/unleash/token"}, "file-token", ""},
		{Ref{Env: "MISSING"}, "", "environment variable MISSING is not set"},
		{Ref{Env: "EMPTY"}, "", "secret env EMPTY is empty"},
		{Ref{File: "/nope"}, "", "read secret file: file does not exist"},
		{Ref{}, "", `a secret needs "env" or "file"`},
		{Ref{Env: "TOKEN", File: "/x"}, "", "not both"},
	}
	for _, tt := range tests {
		got, err := src.Resolve(tt.ref)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: error %v, want %q", tt.ref, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: %q, %v; want %q", tt.ref, got, err, tt.want)
		}
	}
}

func TestMasker(t *testing.T) {
	var m Masker
	m.Add("s3cr3t-token")
	m.Add("s3cr3t") // a prefix of the other: the longer one goes first
	m.Add("ab")     // too short to mask safely
	got := m.String("Authorization: Bearer s3cr3t-token; also s3cr3t; about ab")
	if want := "Authorization: Bearer ***; also ***; about ab"; got != want {
		t.Errorf("masked %q, want %q", got, want)
	}
	base := errors.New("POST https://hooks.example.com/?key=s3cr3t-token: 401")
	err := m.Error(base)
	if err.Error() != "POST https://hooks.example.com/?key=***: 401" || !errors.Is(err, base) {
		t.Errorf("masked error %q (wraps the original: %v)", err, errors.Is(err, base))
	}
	var nilMasker *Masker
	if nilMasker.String("x s3cr3t") != "x s3cr3t" {
		t.Error("a nil Masker changed the text")
	}
}

func TestFormatterMasksEveryLogLine(t *testing.T) {
	var m Masker
	m.Add("s3cr3t-token")
	var buf strings.Builder
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetFormatter(m.Formatter(&logrus.JSONFormatter{}))
	log.WithField("url", "https://h/?key=s3cr3t-token").WithError(errors.New("401 for s3cr3t-token")).Error("webhook failed: s3cr3t-token")
	if strings.Contains(buf.String(), "s3cr3t-token") || strings.Count(buf.String(), Mask) != 3 {
		t.Errorf("log line not masked: %s", buf.String())
	}
}
