package apigw_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/auth"
)

// attackIssuer is the issuer the attack stack requires (JWT_ISSUER).
const attackIssuer = "https://project.supabase.co/auth/v1"

// jwksServer serves a JWKS document and counts its requests.
type jwksServer struct {
	*httptest.Server
	body []byte
	hits atomic.Int64
}

func serveJWKS(t *testing.T, keys map[string]any) *jwksServer {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, pub := range keys {
		j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s := &jwksServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.body) //nolint:errcheck
	}))
	t.Cleanup(s.Close)
	return s
}

// mint signs claims with key under method, with extra JOSE header fields.
func mint(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned builds "header.payload." from raw JSON, for algorithms no
// library will sign with.
func unsigned(header, payload map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(payload) + "."
}

// TestAttacksEndToEnd sends hostile credentials and thread ids through the
// real stack (PostgreSQL, Redis, SQS), configured like production with
// a Supabase HS256 secret, a JWKS for RS256/ES256, the audience and an
// issuer. Every attack must get the contract's status and change nothing:
// the database, every Redis key and the queue are compared before and
// after, and the attacker's own key server must never be contacted.
func TestAttacksEndToEnd(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	attackerRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := serveJWKS(t, map[string]any{"rsa1": &rsaKey.PublicKey, "ec1": &ecKey.PublicKey})
	evil := serveJWKS(t, map[string]any{"rsa1": &attackerRSA.PublicKey, "evil": &attackerRSA.PublicKey})
	authn, err := auth.New(auth.Config{
		HS256Secret: []byte(testenv.JWTSecret), JWKSURL: jwks.URL,
		Audience: "authenticated", Issuer: attackIssuer, APIKeySecret: []byte(apiKeySecret),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.handler.Auth = authn

	owner, stranger := s.PersonalAccount(), s.PersonalAccount()
	res := s.Sandbox(owner, "sb-attacked")
	p := s.Project(owner, res, "")
	th := s.Thread(owner, p, "")
	s.Content(th, 4, 1, 1)
	for k, v := range map[string]string{
		"thread_count:" + owner: "4", "project_count:" + owner: "1",
		"cache:account_state:" + owner: "{}", "message_history:" + th: "[]", "project_meta:" + p: "{}",
	} {
		s.rdb.Set(ctx, k, v, 0)
	}

	now := time.Now()
	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": owner, "aud": "authenticated", "iss": attackIssuer, "role": "authenticated",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	rs := func(c jwt.MapClaims) map[string]string {
		return map[string]string{"authorization": "Bearer " + mint(t, jwt.SigningMethodRS256, rsaKey, c, map[string]any{"kid": "rsa1"})}
	}
	hs := func(c jwt.MapClaims) map[string]string {
		return map[string]string{"authorization": "Bearer " + mint(t, jwt.SigningMethodHS256, []byte(testenv.JWTSecret), c, nil)}
	}
	withKey := func(m jwt.SigningMethod, key any, header map[string]any) map[string]string {
		return map[string]string{"authorization": "Bearer " + mint(t, m, key, claims(), header)}
	}
	raw := func(token string) map[string]string { return map[string]string{"authorization": "Bearer " + token} }

	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	attackerJWK, err := jwkset.NewJWKFromKey(&attackerRSA.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rsa1"}})
	if err != nil {
		t.Fatal(err)
	}
	owned := rs(claims())["authorization"] // a valid token of the owner

	const (
		invalidID    = "Invalid thread ID"
		invalidToken = auth.DetailInvalidToken
		expired      = auth.DetailTokenExpired
		forbidden    = "Not authorized to modify this thread"
		notFound     = "Thread not found"
	)
	tests := []struct {
		name    string
		id      string
		headers map[string]string
		status  int
		detail  string
	}{
		// Algorithm confusion and forged signatures.
		{"alg none with a JWKS kid", th, raw(unsigned(map[string]any{"alg": "none", "kid": "rsa1"}, claims())), 401, invalidToken},
		{"alg NONE", th, raw(unsigned(map[string]any{"alg": "NONE", "typ": "JWT"}, claims())), 401, invalidToken},
		{"alg none with a copied RS256 signature", th, raw(unsigned(map[string]any{"alg": "none"}, claims()) + strings.Split(owned, ".")[2]), 401, invalidToken},
		{"HS256 keyed with the JWKS RSA public key (PEM)", th, withKey(jwt.SigningMethodHS256, pubPEM, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"HS256 keyed with the JWKS RSA public key (DER)", th, withKey(jwt.SigningMethodHS256, pubDER, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"HS256 keyed with the JWKS document", th, withKey(jwt.SigningMethodHS256, jwks.body, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"RS256 by the attacker's key under the JWKS kid", th, withKey(jwt.SigningMethodRS256, attackerRSA, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"RS256 with the attacker's key embedded (jwk header)", th, withKey(jwt.SigningMethodRS256, attackerRSA, map[string]any{"kid": "rsa1", "jwk": attackerJWK.Marshal()}), 401, invalidToken},
		{"RS256 pointing at the attacker's JWKS (jku header)", th, withKey(jwt.SigningMethodRS256, attackerRSA, map[string]any{"kid": "evil", "jku": evil.URL}), 401, invalidToken},
		{"RS256 pointing at the attacker's certificate (x5u header)", th, withKey(jwt.SigningMethodRS256, attackerRSA, map[string]any{"kid": "evil", "x5u": evil.URL}), 401, invalidToken},
		{"ES256 under the RSA key's kid", th, withKey(jwt.SigningMethodES256, ecKey, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"RS256 under the EC key's kid", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "ec1"}), 401, invalidToken},
		{"PS256 with the JWKS RSA key", th, withKey(jwt.SigningMethodPS256, rsaKey, map[string]any{"kid": "rsa1"}), 401, invalidToken},
		{"HS512 with the shared secret", th, withKey(jwt.SigningMethodHS512, []byte(testenv.JWTSecret), nil), 401, invalidToken},
		// Unknown and injected kids.
		{"unknown kid", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "rsa2"}), 401, invalidToken},
		{"kid path traversal", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "../../../../dev/null"}), 401, invalidToken},
		{"kid SQL injection", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "rsa1' OR '1'='1"}), 401, invalidToken},
		{"kid with a NUL byte", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": "rsa1\x00"}), 401, invalidToken},
		{"kid is a URL", th, withKey(jwt.SigningMethodRS256, attackerRSA, map[string]any{"kid": evil.URL}), 401, invalidToken},
		{"kid is a number", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": 1}), 401, invalidToken},
		{"kid is an object", th, withKey(jwt.SigningMethodRS256, rsaKey, map[string]any{"kid": map[string]string{"$ne": ""}}), 401, invalidToken},
		// Sizes.
		{"token over the verifier's 8 KiB", th, rs(claims("pad", strings.Repeat("x", 9<<10))), 401, invalidToken},
		{"Authorization header over 16 KiB", th, raw(strings.Repeat("A", 17<<10)), 401, invalidToken},
		{"X-API-Key header over 16 KiB", th, map[string]string{"x-api-key": strings.Repeat("k", 17<<10)}, 401, auth.DetailInvalidAPIKeyFormat},
		{"X-API-Key over 16 KiB with a valid token", th, map[string]string{"x-api-key": strings.Repeat("k", 17<<10), "authorization": owned}, 401, auth.DetailInvalidAPIKeyFormat},
		{"API key with SQL in it", th, map[string]string{"x-api-key": "pk_' OR '1'='1:sk_' OR '1'='1"}, 401, auth.DetailInvalidAPIKeyFormat},
		{"API key of the right form, unknown", th, map[string]string{"x-api-key": "pk_" + strings.Repeat("0", 32) + ":sk_" + strings.Repeat("0", 32)}, 401, auth.DetailInvalidAPIKey},
		{"1 MiB Authorization header", th, raw(strings.Repeat("eyJ", 1<<20/3)), 401, invalidToken},
		// Claims.
		{"expired", th, rs(claims("exp", now.Add(-time.Hour).Unix())), 401, expired},
		{"nbf in the future", th, rs(claims("nbf", now.Add(time.Hour).Unix())), 401, invalidToken},
		{"iat in the future", th, rs(claims("iat", now.Add(time.Hour).Unix())), 401, invalidToken},
		{"no exp", th, rs(claims("exp", nil)), 401, invalidToken},
		{"wrong issuer", th, rs(claims("iss", "https://evil.example/auth/v1")), 401, invalidToken},
		{"issuer with a trailing slash", th, rs(claims("iss", attackIssuer+"/")), 401, invalidToken},
		{"no issuer", th, rs(claims("iss", nil)), 401, invalidToken},
		{"HS256 with the right secret and a wrong issuer", th, hs(claims("iss", "https://other.supabase.co/auth/v1")), 401, invalidToken},
		{"wrong audience", th, rs(claims("aud", "service_role")), 401, invalidToken},
		{"audience list without authenticated", th, rs(claims("aud", []string{"anon", "service_role"})), 401, invalidToken},
		{"no audience", th, rs(claims("aud", nil)), 401, invalidToken},
		{"no sub", th, rs(claims("sub", nil)), 401, invalidToken},
		{"empty sub", th, rs(claims("sub", "")), 401, invalidToken},
		{"non-UUID sub", th, rs(claims("sub", "admin")), 401, invalidToken},
		{"SQL in sub", th, rs(claims("sub", "' OR '1'='1")), 401, invalidToken},
		{"UUID and SQL in sub", th, rs(claims("sub", owner+"' OR '1'='1")), 401, invalidToken},
		{"braced UUID sub", th, rs(claims("sub", "{"+owner+"}")), 401, invalidToken},
		{"service_role claim of a stranger", th, rs(claims("sub", stranger, "role", "service_role")), 403, forbidden},
		{"nil UUID sub", th, rs(claims("sub", "00000000-0000-0000-0000-000000000000")), 403, forbidden},
		{"stranger with a valid ES256 token", th, map[string]string{"authorization": "Bearer " + mint(t, jwt.SigningMethodES256, ecKey, claims("sub", stranger), map[string]any{"kid": "ec1"})}, 403, forbidden},
		// Thread ids (each with a valid token of the owner).
		{"URL-encoded SQL", "%27%20OR%201%3D1--", rs(claims()), 400, invalidID},
		{"UUID followed by SQL", th + "'; DROP TABLE public.threads;--", rs(claims()), 400, invalidID},
		{"UUID with a NUL byte", th[:35] + "\x00", rs(claims()), 400, invalidID},
		{"UUID and a trailing newline", th + "\n", rs(claims()), 400, invalidID},
		{"UUID with a fullwidth digit", strings.Replace(th, th[:1], "\uff11", 1), rs(claims()), 400, invalidID},
		{"right-to-left override", "\u202e" + th[1:], rs(claims()), 400, invalidID},
		{"encoded path traversal", "..%2F..%2Fprojects%2F" + p, rs(claims()), 400, invalidID},
		{"dot segments", "./" + th[2:], rs(claims()), 400, invalidID},
		{"urn form", "urn:uuid:" + th, rs(claims()), 400, invalidID},
		{"1 MiB id", strings.Repeat("a", 1<<20), rs(claims()), 400, invalidID},
		{"empty id", "", rs(claims()), 400, invalidID},
		{"the project's id", p, rs(claims()), 404, notFound},
		{"the sandbox resource's id", res, rs(claims()), 404, notFound},
		{"the owner's account id", owner, rs(claims()), 404, notFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, rd := s.Snapshot(), s.redisDump(t)
			resp := s.delete(t, tc.id, tc.headers)
			expect(t, resp, tc.status, map[string]string{"detail": tc.detail})
			if tc.status == 401 && resp.Headers["WWW-Authenticate"] != "Bearer" {
				t.Fatalf("401 without WWW-Authenticate: Bearer: %v", resp.Headers)
			}
			s.expectUnchanged(t, db, rd)
		})
	}
	if msgs := s.receive(t, 0); len(msgs) != 0 {
		t.Fatalf("an attack queued work: %v", msgs)
	}
	if n := evil.hits.Load(); n != 0 {
		t.Fatalf("the attacker's key server was contacted %d times", n)
	}
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, th) != 1 {
		t.Fatal("the attacked thread is gone")
	}

	// The same stack accepts each kind of genuine credential: the refusals
	// above are not a stack that refuses everything.
	key := s.APIKey(owner, "active", 0, func(secret string) string { return auth.HashSecret([]byte(apiKeySecret), secret) })
	genuine := map[string]map[string]string{
		"RS256": rs(claims()),
		"ES256": {"authorization": "Bearer " + mint(t, jwt.SigningMethodES256, ecKey, claims(), map[string]any{"kid": "ec1"})},
		"HS256": hs(claims()),
		// X-API-Key alone decides: a junk Authorization header beside it,
		// however large, does not matter.
		"API key beside a 17 KiB Authorization header": {"x-api-key": key, "authorization": strings.Repeat("A", 17<<10)},
	}
	for name, headers := range genuine {
		t.Run("genuine "+name, func(t *testing.T) {
			victim := s.Thread(owner, p, "")
			expect(t, s.delete(t, victim, headers), 200, nil)
			if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, victim) != 0 {
				t.Fatal("not deleted")
			}
		})
	}
	if got := s.redisState("thread_count:" + owner); !maps.Equal(got, map[string]string{"thread_count:" + owner: "0"}) {
		t.Fatalf("after four genuine deletes: %v", got)
	}
}
