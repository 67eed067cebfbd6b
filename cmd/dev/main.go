// Command dev runs the service locally (`make dev`): the dev database with
// demo data, Redis, an SQS emulator, the delete-thread handler behind an
// HTTP server on http://127.0.0.1:3000 that speaks API Gateway's payload
// 2.0 to it, the sandbox-cleanup handler consuming the queue, and a
// dev-only Daytona stand-in that logs teardowns. Ctrl-C stops it all.
//
//	go run ./cmd/dev [-port 3000] [-reset] [-sqs-endpoint URL]
//	go run ./cmd/dev -token owner|member|other|stranger   # print a dev token
//
// Settings: TEST_DATABASE_URL (the PostgreSQL admin URL, as for the tests),
// PORT, DEV_RESET=1, DEV_REDIS_URL, DEV_SQS_ENDPOINT, DEV_CORS_ALLOWED_ORIGINS;
// with make, pass them on its command line: make dev PORT=3001 DEV_RESET=1.
//
// The API's CORS behaviour and the queues' settings are read from
// template.yaml at start-up, so that they stay what a deploy creates.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

func main() {
	port := flag.Int("port", envInt("PORT", localstack.APIPort), "port of the API on 127.0.0.1 (env PORT)")
	reset := flag.Bool("reset", os.Getenv("DEV_RESET") == "1", "drop and re-create the dev database "+localstack.DatabaseName+" (env DEV_RESET=1)")
	sqsEndpoint := flag.String("sqs-endpoint", os.Getenv("DEV_SQS_ENDPOINT"), "use this running SQS emulator instead of starting fauxqs (env DEV_SQS_ENDPOINT)")
	redisURL := flag.String("redis-url", envOr("DEV_REDIS_URL", localstack.RedisURL), "Redis for the dev stack (env DEV_REDIS_URL)")
	corsOrigins := flag.String("cors-origins", envOr(corsOriginsEnv, "*"), "browser origins allowed to call the API, comma-separated, or * (env "+corsOriginsEnv+"); the rest of CORS is template.yaml's")
	token := flag.String("token", "", "print a dev access token for owner, member, other or stranger, and exit")
	flag.Parse()

	if *token != "" {
		if err := printToken(*token); err != nil {
			fmt.Fprintln(os.Stderr, "dev:", err)
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, Options{
		Addr:        fmt.Sprintf("127.0.0.1:%d", *port),
		Reset:       *reset,
		SQSEndpoint: *sqsEndpoint,
		RedisURL:    *redisURL,
		CORSOrigins: *corsOrigins,
	})
	if err != nil && ctx.Err() == nil { // an error caused by Ctrl-C during start-up is no error
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func printToken(name string) error {
	user, ok := localstack.Users[name]
	if !ok {
		return fmt.Errorf("-token: unknown user %q (owner, member, other or stranger)", name)
	}
	t, err := localstack.Token(localstack.JWTSecret, user, localstack.TokenTTL)
	if err != nil {
		return err
	}
	fmt.Println(t)
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
