// Package auth turns the credentials of a request (a Supabase access token in
// Authorization, or a Kortix API key in X-API-Key) into a threads.Caller.
//
// Every failure is an *Error whose Detail is safe to show to the client: the
// HTTP adapter answers it with 401 and never needs to look further. Internal
// causes (library errors, JWKS outages) are deliberately not exposed, so a
// probing client learns nothing beyond "expired" or "invalid".
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Client-facing texts of the 401 responses. They are exported so that the
// HTTP adapter and its tests can refer to them instead of repeating them.
const (
	DetailNoCredentials       = "No valid authentication credentials found"
	DetailInvalidToken        = "Invalid token"
	DetailTokenExpired        = "Token has expired"
	DetailInvalidAPIKeyFormat = "Invalid API key format. Expected format: pk_xxx:sk_xxx"
	DetailInvalidAPIKey       = "Invalid API key"
)

const (
	// maxTokenBytes bounds the work an unauthenticated client can cause:
	// longer tokens are refused before any base64 or JSON decoding.
	// Supabase access tokens are well under 2 KiB.
	maxTokenBytes = 8 << 10
	// defaultLeeway absorbs clock skew between the issuer and Lambda.
	defaultLeeway = 30 * time.Second
	// keyPartLen is the number of alphanumerics after "pk_" and after "sk_".
	keyPartLen = 32
	// apiKeyLen is len("pk_" + 32 + ":" + "sk_" + 32).
	apiKeyLen = 3 + keyPartLen + 1 + 3 + keyPartLen
)

// Config configures an Authenticator. The config layer validates the
// environment; New re-checks only what would make the Authenticator unsafe.
type Config struct {
	HS256Secret  []byte        // SUPABASE_JWT_SECRET; may be empty
	JWKSURL      string        // SUPABASE_JWKS_URL; may be empty, but not both
	Audience     string        // required aud; "" disables the check
	Issuer       string        // required iss when non-empty
	Leeway       time.Duration // clock skew for exp/nbf/iat; 0 means 30s
	APIKeySecret []byte        // API_KEY_SECRET; empty refuses every API key
	HTTPClient   *http.Client  // for JWKS; nil means a client with a short timeout
}

// Error is every authentication failure. Detail is the exact text for the
// client ({"detail": Detail} with status 401).
type Error struct{ Detail string }

// Error returns Detail, so that logging the error never shows more than the
// client saw.
func (e *Error) Error() string { return e.Detail }

// Authenticator verifies credentials. It is safe for concurrent use and is
// meant to live for the whole Lambda execution environment, so that the JWKS
// it fetched stays cached between invocations.
type Authenticator struct {
	hsSecret     []byte
	apiKeySecret []byte
	parser       *jwt.Parser
	jwks         *jwksCache // nil when no JWKS URL is configured
	// now is the clock of claim validation and of the JWKS cache; tests
	// replace it.
	now func() time.Time
}

