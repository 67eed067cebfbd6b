package testenv

import (
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// JWTSecret is the HS256 secret tests and the dev stack sign with.
const JWTSecret = localstack.JWTSecret

// Token returns a Supabase-style HS256 access token for user, valid for an
// hour, with aud "authenticated".
func Token(user string) string {
	s, err := localstack.Token(JWTSecret, user, time.Hour)
	if err != nil {
		panic(err)
	}
	return s
}

// TokenWith signs claims with JWTSecret.
func TokenWith(claims jwt.MapClaims) string {
	s, err := localstack.SignToken(JWTSecret, claims)
	if err != nil {
		panic(err)
	}
	return s
}
