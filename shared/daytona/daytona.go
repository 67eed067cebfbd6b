// Package daytona is a minimal client of the Daytona REST API: the one call
// the cleanup worker needs, deleting a sandbox.
//
// Daytona documents `DELETE {server}/sandbox/{sandboxIdOrName}` with
// `Authorization: Bearer <api key>` and, optionally, the
// `X-Daytona-Organization-ID` header. A 200 answers the sandbox object in
// state "destroying" (Daytona finishes asynchronously); an unknown sandbox is
// a 404, which for a teardown means the work is already done.
package daytona

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one API call. A delete is accepted in well under a
// second; a slower answer is treated as a retryable failure, well within the
// worker's lease and the queue's visibility timeout.
const DefaultTimeout = 15 * time.Second

// Client calls the Daytona API. The zero HTTP client is replaced by one that
// does not follow redirects (a redirected DELETE must not become a GET).
type Client struct {
	// BaseURL is DAYTONA_SERVER_URL, e.g. https://app.daytona.io/api.
	BaseURL string
	// APIKey is sent as a Bearer token; it never appears in errors.
	APIKey string
	// OrganizationID, when set, is sent as X-Daytona-Organization-ID.
	OrganizationID string
	// HTTP is the client used; nil means a default one.
	HTTP *http.Client
	// Timeout bounds each call; zero means DefaultTimeout.
	Timeout time.Duration
}

// New returns a client; it does no I/O.
func New(baseURL, apiKey, organizationID string) *Client {
	return &Client{
		BaseURL:        strings.TrimRight(baseURL, "/"),
		APIKey:         apiKey,
		OrganizationID: organizationID,
		HTTP:           &http.Client{CheckRedirect: noRedirects},
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

var defaultHTTP = &http.Client{CheckRedirect: noRedirects}

// RetryableError is a failure that may succeed later: 409 (the sandbox is
// in a transition, e.g. still starting), 429, 5xx, timeouts and transport
// errors. Status is 0 when no response arrived.
type RetryableError struct {
	SandboxID string
	Status    int
	Message   string // from the response body or the transport error
}

func (e *RetryableError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("daytona: delete sandbox %s: retryable: %s", e.SandboxID, e.Message)
	}
	return fmt.Sprintf("daytona: delete sandbox %s: retryable: HTTP %d: %s", e.SandboxID, e.Status, e.Message)
}

// Retryable reports true.
func (e *RetryableError) Retryable() bool { return true }

// PermanentError is a failure that retrying the same request cannot fix:
// 400, 401, 403 and the other 4xx (a bad API key, a wrong organization). It
// needs an operator; the message will reach the dead-letter queue.
type PermanentError struct {
	SandboxID string
	Status    int
	Message   string
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("daytona: delete sandbox %s: permanent: HTTP %d: %s", e.SandboxID, e.Status, e.Message)
}

// Retryable reports false.
func (e *PermanentError) Retryable() bool { return false }

// IsRetryable reports whether err is worth retrying: true unless it is (or
// wraps) a PermanentError.
func IsRetryable(err error) bool {
	var p *PermanentError
	return err != nil && !errors.As(err, &p)
}

// DeleteSandbox deletes sandbox id. It returns nil when Daytona accepted
// the delete (2xx) or does not know the sandbox (404: already gone), a
// *RetryableError or a *PermanentError otherwise.
func (c *Client) DeleteSandbox(ctx context.Context, id string) error {
	if id == "" {
		return &PermanentError{Status: 0, Message: "empty sandbox id"}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	u := strings.TrimRight(c.BaseURL, "/") + "/sandbox/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u, nil)
	if err != nil {
		return &PermanentError{SandboxID: id, Message: "bad server URL"}
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	req.Header.Set("Accept", "application/json")
	if c.OrganizationID != "" {
		req.Header.Set("X-Daytona-Organization-ID", c.OrganizationID)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		msg := "request failed"
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			msg = fmt.Sprintf("no answer within %s", timeout)
		case errors.Is(err, context.Canceled):
			msg = "request cancelled"
		default:
			var uerr *url.Error
			if errors.As(err, &uerr) {
				msg = uerr.Err.Error()
			}
		}
		return &RetryableError{SandboxID: id, Message: c.scrub(msg)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))

	switch s := resp.StatusCode; {
	case s >= 200 && s < 300, s == http.StatusNotFound:
		return nil
	case s == http.StatusConflict, s == http.StatusTooManyRequests, s == http.StatusRequestTimeout, s >= 500:
		return &RetryableError{SandboxID: id, Status: s, Message: c.scrub(errorMessage(body, resp.Status))}
	default:
		return &PermanentError{SandboxID: id, Status: s, Message: c.scrub(errorMessage(body, resp.Status))}
	}
}

// errorMessage extracts Daytona's {"message": ...} from an error body, or
// falls back to the status text.
func errorMessage(body []byte, status string) string {
	var e struct {
		Message json.RawMessage `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Message) > 0 {
		var s string
		if json.Unmarshal(e.Message, &s) == nil {
			return limit(s)
		}
		return limit(string(e.Message)) // NestJS validation errors: an array
	}
	return status
}

func limit(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// scrub removes the API key from text that came from elsewhere.
func (c *Client) scrub(s string) string {
	if len(c.APIKey) >= 4 {
		s = strings.ReplaceAll(s, c.APIKey, "[redacted]")
	}
	return s
}
