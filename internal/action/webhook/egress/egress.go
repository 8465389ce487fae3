// Package egress decides where the webhook action may send a request, and
// enforces it where it counts: on the address a connection is really made
// to, after DNS, for the first request and for every redirect.
//
// A webhook's URL is configuration, but it is templated over events, and
// the endpoint it reaches may redirect anywhere. Without these rules a
// catalog entry, or a server it calls, could point the provider, which runs
// with a service account and inside the cluster network, at the Kubernetes
// API, the cloud metadata service that hands out the node's credentials, or
// any service in the cluster. So, unless the catalog entry allows it by
// name, a request is refused when:
//
//   - its host is a name of the Kubernetes API (kubernetes,
//     kubernetes.default, kubernetes.default.svc, kubernetes.default.svc.*)
//     or the API server's service address: rule "kubernetes-api";
//   - its host is a cluster-local service name (*.cluster.local, *.svc):
//     rule "cluster-local";
//   - the host, or any address its name resolves to, is a loopback address
//     (127.0.0.0/8, ::1): rule "loopback"; a link-local one (169.254.0.0/16,
//     where the metadata service lives, fe80::/10): rule "link-local"; or a
//     private one (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
//     100.64.0.0/10, fc00::/7, fec0::/10): rule "private".
//
// Unspecified (0.0.0.0/8, ::), broadcast (255.255.255.255) and multicast
// addresses are refused always, and so are Teredo addresses (2001::/32),
// which a relay forwards to an IPv4 address hidden from these rules. An
// IPv6 address that embeds an IPv4 one is judged by the IPv4 address:
// IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) addresses,
// 6to4 (2002::/16) and the well-known NAT64 prefix (64:ff9b::/96); the
// local-use NAT64 prefix (64:ff9b:1::/48), whose translation only the
// local network knows, falls under rule "private". When the entry lists
// allowHosts, a host not on the list is refused too.
//
// Names are checked on the URL before anything is sent; addresses are
// checked by the dialer, which resolves the name itself and connects only to
// the addresses it checked, so that DNS cannot answer differently between
// the check and the connection. A name that resolves to several addresses
// is refused if any of them is: a public name with a private address among
// its records is more likely a trick than a configuration. A Control
// function on the dialer checks the address once more just before connect,
// as a backstop. Proxies from the environment (HTTP_PROXY) are not used:
// through a proxy, the proxy would do the resolving and these checks would
// see only the proxy.
//
// A single-label name such as "carts" reaches a cluster service through the
// resolver's search path without ending in .cluster.local; it is caught by
// the address rules, since cluster services have private addresses. A
// cluster whose domain is not cluster.local is likewise protected by the
// address rules only.
package egress

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Rule names what refused a destination. The rules that Allowable reports
// true for can be lifted by listing them in a catalog entry's
// settings.allow.
type Rule string

// The rules.
const (
	Loopback      Rule = "loopback"
	LinkLocal     Rule = "link-local"
	Private       Rule = "private"
	KubernetesAPI Rule = "kubernetes-api"
	ClusterLocal  Rule = "cluster-local"

	// Unspecified, Multicast, Broadcast and Tunnel are never allowed.
	Unspecified Rule = "unspecified"
	Multicast   Rule = "multicast"
	Broadcast   Rule = "broadcast"
	Tunnel      Rule = "tunnel"
	// AllowHosts refuses a host not on settings.allowHosts.
	AllowHosts Rule = "allowHosts"
)

// allowable lists, in the order the documentation gives them, the rules
// settings.allow may name.
var allowable = []Rule{Loopback, LinkLocal, Private, KubernetesAPI, ClusterLocal}

// Allowable reports whether settings.allow can lift r.
func (r Rule) Allowable() bool {
	for _, a := range allowable {
		if r == a {
			return true
		}
	}
	return false
}

// Denied is the error of a refused destination. Its text says what was
// refused, by which rule, and how to allow it, for the person reading the
// action's message in the Keptn Bridge.
type Denied struct {
	Rule Rule
	// Host is the host as the URL names it.
	Host string
	// Addr is the refused address, when an address rule refused.
	Addr netip.Addr
	// Resolved is set when Host is a name and Addr one of the addresses it
	// resolved to; Of is how many there were.
	Resolved bool
	Of       int
	// What describes the refused host or address: "a loopback address".
	What string
	// List is settings.allowHosts, for a host that is not on it.
	List []string
}