// New builds an Authenticator. It performs no I/O: Lambda init must not
// depend on the JWKS endpoint, which is fetched on the first ES256/RS256
// token instead.
func New(cfg Config) (*Authenticator, error) {
	if len(cfg.HS256Secret) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("auth: neither an HS256 secret nor a JWKS URL is configured")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("auth: negative leeway")
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = defaultLeeway
	}
	a := &Authenticator{
		hsSecret:     cfg.HS256Secret,
		apiKeySecret: cfg.APIKeySecret,
		now:          time.Now,
	}
	if cfg.JWKSURL != "" {
		u, err := url.ParseRequestURI(cfg.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("auth: JWKS URL %q is not an http(s) URL", cfg.JWKSURL)
		}
		a.jwks = newJWKSCache(cfg.JWKSURL, cfg.HTTPClient, func() time.Time { return a.now() })
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"HS256", "ES256", "RS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return a.now() }),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// Authenticate resolves the credentials of one request. apiKey and
// apiKeyPresent come from the X-API-Key header: when the header is present,
// even empty, it alone decides, as in the original Kortix API. The returned
// error is always an *Error.
func (a *Authenticator) Authenticate(ctx context.Context, authorization, apiKey string, apiKeyPresent bool) (threads.Caller, error) {
	if apiKeyPresent {
		return a.authenticateAPIKey(apiKey)
	}
	token, ok := bearerToken(authorization)
	if !ok {
		return threads.Caller{}, &Error{Detail: DetailNoCredentials}
	}
	return a.authenticateJWT(ctx, token)
}

// HashSecret returns hex(HMAC-SHA256(key, secret)), the form in which Kortix
// stores api_keys.secret_key_hash; secret includes its "sk_" prefix.
func HashSecret(key []byte, secret string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// authenticateAPIKey checks only the form of the key and hashes its secret;
// whether the key exists and is active is decided inside the delete
// transaction, which saves a database round trip. The plain secret is not
// kept beyond this function.
func (a *Authenticator) authenticateAPIKey(v string) (threads.Caller, error) {
	if !validAPIKey(v) {
		return threads.Caller{}, &Error{Detail: DetailInvalidAPIKeyFormat}
	}
	if len(a.apiKeySecret) == 0 {
		return threads.Caller{}, &Error{Detail: DetailInvalidAPIKey}
	}
	return threads.Caller{APIKey: &threads.APIKey{
		PublicKey:  v[:3+keyPartLen],
		SecretHash: HashSecret(a.apiKeySecret, v[3+keyPartLen+1:]),
	}}, nil
}

// validAPIKey reports whether v is exactly pk_<32 alnum>:sk_<32 alnum>.
func validAPIKey(v string) bool {
	if len(v) != apiKeyLen || v[:3] != "pk_" || v[3+keyPartLen:3+keyPartLen+4] != ":sk_" {
		return false
	}
	return alnum(v[3:3+keyPartLen]) && alnum(v[3+keyPartLen+4:])
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// bearerToken extracts the token of "Bearer <token>". The scheme is
// case-insensitive (RFC 9110); exactly one space separates it from a
// non-empty token.
func bearerToken(h string) (string, bool) {
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return h[len(prefix):], true
}

// claims are the parts of a Supabase access token the service uses; the
// registered claims carry what the parser validates.
type claims struct {
	jwt.RegisteredClaims
}

func (a *Authenticator) authenticateJWT(ctx context.Context, token string) (threads.Caller, error) {
	if len(token) > maxTokenBytes {
		return threads.Caller{}, &Error{Detail: DetailInvalidToken}
	}
	var c claims
	if _, err := a.parser.ParseWithClaims(token, &c, a.keyfunc(ctx)); err != nil {
		// The parser reports claim errors only after the signature
		// verified, so "expired" is never said of a forged token.
		if errors.Is(err, jwt.ErrTokenExpired) {
			return threads.Caller{}, &Error{Detail: DetailTokenExpired}
		}
		return threads.Caller{}, &Error{Detail: DetailInvalidToken}
	}
	sub, err := threads.ParseID(c.Subject)
	if err != nil {
		return threads.Caller{}, &Error{Detail: DetailInvalidToken}
	}
	return threads.Caller{UserID: sub}, nil
}

// errNoKey is what the keyfunc returns for any token it refuses; the parser
// wraps it and authenticateJWT turns it into DetailInvalidToken.
var errNoKey = errors.New("auth: no acceptable key for token")

// keyfunc pins each algorithm to its kind of key, which is what defeats
// algorithm-confusion attacks: HS256 is verified only with the shared
// secret, never with a JWKS key (whose public bytes an attacker knows), and
// ES256/RS256 only with a JWKS key of the matching type, selected by kid.
func (a *Authenticator) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		switch alg := t.Method.Alg(); alg {
		case "HS256":
			if len(a.hsSecret) == 0 {
				return nil, errNoKey
			}
			return a.hsSecret, nil
		case "ES256", "RS256":
			if a.jwks == nil {
				return nil, errNoKey
			}
			if kid, _ := t.Header["kid"].(string); kid == "" {
				return nil, errNoKey
			}
			key, err := a.jwks.key(ctx, t)
			if err != nil || !keyFits(alg, key) {
				return nil, errNoKey
			}
			return key, nil
		}
		return nil, errNoKey
	}
}

// keyFits reports whether key is of the kind alg requires: a P-256 key for
// ES256, an RSA key of at least 2048 bits for RS256.
func keyFits(alg string, key any) bool {
	switch alg {
	case "ES256":
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	case "RS256":
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N != nil && k.N.BitLen() >= 2048
	}
	return false
}
