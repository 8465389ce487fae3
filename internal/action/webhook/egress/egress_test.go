package egress

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func mustPolicy(t *testing.T, c Config) *Policy {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url   string
		allow []string
		kube  string
		rule  Rule // "" when allowed
	}{
		{url: "https://hooks.example.com/x"},
		{url: "http://203.0.113.10:8080/"},
		{url: "http://[2001:db8::1]/"},
		{url: "http://127.0.0.1/", rule: Loopback},
		{url: "http://127.0.0.1/", allow: []string{"loopback"}},
		{url: "http://127.255.255.254/", rule: Loopback},
		{url: "http://[::1]/", rule: Loopback},
		{url: "http://[::ffff:127.0.0.1]/", rule: Loopback},
		{url: "http://[::ffff:169.254.169.254]/", rule: LinkLocal},
		{url: "http://[64:ff9b::a9fe:a9fe]/", rule: LinkLocal}, // 169.254.169.254 through NAT64
		{url: "http://[64:ff9b::cb00:710a]/"},                  // 203.0.113.10 through NAT64
		{url: "http://169.254.169.254/", rule: LinkLocal},
		{url: "http://169.254.169.254/", allow: []string{"private", "loopback"}, rule: LinkLocal},
		{url: "http://169.254.169.254/", allow: []string{"link-local"}},
		{url: "http://169.254.1.1/", rule: LinkLocal},
		{url: "http://[fe80::1%25eth0]/", rule: LinkLocal},
		{url: "http://[fd00:ec2::254]/", allow: []string{"private"}, rule: LinkLocal},
		{url: "http://10.0.0.1/", rule: Private},
		{url: "http://10.0.0.1/", allow: []string{"Private"}},
		{url: "http://172.16.0.1/", rule: Private},
		{url: "http://172.31.255.255/", rule: Private},
		{url: "http://172.32.0.1/"},
		{url: "http://192.168.0.1/", rule: Private},
		{url: "http://100.64.0.1/", rule: Private},
		{url: "http://100.128.0.1/"},
		{url: "http://[fc00::1]/", rule: Private},
		{url: "http://[fec0::1]/", rule: Private},
		{url: "http://0.0.0.0/", allow: []string{"loopback", "private", "link-local"}, rule: Unspecified},
		{url: "http://0.1.2.3/", rule: Unspecified},
		{url: "http://[::]/", rule: Unspecified},
		{url: "http://224.0.0.251/", rule: Multicast},
		{url: "http://[ff02::1]/", rule: Multicast},
		{url: "https://10.96.0.1/", kube: "10.96.0.1", rule: KubernetesAPI},
		{url: "https://10.96.0.1/", kube: "10.96.0.1", allow: []string{"private"}, rule: KubernetesAPI},
		// Allowing the API server does not take allowing its range too.
		{url: "https://10.96.0.1/", kube: "10.96.0.1", allow: []string{"kubernetes-api"}},
		{url: "https://10.96.0.2/", kube: "10.96.0.1", allow: []string{"kubernetes-api"}, rule: Private},
		{url: "https://kubernetes/", rule: KubernetesAPI},
		{url: "https://kubernetes.default/", rule: KubernetesAPI},
		{url: "https://kubernetes.default.svc/", allow: []string{"cluster-local"}, rule: KubernetesAPI},
		{url: "https://kubernetes.default.svc.cluster.local/", rule: KubernetesAPI},
		{url: "https://KUBERNETES.default.svc.cluster.local./", rule: KubernetesAPI},
		{url: "https://kubernetes.default.svc/", allow: []string{"kubernetes-api"}},
		{url: "https://kubernetes.default.example.com/"},
		{url: "https://api.internal/", kube: "api.internal", rule: KubernetesAPI},
		{url: "http://carts.sockshop.svc.cluster.local/", rule: ClusterLocal},
		{url: "http://carts.sockshop.svc.cluster.local:8080/", allow: []string{"cluster-local"}},
		{url: "http://carts.sockshop.svc/", rule: ClusterLocal},
		{url: "http://cluster.local/", rule: ClusterLocal},
		{url: "http://svc.example.com/"},
	}
	for _, tt := range tests {
		t.Run(tt.url+" "+strings.Join(tt.allow, ","), func(t *testing.T) {
			p := mustPolicy(t, Config{Allow: tt.allow, KubernetesServiceHost: tt.kube})
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			err = p.CheckURL(u)
			var d *Denied
			switch {
			case tt.rule == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.rule != "" && !errors.As(err, &d):
				t.Errorf("got %v, want refused by %q", err, tt.rule)
			case tt.rule != "" && d.Rule != tt.rule:
				t.Errorf("refused by %q (%v), want %q", d.Rule, err, tt.rule)
			}
		})
	}
}

