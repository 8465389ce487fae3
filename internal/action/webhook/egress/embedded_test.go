package egress

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEmbeddedIPv4 checks the IPv6 spellings of an IPv4 address, and the
// IPv4 addresses no request should go to: each is judged by the address
// it embeds, so that a rule cannot be walked around by writing it in
// IPv6.
func TestEmbeddedIPv4(t *testing.T) {
	tests := []struct {
		host  string
		allow []string
		rule  Rule // "" when allowed
	}{
		// IPv4-mapped, ::ffff:0:0/96, in its spellings.
		{host: "[::ffff:127.0.0.1]", rule: Loopback},
		{host: "[::ffff:7f00:1]", rule: Loopback},
		{host: "[0:0:0:0:0:ffff:7f00:1]", rule: Loopback},
		{host: "[::FFFF:a9fe:a9fe]", rule: LinkLocal},
		{host: "[::ffff:10.0.0.1]", rule: Private},
		{host: "[::ffff:0.0.0.0]", rule: Unspecified},
		{host: "[::ffff:7f00:1]", allow: []string{"loopback"}},
		{host: "[::ffff:cb00:710a]"}, // 203.0.113.10
		// IPv4-compatible, ::/96.
		{host: "[::127.0.0.1]", rule: Loopback},
		{host: "[::7f00:1]", rule: Loopback},
		{host: "[0:0:0:0:0:0:a9fe:a9fe]", rule: LinkLocal},
		{host: "[::10.1.2.3]", rule: Private},
		{host: "[::10.1.2.3]", allow: []string{"private"}},
		{host: "[::cb00:710a]"},
		{host: "[::1]", rule: Loopback}, // ::1 stays the IPv6 loopback
		{host: "[::]", rule: Unspecified},
		// 6to4, 2002::/16: the IPv4 address is bits 16 to 47.
		{host: "[2002:7f00:1::]", rule: Loopback},
		{host: "[2002:7f00:0001:0:0:0:0:1]", rule: Loopback},
		{host: "[2002:a9fe:a9fe::1]", rule: LinkLocal},
		{host: "[2002:c0a8:101::]", rule: Private},
		{host: "[2002:cb00:710a::1]"},
		// NAT64, the well-known prefix and the local-use one.
		{host: "[64:ff9b::127.0.0.1]", rule: Loopback},
		{host: "[64:ff9b::7f00:1]", rule: Loopback},
		{host: "[64:ff9b::cb00:710a]"},
		{host: "[64:ff9b:1::a9fe:a9fe]", rule: Private},
		{host: "[64:ff9b:1:ffff::cb00:710a]", rule: Private},
		{host: "[64:ff9b:1::1]", allow: []string{"private"}},
		// Teredo, 2001::/32, tunnels to an address no rule sees.
		{host: "[2001:0:4136:e378:8000:63bf:3fff:fdd2]", rule: Tunnel},
		{host: "[2001::1]", allow: []string{"loopback", "private", "link-local"}, rule: Tunnel},
		{host: "[2001:db8::1]"}, // documentation range, not Teredo
		// Broadcast and "this network".
		{host: "255.255.255.255", allow: []string{"loopback", "private", "link-local"}, rule: Broadcast},
		{host: "[::ffff:255.255.255.255]", rule: Broadcast},
		{host: "0.0.0.0", rule: Unspecified},
		{host: "0.255.255.255", rule: Unspecified},
		{host: "[2002::]", rule: Unspecified},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+strings.Join(tt.allow, ","), func(t *testing.T) {
			p := mustPolicy(t, Config{Allow: tt.allow})
			u, err := url.Parse("http://" + tt.host + "/")
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				t.Helper()
				var d *Denied
				switch {
				case tt.rule == "" && err != nil:
					t.Errorf("%s: refused: %v", what, err)
				case tt.rule != "" && !errors.As(err, &d):
					t.Errorf("%s: got %v, want refused by %q", what, err, tt.rule)
				case tt.rule != "" && d.Rule != tt.rule:
					t.Errorf("%s: refused by %q (%v), want %q", what, d.Rule, err, tt.rule)
				}
			}
			check("CheckURL", p.CheckURL(u))
			// The dialer's backstop judges the address the same way.
			a := netip.MustParseAddr(strings.Trim(tt.host, "[]"))
			check("control", p.control("tcp", netip.AddrPortFrom(a, 80).String(), nil))
		})
	}
}

// TestEmbeddedIPv4Resolved checks that a name whose AAAA record embeds a
// refused IPv4 address is refused after DNS.
func TestEmbeddedIPv4Resolved(t *testing.T) {
	var queries atomic.Int32
	resolver := fakeDNS(map[string][]string{
		"sixtofour.test.": {"2002:7f00:1::1"},
		"compat.test.":    {"::a9fe:a9fe"},
		"teredo.test.":    {"2001:0:4136:e378:8000:63bf:3fff:fdd2"},
		"nat64.test.":     {"64:ff9b::cb00:710a"},
	}, &queries)
	tests := []struct {
		host string
		rule Rule
	}{
		{host: "sixtofour.test", rule: Loopback},
		{host: "compat.test", rule: LinkLocal},
		{host: "teredo.test", rule: Tunnel},
		{host: "nat64.test"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			p := mustPolicy(t, Config{Resolver: resolver})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := p.Resolve(ctx, "tcp6", tt.host)
			var d *Denied
			switch {
			case tt.rule == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.rule != "" && (!errors.As(err, &d) || d.Rule != tt.rule):
				t.Errorf("got %v, want refused by %q", err, tt.rule)
			}
		})
	}
	if queries.Load() == 0 {
		t.Error("the fake DNS was not asked; the test proves nothing")
	}
}

func TestEmbeddedIPv4Message(t *testing.T) {
	p := mustPolicy(t, Config{})
	u, _ := url.Parse("http://[2002:7f00:1::]/")
	want := `2002:7f00:1:: is an address embedding 127.0.0.1, a loopback address, which reaches this pod itself; add "loopback" to settings.allow to permit it`
	if err := p.CheckURL(u); err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}
