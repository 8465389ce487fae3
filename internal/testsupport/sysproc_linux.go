package testsupport

import "syscall"

// sysProcAttr makes the kernel kill a child if the test binary dies first
// (go test's -timeout, a crash), so that no process outlives the test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