func TestCheckURLNotHTTP(t *testing.T) {
	p := mustPolicy(t, Config{})
	for _, s := range []string{"file:///etc/passwd", "gopher://x/", "http:///nohost"} {
		u, _ := url.Parse(s)
		err := p.CheckURL(u)
		var d *Denied
		if err == nil || errors.As(err, &d) {
			t.Errorf("%s: got %v, want an error that is not a refusal", s, err)
		}
	}
}

func TestAllowHosts(t *testing.T) {
	p := mustPolicy(t, Config{
		Allow:      []string{"loopback", "private"},
		AllowHosts: []string{"hooks.example.com", "*.pagerduty.com", "203.0.113.7", "10.1.0.0/16", "[2001:db8::1]", "Trailing.Example.org."},
	})
	tests := map[string]bool{
		"https://hooks.example.com/":         true,
		"https://HOOKS.example.com./":        true,
		"https://x.hooks.example.com/":       false,
		"https://example.com/":               false,
		"https://events.pagerduty.com/":      true,
		"https://a.b.pagerduty.com/":         true,
		"https://pagerduty.com/":             false,
		"https://evilpagerduty.com/":         false,
		"https://pagerduty.com.evil.net/":    false,
		"http://203.0.113.7/":                true,
		"http://203.0.113.8/":                false,
		"http://10.1.200.3/":                 true,
		"http://10.2.0.1/":                   false,
		"http://[2001:db8::1]:8443/":         true,
		"http://[::ffff:203.0.113.7]/":       true,
		"https://trailing.example.org/":      true,
		"https://203-0-113-7.nip.io/":        false,
		"http://localhost/":                  false,
		"https://hooks.example.com.evil.io/": false,
	}
	for s, want := range tests {
		u, _ := url.Parse(s)
		err := p.CheckURL(u)
		var d *Denied
		switch {
		case want && err != nil:
			t.Errorf("%s: refused: %v", s, err)
		case !want && (!errors.As(err, &d) || d.Rule != AllowHosts):
			t.Errorf("%s: got %v, want refused by allowHosts", s, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{Config{Allow: []string{"loopback", "metadata"}}, `allow[1]: "metadata" is not a rule; the rules are "loopback", "link-local", "private", "kubernetes-api" and "cluster-local"`},
		{Config{Allow: []string{"unspecified"}}, `allow[0]: "unspecified" is not a rule`},
		{Config{Allow: []string{"allowHosts"}}, `allow[0]: "allowHosts" is not a rule`},
		{Config{AllowHosts: []string{""}}, "allowHosts[0]: empty host"},
		{Config{AllowHosts: []string{"https://hooks.example.com/x"}}, `allowHosts[0]: "https://hooks.example.com/x" is a URL; list its host name only`},
		{Config{AllowHosts: []string{"a.com", "hooks.example.com:443"}}, `allowHosts[1]: "hooks.example.com:443" has a port`},
		{Config{AllowHosts: []string{"*"}}, `allowHosts[0]: "*": a wildcard may only lead a name`},
		{Config{AllowHosts: []string{"*.*.com"}}, `allowHosts[0]: "*.*.com": a wildcard may only lead a name`},
		{Config{AllowHosts: []string{"hooks*.example.com"}}, `allowHosts[0]: "hooks*.example.com": a wildcard may only lead a name`},
		{Config{AllowHosts: []string{"10.0.0.0/33"}}, `allowHosts[0]: "10.0.0.0/33" is neither a host name nor a CIDR prefix`},
		{Config{AllowHosts: []string{"hooks example.com"}}, `allowHosts[0]: "hooks example.com" is not a host name`},
	}
	for _, tt := range tests {
		_, err := New(tt.c)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v\nwant %s…", tt.c, err, tt.want)
		}
	}
}

func TestDeniedMessages(t *testing.T) {
	tests := []struct {
		d    Denied
		want string
	}{
		{
			Denied{Rule: Loopback, Host: "localhost", Addr: netip.MustParseAddr("127.0.0.1"), Resolved: true, Of: 1, What: "a loopback address"},
			`localhost resolves to 127.0.0.1, a loopback address; add "loopback" to settings.allow to permit it`,
		},
		{
			Denied{Rule: Private, Host: "mixed.test", Addr: netip.MustParseAddr("10.0.0.7"), Resolved: true, Of: 2, What: "a private address (10.0.0.0/8)"},
			`mixed.test resolves to 10.0.0.7 (one of its 2 addresses), a private address (10.0.0.0/8); add "private" to settings.allow to permit it`,
		},
		{
			Denied{Rule: LinkLocal, Host: "169.254.169.254", Addr: netip.MustParseAddr("169.254.169.254"), What: "a link-local address"},
			`169.254.169.254 is a link-local address; add "link-local" to settings.allow to permit it`,
		},
		{
			Denied{Rule: ClusterLocal, Host: "a.b.svc", What: "a cluster-local service name (*.svc)"},
			`a.b.svc is a cluster-local service name (*.svc); add "cluster-local" to settings.allow to permit it`,
		},
		{
			Denied{Rule: Multicast, Host: "224.0.0.1", Addr: netip.MustParseAddr("224.0.0.1"), What: "a multicast address"},
			`224.0.0.1 is a multicast address; no setting permits it`,
		},
		{
			Denied{Rule: AllowHosts, Host: "evil.example.net", List: []string{"hooks.example.com", "*.pagerduty.com"}},
			`evil.example.net is not in settings.allowHosts (hooks.example.com, *.pagerduty.com); add it there to permit it`,
		},
	}
	for _, tt := range tests {
		if got := tt.d.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

// fakeDNS is a resolver answering from hosts, over an in-memory
// connection: no packet leaves the process.
func fakeDNS(hosts map[string][]string, queries *atomic.Int32) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, srv := net.Pipe()
		go serveDNS(srv, hosts, queries)
		return client, nil
	}}
}

