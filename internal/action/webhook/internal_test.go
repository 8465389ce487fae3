package webhook

import (
	"strings"
	"testing"
	"time"
)

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{header: "", ok: false},
		{header: "0", want: 0, ok: true},
		{header: " 7 ", want: 7 * time.Second, ok: true},
		{header: "-1", ok: false},
		{header: "soon", ok: false},
		{header: "99999999999", want: 24 * time.Hour, ok: true},
		{header: "Sun, 01 Mar 2026 12:00:30 GMT", want: 30 * time.Second, ok: true},
		{header: "Sun, 01 Mar 2026 11:00:00 GMT", want: 0, ok: true},
	}
	for _, tt := range tests {
		got, ok := retryAfter(tt.header, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{s: "short", n: 10, want: "short"},
		{s: "exactly10!", n: 10, want: "exactly10!"},
		{s: "a bit too long", n: 10, want: "a bit t…"},
		{s: strings.Repeat("ü", 10), n: 10, want: "üüü…"},
	}
	for _, tt := range tests {
		got := clip(tt.s, tt.n)
		if got != tt.want || len(got) > tt.n {
			t.Errorf("clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
