package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

const (
	testAudience = "authenticated"
	testIssuer   = "https://project.supabase.co/auth/v1"
	testUser     = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
	testSession  = "0b9b6c1e-7d43-4b0e-9a55-3f7e0e8f2c11"
)

var (
	hsSecret     = []byte("super-secret-jwt-token-with-at-least-32-characters")
	apiKeySecret = []byte("api-key-hmac-secret")
)

// testKeys are generated once: RSA key generation is slow.
type testKeys struct {
	rsa1, rsa2, rsaWeak *rsa.PrivateKey
	ec1, ec2, ec3       *ecdsa.PrivateKey
	ecP384              *ecdsa.PrivateKey
}

var keys = sync.OnceValue(func() testKeys {
	rsaKey := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		return k
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	return testKeys{
		rsa1: rsaKey(2048), rsa2: rsaKey(2048), rsaWeak: rsaKey(1024),
		ec1: ecKey(elliptic.P256()), ec2: ecKey(elliptic.P256()), ec3: ecKey(elliptic.P256()), ecP384: ecKey(elliptic.P384()),
	}
})

// jwk describes one public key of a test JWKS. alg is left empty on
// purpose in some keys, so that the key-type check of this package (not
// the JWK's "alg") is what rejects a mismatched token.
type jwk struct {
	kid string
	alg jwkset.ALG
	pub any
}

// jwksServer serves a JWKS that tests can swap, break, hold and count.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hold   chan struct{} // while set, requests wait until it is closed
	held   chan struct{} // one value per request that waits
	hits   atomic.Int32
}

func newJWKSServer(t testing.TB, set ...jwk) *jwksServer {
	s := &jwksServer{status: http.StatusOK}
	s.setKeys(t, set...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		hold, held := s.hold, s.held
		s.mu.Unlock()
		if hold != nil {
			held <- struct{}{}
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, set ...jwk) {
	t.Helper()
	var m jwkset.JWKSMarshal
	for _, k := range set {
		// Shaped like Supabase Auth's JWKS: use "sig", key_ops ["verify"].
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.kid, ALG: k.alg, USE: jwkset.UseSig, KEYOPS: []jwkset.KEYOPS{jwkset.KeyOpsVerify},
		}})
		if err != nil {
			t.Fatal(err)
		}
		m.Keys = append(m.Keys, j.Marshal())
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

// holdRequests makes every request wait until release is called; held
// receives one value per waiting request.
func (s *jwksServer) holdRequests() (held <-chan struct{}, release func()) {
	hold, h := make(chan struct{}), make(chan struct{}, 1024)
	s.mu.Lock()
	s.hold, s.held = hold, h
	s.mu.Unlock()
	var once sync.Once
	return h, func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold, s.held = nil, nil
			s.mu.Unlock()
			close(hold)
		})
	}
}

func (s *jwksServer) setStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

func defaultKeySet() []jwk {
	k := keys()
	return []jwk{
		{kid: "rsa1", alg: jwkset.AlgRS256, pub: &k.rsa1.PublicKey},
		{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey},
		// No "alg": only the key type tells what they may verify.
		{kid: "ec-noalg", pub: &k.ec2.PublicKey},
		{kid: "rsa-noalg", pub: &k.rsa2.PublicKey},
		{kid: "p384", pub: &k.ecP384.PublicKey},
		{kid: "rsa-weak", pub: &k.rsaWeak.PublicKey},
	}
}

// fakeClock is a settable clock for the Authenticator and token claims.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newAuth(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func fullConfig(jwksURL string) Config {
	return Config{
		HS256Secret:  hsSecret,
		JWKSURL:      jwksURL,
		Audience:     testAudience,
		Issuer:       testIssuer,
		APIKeySecret: apiKeySecret,
	}
}

