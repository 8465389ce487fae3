package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestHistoryFlags(t *testing.T) {
	t.Setenv("SANDBOX", "true")
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for none
	}{
		{[]string{"history", "--since", "yesterday"}, `invalid --since "yesterday"`},
		{[]string{"history", "--since", "-1h"}, `invalid --since "-1h"`},
		{[]string{"history", "--output", "yaml"}, `invalid --output "yaml"`},
		{[]string{"history", "extra"}, `unexpected argument "extra"`},
		{[]string{"history", "--help"}, ""},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errOut)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "30m": 30 * time.Minute, "7d": 7 * 24 * time.Hour} {
		if got, err := parseSince(in); err != nil || got != want {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// In sandbox mode, history reads a fresh sandbox: nothing happened there.
func TestHistoryInTheSandbox(t *testing.T) {
	if sandboxBuild != "with sandbox" {
		t.Skip("built without the sandbox")
	}
	t.Setenv("SANDBOX", "true")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"history", "--output", "json", "--namespace", "sockshop-production,sockshop-staging"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("json history of a fresh sandbox: %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"history"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 actions, 0 refused or failed, 0 in flight") {
		t.Errorf("table of a fresh sandbox:\n%s", out.String())
	}
	if !strings.Contains(errOut.String(), "SANDBOX MODE") {
		t.Errorf("no sandbox warning on stderr: %q", errOut.String())
	}
}
