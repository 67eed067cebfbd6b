package testenv

import (
	"testing"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// Daytona starts the Daytona stand-in accepting apiKey, where only the
// sandboxes given to AddSandbox exist, and stops it when the test ends.
func Daytona(tb testing.TB, apiKey string) *localstack.Daytona {
	tb.Helper()
	d, err := localstack.StartDaytona(localstack.DaytonaOptions{APIKey: apiKey})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}