// claimsAt are valid claims for a token issued at now, shaped like those
// of a real Supabase Auth (GoTrue) access token.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss":           testIssuer,
		"sub":           testUser,
		"aud":           testAudience,
		"exp":           now.Add(time.Hour).Unix(),
		"iat":           now.Unix(),
		"email":         "user@example.com",
		"phone":         "",
		"app_metadata":  map[string]any{"provider": "email", "providers": []string{"email"}},
		"user_metadata": map[string]any{},
		"role":          "authenticated",
		"aal":           "aal1",
		"amr":           []map[string]any{{"method": "password", "timestamp": now.Unix()}},
		"session_id":    testSession,
		"is_anonymous":  false,
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCaller(t *testing.T, got threads.Caller, err error, userID string) {
	t.Helper()
	if err != nil {
		t.Fatalf("Authenticate: unexpected error %v", err)
	}
	if got.UserID != userID || got.APIKey != nil {
		t.Fatalf("caller = %+v, want UserID %q", got, userID)
	}
}

// wantUnavailable expects the JWKS-outage error (a 503), not a 401.
func wantUnavailable(t *testing.T, got threads.Caller, err error) {
	t.Helper()
	if err != ErrUnavailable {
		t.Fatalf("error = %#v (%T), want ErrUnavailable", err, err)
	}
	if got != (threads.Caller{}) {
		t.Fatalf("caller = %+v on error", got)
	}
}

func wantDetail(t *testing.T, got threads.Caller, err error, detail string) {
	t.Helper()
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error = %#v (%T), want *Error{%q}", err, err, detail)
	}
	if e.Detail != detail {
		t.Fatalf("detail = %q, want %q", e.Detail, detail)
	}
	if got != (threads.Caller{}) {
		t.Fatalf("caller = %+v on error", got)
	}
}

func TestValidTokens(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	a := newAuth(t, fullConfig(srv.URL))
	now := time.Now()
	c := claimsAt(now)
	upper := strings.ToUpper(testUser)

	tests := []struct {
		name, authorization string
	}{
		{"HS256", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c)},
		{"HS256 with a kid", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "some-kid", c)},
		{"ES256", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "ec1", c)},
		{"ES256 key without alg", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec2, "ec-noalg", c)},
		{"RS256", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", c)},
		{"RS256 key without alg", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa-noalg", c)},
		{"lowercase bearer", "bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c)},
		{"uppercase BEARER", "BEARER " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c)},
		{"aud array", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "aud", []string{"other", testAudience}))},
		{"upper-case sub", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "sub", upper))},
		{"expired within leeway", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "exp", now.Add(-10*time.Second).Unix()))},
		{"nbf within leeway", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "nbf", now.Add(10*time.Second).Unix()))},
		{"nbf in the past", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "nbf", now.Add(-time.Minute).Unix()))},
		{"no iat", "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "iat", nil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), tt.authorization, "", false)
			wantCaller(t, got, err, testUser)
		})
	}
}