func (d *Denied) Error() string {
	if d.Rule == AllowHosts {
		return fmt.Sprintf("%s is not in settings.allowHosts (%s); add it there to permit it",
			d.Host, strings.Join(d.List, ", "))
	}
	var b strings.Builder
	switch {
	case d.Resolved:
		fmt.Fprintf(&b, "%s resolves to %s", d.Host, d.Addr)
		if d.Of > 1 {
			fmt.Fprintf(&b, " (one of its %d addresses)", d.Of)
		}
		fmt.Fprintf(&b, ", %s", d.What)
	case d.Addr.IsValid():
		fmt.Fprintf(&b, "%s is %s", d.Addr, d.What)
	default:
		fmt.Fprintf(&b, "%s is %s", d.Host, d.What)
	}
	if d.Rule.Allowable() {
		fmt.Fprintf(&b, "; add %q to settings.allow to permit it", d.Rule)
	} else {
		b.WriteString("; no setting permits it")
	}
	return b.String()
}

// Config is what a Policy is made from.
type Config struct {
	// Allow lists the rules lifted, by name: "loopback", "link-local",
	// "private", "kubernetes-api", "cluster-local".
	Allow []string
	// AllowHosts, when not empty, is the only hosts requests may go to:
	// exact names, "*.example.com" (any name under example.com, not
	// example.com itself), IP addresses and CIDR prefixes. Address entries
	// match URLs whose host is written as an address; names match names.
	// An allowed host is still subject to the address rules.
	AllowHosts []string
	// KubernetesServiceHost is the API server's service address, as in
	// KUBERNETES_SERVICE_HOST; it is refused like kubernetes.default, under
	// rule "kubernetes-api", even when "private" or "loopback" is allowed.
	// Conversely, allowing "kubernetes-api" allows this address without
	// "private". A name here is refused as a name.
	KubernetesServiceHost string
	// Resolver looks up names; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// Policy applies the rules of one catalog entry. It is safe for concurrent
// use.
type Policy struct {
	allow    map[Rule]bool
	hosts    []hostPattern
	hostList []string
	kubeAddr netip.Addr
	kubeName string
	resolver *net.Resolver
	dialer   net.Dialer
}

// New checks c and returns its Policy. Errors name the field:
// `allow[1]: "loopbak" is not a rule; ...`.
func New(c Config) (*Policy, error) {
	p := &Policy{allow: map[Rule]bool{}, resolver: c.Resolver}
	for i, a := range c.Allow {
		r := Rule(strings.ToLower(strings.TrimSpace(a)))
		if !r.Allowable() {
			return nil, fmt.Errorf("allow[%d]: %q is not a rule; the rules are %s", i, a, ruleList())
		}
		p.allow[r] = true
	}
	for i, h := range c.AllowHosts {
		pat, err := parseHostPattern(h)
		if err != nil {
			return nil, fmt.Errorf("allowHosts[%d]: %w", i, err)
		}
		p.hosts = append(p.hosts, pat)
		p.hostList = append(p.hostList, h)
	}
	if k := strings.TrimSpace(c.KubernetesServiceHost); k != "" {
		if a, err := netip.ParseAddr(strings.Trim(k, "[]")); err == nil {
			p.kubeAddr = a.WithZone("").Unmap()
		} else {
			p.kubeName = normalize(k)
		}
	}
	p.dialer = net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: p.control}
	return p, nil
}

func ruleList() string {
	q := make([]string, len(allowable))
	for i, r := range allowable {
		q[i] = fmt.Sprintf("%q", r)
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1]
}

// Transport returns an HTTP transport that connects only where p allows:
// every connection is dialed through p.DialContext, and no proxy is used.
// Redirects are the client's business: check each with CheckURL in
// http.Client.CheckRedirect, so that a name rule refuses it before DNS.
func (p *Policy) Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // see the package documentation
		DialContext:           p.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// CheckURL checks what can be checked of u without DNS: its scheme, the
// name rules, settings.allowHosts and, when the host is written as an
// address, the address rules. A refusal is a *Denied.
func (p *Policy) CheckURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q is not an http or https URL", u.Redacted())
	}
	host := normalize(u.Hostname())
	if host == "" {
		return fmt.Errorf("%q has no host", u.Redacted())
	}
	if err := p.checkHost(host); err != nil {
		return err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if d := p.checkAddr(host, a, false, 1); d != nil {
			return d
		}
	}
	return nil
}

