package redistopo

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the child if the test binary dies
// without running its cleanups (a -timeout panic, a SIGKILL).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
