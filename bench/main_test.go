package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// sturdyc has no Close: each client's eviction loop runs for the life of
// the process, so its goroutines are the one leak allowed here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/viccon/sturdyc.(*Client[...]).performContinuousEvictions.func1"))
}