// Resolve checks host as CheckURL does, looks it up unless it is an
// address, and checks every address it resolves to. It returns the
// addresses only when all of them are allowed. network is "tcp", "tcp4" or
// "tcp6", as for a dialer.
func (p *Policy) Resolve(ctx context.Context, network, host string) ([]netip.Addr, error) {
	host = normalize(host)
	if err := p.checkHost(host); err != nil {
		return nil, err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if d := p.checkAddr(host, a, false, 1); d != nil {
			return nil, d
		}
		return []netip.Addr{a}, nil
	}
	ipNetwork := "ip"
	switch network {
	case "tcp4", "udp4":
		ipNetwork = "ip4"
	case "tcp6", "udp6":
		ipNetwork = "ip6"
	}
	lookup := p.resolver
	if lookup == nil {
		lookup = net.DefaultResolver
	}
	addrs, err := lookup.LookupNetIP(ctx, ipNetwork, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s resolves to no address", host)
	}
	for i, a := range addrs {
		if d := p.checkAddr(host, a, true, len(addrs)); d != nil {
			return nil, d
		}
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// DialContext connects to address ("host:port") as a net.Dialer would, but
// only after Resolve has allowed the host and every address it stands for,
// and then to those very addresses, one after the other until one answers.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	addrs, err := p.Resolve(ctx, network, host)
	if err != nil {
		return nil, err
	}
	var first error
	for _, a := range addrs {
		c, err := p.dialer.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// control is the dialer's last check, on the address about to be
// connected to; DialContext has checked it already, so it refuses only if
// something dialed around it.
func (p *Policy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("cannot check the address %q before connecting: %w", address, err)
	}
	if d := p.checkAddr(ap.Addr().String(), ap.Addr(), false, 1); d != nil {
		return d
	}
	return nil
}

// normalize lowercases a host and drops the trailing dot of a fully
// qualified name, so that "Kubernetes.Default.SVC." is caught as well.
func normalize(host string) string {
	return strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
}

// checkHost applies settings.allowHosts and the name rules to a normalized
// host.
func (p *Policy) checkHost(host string) error {
	if len(p.hosts) > 0 && !p.listed(host) {
		return &Denied{Rule: AllowHosts, Host: host, List: p.hostList}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if rule, what := p.nameRule(host); rule != "" && !p.allow[rule] {
		return &Denied{Rule: rule, Host: host, What: what}
	}
	return nil
}

// nameRule says which name rule host falls under, if any.
func (p *Policy) nameRule(host string) (Rule, string) {
	switch {
	case host == "kubernetes", host == "kubernetes.default", host == "kubernetes.default.svc",
		strings.HasPrefix(host, "kubernetes.default.svc."):
		return KubernetesAPI, "a name of the Kubernetes API server"
	case p.kubeName != "" && host == p.kubeName:
		return KubernetesAPI, "the Kubernetes API server (KUBERNETES_SERVICE_HOST)"
	case host == "cluster.local", strings.HasSuffix(host, ".cluster.local"):
		return ClusterLocal, "a cluster-local service name (*.cluster.local)"
	case strings.HasSuffix(host, ".svc"):
		return ClusterLocal, "a cluster-local service name (*.svc)"
	}
	return "", ""
}

// listed reports whether host matches settings.allowHosts.
func (p *Policy) listed(host string) bool {
	a, err := netip.ParseAddr(host)
	isAddr := err == nil
	if isAddr {
		a = a.WithZone("").Unmap()
	}
	for _, h := range p.hosts {
		switch {
		case h.prefix.IsValid():
			if isAddr && h.prefix.Contains(a) {
				return true
			}
		case h.suffix != "":
			if !isAddr && strings.HasSuffix(host, h.suffix) {
				return true
			}
		case host == h.name:
			return true
		}
	}
	return false
}

// checkAddr applies the address rules to a. host is what the URL names;
// resolved says a is one of the of addresses host resolved to.
func (p *Policy) checkAddr(host string, a netip.Addr, resolved bool, of int) *Denied {
	rule, what := p.classify(a)
	if rule == "" || p.allow[rule] {
		return nil
	}
	if e := embedded(a); e != a.WithZone("").Unmap() {
		what = fmt.Sprintf("an address embedding %s, %s", e, what)
	}
	return &Denied{Rule: rule, Host: host, Addr: a.WithZone("").Unmap(), Resolved: resolved, Of: of, What: what}
}

// ranges are the address rules, checked in order after the Kubernetes API
// address, on the IPv4 address an IPv6 one embeds, if any (see embedded).
var ranges = []struct {
	prefix netip.Prefix
	rule   Rule
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), Unspecified, "an unspecified address, which reaches this host itself"},
	{netip.MustParsePrefix("::/128"), Unspecified, "an unspecified address, which reaches this host itself"},
	{netip.MustParsePrefix("127.0.0.0/8"), Loopback, "a loopback address, which reaches this pod itself"},
	{netip.MustParsePrefix("::1/128"), Loopback, "a loopback address, which reaches this pod itself"},
	{netip.MustParsePrefix("169.254.169.254/32"), LinkLocal, "a link-local address: the cloud metadata service, which hands out the node's credentials"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), LinkLocal, "the cloud metadata service's IPv6 address, which hands out the node's credentials"},
	{netip.MustParsePrefix("169.254.0.0/16"), LinkLocal, "a link-local address"},
	{netip.MustParsePrefix("fe80::/10"), LinkLocal, "a link-local address"},
	{netip.MustParsePrefix("10.0.0.0/8"), Private, "a private address (10.0.0.0/8)"},
	{netip.MustParsePrefix("172.16.0.0/12"), Private, "a private address (172.16.0.0/12)"},
	{netip.MustParsePrefix("192.168.0.0/16"), Private, "a private address (192.168.0.0/16)"},
	{netip.MustParsePrefix("100.64.0.0/10"), Private, "a private address (100.64.0.0/10, shared address space)"},
	{netip.MustParsePrefix("fc00::/7"), Private, "a private address (fc00::/7, unique local)"},
	{netip.MustParsePrefix("fec0::/10"), Private, "a private address (fec0::/10, site-local)"},
	// The local-use NAT64 prefix embeds an IPv4 address where the local
	// translator says, which this package cannot know: like a private
	// network, it leads wherever that network does.
	{netip.MustParsePrefix("64:ff9b:1::/48"), Private, "a local-use NAT64 address (64:ff9b:1::/48), translated to an IPv4 address of the local network"},
	{netip.MustParsePrefix("255.255.255.255/32"), Broadcast, "the limited broadcast address"},
	{netip.MustParsePrefix("224.0.0.0/4"), Multicast, "a multicast address"},
	{netip.MustParsePrefix("ff00::/8"), Multicast, "a multicast address"},
	// A Teredo relay forwards to an IPv4 address and port hidden in the
	// address, past every rule here.
	{netip.MustParsePrefix("2001::/32"), Tunnel, "a Teredo tunnel address (2001::/32), which a relay forwards to an IPv4 address the rules do not see"},
}

