package main

import (
	"fmt"
	"path/filepath"

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
