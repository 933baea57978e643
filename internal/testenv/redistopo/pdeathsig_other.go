//go:build !linux

package redistopo

import "os/exec"

// dieWithParent does nothing outside Linux: only the test's cleanup stops
// the child there.
func dieWithParent(*exec.Cmd) {}
