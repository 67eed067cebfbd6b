package main

import (
	"context"
	"fmt"
	"path/filepath"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/samtemplate"
)

// The resources of template.yaml that the dev stack mirrors.
const (
	templateAPI   = "HttpApi"             // its CorsConfiguration
	templateQueue = "SandboxCleanupQueue" // and its dead-letter queue
)

// corsOriginsEnv is the setting that stands in for the template's
// CorsAllowedOrigins parameter.
const corsOriginsEnv = "DEV_CORS_ALLOWED_ORIGINS"

// Mirror is what the dev stack takes from template.yaml at start-up, so
// that it behaves as the deployed stack does without copying its values.
type Mirror struct {
	CORS       *CORS // nil when the API has no CorsConfiguration
	Queue, DLQ samtemplate.SQSQueue
}

// loadMirror reads root/template.yaml; corsOrigins replaces the deployer's
// CorsAllowedOrigins ("" means any origin).
func loadMirror(root, corsOrigins string) (Mirror, error) {
	var m Mirror
	tmpl, err := samtemplate.Load(filepath.Join(root, "template.yaml"))
	if err != nil {
		return m, err
	}
	if m.CORS, err = corsFromTemplate(tmpl, templateAPI, corsOrigins); err != nil {
		return m, err
	}
	if m.Queue, err = tmpl.SQSQueue(templateQueue); err != nil {
		return m, fmt.Errorf("template.yaml: %w", err)
	}
	if m.Queue.DeadLetterQueue == "" {
		return m, fmt.Errorf("template.yaml: %s has no RedrivePolicy; the dev stack expects a dead-letter queue", templateQueue)
	}
	if m.DLQ, err = tmpl.SQSQueue(m.Queue.DeadLetterQueue); err != nil {
		return m, fmt.Errorf("template.yaml: %w", err)
	}
	return m, nil
}

// createQueues creates the teardown queue name and its dead-letter queue
// dlqName with the attributes and redrive policy template.yaml gives them
// (the mirror's queue and dlq), and returns their URLs. On an emulator that
// already has them (DEV_SQS_ENDPOINT), they are updated to those
// attributes, as a stack update would.
func createQueues(ctx context.Context, client *awssqs.Client, name, dlqName string, m Mirror) (localstack.Queues, error) {
	return localstack.CreateQueues(ctx, client, localstack.QueueSpec{
		Name:            name,
		Attributes:      m.Queue.Attributes,
		DeadLetter:      &localstack.QueueSpec{Name: dlqName, Attributes: m.DLQ.Attributes},
		MaxReceiveCount: m.Queue.MaxReceiveCount,
	})
}
