package testenv

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// LogBuffer collects the JSON log lines of a logger, written from any
// goroutine, for tests that read what the code under test logged.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// Logger is a JSON logger into l that writes as lambdacontext.NewLogger
// does in the functions ("timestamp", "level", "message").
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{ReplaceAttr: lambdacontext.ReplaceAttr}))
}

// LogLine is one record: its message and level, and the line itself.
type LogLine struct {
	Message string `json:"message"`
	Level   string `json:"level"`
	Raw     []byte `json:"-"`
}

// Lines returns the lines written so far, failing the test on a line that
// is not one JSON object.
func (l *LogBuffer) Lines(tb testing.TB) []LogLine {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LogLine
	for _, raw := range bytes.Split(bytes.TrimSpace(l.buf.Bytes()), []byte("\n")) {
		if len(raw) == 0 {
			continue
		}
		var line LogLine
		if err := json.Unmarshal(raw, &line); err != nil {
			tb.Fatalf("log line %q: %v", raw, err)
		}
		line.Raw = bytes.Clone(raw)
		out = append(out, line)
	}
	return out
}

// String returns everything written, for a failure message.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
