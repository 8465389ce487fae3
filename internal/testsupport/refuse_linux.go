package testsupport

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

// RefusingPort is a port of 127.0.0.1 that refuses connections (a socket
// bound to it, not listening) until Listen: the port stays the test's, so
// no other process can take it in between, as it could if it were freed
// and listened on again.
type RefusingPort struct {
	Addr string // 127.0.0.1:PORT
	fd   int
}

// NewRefusingPort reserves a refusing port; the test's end releases it.
func NewRefusingPort(t testing.TB) *RefusingPort {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	r := &RefusingPort{Addr: fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port), fd: fd}
	t.Cleanup(func() {
		if r.fd >= 0 {
			syscall.Close(r.fd)
		}
	})
	return r
}

// Listen starts taking connections on the port.
func (r *RefusingPort) Listen() (net.Listener, error) {
	if err := syscall.Listen(r.fd, syscall.SOMAXCONN); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(r.fd), r.Addr)
	r.fd = -1
	defer f.Close() // FileListener holds a duplicate
	return net.FileListener(f)
}
