package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	rdsauth "github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/awsenv"
	"github.com/kortix-ai/thread-delete/shared/config"
)

// Open builds the pool for the configured way of reaching the database:
// a URL, a Secrets Manager secret (fetched on the first connection, then
// cached), or IAM authentication (a fresh 15-minute token per connection,
// connections recycled after 10 minutes). It does no I/O itself.
func Open(ctx context.Context, db config.DB, maxConns int32) (*pgxpool.Pool, error) {
	switch {
	case db.IAMAuth:
		awsCfg := awsenv.Config()
		endpoint := fmt.Sprintf("%s:%d", db.Host, db.Port)
		base := fmt.Sprintf("postgres://%s@%s/%s?sslmode=require", url.User(db.User).String(), endpoint, url.PathEscape(db.Name))
		return NewPool(ctx, PoolOptions{
			URL:             base,
			MaxConns:        maxConns,
			MaxConnLifetime: 10 * time.Minute,
			BeforeConnect: func(ctx context.Context, cc *pgx.ConnConfig) error {
				token, err := rdsauth.BuildAuthToken(ctx, endpoint, db.Region, db.User, awsCfg.Credentials)
				if err != nil {
					return fmt.Errorf("postgres: IAM auth token: %w", err)
				}
				cc.Password = token
				return nil
			},
		})
	case db.SecretARN != "":
		client := secretsmanager.NewFromConfig(awsenv.Config(), func(o *secretsmanager.Options) {
			o.BaseEndpoint = awsenv.Endpoint(secretsmanager.ServiceID)
		})
		src := &secretSource{arn: db.SecretARN, client: client}
		// The URL carries DB_HOST, DB_PORT and DB_NAME for a secret that
		// lacks them; BeforeConnect sets the credentials, and the host, port
		// and database the secret names, from the secret.
		placeholder := fmt.Sprintf("postgres://placeholder@%s:%d/%s?sslmode=require", orDefault(db.Host, "localhost"), db.Port, orDefault(db.Name, "postgres"))
		return NewPool(ctx, PoolOptions{URL: placeholder, MaxConns: maxConns, BeforeConnect: src.apply})
	default:
		return NewPool(ctx, PoolOptions{URL: db.URL, MaxConns: maxConns})
	}
}

// rdsSecret is the JSON layout of an RDS-managed Secrets Manager secret.
type rdsSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Host     string `json:"host"`
	Port     any    `json:"port"` // a number or a string, depending on who wrote it
	DBName   string `json:"dbname"`
}

type secretSource struct {
	arn    string
	client *secretsmanager.Client

	mu     sync.Mutex
	cached *rdsSecret
}

func (s *secretSource) apply(ctx context.Context, cc *pgx.ConnConfig) error {
	sec, err := s.get(ctx)
	if err != nil {
		return err
	}
	cc.User, cc.Password = sec.Username, sec.Password
	if sec.Host != "" {
		cc.Host = sec.Host
	}
	if p := portOf(sec.Port); p != 0 {
		cc.Port = p
	}
	if sec.DBName != "" {
		cc.Database = sec.DBName
	}
	return nil
}

func (s *secretSource) get(ctx context.Context) (*rdsSecret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil {
		return s.cached, nil
	}
	out, err := s.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.arn)})
	if err != nil {
		return nil, fmt.Errorf("postgres: read DB_SECRET_ARN: %w", err)
	}
	var sec rdsSecret
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &sec) != nil || sec.Username == "" {
		return nil, fmt.Errorf("postgres: DB_SECRET_ARN does not hold RDS credentials (username, password, host, port, dbname)")
	}
	s.cached = &sec
	return s.cached, nil
}

func portOf(v any) uint16 {
	switch p := v.(type) {
	case float64:
		return uint16(p)
	case string:
		n, _ := strconv.Atoi(p)
		return uint16(n)
	}
	return 0
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
