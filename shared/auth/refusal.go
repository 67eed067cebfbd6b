package auth

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The reason logged with every refused credential (the "reason" field).
// The client sees only the Detail of the 401; operators see these.
const (
	reasonNoCredentials        = "missing_credentials"   // no Authorization "Bearer <token>" and no X-API-Key
	reasonAPIKeyFormat         = "bad_api_key_format"    // X-API-Key not pk_<32>:sk_<32>
	reasonAPIKeysDisabled      = "api_keys_disabled"     // API_KEY_SECRET is unset
	reasonMalformed            = "malformed"             // not a JWT: segments, base64, JSON, size
	reasonUnsupportedAlgorithm = "unsupported_algorithm" // alg not HS256/ES256/RS256, or no key of its kind configured
	reasonMissingKID           = "missing_kid"           // ES256/RS256 without kid
	reasonUnknownKID           = "unknown_kid"           // the JWKS answered and lacks the kid
	reasonKeyMismatch          = "key_mismatch"          // the kid names a key of another kind or algorithm
	reasonJWKSUnreachable      = "jwks_unreachable"      // the kid is not cached and the JWKS did not answer (503)
	reasonBadSignature         = "bad_signature"
	reasonExpired              = "expired"
	reasonNotYetValid          = "not_yet_valid"    // nbf in the future
	reasonIssuedInFuture       = "issued_in_future" // iat in the future
	reasonMissingExp           = "missing_exp"
	reasonWrongAudience        = "wrong_audience"
	reasonWrongIssuer          = "wrong_issuer"
	reasonInvalidSubject       = "invalid_subject" // sub missing or not a UUID
	reasonInvalidSession       = "invalid_session" // session_id missing or not a UUID while sessions are required
	reasonInvalidClaims        = "invalid_claims"  // any other claim error
)

// refusal is why a credential was not accepted: the reason word, the
// client's 401 detail ("" for a JWKS outage, which is no 401), and log
// attributes that help an operator. Nothing in it is the credential.
type refusal struct {
	reason string
	detail string
	attrs  []any
}

func refuse(detail, reason string, attrs ...any) *refusal {
	return &refusal{reason: reason, detail: detail, attrs: attrs}
}

// report logs r with the request's context (so that the Lambda logger adds
// the request id) and returns the error for the caller.
func (a *Authenticator) report(ctx context.Context, r *refusal) error {
	attrs := append([]any{"reason", r.reason}, r.attrs...)
	if r.detail == "" {
		a.log.WarnContext(ctx, "authentication unavailable", attrs...)
		return ErrUnavailable
	}
	a.log.InfoContext(ctx, "authentication refused", attrs...)
	return &Error{Detail: r.detail}
}

// parseRefusal explains an error of the JWT parser that the keyfunc did not
// cause. The parser reports claim errors only after the signature verified,
// so "expired" is never said of a forged token. c holds the claims as
// decoded; they are only described, never trusted.
func (a *Authenticator) parseRefusal(tok *jwt.Token, err error, c *claims) *refusal {
	if errors.Is(err, jwt.ErrTokenMalformed) {
		return refuse(DetailInvalidToken, reasonMalformed)
	}
	if tok != nil {
		if alg, _ := tok.Header["alg"].(string); !slices.Contains(validAlgs, alg) {
			return refuse(DetailInvalidToken, reasonUnsupportedAlgorithm, "alg", clip(alg))
		}
	}
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		var alg, kid string
		if tok != nil {
			alg, _ = tok.Header["alg"].(string)
			kid, _ = tok.Header["kid"].(string)
		}
		return refuse(DetailInvalidToken, reasonBadSignature, "alg", alg, "kid", clip(kid))
	}
	// Claim errors. Several may hold at once; the first of this order is
	// logged, and "expired" comes first because it is what the client is
	// told.
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(DetailTokenExpired, reasonExpired, "exp", c.ExpiresAt.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refuse(DetailInvalidToken, reasonNotYetValid, "nbf", c.NotBefore.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(DetailInvalidToken, reasonIssuedInFuture, "iat", c.IssuedAt.UTC().Format(time.RFC3339))
	case c.ExpiresAt == nil:
		return refuse(DetailInvalidToken, reasonMissingExp)
	case a.audience != "" && !slices.Contains(c.Audience, a.audience):
		var aud []string
		for _, s := range c.Audience[:min(len(c.Audience), 4)] {
			aud = append(aud, clip(s))
		}
		return refuse(DetailInvalidToken, reasonWrongAudience, "expected_aud", a.audience, "aud", aud)
	case a.issuer != "" && c.Issuer != a.issuer:
		return refuse(DetailInvalidToken, reasonWrongIssuer, "expected_iss", a.issuer, "iss", clip(c.Issuer))
	}
	return refuse(DetailInvalidToken, reasonInvalidClaims)
}

// clip bounds what a client-chosen string (a kid, an issuer) puts into a
// log line.
func clip(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