func TestAttacksAndInvalidTokens(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	a := newAuth(t, fullConfig(srv.URL))
	now := time.Now()
	c := claimsAt(now)
	hs := func(c jwt.MapClaims) string { return "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", c) }

	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa1.PublicKey)})
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	valid := sign(t, jwt.SigningMethodHS256, hsSecret, "", c)
	parts := strings.Split(valid, ".")
	other := strings.Split(sign(t, jwt.SigningMethodHS256, []byte("x"), "", with(c, "sub", "00000000-0000-0000-0000-000000000000")), ".")
	bigToken := sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "pad", strings.Repeat("a", maxTokenBytes)))

	tests := []struct {
		name, authorization, detail string
	}{
		{"no header", "", DetailNoCredentials},
		{"Basic scheme", "Basic xyz", DetailNoCredentials},
		{"Basic with a valid token", "Basic " + valid, DetailNoCredentials},
		{"scheme only", "Bearer", DetailNoCredentials},
		{"empty token", "Bearer ", DetailNoCredentials},
		{"no space", "Bearer" + valid, DetailNoCredentials},
		{"tab separator", "Bearer\t" + valid, DetailNoCredentials},
		{"bare token", valid, DetailNoCredentials},
		{"two spaces", "Bearer  " + valid, DetailInvalidToken},
		{"trailing space", "Bearer " + valid + " ", DetailInvalidToken},
		{"alg none", "Bearer " + none, DetailInvalidToken},
		{"alg none without signature dot", "Bearer " + strings.TrimSuffix(none, "."), DetailInvalidToken},
		{"HS256 keyed with RSA public key PEM", "Bearer " + sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", c), DetailInvalidToken},
		{"HS256 keyed with RSA public key PKCS1 PEM", "Bearer " + sign(t, jwt.SigningMethodHS256, pkcs1PEM, "rsa1", c), DetailInvalidToken},
		{"HS256 keyed with RSA public key DER", "Bearer " + sign(t, jwt.SigningMethodHS256, pubDER, "rsa1", c), DetailInvalidToken},
		{"HS384 with the secret", "Bearer " + sign(t, jwt.SigningMethodHS384, hsSecret, "", c), DetailInvalidToken},
		{"HS512 with the secret", "Bearer " + sign(t, jwt.SigningMethodHS512, hsSecret, "", c), DetailInvalidToken},
		{"RS384 with a JWKS key", "Bearer " + sign(t, jwt.SigningMethodRS384, k.rsa2, "rsa-noalg", c), DetailInvalidToken},
		{"PS256 with a JWKS key", "Bearer " + sign(t, jwt.SigningMethodPS256, k.rsa2, "rsa-noalg", c), DetailInvalidToken},
		{"ES384 with a JWKS key", "Bearer " + sign(t, jwt.SigningMethodES384, k.ecP384, "p384", c), DetailInvalidToken},
		{"RS256 whose kid names an EC key", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "ec-noalg", c), DetailInvalidToken},
		{"ES256 whose kid names an RSA key", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec2, "rsa-noalg", c), DetailInvalidToken},
		{"ES256 whose kid names a P-384 key", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec2, "p384", c), DetailInvalidToken},
		{"RS256 with a JWKS key of the JWKS alg ES256", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "ec1", c), DetailInvalidToken},
		{"RS256 with a 1024-bit key", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsaWeak, "rsa-weak", c), DetailInvalidToken},
		{"RS256 signed by another key", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa1", c), DetailInvalidToken},
		{"ES256 signed by another key", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec2, "ec1", c), DetailInvalidToken},
		{"ES256 without kid", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "", c), DetailInvalidToken},
		{"unknown kid", "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "no-such-kid", c), DetailInvalidToken},
		{"kid path traversal", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "../../etc/passwd", c), DetailInvalidToken},
		{"kid SQL injection", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "' OR 1=1 --", c), DetailInvalidToken},
		{"kid URL", "Bearer " + sign(t, jwt.SigningMethodRS256, k.rsa1, "http://127.0.0.1:1/evil.json", c), DetailInvalidToken},
		{"oversized token", "Bearer " + bigToken, DetailInvalidToken},
		{"oversized header", "Bearer " + strings.Repeat("A", 1<<20), DetailInvalidToken},
		{"expired", hs(with(c, "exp", now.Add(-time.Hour).Unix())), DetailTokenExpired},
		{"expired and wrong audience", hs(with(c, "exp", now.Add(-time.Hour).Unix(), "aud", "x")), DetailTokenExpired},
		{"expired but forged", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("wrong"), "", with(c, "exp", now.Add(-time.Hour).Unix())), DetailInvalidToken},
		{"nbf in the future", hs(with(c, "nbf", now.Add(time.Hour).Unix())), DetailInvalidToken},
		{"iat in the future", hs(with(c, "iat", now.Add(time.Hour).Unix())), DetailInvalidToken},
		{"wrong aud", hs(with(c, "aud", "anon")), DetailInvalidToken},
		{"wrong aud array", hs(with(c, "aud", []string{"anon", "service"})), DetailInvalidToken},
		{"missing aud", hs(with(c, "aud", nil)), DetailInvalidToken},
		{"wrong iss", hs(with(c, "iss", "https://evil.example/auth/v1")), DetailInvalidToken},
		{"missing iss", hs(with(c, "iss", nil)), DetailInvalidToken},
		{"missing sub", hs(with(c, "sub", nil)), DetailInvalidToken},
		{"empty sub", hs(with(c, "sub", "")), DetailInvalidToken},
		{"non-UUID sub", hs(with(c, "sub", "admin")), DetailInvalidToken},
		{"UUID without hyphens", hs(with(c, "sub", strings.ReplaceAll(testUser, "-", ""))), DetailInvalidToken},
		{"braced UUID", hs(with(c, "sub", "{"+testUser+"}")), DetailInvalidToken},
		{"numeric sub", hs(with(c, "sub", 42)), DetailInvalidToken},
		{"missing exp", hs(with(c, "exp", nil)), DetailInvalidToken},
		{"string exp", hs(with(c, "exp", "tomorrow")), DetailInvalidToken},
		{"malformed", "Bearer not-a-jwt", DetailInvalidToken},
		{"malformed four parts", "Bearer a.b.c.d", DetailInvalidToken},
		{"malformed base64", "Bearer !!!.@@@.###", DetailInvalidToken},
		{"header not JSON", "Bearer " + "bm90IGpzb24." + parts[1] + "." + parts[2], DetailInvalidToken},
		{"wrong secret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("wrong-secret"), "", c), DetailInvalidToken},
		{"payload swapped", "Bearer " + parts[0] + "." + other[1] + "." + parts[2], DetailInvalidToken},
		{"signature stripped", "Bearer " + parts[0] + "." + parts[1] + ".", DetailInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), tt.authorization, "", false)
			wantDetail(t, got, err, tt.detail)
		})
	}
}

