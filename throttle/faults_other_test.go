//go:build !linux

package throttle

import "testing"

// synDrop is only implemented on Linux.
func synDrop(testing.TB) (string, bool) { return "", false }
