// Command sandbox-cleanup is the cleanup worker Lambda: it completes
// queued outbox work (sandbox teardowns at Daytona, cache repairs in Redis)
// from SQS batches, and runs the outbox sweep on EventBridge schedules.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/kortix-ai/thread-delete/shared/app"
	"github.com/kortix-ai/thread-delete/shared/config"
)

func main() {
	log := lambdacontext.NewLogger()
	cfg, err := config.LoadCleanup(os.LookupEnv)
	if err != nil {
		log.Error("sandbox-cleanup init failed: " + err.Error())
		os.Exit(1)
	}
	h, closeAll, err := app.SandboxCleanup(context.Background(), cfg, log)
	if err != nil {
		log.Error("sandbox-cleanup init failed: " + err.Error())
		os.Exit(1)
	}
	lambda.StartWithOptions(h.Invoke, lambda.WithEnableSIGTERM(closeAll))
}
