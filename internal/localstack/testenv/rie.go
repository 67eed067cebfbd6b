package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// RIEModule is the pinned Lambda runtime interface emulator.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

var rieInstall sync.Mutex

// RIEBinary returns the path of aws-lambda-rie under the repository's .bin,
// installing the pinned version there first when it is absent.
func RIEBinary(tb testing.TB) string {
	tb.Helper()
	root := RepoRoot(tb)
	bin := filepath.Join(root, ".bin", "aws-lambda-rie")
	rieInstall.Lock()
	defer rieInstall.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("go", "install", RIEModule)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin))
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: installing aws-lambda-rie: %v\n%s", err, out)
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
	URL    string        // the invoke URL
	Output *bytes.Buffer // the function's stdout and stderr (its logs)
	mu     *sync.Mutex
}

// StartLambda runs bootstrap under the emulator with env (added to the
// test's environment) and returns once it accepts invocations. It is
// stopped when the test ends. Invoke one request at a time: the emulator
// does not take concurrent invokes.
func StartLambda(tb testing.TB, bootstrap string, env []string) *Lambda {
	tb.Helper()
	rie := RIEBinary(tb)
	p1, p2 := FreePort(tb), FreePort(tb)
	cmd := exec.Command(rie,
		"--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", p1),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", p2),
		bootstrap)
	// As deployed: LoggingConfig LogFormat JSON sets AWS_LAMBDA_LOG_FORMAT.
	cmd.Env = append(append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=10", "AWS_LAMBDA_LOG_FORMAT=JSON"), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testenv: start aws-lambda-rie: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if tb.Failed() {
			tb.Logf("function output:\n%s", out.String())
		}
	})
	if err := WaitTCP(fmt.Sprintf("127.0.0.1:%d", p1), 10*time.Second); err != nil {
		tb.Fatal(err)
	}
	return &Lambda{URL: fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", p1), Output: &out.Buffer, mu: &out.mu}
}

// Invoke posts payload to the function and returns the raw response body.
func (l *Lambda) Invoke(tb testing.TB, payload []byte) []byte {
	tb.Helper()
	resp, err := http.Post(l.URL, "application/json", bytes.NewReader(payload))
	if err != nil {
		tb.Fatalf("invoke: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// Logs returns what the function printed so far.
func (l *Lambda) Logs() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Output.String()
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

// SampleThreadID and SampleToken are the placeholders in
// events/delete-thread.json.
const (
	SampleThreadID = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"
	SampleToken    = "REPLACE_WITH_TOKEN"
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
