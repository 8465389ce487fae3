//go:build !linux

package testsupport

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
