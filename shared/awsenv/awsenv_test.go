package awsenv_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kortix-ai/thread-delete/shared/awsenv"
)

func TestEndpoint(t *testing.T) {
	tests := []struct {
		env     map[string]string
		service string
		want    string
	}{
		{map[string]string{}, "SQS", ""},
		{map[string]string{"AWS_ENDPOINT_URL": "http://all"}, "SQS", "http://all"},
		{map[string]string{"AWS_ENDPOINT_URL": "http://all", "AWS_ENDPOINT_URL_SQS": "http://sqs"}, "SQS", "http://sqs"},
		{map[string]string{"AWS_ENDPOINT_URL_SECRETS_MANAGER": "http://sm"}, "Secrets Manager", "http://sm"},
		{map[string]string{"AWS_ENDPOINT_URL_SQS": "http://sqs"}, "Secrets Manager", ""},
	}
	for _, tc := range tests {
		for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SECRETS_MANAGER"} {
			t.Setenv(k, tc.env[k])
		}
		if got := aws.ToString(awsenv.Endpoint(tc.service)); got != tc.want {
			t.Errorf("%v %s: %q, want %q", tc.env, tc.service, got, tc.want)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "token")
	cfg := awsenv.Config()
	if cfg.Region != "eu-west-1" {
		t.Fatalf("region %q", cfg.Region)
	}
	c, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || c.AccessKeyID != "AKID" || c.SecretAccessKey != "secret" || c.SessionToken != "token" {
		t.Fatalf("credentials %+v %v", c, err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	if _, err := awsenv.Config().Credentials.Retrieve(context.Background()); err == nil {
		t.Fatal("credentials without AWS_ACCESS_KEY_ID")
	}
}
