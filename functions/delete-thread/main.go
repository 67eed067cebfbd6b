// Command delete-thread is the Lambda behind DELETE /threads/{thread_id}.
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
	cfg, err := config.LoadDeleteThread(os.LookupEnv)
	if err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
	handler, closeAll, err := app.DeleteThread(context.Background(), cfg, log)
	if err != nil {
		log.Error(err.Error())
		os.Exit(1)
	}
	lambda.StartWithOptions(handler.Handle, lambda.WithEnableSIGTERM(closeAll))
}