// serveDNS answers length-prefixed DNS queries (the TCP framing, which
// Go's resolver uses on a connection that is not a PacketConn) with the A
// or AAAA records of hosts.
func serveDNS(c net.Conn, hosts map[string][]string, queries *atomic.Int32) {
	defer c.Close()
	for {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		queries.Add(1)
		// The question: labels from byte 12, then type and class.
		i, name := 12, ""
		for q[i] != 0 {
			name += string(q[i+1:i+1+int(q[i])]) + "."
			i += 1 + int(q[i])
		}
		qtype := binary.BigEndian.Uint16(q[i+1:])
		question := q[12 : i+5]
		var answers [][]byte
		for _, s := range hosts[strings.ToLower(name)] {
			a := netip.MustParseAddr(s)
			if a.Is4() && qtype == 1 || a.Is6() && qtype == 28 {
				answers = append(answers, a.AsSlice())
			}
		}
		resp := append([]byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, byte(len(answers)), 0, 0, 0, 0}, question...)
		for _, rdata := range answers {
			resp = append(resp, 0xc0, 12, 0, byte(qtype), 0, 1, 0, 0, 0, 60, 0, byte(len(rdata)))
			resp = append(resp, rdata...)
		}
		if _, err := c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...)); err != nil {
			return
		}
	}
}

func TestResolve(t *testing.T) {
	var queries atomic.Int32
	resolver := fakeDNS(map[string][]string{
		"public.test.":   {"203.0.113.5"},
		"mixed.test.":    {"203.0.113.5", "10.0.0.7"},
		"metadata.test.": {"169.254.169.254"},
		"v6only.test.":   {"fd00::5"},
	}, &queries)
	tests := []struct {
		host  string
		allow []string
		want  string // the error; "" to allow
	}{
		{host: "public.test"},
		{host: "mixed.test", want: `mixed.test resolves to 10.0.0.7 (one of its 2 addresses), a private address (10.0.0.0/8); add "private" to settings.allow to permit it`},
		{host: "mixed.test", allow: []string{"private"}},
		{host: "metadata.test", allow: []string{"private"}, want: `metadata.test resolves to 169.254.169.254, a link-local address: the cloud metadata service, which hands out the node's credentials; add "link-local" to settings.allow to permit it`},
		{host: "v6only.test", want: `v6only.test resolves to fd00::5, a private address (fc00::/7, unique local); add "private" to settings.allow to permit it`},
		{host: "nxdomain.test", want: "no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.host+" "+strings.Join(tt.allow, ","), func(t *testing.T) {
			p := mustPolicy(t, Config{Allow: tt.allow, Resolver: resolver})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			addrs, err := p.Resolve(ctx, "tcp", tt.host)
			switch {
			case tt.want == "" && (err != nil || len(addrs) == 0):
				t.Errorf("got %v, %v; want addresses", addrs, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v, %v\nwant %s", addrs, err, tt.want)
			}
		})
	}
	if queries.Load() == 0 {
		t.Error("the fake DNS was not asked; the test proves nothing")
	}
}

