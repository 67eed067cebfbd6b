package samtemplate

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func mustParse(t *testing.T, yaml string) Template {
	t.Helper()
	tmpl, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestHttpApiCorsReadsTheConfiguration(t *testing.T) {
	tests := []struct {
		name  string
		cors  string // the CorsConfiguration property, YAML, indented by 6
		ok    bool
		want  Cors
		param string // a value for the origins parameter
		orig  []string
	}{
		{"absent", "", false, Cors{}, "", nil},
		{"literal", `
      CorsConfiguration:
        AllowOrigins: [https://a.example, https://b.example]
        AllowMethods: [DELETE]
        AllowHeaders: [authorization]
        ExposeHeaders: [retry-after]
        MaxAge: 300
        AllowCredentials: true`, true, Cors{
			AllowOrigins: []string{"https://a.example", "https://b.example"}, AllowMethods: []string{"DELETE"},
			AllowHeaders: []string{"authorization"}, ExposeHeaders: []string{"retry-after"}, MaxAge: 300, AllowCredentials: true,
		}, "", []string{"https://a.example", "https://b.example"}},
		{"from a parameter, behind a condition", `
      CorsConfiguration: !If
        - HasOrigins
        - AllowOrigins: !Split [",", !Ref Origins]
          AllowMethods: [DELETE, POST]
        - !Ref AWS::NoValue`, true, Cors{
			OriginsParameter: "Origins", OriginsDelimiter: ",", AllowMethods: []string{"DELETE", "POST"},
		}, "http://localhost:3000,https://x.example", []string{"http://localhost:3000", "https://x.example"}},
		{"SAM's true", `
      CorsConfiguration: true`, true, Cors{AllowOrigins: []string{"*"}}, "", []string{"*"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := mustParse(t, "Resources:\n  Api:\n    Type: AWS::Serverless::HttpApi\n    Properties:\n      Description: x"+tc.cors+"\n")
			got, ok, err := tmpl.HttpApiCors("Api")
			if err != nil || ok != tc.ok {
				t.Fatalf("ok=%v err=%v, want ok=%v", ok, err, tc.ok)
			}
			if !corsEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if o := got.Origins(tc.param); !slices.Equal(o, tc.orig) {
				t.Errorf("Origins(%q) = %q, want %q", tc.param, o, tc.orig)
			}
		})
	}
}

func corsEqual(a, b Cors) bool {
	return slices.Equal(a.AllowOrigins, b.AllowOrigins) && a.OriginsParameter == b.OriginsParameter &&
		a.OriginsDelimiter == b.OriginsDelimiter && slices.Equal(a.AllowMethods, b.AllowMethods) &&
		slices.Equal(a.AllowHeaders, b.AllowHeaders) && slices.Equal(a.ExposeHeaders, b.ExposeHeaders) &&
		a.MaxAge == b.MaxAge && a.AllowCredentials == b.AllowCredentials
}

func TestHttpApiCorsRejectsWhatOnlyDeployTimeResolves(t *testing.T) {
	tests := []struct{ name, cors, wantErr string }{
		{"methods from a parameter", `
      CorsConfiguration:
        AllowMethods: !Ref Methods`, "AllowMethods: not a literal list"},
		{"max age from a parameter", `
      CorsConfiguration:
        MaxAge: !Ref Age`, "MaxAge is not a literal number"},
		{"two configurations", `
      CorsConfiguration: !If [C, {AllowMethods: [GET]}, {AllowMethods: [POST]}]`, "2 different configurations"},
		{"origins joined from a list parameter", `
      CorsConfiguration:
        AllowOrigins: !Ref Origins`, "AllowOrigins: not a literal list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := mustParse(t, "Resources:\n  Api:\n    Type: AWS::Serverless::HttpApi\n    Properties:"+tc.cors+"\n")
			if _, _, err := tmpl.HttpApiCors("Api"); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, _, err := mustParse(t, "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n").HttpApiCors("Q"); err == nil {
		t.Error("a queue read as an HTTP API")
	}
}

const queuesYAML = `
Resources:
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 360
      MessageRetentionPeriod: "345600"
      ReceiveMessageWaitTimeSeconds: 20
      SqsManagedSseEnabled: true
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Parked.Arn
        maxReceiveCount: 5
  Parked:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  Bad:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: !Ref Visibility
  NoDLQ:
    Type: AWS::SQS::Queue
    Properties:
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Api.Arn
        maxReceiveCount: 5
  Api:
    Type: AWS::Serverless::HttpApi
`

func TestSQSQueue(t *testing.T) {
	tmpl := mustParse(t, queuesYAML)
	work, err := tmpl.SQSQueue("Work")
	if err != nil {
		t.Fatal(err)
	}
	wantAttrs := map[string]string{"VisibilityTimeout": "360", "MessageRetentionPeriod": "345600", "ReceiveMessageWaitTimeSeconds": "20"}
	if !maps.Equal(work.Attributes, wantAttrs) || work.DeadLetterQueue != "Parked" || work.MaxReceiveCount != 5 {
		t.Errorf("Work = %+v, want attributes %v, DLQ Parked after 5 receives", work, wantAttrs)
	}
	parked, err := tmpl.SQSQueue("Parked")
	if err != nil || !maps.Equal(parked.Attributes, map[string]string{"MessageRetentionPeriod": "1209600"}) || parked.DeadLetterQueue != "" {
		t.Errorf("Parked = %+v, %v", parked, err)
	}
	for id, wantErr := range map[string]string{
		"Bad":   "VisibilityTimeout is not a literal number",
		"NoDLQ": "not an AWS::SQS::Queue",
		"Api":   "not an AWS::SQS::Queue",
	} {
		if _, err := tmpl.SQSQueue(id); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("SQSQueue(%s) err = %v, want one containing %q", id, err, wantErr)
		}
	}
}
