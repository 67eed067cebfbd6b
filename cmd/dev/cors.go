package main

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kortix-ai/thread-delete/internal/samtemplate"
)

// CORS does what API Gateway HTTP API does for an API with a
// CorsConfiguration:
//
//   - It answers every OPTIONS request itself (the API has no OPTIONS
//     route), whatever the path, with 204 and no body. The CORS headers
//     (Access-Control-Allow-Origin, -Allow-Methods, -Allow-Headers,
//     -Max-Age) are added only to a preflight it allows: Origin among the
//     allowed origins, Access-Control-Request-Method among the allowed
//     methods, every Access-Control-Request-Headers name among the allowed
//     headers. Anything else gets the bare 204, which the browser treats
//     as a refusal.
//   - To every other response of a request whose Origin is allowed it adds
//     Access-Control-Allow-Origin and Access-Control-Expose-Headers; it
//     drops the CORS headers the integration returned, which API Gateway
//     ignores.
//   - An allowed origin "*" is answered as "*"; any other is echoed, with
//     Vary: Origin, since the answer then depends on the request.
//     Access-Control-Allow-Credentials appears only when AllowCredentials
//     is true.
//
// Allowed origins are exact (scheme://host[:port]), "*", or "https://*" /
// "http://*" for every origin of that scheme, the forms API Gateway takes.
type CORS struct {
	Origins       []string
	Methods       []string
	Headers       []string
	ExposeHeaders []string
	MaxAge        int // seconds; 0 sends no Access-Control-Max-Age
	Credentials   bool
}

// corsFromTemplate builds the gateway's CORS from the HTTP API's
// CorsConfiguration, with the origins of the setting origins (default "*")
// in place of the deployer's CorsAllowedOrigins. The setting must satisfy
// that parameter's AllowedPattern, so that it means here what it would
// mean in a deploy. It returns nil when the API has no CorsConfiguration.
func corsFromTemplate(tmpl samtemplate.Template, api, origins string) (*CORS, error) {
	cfg, ok, err := tmpl.HttpApiCors(api)
	if err != nil {
		return nil, fmt.Errorf("template.yaml: %w", err)
	}
	if !ok {
		return nil, nil
	}
	if origins == "" {
		origins = "*"
	}
	list := strings.Split(origins, ",")
	if p := cfg.OriginsParameter; p != "" {
		param := samtemplate.AsMap(samtemplate.Get(tmpl, "Parameters", p))
		if pattern, _ := param["AllowedPattern"].(string); pattern != "" {
			re, err := regexp.Compile(pattern)
			if err != nil {
				return nil, fmt.Errorf("template.yaml: %s AllowedPattern: %w", p, err)
			}
			if !re.MatchString(origins) {
				return nil, fmt.Errorf("%s=%q: not * or comma-separated origins such as http://localhost:5173,https://app.example.com (the template's %s pattern)", corsOriginsEnv, origins, p)
			}
		}
		list = cfg.Origins(origins)
	}
	return &CORS{
		Origins:       list,
		Methods:       cfg.AllowMethods,
		Headers:       cfg.AllowHeaders,
		ExposeHeaders: cfg.ExposeHeaders,
		MaxAge:        cfg.MaxAge,
		Credentials:   cfg.AllowCredentials,
	}, nil
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin,
// or false when the origin is not allowed.
func (c *CORS) allowOrigin(origin string) (string, bool) {
	if origin == "" {
		return "", false
	}
	if slices.Contains(c.Origins, "*") {
		return "*", true
	}
	for _, o := range c.Origins {
		if o == origin || ((o == "https://*" || o == "http://*") && strings.HasPrefix(origin, strings.TrimSuffix(o, "*"))) {
			return origin, true
		}
	}
	return "", false
}

// refusal says why the preflight r is not allowed, or "" when it is.
func (c *CORS) refusal(r *http.Request) string {
	origin := r.Header.Get("Origin")
	method := r.Header.Get("Access-Control-Request-Method")
	_, originOK := c.allowOrigin(origin)
	switch {
	case origin == "" || method == "":
		return "not a preflight (no Origin or Access-Control-Request-Method)"
	case !originOK:
		return "origin not allowed"
	case !slices.Contains(c.Methods, "*") && !slices.Contains(c.Methods, method):
		return "method not allowed"
	}
	if slices.Contains(c.Headers, "*") {
		return ""
	}
	for _, h := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if h = strings.TrimSpace(h); h != "" && !slices.ContainsFunc(c.Headers, func(a string) bool { return strings.EqualFold(a, h) }) {
			return "header " + strings.ToLower(h) + " not allowed"
		}
	}
	return ""
}

// servePreflight answers an OPTIONS request and returns why it was refused
// ("" when allowed), for the log.
func (c *CORS) servePreflight(w http.ResponseWriter, r *http.Request) string {
	why := c.refusal(r)
	if why == "" {
		h := w.Header()
		c.setOrigin(h, r.Header.Get("Origin"))
		h.Set("Access-Control-Allow-Methods", strings.Join(c.Methods, ","))
		if len(c.Headers) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(c.Headers, ","))
		}
		if c.MaxAge > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return why
}

// decorate replaces the CORS headers of a response to a request from
// origin with the configured ones.
func (c *CORS) decorate(h http.Header, origin string) {
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			delete(h, k)
		}
	}
	if c.setOrigin(h, origin) && len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ","))
	}
}

// setOrigin sets Access-Control-Allow-Origin (and Vary, and
// Access-Control-Allow-Credentials) when origin is allowed.
func (c *CORS) setOrigin(h http.Header, origin string) bool {
	allow, ok := c.allowOrigin(origin)
	if !ok {
		return false
	}
	h.Set("Access-Control-Allow-Origin", allow)
	if allow != "*" {
		h.Add("Vary", "Origin")
	}
	if c.Credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	return true
}

// wrap returns w with the CORS headers applied when the response is
// written, whichever code path writes it.
func (c *CORS) wrap(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	return &corsWriter{ResponseWriter: w, apply: func(h http.Header) { c.decorate(h, r.Header.Get("Origin")) }}
}

type corsWriter struct {
	http.ResponseWriter
	apply   func(http.Header)
	written bool
}

func (cw *corsWriter) WriteHeader(code int) {
	if !cw.written {
		cw.written = true
		cw.apply(cw.Header())
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *corsWriter) Write(b []byte) (int, error) {
	if !cw.written {
		cw.WriteHeader(http.StatusOK)
	}
	return cw.ResponseWriter.Write(b)
}
