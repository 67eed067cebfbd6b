// Command invoke runs a built function once under the Lambda runtime
// interface emulator and prints its response: what `sam local invoke` does,
// without Docker.
//
//	go run ./cmd/invoke -bootstrap build/delete-thread/bootstrap -event events/delete-thread.json
//	make invoke FN=DeleteThreadFunction EVENT=events/delete-thread.json
//
// The function gets this process's environment, so DATABASE_URL and the
// other settings apply as exported. Settings left unset default to the local
// dev stack's (`make dev`), and a note says which. REPLACE_WITH_TOKEN in the
// event becomes a valid token for the demo owner (or -user). The function's
// logs go to stderr, the response to stdout.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/devenv"
)

// tokenPlaceholder is what the sample events carry instead of a token.
const tokenPlaceholder = "REPLACE_WITH_TOKEN"

// Options configure one invocation.
type Options struct {
	Bootstrap string        // the function binary
	Event     string        // path of the event JSON
	RIE       string        // aws-lambda-rie; default .bin/aws-lambda-rie under the repository root
	Timeout   time.Duration // the function's timeout; default from template.yaml by function
	User      string        // demo user the token is minted for (devenv.Users); default owner
	Token     string        // use this token instead of minting one
	Environ   []string      // the environment passed on; default os.Environ()
	Stdout    io.Writer     // the response
	Stderr    io.Writer     // notes and the function's logs
}

// timeouts are the functions' Timeout in template.yaml, by directory.
var timeouts = map[string]time.Duration{
	"delete-thread":   10 * time.Second,
	"sandbox-cleanup": 30 * time.Second,
}

// errFunction means the function answered with an error payload (the
// emulator reports handler errors as a 200 with errorMessage).
var errFunction = errors.New("the function returned an error")

func main() {
	var o Options
	flag.StringVar(&o.Bootstrap, "bootstrap", "", "function binary, e.g. build/delete-thread/bootstrap (make build)")
	flag.StringVar(&o.Event, "event", "", "event JSON file, e.g. events/delete-thread.json")
	flag.StringVar(&o.RIE, "rie", "", "aws-lambda-rie binary (default .bin/aws-lambda-rie; make tools installs it)")
	flag.DurationVar(&o.Timeout, "timeout", 0, "function timeout (default: the template's, 10s for delete-thread, 30s for sandbox-cleanup)")
	flag.StringVar(&o.User, "user", "owner", "demo user whose token replaces "+tokenPlaceholder+": owner, member, other or stranger")
	flag.StringVar(&o.Token, "token", "", "token to put in place of "+tokenPlaceholder+" instead of a minted one")
	flag.Parse()
	if o.Bootstrap == "" || o.Event == "" {
		fmt.Fprintln(os.Stderr, "usage: go run ./cmd/invoke -bootstrap build/<function>/bootstrap -event events/<file>.json")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if !errors.Is(err, errFunction) {
			fmt.Fprintln(os.Stderr, "invoke:", err)
		}
		os.Exit(1)
	}
}

