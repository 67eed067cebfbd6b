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
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// Options configure one invocation.
type Options struct {
	Bootstrap string        // the function binary
	Event     string        // path of the event JSON
	RIE       string        // aws-lambda-rie; default the pinned one in .bin/ under the repository root (installed when absent)
	Timeout   time.Duration // the function's timeout; default from template.yaml by function
	User      string        // demo user the token is minted for (localstack.Users); default owner
	Token     string        // use this token instead of minting one
	Environ   []string      // the environment passed on; default os.Environ()
	Stdout    io.Writer     // the response
	Stderr    io.Writer     // notes and the function's logs
}

// timeouts are the functions' Timeout in template.yaml, by directory.
var timeouts = map[string]time.Duration{
	"delete-thread":   29 * time.Second,
	"sandbox-cleanup": 30 * time.Second,
}

// errFunction means the function answered with an error payload (the
// emulator reports handler errors as a 200 with errorMessage).
var errFunction = errors.New("the function returned an error")

func main() {
	var o Options
	flag.StringVar(&o.Bootstrap, "bootstrap", "", "function binary, e.g. build/delete-thread/bootstrap (make build)")
	flag.StringVar(&o.Event, "event", "", "event JSON file, e.g. events/delete-thread.json")
	flag.StringVar(&o.RIE, "rie", "", "aws-lambda-rie binary (default .bin/aws-lambda-rie, the pinned version, installed when absent)")
	flag.DurationVar(&o.Timeout, "timeout", 0, "function timeout (default: the template's, 29s for delete-thread, 30s for sandbox-cleanup)")
	flag.StringVar(&o.User, "user", "owner", "demo user whose token replaces "+localstack.TokenPlaceholder+": owner, member, other or stranger")
	flag.StringVar(&o.Token, "token", "", "token to put in place of "+localstack.TokenPlaceholder+" instead of a minted one")
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
	rie, err := locateRIE(ctx, o.RIE)
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
	if bytes.Contains(event, []byte(localstack.TokenPlaceholder)) {
		token := o.Token
		if token == "" {
			if token, err = mintToken(env, o.User); err != nil {
				return err
			}
			fmt.Fprintf(o.Stderr, "invoke: %s → a token for the demo %s\n", localstack.TokenPlaceholder, o.User)
		}
		event = bytes.ReplaceAll(event, []byte(localstack.TokenPlaceholder), []byte(token))
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
	fn, err := localstack.StartRIE(ctx, localstack.RIEOptions{Binary: rie, Bootstrap: bootstrap, Env: env, Output: logs})
	if err != nil {
		return nil, err
	}
	defer fn.Stop()
	// The emulator enforces the function timeout; the margin covers init.
	ictx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	status, body, err := fn.Invoke(ictx, event)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("the emulator answered %d %s: %s", status, http.StatusText(status), bytes.TrimSpace(body))
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
	dev := localstack.FunctionEnv(localstack.DefaultEndpoints())
	set := func(name string) {
		env = append(env, name+"="+dev[name])
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
		set("DATABASE_URL")
	}
	if !isSet("REDIS_URL") {
		set("REDIS_URL")
	}
	if !isSet("SANDBOX_CLEANUP_QUEUE_URL") {
		set("SANDBOX_CLEANUP_QUEUE_URL")
		if !isSet("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL") {
			set("AWS_ENDPOINT_URL_SQS")
		}
		if !isSet("AWS_ACCESS_KEY_ID") && !isSet("AWS_PROFILE") {
			set("AWS_ACCESS_KEY_ID")
			set("AWS_SECRET_ACCESS_KEY")
		}
	}
	if !isSet("AWS_REGION", "AWS_DEFAULT_REGION") {
		set("AWS_REGION")
	}
	if !isSet("SUPABASE_JWT_SECRET", "SUPABASE_JWKS_URL", "SUPABASE_URL") {
		set("SUPABASE_JWT_SECRET")
	}
	if _, ok := lookup(environ, "API_KEY_SECRET"); !ok {
		set("API_KEY_SECRET")
	}
	if !isSet("DAYTONA_SERVER_URL") {
		// Nothing listens there (localstack.DefaultEndpoints): a teardown
		// fails and is retried, as it would while Daytona is down. `make
		// dev` runs a stand-in instead.
		set("DAYTONA_SERVER_URL")
	}
	if !isSet("DAYTONA_API_KEY") {
		set("DAYTONA_API_KEY")
	}
	sort.Strings(added)
	return env, added
}

// mintToken signs a token for the demo user with the HS256 secret the
// function will verify with.
func mintToken(env []string, userName string) (string, error) {
	user, ok := localstack.Users[userName]
	if !ok {
		return "", fmt.Errorf("-user %q: want owner, member, other or stranger", userName)
	}
	secret, _ := lookup(env, "SUPABASE_JWT_SECRET")
	if secret == "" {
		return "", fmt.Errorf("the event needs a token but SUPABASE_JWT_SECRET is not set (JWKS only): pass one with -token")
	}
	return localstack.Token(secret, user, time.Hour)
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

// locateRIE finds the emulator: the given path, else the pinned one in the
// repository's .bin (installed when absent or another version), else one on
// PATH outside a checkout.
func locateRIE(ctx context.Context, explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("aws-lambda-rie not found at %s", explicit)
		}
		return explicit, nil
	}
	if root, err := localstack.RepoRoot(); err == nil {
		return localstack.InstallRIE(ctx, root)
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p, nil
	}
	return "", errors.New("aws-lambda-rie not found on PATH, and no checkout to install it into: run `make tools` in the repository")
}
