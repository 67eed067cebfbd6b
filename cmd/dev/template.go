package main

import (
	"fmt"
	"path/filepath"

	"github.com/kortix-ai/thread-delete/shared/samtemplate"
)

// templateQueue is the queue of template.yaml the dev stack mirrors, with
// its dead-letter queue.
const templateQueue = "SandboxCleanupQueue"

// Mirror is what the dev stack takes from template.yaml at start-up, so
// that it behaves as the deployed stack does without copying its values.
type Mirror struct {
	Queue, DLQ samtemplate.SQSQueue
}

// loadMirror reads root/template.yaml.
func loadMirror(root string) (Mirror, error) {
	var m Mirror
	tmpl, err := samtemplate.Load(filepath.Join(root, "template.yaml"))
	if err != nil {
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
