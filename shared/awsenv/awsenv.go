// Package awsenv builds the AWS SDK configuration from the environment
// variables Lambda sets (AWS_REGION, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and the SDK's standard endpoint
// variables (AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL).
//
// The SDK's own loader (aws-sdk-go-v2/config) does the same and much more —
// shared config files, SSO, web identity, IMDS — none of which a Lambda
// function uses, and it links the STS, SSO and sign-in clients into every
// binary: about 1.2 MB, a tenth of the function. Outside Lambda (local runs,
// tests) the same variables are all it takes.
package awsenv

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// Config returns the region and credentials from the environment. Without
// credentials in the environment, requests fail when they are signed (never
// at init).
func Config() aws.Config {
	cfg := aws.Config{Region: firstSet("AWS_REGION", "AWS_DEFAULT_REGION")}
	if id := os.Getenv("AWS_ACCESS_KEY_ID"); id != "" {
		cfg.Credentials = aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(
			id, os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")))
	} else {
		cfg.Credentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("awsenv: AWS_ACCESS_KEY_ID is not set")
		})
	}
	return cfg
}

// Endpoint returns the endpoint URL override for a service, by the SDK's
// standard variables: AWS_ENDPOINT_URL_<SERVICE ID> (upper case, spaces as
// underscores, e.g. AWS_ENDPOINT_URL_SECRETS_MANAGER), else
// AWS_ENDPOINT_URL; nil when neither is set.
func Endpoint(serviceID string) *string {
	if v := firstSet("AWS_ENDPOINT_URL_"+strings.ToUpper(strings.ReplaceAll(serviceID, " ", "_")), "AWS_ENDPOINT_URL"); v != "" {
		return aws.String(v)
	}
	return nil
}

func firstSet(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
