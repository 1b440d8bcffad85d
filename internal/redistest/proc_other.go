//go:build !linux

package redistest

import "os/exec"

// dieWithParent has no portable equivalent off Linux; Cleanup still kills
// and reaps the server on a normal exit.
func dieWithParent(*exec.Cmd) {}
