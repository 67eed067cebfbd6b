package testenv

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWTSecret is the HS256 secret tests and the dev stack sign with.
const JWTSecret = "local-dev-jwt-secret-not-for-production"

// Token returns a Supabase-style HS256 access token for user, valid for an
// hour, with aud "authenticated".
func Token(user string) string {
	return TokenWith(jwt.MapClaims{
		"sub":  user,
		"aud":  "authenticated",
		"role": "authenticated",
		"exp":  time.Now().Add(time.Hour).Unix(),
		"iat":  time.Now().Unix(),
	})
}

// TokenWith signs claims with JWTSecret.
func TokenWith(claims jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(JWTSecret))
	if err != nil {
		panic(err)
	}
	return s
}
