// Package auth turns the credentials of a request (a Supabase access token in
// Authorization, or a Kortix API key in X-API-Key) into a threads.Caller.
//
// A refused credential is an *Error whose Detail is safe to show to the
// client: the HTTP adapter answers it with 401 and never needs to look
// further. The one failure that is not the client's is ErrUnavailable (the
// JWKS could not be fetched for a token whose key only it can give), a 503.
// Why a credential was refused is logged (a reason word and what an
// operator needs, such as the expected issuer), never told to the client,
// and the credential itself is never logged: a probing client learns
// nothing beyond "expired" or "invalid".
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
	"log/slog"
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
	HS256Secret    []byte        // SUPABASE_JWT_SECRET; may be empty
	JWKSURL        string        // SUPABASE_JWKS_URL; may be empty, but not both
	Audience       string        // required aud; "" disables the check
	Issuer         string        // required iss when non-empty
	RequireSession bool          // JWT_REQUIRE_SESSION: a JWT must carry a UUID session_id
	Leeway         time.Duration // clock skew for exp/nbf/iat; 0 means 30s
	APIKeySecret   []byte        // API_KEY_SECRET; empty refuses every API key
	HTTPClient     *http.Client  // for JWKS; nil means a client with a short timeout
	// Logger receives every refusal with its reason, and JWKS fetch
	// failures. Pass the function's lambdacontext logger: the lines are
	// logged with the request's context, so they carry its request id.
	// nil means slog.Default().
	Logger *slog.Logger
}

// Error is every refused credential. Detail is the exact text for the
// client ({"detail": Detail} with status 401).
type Error struct{ Detail string }

// Error returns Detail, so that logging the error never shows more than the
// client saw.
func (e *Error) Error() string { return e.Detail }

// ErrUnavailable is returned, instead of an *Error, when a token needs a
// key that only the JWKS can give (none cached under its kid) and the JWKS
// cannot be fetched: connection error, timeout, non-2xx, unusable body.
// The token may well be valid, so this is no 401 (clients sign the user
// out on a 401) but a 503 to retry. A kid that a JWKS which answered does
// not list is still an *Error.
var ErrUnavailable = errors.New("auth: JWKS unavailable")