func TestAlgorithmNeedsItsKey(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	c := claimsAt(time.Now())
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)

	// JWKS only: no HS256 token is acceptable, whatever it was keyed with.
	jwksOnly := newAuth(t, Config{JWKSURL: srv.URL, Audience: testAudience})
	for name, key := range map[string][]byte{"secret": hsSecret, "public key DER": pubDER, "empty-looking": []byte{0}} {
		got, err := jwksOnly.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, key, "rsa1", c), "", false)
		t.Run("jwks only/HS256 "+name, func(t *testing.T) { wantDetail(t, got, err, DetailInvalidToken) })
	}
	got, err := jwksOnly.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", c), "", false)
	t.Run("jwks only/RS256", func(t *testing.T) { wantCaller(t, got, err, testUser) })

	// Secret only: ES256/RS256 tokens are refused, and the JWKS is never
	// asked for.
	hits := srv.hits.Load()
	hsOnly := newAuth(t, Config{HS256Secret: hsSecret, Audience: testAudience})
	for name, tok := range map[string]string{
		"ES256": sign(t, jwt.SigningMethodES256, k.ec1, "ec1", c),
		"RS256": sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", c),
	} {
		got, err := hsOnly.Authenticate(context.Background(), "Bearer "+tok, "", false)
		t.Run("secret only/"+name, func(t *testing.T) { wantDetail(t, got, err, DetailInvalidToken) })
	}
	got, err = hsOnly.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", c), "", false)
	t.Run("secret only/HS256", func(t *testing.T) { wantCaller(t, got, err, testUser) })
	if srv.hits.Load() != hits {
		t.Errorf("JWKS fetched by an Authenticator without JWKS URL")
	}
}

func TestOptionalClaimChecks(t *testing.T) {
	c := with(claimsAt(time.Now()), "aud", nil, "iss", nil)
	a := newAuth(t, Config{HS256Secret: hsSecret})
	got, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", with(c, "aud", "anything")), "", false)
	wantCaller(t, got, err, testUser)
	got, err = a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", c), "", false)
	wantCaller(t, got, err, testUser)
}

func TestLeeway(t *testing.T) {
	now := time.Now()
	tok := "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", with(claimsAt(now), "exp", now.Add(-20*time.Second).Unix()))
	strict := newAuth(t, Config{HS256Secret: hsSecret, Audience: testAudience, Leeway: time.Second})
	got, err := strict.Authenticate(context.Background(), tok, "", false)
	wantDetail(t, got, err, DetailTokenExpired)
	lax := newAuth(t, Config{HS256Secret: hsSecret, Audience: testAudience})
	got, err = lax.Authenticate(context.Background(), tok, "", false)
	wantCaller(t, got, err, testUser)
}

