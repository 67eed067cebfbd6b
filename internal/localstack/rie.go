package localstack

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// RIEModule is the pinned Lambda runtime interface emulator, as `go
// install` takes it. `make tools` (through ./internal/localstack/installrie),
// `make invoke` and the tests all install this one.
const RIEModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// RIEPath is where the emulator is installed: .bin/aws-lambda-rie under the
// repository root.
func RIEPath(root string) string { return filepath.Join(root, ".bin", "aws-lambda-rie") }

var rieInstall sync.Mutex

// InstallRIE makes sure RIEPath(root) is the pinned emulator, installing it
// with `go install` when it is absent or another version, and returns its
// path. The binary is moved into place whole, so a concurrent user (another
// test binary) never runs a half-written file.
func InstallRIE(ctx context.Context, root string) (string, error) {
	bin := RIEPath(root)
	rieInstall.Lock()
	defer rieInstall.Unlock()
	if isPinnedRIE(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(bin), ".install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", RIEModule)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("installing aws-lambda-rie (go install %s): %w\n%s", RIEModule, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, filepath.Base(bin)), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// isPinnedRIE reports whether bin is a build of RIEModule.
func isPinnedRIE(bin string) bool {
	info, err := buildinfo.ReadFile(bin)
	return err == nil && info.Path+"@"+info.Main.Version == RIEModule
}

// RIE is aws-lambda-rie running one function binary. It takes one
// invocation at a time (concurrent invokes crash it).
type RIE struct {
	URL string // the invoke URL

	proc *Process
}

// RIEOptions say what to run under the emulator.
type RIEOptions struct {
	Binary    string    // aws-lambda-rie (InstallRIE)
	Bootstrap string    // the function binary
	Env       []string  // the whole environment of the emulator and the function
	Output    io.Writer // the function's logs (and the emulator's); nil discards them
}

// StartRIE runs o.Bootstrap under the emulator on free loopback ports and
// returns once it accepts invocations.
func StartRIE(ctx context.Context, o RIEOptions) (*RIE, error) {
	apiPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	runtimePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", apiPort)
	cmd := exec.Command(o.Binary,
		"--runtime-interface-emulator-address", addr,
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", runtimePort),
		o.Bootstrap)
	cmd.Env = o.Env
	cmd.Stdout, cmd.Stderr = o.Output, o.Output
	proc, err := StartProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("start aws-lambda-rie: %w", err)
	}
	if err := WaitTCP(ctx, addr, 10*time.Second, proc.Exited()); err != nil {
		proc.Kill()
		return nil, fmt.Errorf("aws-lambda-rie: %w (see its output)", err)
	}
	return &RIE{URL: "http://" + addr + "/2015-03-31/functions/function/invocations", proc: proc}, nil
}

// Invoke posts event to the function and returns the emulator's answer:
// 200 with the function's response, also when the handler returned an
// error (its body then carries errorMessage).
func (r *RIE) Invoke(ctx context.Context, event []byte) (status int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(event))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("invoke: %w", err)
	}
	defer res.Body.Close()
	body, err = io.ReadAll(res.Body)
	return res.StatusCode, body, err
}

// Stop ends the emulator and the function (see Process.Stop).
func (r *RIE) Stop() { r.proc.Stop() }

// Kill ends the emulator and the function at once.
func (r *RIE) Kill() { r.proc.Kill() }
