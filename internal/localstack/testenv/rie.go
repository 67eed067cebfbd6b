package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// RIEBinary returns the path of aws-lambda-rie under the repository's .bin,
// installing the pinned version there first when it is absent.
func RIEBinary(tb testing.TB) string {
	tb.Helper()
	bin, err := localstack.InstallRIE(context.Background(), RepoRoot(tb))
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return bin
}

// Build compiles the function in functions/<dir> for the host and returns
// the path of its bootstrap binary, built once per test binary.
func Build(tb testing.TB, dir string) string {
	tb.Helper()
	root := RepoRoot(tb)
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[dir]; ok {
		return p
	}
	// Not tb.TempDir: the binary outlives the first test that asks for it.
	out := filepath.Join(os.TempDir(), fmt.Sprintf("td-build-%d", os.Getpid()), dir, "bootstrap")
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", out, "./functions/"+dir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: build %s: %v\n%s", dir, err, b)
	}
	built[dir] = out
	return out
}

var buildMu sync.Mutex
var built = map[string]string{}

// Lambda is a function binary running under aws-lambda-rie.
type Lambda struct {
	URL    string             // the invoke URL
	Output *localstack.Buffer // the function's stdout and stderr (its logs)
	rie    *localstack.RIE
}

// StartLambda runs bootstrap under the emulator with env (added to the
// test's environment) and returns once it accepts invocations. It is
// stopped when the test ends. Invoke one request at a time: the emulator
// does not take concurrent invokes.
func StartLambda(tb testing.TB, bootstrap string, env []string) *Lambda {
	tb.Helper()
	out := &localstack.Buffer{}
	rie, err := localstack.StartRIE(context.Background(), localstack.RIEOptions{
		Binary:    RIEBinary(tb),
		Bootstrap: bootstrap,
		// As deployed: LoggingConfig LogFormat JSON sets AWS_LAMBDA_LOG_FORMAT.
		Env:    append(append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=10", "AWS_LAMBDA_LOG_FORMAT=JSON"), env...),
		Output: out,
	})
	if err != nil {
		tb.Fatalf("testenv: %v\n%s", err, out.String())
	}
	tb.Cleanup(func() {
		rie.Kill()
		if tb.Failed() {
			tb.Logf("function output:\n%s", out.String())
		}
	})
	return &Lambda{URL: rie.URL, Output: out, rie: rie}
}

// Invoke posts payload to the function and returns the raw response body.
func (l *Lambda) Invoke(tb testing.TB, payload []byte) []byte {
	tb.Helper()
	_, body, err := l.rie.Invoke(context.Background(), payload)
	if err != nil {
		tb.Fatalf("invoke: %v", err)
	}
	return body
}

// Logs returns what the function printed so far.
func (l *Lambda) Logs() string { return l.Output.String() }

// SampleThreadID and SampleToken are the placeholders in
// events/delete-thread.json.
const (
	SampleThreadID = localstack.ThreadID
	SampleToken    = localstack.TokenPlaceholder
)

// DeleteEvent returns events/delete-thread.json asking to delete threadID
// with the bearer token.
func DeleteEvent(tb testing.TB, threadID, token string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(RepoRoot(tb), "events", "delete-thread.json"))
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.ReplaceAll(string(raw), SampleThreadID, threadID)
	return []byte(strings.ReplaceAll(s, SampleToken, token))
}
