package testenv

// AtExit registers fn to run when the binary's tests finish (see Main),
// with the releases of the databases and Redis indexes: a TestMain that
// built something in a temporary directory removes it there.
func AtExit(fn func()) { registerRelease(fn) }