// run invokes the function once and prints the response.
func run(ctx context.Context, o Options) error {
	if o.Environ == nil {
		o.Environ = os.Environ()
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.User == "" {
		o.User = "owner"
	}
	fnDir := filepath.Base(filepath.Dir(o.Bootstrap))
	if o.Timeout <= 0 {
		if o.Timeout = timeouts[fnDir]; o.Timeout == 0 {
			o.Timeout = 30 * time.Second
		}
	}
	bootstrap, err := filepath.Abs(o.Bootstrap)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bootstrap); err != nil {
		return fmt.Errorf("%s not found: run `make build` first", o.Bootstrap)
	}
	rie, err := locateRIE(o.RIE)
	if err != nil {
		return err
	}
	event, err := os.ReadFile(o.Event)
	if err != nil {
		return err
	}
	if !json.Valid(event) {
		return fmt.Errorf("%s is not valid JSON", o.Event)
	}

	env, defaulted := withDevDefaults(o.Environ)
	if len(defaulted) > 0 {
		fmt.Fprintf(o.Stderr, "invoke: not set in the environment, so the dev stack's values are used (make dev): %s\n", strings.Join(defaulted, ", "))
	}
	if bytes.Contains(event, []byte(tokenPlaceholder)) {
		token := o.Token
		if token == "" {
			if token, err = mintToken(env, o.User); err != nil {
				return err
			}
			fmt.Fprintf(o.Stderr, "invoke: %s → a token for the demo %s\n", tokenPlaceholder, o.User)
		}
		event = bytes.ReplaceAll(event, []byte(tokenPlaceholder), []byte(token))
	}
	env = append(env,
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", int(o.Timeout.Seconds())),
		"AWS_LAMBDA_FUNCTION_NAME="+fnDir,
	)
	if _, ok := lookup(o.Environ, "AWS_LAMBDA_LOG_FORMAT"); !ok {
		env = append(env, "AWS_LAMBDA_LOG_FORMAT=JSON") // as deployed (LoggingConfig)
	}

	resp, err := invokeOnce(ctx, rie, bootstrap, env, event, o.Timeout, o.Stderr)
	if err != nil {
		return err
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, resp, "", "  ") == nil {
		resp = pretty.Bytes()
	}
	fmt.Fprintf(o.Stdout, "%s\n", resp)
	var failure struct {
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal(resp, &failure) == nil && failure.ErrorMessage != nil {
		return errFunction
	}
	return nil
}

// invokeOnce starts the emulator with the function, posts event, and stops
// the emulator (with the function) before returning the response body.
func invokeOnce(ctx context.Context, rie, bootstrap string, env []string, event []byte, timeout time.Duration, logs io.Writer) ([]byte, error) {
	apiPort, err := devenv.FreePort()
	if err != nil {
		return nil, err
	}
	runtimePort, err := devenv.FreePort()
	if err != nil {
		return nil, err
	}
	emulator := fmt.Sprintf("127.0.0.1:%d", apiPort)
	cmd := exec.Command(rie,
		"--runtime-interface-emulator-address", emulator,
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", runtimePort),
		bootstrap)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs, logs
	// A process group of its own, so that stopping it stops the function
	// too; and killed by the kernel should this process die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the thread that started the child
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start aws-lambda-rie: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()

	if err := waitTCP(ctx, emulator, 10*time.Second, exited); err != nil {
		return nil, err
	}
	// The emulator enforces the function timeout; the margin covers init.
	ictx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ictx, http.MethodPost,
		"http://"+emulator+"/2015-03-31/functions/function/invocations", bytes.NewReader(event))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the emulator answered %s: %s", res.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// withDevDefaults returns environ with the dev stack's settings added for
// every one that is unset, and the names it added. A setting that chooses
// another way (DB_SECRET_ARN instead of DATABASE_URL, a JWKS instead of the
// HS256 secret, a real queue) keeps the related defaults out, so that a
// real configuration is never mixed with the dev one.
func withDevDefaults(environ []string) ([]string, []string) {
	env := append([]string(nil), environ...)
	var added []string
	set := func(name, value string) {
		env = append(env, name+"="+value)
		added = append(added, name)
	}
	isSet := func(names ...string) bool {
		for _, n := range names {
			if v, ok := lookup(environ, n); ok && v != "" {
				return true
			}
		}
		return false
	}
	iamAuth, _ := lookup(environ, "DB_IAM_AUTH")
	if !isSet("DATABASE_URL", "DB_SECRET_ARN") && !strings.EqualFold(iamAuth, "true") {
		set("DATABASE_URL", devenv.DatabaseURL())
	}
	if !isSet("REDIS_URL") {
		set("REDIS_URL", devenv.RedisURL)
	}
	if !isSet("SANDBOX_CLEANUP_QUEUE_URL") {
		set("SANDBOX_CLEANUP_QUEUE_URL", devenv.QueueURL(devenv.SQSPort))
		if !isSet("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL") {
			set("AWS_ENDPOINT_URL_SQS", fmt.Sprintf("http://127.0.0.1:%d", devenv.SQSPort))
		}
		if !isSet("AWS_ACCESS_KEY_ID") && !isSet("AWS_PROFILE") {
			set("AWS_ACCESS_KEY_ID", "dev")
			set("AWS_SECRET_ACCESS_KEY", "dev")
		}
	}
	if !isSet("AWS_REGION", "AWS_DEFAULT_REGION") {
		set("AWS_REGION", devenv.SQSRegion)
	}
	if !isSet("SUPABASE_JWT_SECRET", "SUPABASE_JWKS_URL", "SUPABASE_URL") {
		set("SUPABASE_JWT_SECRET", devenv.JWTSecret)
	}
	if _, ok := lookup(environ, "API_KEY_SECRET"); !ok {
		set("API_KEY_SECRET", devenv.APIKeySecret)
	}
	if !isSet("DAYTONA_SERVER_URL") {
		// Nothing listens there: a teardown fails and is retried, as it
		// would while Daytona is down. `make dev` runs a stand-in instead.
		set("DAYTONA_SERVER_URL", "http://127.0.0.1:1/daytona-placeholder")
	}
	if !isSet("DAYTONA_API_KEY") {
		set("DAYTONA_API_KEY", devenv.DaytonaAPIKey)
	}
	sort.Strings(added)
	return env, added
}

// mintToken signs a token for the demo user with the HS256 secret the
// function will verify with.
func mintToken(env []string, userName string) (string, error) {
	user, ok := devenv.Users[userName]
	if !ok {
		return "", fmt.Errorf("-user %q: want owner, member, other or stranger", userName)
	}
	secret, _ := lookup(env, "SUPABASE_JWT_SECRET")
	if secret == "" {
		return "", fmt.Errorf("the event needs a token but SUPABASE_JWT_SECRET is not set (JWKS only): pass one with -token")
	}
	return devenv.Token(secret, user, time.Hour)
}

// lookup finds name in an environment list; the last entry wins, as in
// exec.Cmd.
func lookup(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// locateRIE finds the emulator: the given path, the repository's .bin, or
// PATH.
func locateRIE(explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("aws-lambda-rie not found at %s", explicit)
		}
		return explicit, nil
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, ".bin", "aws-lambda-rie")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	return "", errors.New("aws-lambda-rie not found in .bin/ or on PATH: run `make tools` to install it")
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("go.mod not found")
		}
	}
}

// waitTCP waits until addr accepts connections, the process exits, or the
// time is up.
func waitTCP(ctx context.Context, addr string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("aws-lambda-rie exited at start (see its output above)")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("aws-lambda-rie did not listen on %s within %s", addr, within)
		}
	}
}
