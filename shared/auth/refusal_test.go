package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// TestEveryRefusalIsLoggedWithItsReason: each kind of refused credential
// gives the client only its 401 detail, and logs one JSON line through the
// configured logger, with the request id, the reason and what an operator
// needs (the expected issuer or audience, the kid) — never the credential.
func TestEveryRefusalIsLoggedWithItsReason(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	log, logs := jsonLogger()
	cfg := fullConfig(srv.URL)
	cfg.Logger = log
	a := newAuth(t, cfg)
	noSecret := newAuth(t, Config{HS256Secret: hsSecret, Logger: log})
	now := time.Now()
	c := claimsAt(now)
	hs := func(c jwt.MapClaims) string { return "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c) }
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name          string
		a             *Authenticator
		authorization string
		apiKey        *string // nil: no X-API-Key header
		detail        string
		reason        string
		attrs         map[string]any // further fields the line must have
	}{
		{name: "no header", authorization: "", detail: DetailNoCredentials, reason: reasonNoCredentials, attrs: map[string]any{"authorization_present": false}},
		{name: "Basic scheme", authorization: "Basic dXNlcjpwYXNz", detail: DetailNoCredentials, reason: reasonNoCredentials, attrs: map[string]any{"authorization_present": true}},
		{name: "API key of a bad form", apiKey: ptr("pk_short:sk_short"), detail: DetailInvalidAPIKeyFormat, reason: reasonAPIKeyFormat},
		{name: "API key while API_KEY_SECRET is unset", a: noSecret, apiKey: ptr(validAK), detail: DetailInvalidAPIKey, reason: reasonAPIKeysDisabled},
		{name: "not a JWT", authorization: "Bearer not-a-jwt", detail: DetailInvalidToken, reason: reasonMalformed},
		{name: "header not JSON", authorization: "Bearer bm90IGpzb24.e30.c2ln", detail: DetailInvalidToken, reason: reasonMalformed},
		{name: "oversized", authorization: "Bearer " + strings.Repeat("A", maxTokenBytes+1), detail: DetailInvalidToken, reason: reasonMalformed},
		{name: "alg none", authorization: "Bearer " + none, detail: DetailInvalidToken, reason: reasonUnsupportedAlgorithm, attrs: map[string]any{"alg": "none"}},
		{name: "HS512", authorization: "Bearer " + sign(t, jwt.SigningMethodHS512, hsSecret, "", c), detail: DetailInvalidToken, reason: reasonUnsupportedAlgorithm, attrs: map[string]any{"alg": "HS512"}},
		{name: "PS256", authorization: "Bearer " + sign(t, jwt.SigningMethodPS256, k.rsa1, "rsa1", c), detail: DetailInvalidToken, reason: reasonUnsupportedAlgorithm, attrs: map[string]any{"alg": "PS256"}},
		{name: "ES256 without a JWKS configured", a: noSecret, authorization: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "ec1", c), detail: DetailInvalidToken, reason: reasonUnsupportedAlgorithm, attrs: map[string]any{"alg": "ES256"}},
		{name: "ES256 without kid", authorization: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "", c), detail: DetailInvalidToken, reason: reasonMissingKID},
		{name: "unknown kid", authorization: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "no-such-kid", c), detail: DetailInvalidToken, reason: reasonUnknownKID, attrs: map[string]any{"kid": "no-such-kid", "alg": "ES256"}},
		{name: "kid of an RSA key on ES256", authorization: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "rsa-noalg", c), detail: DetailInvalidToken, reason: reasonKeyMismatch, attrs: map[string]any{"kid": "rsa-noalg"}},
		{name: "kid of a 1024-bit key", authorization: "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsaWeak, "rsa-weak", c), detail: DetailInvalidToken, reason: reasonKeyMismatch, attrs: map[string]any{"kid": "rsa-weak"}},
		{name: "ES256 signed by another key", authorization: "Bearer " + sign(t, jwt.SigningMethodES256, k.ec2, "ec1", c), detail: DetailInvalidToken, reason: reasonBadSignature, attrs: map[string]any{"kid": "ec1", "alg": "ES256"}},
		{name: "HS256 with a wrong secret", authorization: "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("wrong-secret"), "", c), detail: DetailInvalidToken, reason: reasonBadSignature},
		{name: "expired", authorization: hs(with(c, "exp", now.Add(-time.Hour).Unix())), detail: DetailTokenExpired, reason: reasonExpired,
			attrs: map[string]any{"exp": now.Add(-time.Hour).UTC().Format(time.RFC3339)}},
		{name: "expired and of a wrong audience", authorization: hs(with(c, "exp", now.Add(-time.Hour).Unix(), "aud", "anon")), detail: DetailTokenExpired, reason: reasonExpired},
		{name: "not yet valid", authorization: hs(with(c, "nbf", now.Add(time.Hour).Unix())), detail: DetailInvalidToken, reason: reasonNotYetValid},
		{name: "issued in the future", authorization: hs(with(c, "iat", now.Add(time.Hour).Unix())), detail: DetailInvalidToken, reason: reasonIssuedInFuture},
		{name: "no exp", authorization: hs(with(c, "exp", nil)), detail: DetailInvalidToken, reason: reasonMissingExp},
		{name: "wrong aud", authorization: hs(with(c, "aud", "anon")), detail: DetailInvalidToken, reason: reasonWrongAudience,
			attrs: map[string]any{"expected_aud": testAudience, "aud": []any{"anon"}}},
		{name: "no aud", authorization: hs(with(c, "aud", nil)), detail: DetailInvalidToken, reason: reasonWrongAudience, attrs: map[string]any{"expected_aud": testAudience}},
		{name: "wrong iss", authorization: hs(with(c, "iss", "https://evil.example/auth/v1")), detail: DetailInvalidToken, reason: reasonWrongIssuer,
			attrs: map[string]any{"expected_iss": testIssuer, "iss": "https://evil.example/auth/v1"}},
		{name: "no iss", authorization: hs(with(c, "iss", nil)), detail: DetailInvalidToken, reason: reasonWrongIssuer, attrs: map[string]any{"expected_iss": testIssuer, "iss": ""}},
		{name: "sub not a UUID", authorization: hs(with(c, "sub", "admin")), detail: DetailInvalidToken, reason: reasonInvalidSubject},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs.Reset()
			a := a
			if tt.a != nil {
				a = tt.a
			}
			apiKey, present := "", tt.apiKey != nil
			if present {
				apiKey = *tt.apiKey
			}
			reqID := fmt.Sprintf("req-%d", i)
			got, err := a.Authenticate(requestCtx(reqID), tt.authorization, apiKey, present)
			wantDetail(t, got, err, tt.detail)
			lines := logs.withMessage(t, "authentication refused")
			if len(lines) != 1 {
				t.Fatalf("%d refusal lines, want 1; log:\n%s", len(lines), logs)
			}
			line := lines[0]
			if line["reason"] != tt.reason || line["level"] != "INFO" || line["requestId"] != reqID {
				t.Fatalf("line %v, want reason %q at INFO with requestId %q", line, tt.reason, reqID)
			}
			for key, want := range tt.attrs {
				if !equalJSON(line[key], want) {
					t.Errorf("%s = %#v, want %#v", key, line[key], want)
				}
			}
			// Neither the token, nor its signature, nor the API key secret.
			raw := logs.String()
			secrets := []string{}
			if tok, ok := bearerToken(tt.authorization); ok {
				secrets = append(secrets, tok)
				if sig := tok[strings.LastIndex(tok, ".")+1:]; len(sig) >= 16 {
					secrets = append(secrets, sig)
				}
			}
			if _, secret, ok := strings.Cut(apiKey, ":"); ok {
				secrets = append(secrets, secret)
			}
			for _, secret := range secrets {
				if strings.Contains(raw, secret) {
					t.Fatalf("the log shows a credential:\n%s", raw)
				}
			}
		})
	}
}

