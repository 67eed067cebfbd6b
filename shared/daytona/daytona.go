// Package daytona is a minimal client of the Daytona REST API: the one call
// the cleanup worker needs, deleting a sandbox.
//
// Daytona documents `DELETE {server}/sandbox/{sandboxIdOrName}` with
// `Authorization: Bearer <api key>` and, optionally, the
// `X-Daytona-Organization-ID` header. A 200 answers the sandbox object in
// state "destroying" (Daytona finishes asynchronously); an unknown sandbox is
// a 404, which for a teardown means the work is already done — but only
// when the 404 is Daytona's own answer about that sandbox (see
// DeleteSandbox): any other 404 means the server URL is wrong.
package daytona

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
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

// ServerURLError is an answer that did not come from Daytona's sandbox API,
// so DAYTONA_SERVER_URL points somewhere else: a 404 that is not Daytona's
// JSON not-found for the sandbox (a route that does not exist, "Cannot
// DELETE …", an HTML page, an empty body), or a 2xx that is not JSON (the
// Daytona dashboard, which the Daytona server answers for every path outside
// its /api prefix, with status 200). Treating such an answer as "done" would
// leave every sandbox running and billed while its record says deleted.
//
// It is permanent: the same request to the same URL cannot succeed until an
// operator fixes the setting. The worker still reports the item failed and
// keeps the outbox row pending with this message, so the teardown completes
// once the setting is fixed.
type ServerURLError struct {
	SandboxID string
	// ServerURL is the configured base URL, with any password redacted.
	ServerURL string
	Status    int
	// Answer says what came back instead of Daytona's answer.
	Answer string
}

func (e *ServerURLError) Error() string {
	return fmt.Sprintf("daytona: delete sandbox %s: permanent: HTTP %d is not Daytona's answer (%s): "+
		"check DAYTONA_SERVER_URL (now %q; it must be the API base, e.g. https://app.daytona.io/api)",
		e.SandboxID, e.Status, e.Answer, e.ServerURL)
}

// Retryable reports false.
func (e *ServerURLError) Retryable() bool { return false }

// IsRetryable reports whether err is worth retrying: true unless it is (or
// wraps) an error whose Retryable method reports false (a PermanentError or
// a ServerURLError).
func IsRetryable(err error) bool {
	var r interface{ Retryable() bool }
	return err != nil && !(errors.As(err, &r) && !r.Retryable())
}

// DeleteSandbox deletes sandbox id. It returns nil when Daytona accepted
// the delete (2xx with a JSON or empty body) or answered that it does not
// know the sandbox (404 with its JSON not-found naming it: already gone); a
// *ServerURLError for any other 404 or a non-JSON 2xx; a *RetryableError or
// a *PermanentError otherwise.
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
	case s >= 200 && s < 300:
		if len(bytes.TrimSpace(body)) > 0 && !isJSON(resp.Header.Get("Content-Type")) {
			return c.serverURLError(id, s, describe(resp.Header.Get("Content-Type"), body))
		}
		return nil
	case s == http.StatusNotFound:
		if sandboxNotFound(body, id) {
			return nil
		}
		return c.serverURLError(id, s, describe(resp.Header.Get("Content-Type"), body))
	case s == http.StatusConflict, s == http.StatusTooManyRequests, s == http.StatusRequestTimeout, s >= 500:
		return &RetryableError{SandboxID: id, Status: s, Message: c.scrub(errorMessage(body, resp.Status))}
	default:
		return &PermanentError{SandboxID: id, Status: s, Message: c.scrub(errorMessage(body, resp.Status))}
	}
}

func (c *Client) serverURLError(id string, status int, answer string) error {
	base := c.BaseURL
	if u, err := url.Parse(base); err == nil {
		base = u.Redacted()
	}
	return &ServerURLError{SandboxID: id, ServerURL: base, Status: status, Answer: c.scrub(answer)}
}

// notFoundMessages are the messages of Daytona's NotFoundException for a
// sandbox that does not exist (or that the key's organization cannot see),
// as its API source (github.com/daytonaio/daytona, apps/api/src/sandbox)
// writes them:
//
//	guards/sandbox-access.guard.ts, which runs before the delete handler:
//	    throw new NotFoundException(`Sandbox with ID or name ${sandboxIdOrName} not found`)
//	services/sandbox.service.ts findOne (older delete paths):
//	    throw new NotFoundException(`Sandbox with ID ${sandboxId} not found`)
//
// Its global filter (apps/api/src/filters/all-exceptions.filter.ts) renders
// them as JSON:
//
//	{"statusCode":404,"source":"DAYTONA_API","code":"NOT_FOUND",
//	 "message":"Sandbox with ID or name <id> not found","error":"Not Found",
//	 "path":"/api/sandbox/<id>","timestamp":"…","method":"DELETE"}
//
// (older releases send only statusCode, timestamp, path, error, message).
// A path that matches no route is a NotFoundException too, but NestJS's
// message for it is "Cannot DELETE /api/…" (@nestjs/core routes-resolver:
// `Cannot ${method} ${url}`), and for a path outside /api the filter serves
// the dashboard's index.html instead.
var notFoundMessages = []string{"Sandbox with ID or name %s not found", "Sandbox with ID %s not found"}

// sandboxNotFound reports whether a 404 body is Daytona's own answer that
// sandbox id does not exist: a JSON object with statusCode 404, a code (when
// present) of NOT_FOUND or SANDBOX_NOT_FOUND, and one of notFoundMessages
// naming exactly this sandbox.
func sandboxNotFound(body []byte, id string) bool {
	var e struct {
		StatusCode int    `json:"statusCode"`
		Code       string `json:"code"`
		Message    string `json:"message"`
	}
	if json.Unmarshal(body, &e) != nil || e.StatusCode != http.StatusNotFound {
		return false
	}
	if e.Code != "" && e.Code != "NOT_FOUND" && e.Code != "SANDBOX_NOT_FOUND" {
		return false
	}
	for _, m := range notFoundMessages {
		if e.Message == fmt.Sprintf(m, id) {
			return true
		}
	}
	return false
}

// isJSON reports whether a Content-Type is JSON (application/json or a
// +json type).
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// describe says in a few words what an unexpected answer was, for the error
// an operator reads.
func describe(contentType string, body []byte) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "empty body"
	case mt == "text/html" || bytes.HasPrefix(bytes.TrimSpace(body), []byte("<")):
		return "an HTML page"
	case json.Valid(body):
		return fmt.Sprintf("JSON %q", errorMessage(body, "without a message"))
	case mt != "":
		return "a " + mt + " body"
	default:
		return "a body of unknown type"
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
