//go:build !linux

package testenv

import "os/exec"

// startChild starts cmd; the channel is closed when it has exited. Outside
// Linux a child outlives a test binary killed without cleanup.
func startChild(cmd *exec.Cmd) (<-chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	return exited, nil
}