// The IPv6 prefixes that embed an IPv4 address: a connection to one of
// them ends at that IPv4 address (through a NAT64 gateway or a 6to4
// relay), or is one (mapped and compatible addresses), so the IPv4 address
// is what the rules judge. ::ffff:0:0/96 is netip's Unmap.
var (
	// nat64 is the well-known NAT64 prefix, 64:ff9b::a.b.c.d.
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	// compatible is the deprecated IPv4-compatible form, ::a.b.c.d; :: and
	// ::1, which it also holds, are IPv6's own.
	compatible = netip.MustParsePrefix("::/96")
	// sixToFour is 6to4, 2002:aabb:ccdd::/48 for a.b.c.d = aa.bb.cc.dd.
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// embedded returns the IPv4 address a carries, or a itself.
func embedded(a netip.Addr) netip.Addr {
	a = a.WithZone("").Unmap()
	if !a.Is6() {
		return a
	}
	b := a.As16()
	switch {
	case nat64.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:]))
	case compatible.Contains(a) && a != netip.IPv6Unspecified() && a != netip.IPv6Loopback():
		return netip.AddrFrom4([4]byte(b[12:]))
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6]))
	}
	return a
}

// classify says which address rule a falls under, if any.
func (p *Policy) classify(a netip.Addr) (Rule, string) {
	a = embedded(a)
	if p.kubeAddr.IsValid() && a == p.kubeAddr {
		return KubernetesAPI, "the Kubernetes API server's service address (KUBERNETES_SERVICE_HOST)"
	}
	for _, r := range ranges {
		if r.prefix.Contains(a) {
			return r.rule, r.what
		}
	}
	return "", ""
}

// hostPattern is one entry of settings.allowHosts; exactly one field is
// set.
type hostPattern struct {
	name   string       // an exact name
	suffix string       // ".example.com" for "*.example.com"
	prefix netip.Prefix // an address (a /32 or /128) or a CIDR prefix
}

func parseHostPattern(s string) (hostPattern, error) {
	h := strings.TrimSpace(s)
	switch {
	case h == "":
		return hostPattern{}, fmt.Errorf("empty host")
	case strings.Contains(h, "://"):
		return hostPattern{}, fmt.Errorf("%q is a URL; list its host name only, e.g. %q", s, "hooks.example.com")
	}
	if pfx, err := netip.ParsePrefix(h); err == nil {
		return hostPattern{prefix: pfx.Masked()}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		a = a.WithZone("").Unmap()
		return hostPattern{prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	if strings.Contains(h, "/") {
		return hostPattern{}, fmt.Errorf("%q is neither a host name nor a CIDR prefix such as 10.1.0.0/16", s)
	}
	if strings.Contains(h, ":") {
		return hostPattern{}, fmt.Errorf("%q has a port; list the host name only, any port is allowed", s)
	}
	h = normalize(h)
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		if rest == "" || strings.Contains(rest, "*") {
			return hostPattern{}, fmt.Errorf("%q: a wildcard may only lead a name, as in %q", s, "*.example.com")
		}
		return hostPattern{suffix: "." + rest}, nil
	}
	if strings.Contains(h, "*") {
		return hostPattern{}, fmt.Errorf("%q: a wildcard may only lead a name, as in %q", s, "*.example.com")
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return hostPattern{}, fmt.Errorf("%q is not a host name", s)
		}
	}
	return hostPattern{name: h}, nil
}