// TestJWKSUnreachableIsLogged: the 503 of a JWKS outage is logged too, as a
// warning with its reason and the request id.
func TestJWKSUnreachableIsLogged(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	log, logs := jsonLogger()
	cfg := fullConfig(srv.URL)
	cfg.Logger = log
	a := newAuth(t, cfg)
	got, err := a.Authenticate(requestCtx("req-outage"), "Bearer "+sign(t, jwt.SigningMethodES256, keys().ec1, "ec1", claimsAt(time.Now())), "", false)
	wantUnavailable(t, got, err)
	lines := logs.withMessage(t, "authentication unavailable")
	if len(lines) != 1 || lines[0]["reason"] != reasonJWKSUnreachable || lines[0]["level"] != "WARN" || lines[0]["requestId"] != "req-outage" {
		t.Fatalf("lines %v; log:\n%s", lines, logs)
	}
	if e, _ := lines[0]["error"].(string); !strings.Contains(e, "404") {
		t.Fatalf("the line does not say what the JWKS answered: %v", lines[0])
	}
}

// TestRequireSession: with sessions required, a token must carry a UUID
// session_id, which Authenticate hands on (lower-case) for the store to
// check; without, session_id is ignored. API keys have no session.
func TestRequireSession(t *testing.T) {
	log, logs := jsonLogger()
	required := newAuth(t, Config{HS256Secret: hsSecret, Audience: testAudience, RequireSession: true, APIKeySecret: apiKeySecret, Logger: log})
	optional := newAuth(t, Config{HS256Secret: hsSecret, Audience: testAudience, APIKeySecret: apiKeySecret, Logger: log})
	c := claimsAt(time.Now())
	tok := func(c jwt.MapClaims) string { return "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c) }

	got, err := required.Authenticate(context.Background(), tok(c), "", false)
	if err != nil || got != (threads.Caller{UserID: testUser, SessionID: testSession}) {
		t.Fatalf("caller %+v, err %v; want the session id", got, err)
	}
	got, err = required.Authenticate(context.Background(), tok(with(c, "session_id", strings.ToUpper(testSession))), "", false)
	if err != nil || got.SessionID != testSession {
		t.Fatalf("upper-case session_id: caller %+v, err %v", got, err)
	}
	for name, v := range map[string]any{"absent": nil, "empty": "", "not a UUID": "session-1", "a number": 42, "an object": map[string]any{"id": testSession}} {
		t.Run("refused/"+name, func(t *testing.T) {
			logs.Reset()
			got, err := required.Authenticate(requestCtx("req-session"), tok(with(c, "session_id", v)), "", false)
			wantDetail(t, got, err, DetailInvalidToken)
			wantReason(t, logs, reasonInvalidSession, "INFO", "req-session")
		})
	}

	for name, v := range map[string]any{"present": testSession, "absent": nil, "a number": 42} {
		got, err := optional.Authenticate(context.Background(), tok(with(c, "session_id", v)), "", false)
		if err != nil || got != (threads.Caller{UserID: testUser}) {
			t.Errorf("sessions not required, session_id %s: caller %+v, err %v", name, got, err)
		}
	}

	got, err = required.Authenticate(context.Background(), "", validAK, true)
	if err != nil || got.APIKey == nil || got.SessionID != "" {
		t.Fatalf("API key with sessions required: caller %+v, err %v", got, err)
	}
}

func ptr(s string) *string { return &s }

// equalJSON compares a decoded JSON value with a want written in Go.
func equalJSON(got, want any) bool {
	switch w := want.(type) {
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !equalJSON(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return got == want
}
