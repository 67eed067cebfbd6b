package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// fetchTimeout bounds every JWKS request, so that an unreachable
	// endpoint costs a request at most this much latency.
	fetchTimeout = 2 * time.Second
	// refreshUnknownKIDEvery rate-limits the refetch triggered by a token
	// whose kid is not cached: key rotation is picked up, but a client
	// sending random kids cannot make us hammer the endpoint.
	refreshUnknownKIDEvery = 5 * time.Minute
	// maxKeySetAge makes the whole set be refetched now and then, so that a
	// key removed from the JWKS (revoked) stops being accepted by a
	// long-lived execution environment. Done lazily on a request rather
	// than by a background goroutine, which Lambda would freeze anyway.
	maxKeySetAge = time.Hour
	// retryAfterFailure spaces out attempts after a failed fetch, so that an
	// outage does not add fetchTimeout to every request.
	retryAfterFailure = 10 * time.Second
	// maxJWKSBytes bounds the memory a JWKS response may take.
	maxJWKSBytes = 1 << 20
)

// errNoKeySet: the JWKS could not be fetched yet.
var errNoKeySet = errors.New("auth: JWKS not available")

// jwksCache holds the key set of one JWKS URL. It is built on first use;
// once a fetch succeeded its keys are kept until a later fetch succeeds, so
// an outage of the endpoint does not affect tokens signed by known keys.
type jwksCache struct {
	url     string
	client  *http.Client
	limiter *rate.Limiter // shared by successive key sets
	now     func() time.Time

	mu      sync.Mutex
	kf      keyfunc.Keyfunc // nil until a fetch succeeded
	fetched time.Time       // when kf was fetched
	tried   time.Time       // last fetch attempt
}

func newJWKSCache(u string, client *http.Client, now func() time.Time) *jwksCache {
	var c http.Client
	if client != nil {
		c = *client
	} else {
		c.Timeout = fetchTimeout
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = limitBody{base}
	return &jwksCache{
		url:     u,
		client:  &c,
		limiter: rate.NewLimiter(rate.Every(refreshUnknownKIDEvery), 1),
		now:     now,
	}
}

// key returns the verification key named by the token's kid. An unknown
// kid makes the underlying jwkset client refetch the set, at most once per
// refreshUnknownKIDEvery.
func (c *jwksCache) key(ctx context.Context, t *jwt.Token) (any, error) {
	kf := c.current(ctx)
	if kf == nil {
		return nil, errNoKeySet
	}
	// The deadline bounds both the refetch and the wait for the rate
	// limiter: with a deadline shorter than the limiter's interval, Wait
	// fails at once instead of blocking the request for minutes.
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	return kf.KeyfuncCtx(ctx)(t)
}

// current returns the cached key set, fetching it first when there is none
// yet or it is older than maxKeySetAge (and no attempt failed recently).
func (c *jwksCache) current(ctx context.Context) keyfunc.Keyfunc {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.kf != nil && now.Sub(c.fetched) < maxKeySetAge {
		return c.kf
	}
	if !c.tried.IsZero() && now.Sub(c.tried) < retryAfterFailure {
		return c.kf
	}
	c.tried = now
	kf, err := c.fetch(ctx)
	if err != nil {
		slog.WarnContext(ctx, "auth: JWKS fetch failed", "url", c.url, "error", err)
		return c.kf // the last good set, if any
	}
	c.kf, c.fetched = kf, now
	return kf
}

// fetch downloads the key set once and wraps it in a keyfunc whose storage
// refetches on an unknown kid.
func (c *jwksCache) fetch(ctx context.Context) (keyfunc.Keyfunc, error) {
	store, err := jwkset.NewStorageFromHTTP(c.url, jwkset.HTTPClientStorageOptions{
		Client:      c.client,
		Ctx:         ctx,
		HTTPTimeout: fetchTimeout,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			slog.WarnContext(ctx, "auth: JWKS refresh failed", "url", c.url, "error", err)
		},
	})
	if err != nil {
		return nil, err
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{c.url: store},
		RateLimitWaitMax:  fetchTimeout,
		RefreshUnknownKID: c.limiter,
	})
	if err != nil {
		return nil, err
	}
	return keyfunc.New(keyfunc.Options{Storage: client})
}

// limitBody caps response bodies at maxJWKSBytes; a longer JWKS fails to
// decode and the previous key set stays in use.
type limitBody struct{ base http.RoundTripper }

func (l limitBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxJWKSBytes), resp.Body}
	return resp, nil
}