// Authenticator verifies credentials. It is safe for concurrent use and is
// meant to live for the whole Lambda execution environment, so that the JWKS
// it fetched stays cached between invocations.
type Authenticator struct {
	hsSecret       []byte
	apiKeySecret   []byte
	audience       string
	issuer         string
	requireSession bool
	parser         *jwt.Parser
	jwks           *jwksCache // nil when no JWKS URL is configured
	log            *slog.Logger
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
		hsSecret:       cfg.HS256Secret,
		apiKeySecret:   cfg.APIKeySecret,
		audience:       cfg.Audience,
		issuer:         cfg.Issuer,
		requireSession: cfg.RequireSession,
		log:            cfg.Logger,
		now:            time.Now,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if cfg.JWKSURL != "" {
		u, err := url.ParseRequestURI(cfg.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("auth: JWKS URL %q is not an http(s) URL", cfg.JWKSURL)
		}
		a.jwks = newJWKSCache(cfg.JWKSURL, cfg.HTTPClient, func() time.Time { return a.now() }, a.log)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(validAlgs),
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

// validAlgs are the only JWT algorithms accepted.
var validAlgs = []string{"HS256", "ES256", "RS256"}

// Authenticate resolves the credentials of one request. apiKey and
// apiKeyPresent come from the X-API-Key header: when the header is present,
// even empty, it alone decides, as in the original Kortix API. The returned
// error is an *Error (401) or ErrUnavailable (503); either way the reason
// has been logged.
func (a *Authenticator) Authenticate(ctx context.Context, authorization, apiKey string, apiKeyPresent bool) (threads.Caller, error) {
	var caller threads.Caller
	var r *refusal
	if apiKeyPresent {
		caller, r = a.authenticateAPIKey(apiKey)
	} else if token, ok := bearerToken(authorization); ok {
		caller, r = a.authenticateJWT(ctx, token)
	} else {
		r = refuse(DetailNoCredentials, reasonNoCredentials, "authorization_present", authorization != "")
	}
	if r != nil {
		return threads.Caller{}, a.report(ctx, r)
	}
	return caller, nil
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
func (a *Authenticator) authenticateAPIKey(v string) (threads.Caller, *refusal) {
	if !validAPIKey(v) {
		return threads.Caller{}, refuse(DetailInvalidAPIKeyFormat, reasonAPIKeyFormat)
	}
	if len(a.apiKeySecret) == 0 {
		return threads.Caller{}, refuse(DetailInvalidAPIKey, reasonAPIKeysDisabled)
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
// registered claims carry what the parser validates. SessionID is decoded
// as any JSON value, so that an odd session_id refuses a token only when
// sessions are required.
type claims struct {
	jwt.RegisteredClaims
	SessionID any `json:"session_id"`
}

func (a *Authenticator) authenticateJWT(ctx context.Context, token string) (threads.Caller, *refusal) {
	if len(token) > maxTokenBytes {
		return threads.Caller{}, refuse(DetailInvalidToken, reasonMalformed, "token_bytes", len(token))
	}
	var c claims
	var keyRefusal *refusal
	tok, err := a.parser.ParseWithClaims(token, &c, a.keyfunc(ctx, &keyRefusal))
	if err != nil {
		if keyRefusal != nil {
			return threads.Caller{}, keyRefusal
		}
		return threads.Caller{}, a.parseRefusal(tok, err, &c)
	}
	sub, err := threads.ParseID(c.Subject)
	if err != nil {
		return threads.Caller{}, refuse(DetailInvalidToken, reasonInvalidSubject)
	}
	caller := threads.Caller{UserID: sub}
	if a.requireSession {
		s, _ := c.SessionID.(string)
		sid, err := threads.ParseID(s)
		if err != nil {
			return threads.Caller{}, refuse(DetailInvalidToken, reasonInvalidSession, "session_id_present", c.SessionID != nil)
		}
		caller.SessionID = sid
	}
	return caller, nil
}

// errNoKey is what the keyfunc returns for any token it refuses, after
// recording why; the parser wraps it.
var errNoKey = errors.New("auth: no acceptable key for token")

// keyfunc pins each algorithm to its kind of key, which is what defeats
// algorithm-confusion attacks: HS256 is verified only with the shared
// secret, never with a JWKS key (whose public bytes an attacker knows), and
// ES256/RS256 only with a JWKS key of the matching type, selected by kid.
// When it refuses a token it sets *why.
func (a *Authenticator) keyfunc(ctx context.Context, why **refusal) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		switch alg {
		case "HS256":
			if len(a.hsSecret) == 0 {
				*why = refuse(DetailInvalidToken, reasonUnsupportedAlgorithm, "alg", alg, "note", "no HS256 secret configured")
				return nil, errNoKey
			}
			return a.hsSecret, nil
		case "ES256", "RS256":
			if a.jwks == nil {
				*why = refuse(DetailInvalidToken, reasonUnsupportedAlgorithm, "alg", alg, "note", "no JWKS configured")
				return nil, errNoKey
			}
			kid, _ := t.Header["kid"].(string)
			if kid == "" {
				*why = refuse(DetailInvalidToken, reasonMissingKID, "alg", alg)
				return nil, errNoKey
			}
			k, err := a.jwks.key(ctx, kid)
			switch {
			case errors.Is(err, ErrUnavailable):
				*why = &refusal{reason: reasonJWKSUnreachable, attrs: []any{"alg", alg, "kid", clip(kid), "error", err.Error()}}
				return nil, errNoKey
			case err != nil:
				*why = refuse(DetailInvalidToken, reasonUnknownKID, "alg", alg, "kid", clip(kid))
				return nil, errNoKey
			case !keyFits(alg, k):
				*why = refuse(DetailInvalidToken, reasonKeyMismatch, "alg", alg, "kid", clip(kid), "key_alg", k.alg, "key_type", fmt.Sprintf("%T", k.key))
				return nil, errNoKey
			}
			return k.key, nil
		}
		*why = refuse(DetailInvalidToken, reasonUnsupportedAlgorithm, "alg", clip(alg))
		return nil, errNoKey
	}
}

// keyFits reports whether k may verify alg: a P-256 key for ES256, an RSA
// key of at least 2048 bits for RS256, and the JWK's own "alg", when it
// names one, is alg.
func keyFits(alg string, k publicKey) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg {
	case "ES256":
		key, ok := k.key.(*ecdsa.PublicKey)
		return ok && key.Curve == elliptic.P256()
	case "RS256":
		key, ok := k.key.(*rsa.PublicKey)
		return ok && key.N != nil && key.N.BitLen() >= 2048
	}
	return false
}