// listener accepts and counts connections on 127.0.0.1.
func listener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), accepted
}

func TestDialContext(t *testing.T) {
	addr, accepted := listener(t)
	_, port, _ := net.SplitHostPort(addr)
	var queries atomic.Int32
	resolver := fakeDNS(map[string][]string{"hook.test.": {"127.0.0.1"}}, &queries)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Refused: no connection is made.
	p := mustPolicy(t, Config{Resolver: resolver})
	for _, a := range []string{addr, "hook.test:" + port, "localhost:" + port} {
		c, err := p.DialContext(ctx, "tcp", a)
		var d *Denied
		if !errors.As(err, &d) || d.Rule != Loopback {
			t.Errorf("dial %s: %v, %v; want refused as loopback", a, c, err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d connections reached a refused address", n)
	}

	// Allowed: the name is resolved by the policy and its address dialed.
	p = mustPolicy(t, Config{Allow: []string{"loopback"}, Resolver: resolver})
	c, err := p.DialContext(ctx, "tcp", "hook.test:"+port)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := c.RemoteAddr().String(); got != addr {
		t.Errorf("connected to %s, want %s", got, addr)
	}
}

func TestControlIsABackstop(t *testing.T) {
	p := mustPolicy(t, Config{Allow: []string{"private"}})
	for address, want := range map[string]Rule{
		"127.0.0.1:80":             Loopback,
		"[::1]:443":                Loopback,
		"169.254.169.254:80":       LinkLocal,
		"[::ffff:127.0.0.1]:80":    Loopback,
		"10.0.0.1:80":              "",
		"203.0.113.1:80":           "",
		"not-an-address:80":        "error",
		"[fe80::1%eth0]:80":        LinkLocal,
		"[64:ff9b::7f00:1]:80":     Loopback,
		"[64:ff9b::a00:1]:80":      "",
		"[2001:db8::1]:80":         "",
		"0.0.0.0:80":               Unspecified,
		"239.255.255.250:1900":     Multicast,
		"[ff02::fb]:5353":          Multicast,
		"[fd00:ec2::254]:80":       LinkLocal,
		"100.100.100.200:80":       "",
		"[fec0::1]:80":             "",
		"192.168.0.1:80":           "",
		"172.16.0.1:80":            "",
		"[fc00::1]:80":             "",
		"[::]:80":                  Unspecified,
		"127.0.0.1:0":              Loopback,
		"[::ffff:169.254.1.1]:443": LinkLocal,
	} {
		err := p.control("tcp", address, nil)
		var d *Denied
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: refused: %v", address, err)
		case want == "error" && (err == nil || errors.As(err, &d)):
			t.Errorf("%s: %v, want an error", address, err)
		case want != "" && want != "error" && (!errors.As(err, &d) || d.Rule != want):
			t.Errorf("%s: %v, want refused by %q", address, err, want)
		}
	}
	// And it is what the dialer calls before connecting.
	addr, accepted := listener(t)
	if _, err := p.dialer.Dial("tcp", addr); err == nil || !strings.Contains(err.Error(), "a loopback address") {
		t.Errorf("dialing around DialContext: %v; want the Control refusal", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections got through", n)
	}
}

func TestTransportUsesNoProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.example.com:3128")
	t.Setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
	tr := mustPolicy(t, Config{}).Transport()
	if tr.Proxy != nil {
		t.Error("the transport uses a proxy; the egress rules would check only the proxy")
	}
	if tr.DialContext == nil || tr.DialTLSContext != nil {
		t.Error("every connection must go through Policy.DialContext")
	}
}
