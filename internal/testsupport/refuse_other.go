//go:build !linux

package testsupport

import (
	"net"
	"testing"
)

// RefusingPort is a port of 127.0.0.1 that refuses connections until
// Listen. Here the port is freed and listened on again, so another process
// may take it in between.
type RefusingPort struct {
	Addr string
}

// NewRefusingPort picks a free port.
func NewRefusingPort(t testing.TB) *RefusingPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return &RefusingPort{Addr: ln.Addr().String()}
}

// Listen starts taking connections on the port.
func (r *RefusingPort) Listen() (net.Listener, error) { return net.Listen("tcp", r.Addr) }