func TestNewDoesNoIO(t *testing.T) {
	srv := newJWKSServer(t, defaultKeySet()...)
	a := newAuth(t, fullConfig(srv.URL))
	c := claimsAt(time.Now())
	if _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", c), "", false); err != nil {
		t.Fatal(err)
	}
	if n := srv.hits.Load(); n != 0 {
		t.Fatalf("JWKS fetched %d times before any ES256/RS256 token", n)
	}
	if _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, keys().ec1, "ec1", c), "", false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, keys().rsa1, "rsa1", c), "", false); err != nil {
		t.Fatal(err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (cached)", n)
	}
}

func TestJWKSKeyRotation(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "rsa1", alg: jwkset.AlgRS256, pub: &k.rsa1.PublicKey})
	a := newAuth(t, fullConfig(srv.URL))
	clock := &fakeClock{t: time.Now()}
	a.now = clock.Now
	c := claimsAt(clock.Now())
	auth := func(key any, kid string) (threads.Caller, error) {
		return a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, key, kid, c), "", false)
	}

	got, err := auth(k.rsa1, "rsa1")
	wantCaller(t, got, err, testUser)

	// The issuer rotates: rsa2 replaces rsa1.
	clock.Advance(minFetchInterval)
	srv.setKeys(t, jwk{kid: "rsa2", alg: jwkset.AlgRS256, pub: &k.rsa2.PublicKey})
	got, err = auth(k.rsa2, "rsa2")
	wantCaller(t, got, err, testUser)
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (one refresh for the unknown kid)", n)
	}
	got, err = auth(k.rsa2, "rsa2")
	wantCaller(t, got, err, testUser)

	// Further unknown kids do not refresh again within minFetchInterval.
	for _, kid := range []string{"rsa1", "nope", "nope2"} {
		got, err = auth(k.rsa1, kid)
		wantDetail(t, got, err, DetailInvalidToken)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (refresh is rate-limited)", n)
	}
}

func TestJWKSDownAfterFirstFetch(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	a := newAuth(t, fullConfig(srv.URL))
	clock := &fakeClock{t: time.Now()}
	a.now = clock.Now
	auth := func(m jwt.SigningMethod, key any, kid string) (threads.Caller, error) {
		return a.Authenticate(context.Background(), "Bearer "+sign(t, m, key, kid, claimsAt(clock.Now())), "", false)
	}

	got, err := auth(jwt.SigningMethodES256, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)
	srv.Close()

	got, err = auth(jwt.SigningMethodES256, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)
	got, err = auth(jwt.SigningMethodRS256, k.rsa1, "rsa1")
	wantCaller(t, got, err, testUser)

	// An unknown kid tries to refresh, fails (a 503: the JWKS may well
	// have it), and leaves the cache intact.
	clock.Advance(minFetchInterval)
	got, err = auth(jwt.SigningMethodES256, k.ec1, "unknown")
	wantUnavailable(t, got, err)
	got, err = auth(jwt.SigningMethodES256, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	// The periodic refetch fails too; the last good set stays in use.
	clock.Advance(2 * maxKeySetAge)
	got, err = auth(jwt.SigningMethodRS256, k.rsa1, "rsa1")
	wantCaller(t, got, err, testUser)
}

func TestJWKSUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	a := newAuth(t, fullConfig(url))
	c := claimsAt(time.Now())
	for i := 0; i < 3; i++ {
		got, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, keys().ec1, "ec1", c), "", false)
		wantUnavailable(t, got, err)
	}
	// HS256 is unaffected by the JWKS outage.
	got, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", c), "", false)
	wantCaller(t, got, err, testUser)
}

func TestJWKSRecoversAfterFailedFirstFetch(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	srv.setStatus(http.StatusServiceUnavailable)
	a := newAuth(t, fullConfig(srv.URL))
	clock := &fakeClock{t: time.Now()}
	a.now = clock.Now
	auth := func() (threads.Caller, error) {
		return a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, k.ec1, "ec1", claimsAt(clock.Now())), "", false)
	}

	got, err := auth()
	wantUnavailable(t, got, err)
	srv.setStatus(http.StatusOK)
	got, err = auth()
	wantUnavailable(t, got, err)
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (retries are spaced out)", n)
	}
	clock.Advance(minFetchInterval)
	got, err = auth()
	wantCaller(t, got, err, testUser)
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestJWKSRevokedKeyDropsAfterMaxAge(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	a := newAuth(t, fullConfig(srv.URL))
	clock := &fakeClock{t: time.Now()}
	a.now = clock.Now
	auth := func() (threads.Caller, error) {
		return a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodRS256, k.rsa1, "rsa1", claimsAt(clock.Now())), "", false)
	}
	got, err := auth()
	wantCaller(t, got, err, testUser)
	srv.setKeys(t, jwk{kid: "rsa2", alg: jwkset.AlgRS256, pub: &k.rsa2.PublicKey})
	got, err = auth()
	wantCaller(t, got, err, testUser) // cached
	clock.Advance(maxKeySetAge)
	got, err = auth()
	wantDetail(t, got, err, DetailInvalidToken)
}

