package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// clocked is an Authenticator on jwksURL with a fake clock and a JSON
// logger. The JWKS tests move the clock instead of sleeping, and count the
// fetches on the server.
func clocked(t *testing.T, jwksURL string) (*Authenticator, *fakeClock, *logBuffer) {
	t.Helper()
	log, buf := jsonLogger()
	cfg := fullConfig(jwksURL)
	cfg.Logger = log
	a := newAuth(t, cfg)
	clock := &fakeClock{t: time.Now()}
	a.now = clock.Now
	return a, clock, buf
}

// es256 authenticates a fresh ES256 token signed by key under kid.
func es256(t *testing.T, a *Authenticator, clock *fakeClock, key *ecdsa.PrivateKey, kid string) (threads.Caller, error) {
	t.Helper()
	return a.Authenticate(context.Background(), "Bearer "+sign(t, jwt.SigningMethodES256, key, kid, claimsAt(clock.Now())), "", false)
}

// waitFetch returns once no JWKS fetch is in progress, its outcome stored.
func waitFetch(a *Authenticator) {
	a.jwks.mu.Lock()
	f := a.jwks.flight
	a.jwks.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

func wantHits(t *testing.T, srv *jwksServer, want int32, why string) {
	t.Helper()
	if n := srv.hits.Load(); n != want {
		t.Fatalf("JWKS fetched %d times, want %d (%s)", n, want, why)
	}
}

// wantReason checks the last refusal logged: its reason, level and
// request id.
func wantReason(t *testing.T, logs *logBuffer, reason, level, requestID string) map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, m := range logs.lines(t) {
		if _, ok := m["reason"]; ok {
			lines = append(lines, m)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no refusal logged; log:\n%s", logs)
	}
	last := lines[len(lines)-1]
	if last["reason"] != reason || last["level"] != level {
		t.Fatalf("last refusal logged %v at %v, want %q at %s; log:\n%s", last["reason"], last["level"], reason, level, logs)
	}
	if requestID != "" && last["requestId"] != requestID {
		t.Fatalf("refusal logged with requestId %v, want %q", last["requestId"], requestID)
	}
	return last
}

// TestJWKSDownFromTheStart: with nothing cached, a JWKS that cannot be
// fetched, in any way, makes ES256/RS256 tokens a 503 (ErrUnavailable),
// never a 401; HS256 tokens do not need the JWKS and still pass.
func TestJWKSDownFromTheStart(t *testing.T) {
	body := func(status int, contentType, b string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			w.Write([]byte(b))
		}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
	}{
		{"connection refused", nil},
		{"HTTP 503", body(503, "application/json", `{"message":"upstream unavailable"}`)},
		{"HTTP 404", body(404, "application/json", `{"message":"no Route matched with those values"}`)},
		{"HTTP 401 of the gateway", body(401, "application/json", `{"message":"No API key found in request"}`)},
		{"HTML page", body(200, "text/html", "<html><body>maintenance</body></html>")},
		{"empty body", body(200, "application/json", "")},
		{"JSON without keys", body(200, "application/json", `{"message":"ok"}`)},
		{"keys not an array", body(200, "application/json", `{"keys":{"kid":"ec1"}}`)},
		{"keys null", body(200, "application/json", `{"keys":null}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var url string
			var hits atomic.Int32
			if tt.handler == nil {
				srv := httptest.NewServer(http.NotFoundHandler())
				url = srv.URL
				srv.Close()
			} else {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					hits.Add(1)
					tt.handler(w, r)
				}))
				defer srv.Close()
				url = srv.URL
			}
			a, clock, logs := clocked(t, url)
			ctx := requestCtx("req-down")
			for _, m := range []struct {
				method jwt.SigningMethod
				key    any
				kid    string
			}{{jwt.SigningMethodES256, keys().ec1, "ec1"}, {jwt.SigningMethodRS256, keys().rsa1, "rsa1"}} {
				got, err := a.Authenticate(ctx, "Bearer "+sign(t, m.method, m.key, m.kid, claimsAt(clock.Now())), "", false)
				wantUnavailable(t, got, err)
				line := wantReason(t, logs, reasonJWKSUnreachable, "WARN", "req-down")
				if line["kid"] != m.kid || line["alg"] != m.method.Alg() {
					t.Fatalf("refusal line %v does not name kid %s and alg %s", line, m.kid, m.method.Alg())
				}
			}
			if n := hits.Load(); tt.handler != nil && n != 1 {
				t.Fatalf("JWKS fetched %d times, want 1 (no second fetch within minFetchInterval)", n)
			}
			failed := logs.withMessage(t, "JWKS fetch failed; the last good keys stay in use")
			if len(failed) != 1 || failed[0]["url"] != url || failed[0]["requestId"] != "req-down" {
				t.Fatalf("fetch failure lines %v, want one naming %s with the request id", failed, url)
			}
			got, err := a.Authenticate(ctx, "Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", claimsAt(clock.Now())), "", false)
			wantCaller(t, got, err, testUser)
		})
	}
}

// TestJWKSDownAfterRotation: the issuer rotates to a new key while its
// JWKS becomes unreachable. Tokens of the new key cannot be checked (503,
// to retry), tokens of the cached key still pass; once the JWKS answers
// again the new key works.
func TestJWKSDownAfterRotation(t *testing.T) {
	k := keys()
	for _, outage := range []string{"connection refused", "HTTP 500"} {
		t.Run(outage, func(t *testing.T) {
			srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
			a, clock, logs := clocked(t, srv.URL)
			got, err := es256(t, a, clock, k.ec1, "ec1")
			wantCaller(t, got, err, testUser)

			srv.setKeys(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey}, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
			if outage == "HTTP 500" {
				srv.setStatus(http.StatusInternalServerError)
			} else {
				srv.Close()
			}
			for i := 0; i < 2; i++ {
				clock.Advance(minFetchInterval)
				got, err = es256(t, a, clock, k.ec2, "ec2")
				wantUnavailable(t, got, err)
				wantReason(t, logs, reasonJWKSUnreachable, "WARN", "")
				got, err = es256(t, a, clock, k.ec1, "ec1")
				wantCaller(t, got, err, testUser)
			}
			if outage == "connection refused" {
				return
			}
			wantHits(t, srv, 3, "the first fetch and one per interval for the new kid")
			srv.setStatus(http.StatusOK)
			clock.Advance(minFetchInterval)
			got, err = es256(t, a, clock, k.ec2, "ec2")
			wantCaller(t, got, err, testUser)
		})
	}
}

// TestJWKSBackToBackRotations: two rotations a few seconds apart; each new
// key works on its first token, one fetch each, and the key rotated out
// is refused.
func TestJWKSBackToBackRotations(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
	a, clock, logs := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	clock.Advance(3 * time.Second)
	srv.setKeys(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey}, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantCaller(t, got, err, testUser)
	wantHits(t, srv, 2, "one fetch for the first rotation")

	clock.Advance(3 * time.Second)
	srv.setKeys(t, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey}, jwk{kid: "ec3", alg: jwkset.AlgES256, pub: &k.ec3.PublicKey})
	got, err = es256(t, a, clock, k.ec3, "ec3")
	wantCaller(t, got, err, testUser)
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantCaller(t, got, err, testUser)
	wantHits(t, srv, 3, "one fetch for the second rotation")

	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantDetail(t, got, err, DetailInvalidToken)
	wantReason(t, logs, reasonUnknownKID, "INFO", "")
}

// TestJWKSForgedKIDThenRotation: a token with a forged kid spends a fetch
// just before a real rotation. The new key is refused for less than
// minFetchInterval, then works: forged kids cannot lock it out for longer.
func TestJWKSForgedKIDThenRotation(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
	a, clock, logs := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	clock.Advance(minFetchInterval)
	got, err = es256(t, a, clock, k.ec1, "forged")
	wantDetail(t, got, err, DetailInvalidToken)
	wantReason(t, logs, reasonUnknownKID, "INFO", "")
	wantHits(t, srv, 2, "the forged kid asked the JWKS")

	srv.setKeys(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey}, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
	clock.Advance(minFetchInterval / 2)
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantDetail(t, got, err, DetailInvalidToken)
	wantHits(t, srv, 2, "within minFetchInterval of the forged kid's fetch")

	clock.Advance(minFetchInterval / 2)
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantCaller(t, got, err, testUser)
	wantHits(t, srv, 3, "the new key's fetch")
}

// TestJWKSForgedKIDFlood: concurrent floods of tokens with forged kids, ten
// half-intervals long, cost one fetch per minFetchInterval and no more,
// while tokens of the cached key keep passing.
func TestJWKSForgedKIDFlood(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
	a, clock, _ := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	const steps, perStep = 10, 25
	for step := 1; step <= steps; step++ {
		clock.Advance(minFetchInterval / 2)
		tokens := make([]string, perStep)
		for i := range tokens {
			tokens[i] = "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, fmt.Sprintf("forged-%d-%d", step, i), claimsAt(clock.Now()))
		}
		valid := "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "ec1", claimsAt(clock.Now()))
		errs := make(chan error, perStep+1)
		var wg sync.WaitGroup
		for _, tok := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := a.Authenticate(context.Background(), tok, "", false)
				if e, ok := err.(*Error); !ok || e.Detail != DetailInvalidToken {
					errs <- fmt.Errorf("forged kid: err %v, want a 401", err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Authenticate(context.Background(), valid, "", false); err != nil {
				errs <- fmt.Errorf("cached key during the flood: %v", err)
			}
		}()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	elapsed := steps * minFetchInterval / 2
	wantHits(t, srv, 1+int32(elapsed/minFetchInterval), "the first fetch, then one per minFetchInterval")
}

// TestJWKSConcurrentCallersShareOneFetch: tokens arriving while the first
// fetch is in flight wait for it rather than being refused or starting
// their own.
func TestJWKSConcurrentCallersShareOneFetch(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, defaultKeySet()...)
	held, release := srv.holdRequests()
	defer release()
	a, clock, _ := clocked(t, srv.URL)
	tok := "Bearer " + sign(t, jwt.SigningMethodES256, k.ec1, "ec1", claimsAt(clock.Now()))

	const callers = 16
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := a.Authenticate(context.Background(), tok, "", false)
			errs <- err
		}()
	}
	<-held // the fetch is in flight
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a caller got %v", err)
		}
	}
	wantHits(t, srv, 1, "one fetch shared by all callers")
}

// TestJWKSStandbyKeyFetchedInBackground: Supabase publishes a standby key
// before it signs with it. A set older than refreshAfter is re-fetched in
// the background while the request that noticed goes on with the cached
// keys; the standby key is then known before its first token, even if the
// JWKS is down by then.
func TestJWKSStandbyKeyFetchedInBackground(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
	a, clock, _ := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	srv.setKeys(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey}, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
	clock.Advance(refreshAfter - time.Second)
	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)
	wantHits(t, srv, 1, "the set is not stale yet")

	held, release := srv.holdRequests()
	defer release()
	clock.Advance(time.Second)
	// The refresh hangs at the server; the request must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err = a.Authenticate(ctx, "Bearer "+sign(t, jwt.SigningMethodES256, k.ec1, "ec1", claimsAt(clock.Now())), "", false)
	wantCaller(t, got, err, testUser)
	<-held
	release()
	waitFetch(a)
	wantHits(t, srv, 2, "one background refresh")

	srv.Close()
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantCaller(t, got, err, testUser)
}

// TestJWKSBackgroundRefreshDropsRevokedKey: a key removed from the JWKS
// stops being accepted one refresh later, not after an hour.
func TestJWKSBackgroundRefreshDropsRevokedKey(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey}, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
	a, clock, logs := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	srv.setKeys(t, jwk{kid: "ec2", alg: jwkset.AlgES256, pub: &k.ec2.PublicKey})
	clock.Advance(refreshAfter)
	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser) // served from the cache while it refreshes
	waitFetch(a)
	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantDetail(t, got, err, DetailInvalidToken)
	wantReason(t, logs, reasonUnknownKID, "INFO", "")
	got, err = es256(t, a, clock, k.ec2, "ec2")
	wantCaller(t, got, err, testUser)
}

// TestJWKSFailedRefreshKeepsKeys: refreshes that fail, in the background
// and past maxKeySetAge, leave the last good keys in use, and say so in the
// request's log.
func TestJWKSFailedRefreshKeepsKeys(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwk{kid: "ec1", alg: jwkset.AlgES256, pub: &k.ec1.PublicKey})
	a, clock, logs := clocked(t, srv.URL)
	got, err := es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	srv.setStatus(http.StatusBadGateway)
	clock.Advance(refreshAfter)
	ctx := requestCtx("req-refresh")
	got, err = a.Authenticate(ctx, "Bearer "+sign(t, jwt.SigningMethodES256, k.ec1, "ec1", claimsAt(clock.Now())), "", false)
	wantCaller(t, got, err, testUser)
	waitFetch(a)
	failed := logs.withMessage(t, "JWKS fetch failed; the last good keys stay in use")
	if len(failed) != 1 || failed[0]["requestId"] != "req-refresh" || failed[0]["level"] != "WARN" || failed[0]["cached_keys"] != float64(1) {
		t.Fatalf("fetch failure lines %v, want one WARN with the request id and 1 cached key", failed)
	}
	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)

	clock.Advance(maxKeySetAge)
	got, err = es256(t, a, clock, k.ec1, "ec1")
	wantCaller(t, got, err, testUser)
	wantHits(t, srv, 3, "the first fetch, the background refresh, the refresh past maxKeySetAge")
}

func TestParseJWKS(t *testing.T) {
	k := keys()
	marshal := func(pub any, kid string, edit func(m map[string]any)) json.RawMessage {
		j, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(j.Marshal())
		var m map[string]any
		json.Unmarshal(b, &m)
		if edit != nil {
			edit(m)
		}
		b, _ = json.Marshal(m)
		return b
	}
	priv, err := jwkset.NewJWKFromKey(k.ec3, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "with-private-part"}})
	if err != nil {
		t.Fatal(err)
	}
	privJSON, _ := json.Marshal(priv.Marshal())
	set := []json.RawMessage{
		// What Supabase Auth serves.
		marshal(&k.ec1.PublicKey, "gotrue", func(m map[string]any) {
			m["alg"], m["use"], m["key_ops"], m["ext"] = "ES256", "sig", []string{"verify"}, true
		}),
		marshal(&k.rsa1.PublicKey, "bare", nil),
		marshal(&k.ec2.PublicKey, "for-encryption", func(m map[string]any) { m["use"] = "enc" }),
		marshal(&k.ec2.PublicKey, "sign-only", func(m map[string]any) { m["key_ops"] = []string{"sign"} }),
		marshal(&k.ec2.PublicKey, "", nil),
		marshal(&k.ec2.PublicKey, "off-curve", func(m map[string]any) { m["x"] = m["y"] }),
		marshal(&k.ec2.PublicKey, "unknown-type", func(m map[string]any) { m["kty"] = "XYZ" }),
		json.RawMessage(`{"kty":"oct","kid":"symmetric","k":"c2VjcmV0"}`),
		json.RawMessage(`"not an object"`),
		marshal(&k.ec2.PublicKey, "gotrue", nil), // a second "gotrue": the first stays
		privJSON,
	}
	body, _ := json.Marshal(map[string]any{"keys": set})
	got, err := parseJWKS(body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"gotrue": &k.ec1.PublicKey, "bare": &k.rsa1.PublicKey, "with-private-part": &k.ec3.PublicKey}
	if len(got) != len(want) {
		t.Fatalf("usable kids %v, want those of %v", got, want)
	}
	for kid, pub := range want {
		key, ok := got[kid]
		if !ok {
			t.Fatalf("kid %q missing from %v", kid, got)
		}
		if e, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !e.Equal(key.key) {
			t.Errorf("kid %q: key %T is not the published public key", kid, key.key)
		}
	}
	if got["gotrue"].alg != "ES256" {
		t.Errorf("alg of kid gotrue = %q", got["gotrue"].alg)
	}

	for name, body := range map[string]string{
		"not JSON": "<html>", "array": `[]`, "no keys": `{}`, "keys null": `{"keys":null}`, "keys object": `{"keys":{}}`,
	} {
		if _, err := parseJWKS([]byte(body)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if got, err := parseJWKS([]byte(`{"keys":[]}`)); err != nil || len(got) != 0 {
		t.Errorf("empty set: %v, %v", got, err)
	}
}
