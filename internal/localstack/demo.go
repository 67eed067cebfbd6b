package localstack

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/shared/auth"
)

// Secrets of the local stack, for tests and `make dev` alike. They are
// published in the repository so that tokens and API keys can be minted
// without any setup; a deployed stack gets its own through the template's
// parameters, and must never be configured with these.
const (
	// JWTSecret is the HS256 secret local functions verify tokens with
	// (SUPABASE_JWT_SECRET).
	JWTSecret = "thread-delete-dev-jwt-secret-not-for-production"
	// APIKeySecret is the dev API_KEY_SECRET, the HMAC key of api_keys.
	APIKeySecret = "thread-delete-dev-api-key-secret-not-for-production"
	// DaytonaAPIKey is what the dev Daytona stand-in expects as Bearer token.
	DaytonaAPIKey = "dev-daytona-key-not-a-real-key"
)

// Names and addresses the dev stack uses unless told otherwise.
const (
	DatabaseName = "thread_delete_dev"
	// RedisURL is database 0: the tests reserve and flush 1-15, so the dev
	// counters survive a concurrent `make test`.
	RedisURL = "redis://127.0.0.1:6379/0"
	// SQSPort is where the dev stack prefers to run its SQS emulator (the
	// port ElasticMQ made customary), so that other tools can find the
	// queue without asking; it falls back to any free port.
	SQSPort   = 9324
	QueueName = "thread-delete-dev-sandbox-cleanup"
	DLQName   = QueueName + "-dlq"
	APIPort   = 3000
)

// QueueURL is the URL fauxqs gives QueueName when it runs on port with
// FAUXQS_HOST=127.0.0.1, as StartFauxqs starts it.
func QueueURL(port int) string {
	return fmt.Sprintf("http://sqs.%s.127.0.0.1:%d/000000000000/%s", SQSRegion, port, QueueName)
}

// DatabaseURL is the dev database on the admin URL's server.
func DatabaseURL() string {
	u, err := WithDatabase(AdminURL(), DatabaseName)
	if err != nil {
		u, _ = WithDatabase(DefaultAdminURL, DatabaseName)
	}
	return u
}

// Demo identities, fixed so that the README's commands and the events under
// events/ keep working after every reseed.
const (
	DemoAccountID  = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa" // "Demo Team"
	OwnerUserID    = "11111111-1111-4111-8111-111111111111" // owns the demo account
	MemberUserID   = "22222222-2222-4222-8222-222222222222" // member of the demo account
	OtherAccountID = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb" // "Other Team"
	OtherUserID    = "33333333-3333-4333-8333-333333333333" // owns the other account
	StrangerUserID = "44444444-4444-4444-8444-444444444444" // belongs to no account

	// SandboxProjectID has a sandbox and three threads, one of them with a
	// sub-agent child: deleting the last one tears the sandbox down.
	SandboxProjectID  = "c0ffee00-0000-4000-8000-000000000001"
	SandboxResourceID = "5a4db0c5-0000-4000-8000-000000000001"
	SandboxID         = "dev-sandbox-1" // resources.external_id, the Daytona id
	// NotesProjectID has no sandbox and one thread.
	NotesProjectID = "c0ffee00-0000-4000-8000-000000000002"
	// OtherProjectID belongs to the other account.
	OtherProjectID = "c0ffee00-0000-4000-8000-000000000003"

	// ThreadID is the thread of events/delete-thread.json and
	// events/delete-thread-api-key.json.
	ThreadID         = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"
	SecondThreadID   = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c20"
	LastThreadID     = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c30" // has the sub-agent child
	SubAgentThreadID = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c31"
	NotesThreadID    = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c40"
	// OtherThreadID is the thread of events/delete-thread-forbidden.json:
	// the demo owner may not delete it.
	OtherThreadID = "0e6f2a8d-4b1c-4f3e-a9d7-5c2b8e1f6a40"

	// APIKeyPublic and APIKeySecretPart form the demo account's API key,
	// the one in events/delete-thread-api-key.json.
	APIKeyPublic     = "pk_0123456789abcdefghijklmnopqrstuv"
	APIKeySecretPart = "sk_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	APIKey           = APIKeyPublic + ":" + APIKeySecretPart
)

// TokenPlaceholder is what the sample events under events/ carry instead of
// a token.
const TokenPlaceholder = "REPLACE_WITH_TOKEN"

// APIKeyHash is the api_keys.secret_key_hash of the demo key under
// APIKeySecret.
func APIKeyHash() string { return auth.HashSecret([]byte(APIKeySecret), APIKeySecretPart) }

// Users maps the names the dev tools accept to demo user ids.
var Users = map[string]string{
	"owner":    OwnerUserID,
	"member":   MemberUserID,
	"other":    OtherUserID,
	"stranger": StrangerUserID,
}

// TokenTTL is how long minted dev tokens stay valid: a working day, so that
// printed curl lines keep working without re-running anything.
const TokenTTL = 24 * time.Hour

// Token returns a Supabase-style access token for user, signed with secret
// (HS256, aud "authenticated", role "authenticated"), valid for ttl.
func Token(secret, user string, ttl time.Duration) (string, error) {
	now := time.Now()
	return SignToken(secret, jwt.MapClaims{
		"sub":  user,
		"aud":  "authenticated",
		"role": "authenticated",
		"iat":  now.Unix(),
		"exp":  now.Add(ttl).Unix(),
	})
}

// SignToken signs claims with secret (HS256).
func SignToken(secret string, claims jwt.MapClaims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// Endpoints are where the services of a local stack listen.
type Endpoints struct {
	DatabaseURL, RedisURL string
	SQSEndpoint, QueueURL string
	DaytonaURL            string
}

// DefaultEndpoints are those of `make dev` when nothing was moved (the SQS
// emulator on SQSPort); nothing runs at DaytonaURL, so a teardown fails and
// is retried, as it would while Daytona is down.
func DefaultEndpoints() Endpoints {
	return Endpoints{
		DatabaseURL: DatabaseURL(),
		RedisURL:    RedisURL,
		SQSEndpoint: fmt.Sprintf("http://127.0.0.1:%d", SQSPort),
		QueueURL:    QueueURL(SQSPort),
		DaytonaURL:  "http://127.0.0.1:1/daytona-placeholder",
	}
}

// FunctionEnv is both functions' settings on the local stack at e, with the
// stack's secrets: what `make dev` configures them with and what
// `make invoke` defaults to.
func FunctionEnv(e Endpoints) map[string]string {
	env := SQSEnv(e.SQSEndpoint)
	for k, v := range map[string]string{
		"DATABASE_URL":              e.DatabaseURL,
		"REDIS_URL":                 e.RedisURL,
		"SANDBOX_CLEANUP_QUEUE_URL": e.QueueURL,
		"SUPABASE_JWT_SECRET":       JWTSecret,
		"JWT_AUDIENCE":              "authenticated",
		"API_KEY_SECRET":            APIKeySecret,
		"DAYTONA_SERVER_URL":        e.DaytonaURL,
		"DAYTONA_API_KEY":           DaytonaAPIKey,
	} {
		env[k] = v
	}
	return env
}