func TestJWKSFetchIsBounded(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	a := newAuth(t, fullConfig(srv.URL))
	start := time.Now()
	got, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, keys().ec1, "ec1", claimsAt(start)), "", false)
	wantUnavailable(t, got, err)
	if d := time.Since(start); d > fetchTimeout+2*time.Second {
		t.Fatalf("Authenticate took %v with a hanging JWKS endpoint", d)
	}
}

func TestJWKSOversizedResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"keys":[{"kty":"oct","k":"`))
		w.Write([]byte(strings.Repeat("A", 2*maxJWKSBytes)))
		w.Write([]byte(`"}]}`))
	}))
	defer srv.Close()
	a := newAuth(t, fullConfig(srv.URL))
	got, err := a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, keys().ec1, "ec1", claimsAt(time.Now())), "", false)
	wantUnavailable(t, got, err)
}

const (
	validPK = "pk_abcdefghijklmnopqrstuvwxyzABCDEF"
	validSK = "sk_0123456789abcdefghijABCDEFGHIJ01"
	validAK = validPK + ":" + validSK
)

func TestAPIKey(t *testing.T) {
	if len(validPK) != 35 || len(validSK) != 35 {
		t.Fatal("bad test constants")
	}
	a := newAuth(t, fullConfig(""))
	jwtAuth := "Bearer " + sign(t, jwt.SigningMethodHS256, hsSecret, "", claimsAt(time.Now()))

	m := hmac.New(sha256.New, apiKeySecret)
	m.Write([]byte(validSK))
	wantHash := hex.EncodeToString(m.Sum(nil))

	for name, authorization := range map[string]string{"alone": "", "with a valid JWT": jwtAuth, "with a bad JWT": "Bearer junk"} {
		t.Run("valid "+name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), authorization, validAK, true)
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != "" || got.APIKey == nil || got.APIKey.PublicKey != validPK || got.APIKey.SecretHash != wantHash {
				t.Fatalf("caller = %+v %+v, want PublicKey %q SecretHash %q", got, got.APIKey, validPK, wantHash)
			}
		})
	}
	if HashSecret(apiKeySecret, validSK) != wantHash {
		t.Fatal("HashSecret disagrees with crypto/hmac")
	}

	alnum32 := strings.Repeat("a1B2", 8)
	malformed := map[string]string{
		"empty but present":   "",
		"space":               " ",
		"leading whitespace":  " " + validAK,
		"trailing whitespace": validAK + " ",
		"trailing newline":    validAK + "\n",
		"missing colon":       validPK + validSK,
		"colon replaced":      validPK + ";" + validSK,
		"two colons":          validPK + "::" + validSK[1:],
		"short public":        "pk_" + alnum32[1:] + ":" + validSK,
		"long public":         "pk_" + alnum32 + "x:" + validSK[:34],
		"short secret":        validPK + ":" + validSK[:34],
		"long secret":         validAK + "x",
		"hyphen in public":    "pk_" + alnum32[:31] + "-:" + validSK,
		"underscore secret":   validPK + ":sk_" + alnum32[:31] + "_",
		"non-ASCII":           validPK + ":sk_" + alnum32[:30] + "é",
		"NUL byte":            validPK + ":sk_" + alnum32[:31] + "\x00",
		"upper-case prefix":   "PK_" + alnum32 + ":" + validSK,
		"sk first":            validSK + ":" + validPK,
		"pk twice":            validPK + ":" + validPK,
		"bearer token":        jwtAuth,
		"oversized":           strings.Repeat("A", 1<<20),
	}
	for name, v := range malformed {
		t.Run("malformed "+name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), jwtAuth, v, true)
			wantDetail(t, got, err, DetailInvalidAPIKeyFormat)
		})
	}

	t.Run("absent header uses the JWT", func(t *testing.T) {
		got, err := a.Authenticate(context.Background(), jwtAuth, "garbage", false)
		wantCaller(t, got, err, testUser)
	})

	t.Run("no API key secret configured", func(t *testing.T) {
		b := newAuth(t, Config{HS256Secret: hsSecret})
		got, err := b.Authenticate(context.Background(), jwtAuth, validAK, true)
		wantDetail(t, got, err, DetailInvalidAPIKey)
		got, err = b.Authenticate(context.Background(), jwtAuth, "bad", true)
		wantDetail(t, got, err, DetailInvalidAPIKeyFormat)
	})
}

func TestNewRejectsUnsafeConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"nothing to verify with": {Audience: testAudience},
		"relative JWKS URL":      {JWKSURL: "/jwks.json"},
		"non-http JWKS URL":      {JWKSURL: "file:///etc/passwd"},
		"garbage JWKS URL":       {JWKSURL: "not a url"},
		"negative leeway":        {HS256Secret: hsSecret, Leeway: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestErrorType(t *testing.T) {
	a := newAuth(t, Config{HS256Secret: hsSecret})
	_, err := a.Authenticate(context.Background(), "", "", false)
	var e *Error
	if !errors.As(err, &e) || e.Error() != DetailNoCredentials {
		t.Fatalf("err = %v", err)
	}
}

// FuzzAuthenticate checks that no input panics and that every outcome is
// either a well-formed Caller or an *Error with one of the known details.
func FuzzAuthenticate(f *testing.F) {
	k := keys()
	srv := newJWKSServer(f, defaultKeySet()...)
	cfg := fullConfig(srv.URL)
	// A line per refusal, thousands a second, would only slow the fuzzer.
	cfg.Logger = slog.New(slog.DiscardHandler)
	a := newAuth(f, cfg)
	c := claimsAt(time.Now())
	for _, s := range []string{
		"Bearer " + sign(f, jwt.SigningMethodHS256, hsSecret, "", c),
		"bearer " + sign(f, jwt.SigningMethodES256, k.ec1, "ec1", c),
		"Bearer " + sign(f, jwt.SigningMethodRS256, k.rsa1, "rsa1", c),
		"Bearer " + sign(f, jwt.SigningMethodRS256, k.rsa1, "ec-noalg", c),
		"Bearer " + sign(f, jwt.SigningMethodHS256, hsSecret, "", with(c, "sub", "x")),
		"Bearer eyJhbGciOiJub25lIn0.e30.",
		"Basic xyz", "Bearer ", "", "Bearer a.b.c",
	} {
		f.Add(s, "", false)
	}
	f.Add("", validAK, true)
	f.Add("", "", true)
	f.Add("", validPK+validSK, true)
	f.Add("Bearer x", strings.ToUpper(validAK), true)

	known := map[string]bool{
		DetailNoCredentials: true, DetailInvalidToken: true, DetailTokenExpired: true,
		DetailInvalidAPIKeyFormat: true, DetailInvalidAPIKey: true,
	}
	f.Fuzz(func(t *testing.T, authorization, apiKey string, present bool) {
		got, err := a.Authenticate(context.Background(), authorization, apiKey, present)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || !known[e.Detail] {
				t.Fatalf("error %#v is not a known *Error", err)
			}
			if got != (threads.Caller{}) {
				t.Fatalf("caller %+v returned with an error", got)
			}
			return
		}
		if present {
			if got.UserID != "" || got.APIKey == nil || !validAPIKey(apiKey) ||
				got.APIKey.PublicKey != apiKey[:35] || got.APIKey.SecretHash != HashSecret(apiKeySecret, apiKey[36:]) {
				t.Fatalf("bad API key caller %+v for %q", got, apiKey)
			}
			return
		}
		id, perr := threads.ParseID(got.UserID)
		if perr != nil || id != got.UserID || got.APIKey != nil {
			t.Fatalf("bad JWT caller %+v", got)
		}
	})
}
