package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
)

// The JWKS cache is written here rather than taken from keyfunc/jwkset's
// HTTP storage because what matters is its timing and its failure modes:
// one rule bounds every fetch, concurrent callers share one fetch, a stale
// set is refreshed without making a request wait, and a caller learns
// whether a kid is unknown to a JWKS that answered (401) or could not be
// looked up because the JWKS did not answer (503). jwkset still parses the
// keys.
const (
	// fetchTimeout bounds every JWKS request, so that an unreachable
	// endpoint costs a request at most this much latency.
	fetchTimeout = 2 * time.Second
	// minFetchInterval is the least time between the starts of two fetches,
	// whatever asked for them. Tokens with forged kids therefore cost at
	// most one fetch per interval, and a key published just after a fetch
	// is unknown for at most this long.
	minFetchInterval = 2 * time.Second
	// refreshAfter: a set older than this is re-fetched in the background
	// by the next request, which meanwhile uses it. Supabase lists a
	// standby key in its JWKS well before it signs with it (and serves the
	// JWKS with a 10-minute cache), so a rotated key is normally known
	// before its first token arrives; the refresh also drops revoked keys.
	refreshAfter = 5 * time.Minute
	// maxKeySetAge: a set older than this (its refreshes failed, or the
	// execution environment slept) is re-fetched before it is used, so
	// that a long-lived environment does not go on trusting a revoked key
	// unasked. When that fetch fails, the set is still used.
	maxKeySetAge = time.Hour
	// maxJWKSBytes bounds the memory a JWKS response may take.
	maxJWKSBytes = 1 << 20
)

// errUnknownKID: the JWKS answered, and has no usable key of that kid.
var errUnknownKID = errors.New("auth: kid not in the JWKS")

// publicKey is one usable key of the set.
type publicKey struct {
	alg string // the JWK's "alg"; "" when it names none
	key any    // *ecdsa.PublicKey, *rsa.PublicKey, ...
}

// jwksCache holds the key set of one JWKS URL for the life of the
// execution environment. A fetch that fails leaves the last good set in
// place, so an outage of the endpoint never affects tokens of known keys.
type jwksCache struct {
	url    string
	client *http.Client
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	keys    map[string]publicKey // the last good set; nil until a fetch succeeded
	fetched time.Time            // when keys were fetched
	started time.Time            // when the latest fetch started
	lastErr error                // outcome of the latest finished fetch
	flight  *flight              // the fetch in progress, or nil
}

// flight is one fetch; done is closed when its outcome is in the cache.
type flight struct{ done chan struct{} }

func newJWKSCache(u string, client *http.Client, now func() time.Time, log *slog.Logger) *jwksCache {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	return &jwksCache{url: u, client: client, now: now, log: log}
}

// key returns the key named kid. Its error is errUnknownKID when a JWKS
// that answered lacks kid, and wraps ErrUnavailable when kid is not cached
// and the JWKS could not be fetched.
func (c *jwksCache) key(ctx context.Context, kid string) (publicKey, error) {
	c.mu.Lock()
	now := c.now()
	age := now.Sub(c.fetched)
	if k, ok := c.keys[kid]; ok && age < maxKeySetAge {
		if age >= refreshAfter {
			c.startLocked(ctx, now) // not waited for
		}
		c.mu.Unlock()
		return k, nil
	}
	// kid is not cached, or the set is too old to be used unasked: wait for
	// a fetch, unless one started less than minFetchInterval ago.
	f := c.startLocked(ctx, now)
	c.mu.Unlock()
	if f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
			return publicKey{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return k, nil
	}
	if c.lastErr != nil {
		return publicKey{}, fmt.Errorf("%w: %w", ErrUnavailable, c.lastErr)
	}
	return publicKey{}, errUnknownKID
}

// startLocked returns the fetch in progress, or starts one when the last
// started at least minFetchInterval ago; nil when neither. c.mu is held.
func (c *jwksCache) startLocked(ctx context.Context, now time.Time) *flight {
	if c.flight != nil {
		return c.flight
	}
	if !c.started.IsZero() && now.Sub(c.started) < minFetchInterval {
		return nil
	}
	f := &flight{done: make(chan struct{})}
	c.flight, c.started = f, now
	// The fetch outlives a caller that gives up waiting (others may be
	// waiting for it, and a background refresh has no waiter at all), so it
	// is not cancelled with the request; it keeps the request's values, so
	// that its log line carries that request's id.
	go c.run(context.WithoutCancel(ctx), f)
	return f
}

// run performs one fetch and records its outcome.
func (c *jwksCache) run(ctx context.Context, f *flight) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	keys, err := c.download(ctx)
	c.mu.Lock()
	if err == nil {
		c.keys, c.fetched = keys, c.now()
	}
	c.lastErr = err
	c.flight = nil
	cached := len(c.keys)
	c.mu.Unlock()
	if err != nil {
		c.log.WarnContext(ctx, "JWKS fetch failed; the last good keys stay in use",
			"url", c.url, "error", err.Error(), "cached_keys", cached)
	}
	close(f.done)
}

// download fetches and parses the set. Any status but 2xx, a body over
// maxJWKSBytes and a body that is not a JWK Set are errors.
func (c *jwksCache) download(ctx context.Context) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("JWKS answered HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body)
}

// parseJWKS reads a JWK Set (RFC 7517, section 5). A body that is not a
// JSON object with a "keys" array is an error. A single key that cannot be
// used (no kid, not meant for verifying signatures, an unsupported type,
// bad parameters, or a kid seen before) is skipped, so that one odd key
// does not take the others down. Private parts of a key are ignored.
func parseJWKS(body []byte) (map[string]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not a JSON object: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`JWKS has no "keys" array`)
	}
	keys := make(map[string]publicKey, len(set.Keys))
	for _, raw := range set.Keys {
		var m jwkset.JWKMarshal
		if json.Unmarshal(raw, &m) != nil || m.KID == "" || !forVerifying(m) {
			continue
		}
		if _, dup := keys[m.KID]; dup {
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		keys[m.KID] = publicKey{alg: string(m.ALG), key: j.Key()}
	}
	return keys, nil
}

// forVerifying reports whether a JWK may verify signatures: its "use", when
// given, is "sig", and its "key_ops", when given, include "verify".
func forVerifying(m jwkset.JWKMarshal) bool {
	return (m.USE == "" || m.USE == jwkset.UseSig) &&
		(len(m.KEYOPS) == 0 || slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify))
}
