package apigw_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/auth"
)

// TestJWKSOutageIs503: an ES256 token whose key only the JWKS can give,
// while the JWKS is unreachable, is answered 503 with Retry-After (a 401
// would make the client sign its user out) and changes nothing; a kid that
// a reachable JWKS does not list is still a 401; HS256 tokens are
// unaffected by the outage.
func TestJWKSOutageIs503(t *testing.T) {
	s := newStack(t, stackOptions{})
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	up := serveJWKS(t, map[string]any{"other": &other.PublicKey})

	owner := s.PersonalAccount()
	th := s.Thread(owner, "", "")
	now := time.Now()
	token := "Bearer " + mint(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{
		"sub": owner, "aud": "authenticated", "role": "authenticated", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}, map[string]any{"kid": "ec1"})

	for _, tc := range []struct {
		name    string
		jwksURL string
		status  int
		detail  string
	}{
		{"JWKS unreachable", down.URL, 503, "Service temporarily unavailable, please retry"},
		{"kid not in a reachable JWKS", up.URL, 401, auth.DetailInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			authn, err := auth.New(auth.Config{HS256Secret: []byte(testenv.JWTSecret), JWKSURL: tc.jwksURL, Audience: "authenticated"})
			if err != nil {
				t.Fatal(err)
			}
			s.handler.Auth = authn
			db, rd := s.Snapshot(), s.redisDump(t)
			resp := s.delete(t, th, map[string]string{"authorization": token})
			expect(t, resp, tc.status, map[string]string{"detail": tc.detail})
			if tc.status == 503 {
				if resp.Headers["Retry-After"] == "" || resp.Headers["WWW-Authenticate"] != "" {
					t.Fatalf("503 headers %v, want Retry-After and no WWW-Authenticate", resp.Headers)
				}
			} else if resp.Headers["WWW-Authenticate"] != "Bearer" {
				t.Fatalf("401 headers %v, want WWW-Authenticate: Bearer", resp.Headers)
			}
			s.expectUnchanged(t, db, rd)
		})
	}

	resp := s.delete(t, th, bearer(owner))
	expect(t, resp, 200, map[string]string{"message": "Thread deleted successfully", "thread_id": th})
}
