package samtemplate

// These tests hold template.yaml to what the code and the contract rely on.
// There is no sam CLI or cfn-lint here, so they also catch the mistakes a
// deploy would otherwise be the first to find: dangling references, a
// default that violates its own pattern, a queue that redelivers messages
// while the worker still holds them.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const (
	deleteFn  = "DeleteThreadFunction"
	cleanupFn = "SandboxCleanupFunction"
	queueID   = "SandboxCleanupQueue"
)

// repoTemplate loads template.yaml from the repository root.
func repoTemplate(t *testing.T) (Template, string) {
	t.Helper()
	root, err := FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := Load(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl, root
}

// functions lists the template's SAM functions and fails when there are none.
func functions(t *testing.T, tmpl Template) []string {
	t.Helper()
	ids := tmpl.ResourcesOfType("AWS::Serverless::Function")
	for _, want := range []string{deleteFn, cleanupFn} {
		if !slices.Contains(ids, want) {
			t.Fatalf("template has no AWS::Serverless::Function %s (has %v)", want, ids)
		}
	}
	return ids
}

// event is one entry of a function's Events.
type event struct {
	function, name, typ string
	props               map[string]any
}

func functionEvents(tmpl Template, fn string) []event {
	evs := AsMap(tmpl.FunctionProperties(fn)["Events"])
	names := make([]string, 0, len(evs))
	for name := range evs {
		names = append(names, name)
	}
	sort.Strings(names)
	var out []event
	for _, name := range names {
		e := AsMap(evs[name])
		typ, _ := e["Type"].(string)
		out = append(out, event{fn, name, typ, AsMap(e["Properties"])})
	}
	return out
}

func eventsOfType(t *testing.T, tmpl Template, typ string) []event {
	t.Helper()
	var out []event
	for _, fn := range functions(t, tmpl) {
		for _, e := range functionEvents(tmpl, fn) {
			if e.typ == typ {
				out = append(out, e)
			}
		}
	}
	return out
}

// walk calls fn for v and everything nested in it.
func walk(v any, fn func(any)) {
	fn(v)
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			walk(c, fn)
		}
	case []any:
		for _, c := range x {
			walk(c, fn)
		}
	}
}

// makeTargets returns the explicit targets of a Makefile's rules.
func makeTargets(makefile string) map[string]bool {
	targets := map[string]bool{}
	for _, line := range strings.Split(makefile, "\n") {
		if strings.HasPrefix(line, "\t") || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		head, rest, ok := strings.Cut(line, ":")
		if !ok || strings.Contains(head, "=") || strings.HasPrefix(rest, "=") || strings.HasPrefix(rest, ":=") {
			continue // not a rule: an assignment such as X := a or X = a:b
		}
		for _, f := range strings.Fields(head) {
			targets[f] = true
		}
	}
	return targets
}

func TestTemplateIsSAM(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	var transforms []any
	switch tr := tmpl["Transform"].(type) {
	case string:
		transforms = []any{tr}
	case []any:
		transforms = tr
	}
	if !slices.Contains(transforms, any("AWS::Serverless-2016-10-31")) {
		t.Errorf("Transform = %v, want AWS::Serverless-2016-10-31", tmpl["Transform"])
	}
}

// sam build runs `make build-<LogicalId>` for BuildMethod makefile, so the
// Makefile must have that target for every function.
func TestFunctionsBuildWithMakefile(t *testing.T) {
	tmpl, root := repoTemplate(t)
	makefile := filepath.Join(root, "Makefile")
	data, err := os.ReadFile(makefile)
	if err != nil {
		t.Fatalf("cannot read %s (%v): sam build (BuildMethod: makefile) runs a build-<LogicalId> target from it", makefile, err)
	}
	targets := makeTargets(string(data))
	for _, fn := range functions(t, tmpl) {
		t.Run(fn, func(t *testing.T) {
			if got := Get(tmpl.Resource(fn), "Metadata", "BuildMethod"); got != "makefile" {
				t.Errorf("Metadata.BuildMethod = %v, want makefile", got)
			}
			if target := "build-" + fn; !targets[target] && !targets["build-%"] {
				t.Errorf("Makefile has no %s: target", target)
			}
		})
	}
}

func TestFunctionRuntime(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	checks := []struct {
		path []string
		want any
	}{
		{[]string{"Runtime"}, "provided.al2023"},
		{[]string{"Handler"}, "bootstrap"},
		{[]string{"CodeUri"}, "."},
		{[]string{"Tracing"}, "Active"},
		{[]string{"LoggingConfig", "LogFormat"}, "JSON"},
	}
	for _, fn := range functions(t, tmpl) {
		props := tmpl.FunctionProperties(fn)
		for _, c := range checks {
			t.Run(fn+"/"+strings.Join(c.path, "."), func(t *testing.T) {
				if got := Get(props, c.path...); got != c.want {
					t.Errorf("%s = %#v, want %#v", strings.Join(c.path, "."), got, c.want)
				}
			})
		}
		t.Run(fn+"/Architectures", func(t *testing.T) {
			if got := AsList(props["Architectures"]); len(got) != 1 || got[0] != "arm64" {
				t.Errorf("Architectures = %#v, want [arm64]", props["Architectures"])
			}
		})
		t.Run(fn+"/Timeout", func(t *testing.T) {
			if s, ok := Int(props["Timeout"]); !ok || s < 1 || s > 900 {
				t.Errorf("Timeout = %#v, want a literal number of seconds", props["Timeout"])
			}
		})
	}
}

func TestSQSEventsReportBatchItemFailures(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	evs := eventsOfType(t, tmpl, "SQS")
	if len(evs) == 0 {
		t.Fatal("no SQS event in the template")
	}
	for _, e := range evs {
		t.Run(e.function+"/"+e.name, func(t *testing.T) {
			// Without it Lambda ignores the SQSEventResponse and one failed
			// teardown redelivers the whole batch.
			if !slices.Contains(AsList(e.props["FunctionResponseTypes"]), any("ReportBatchItemFailures")) {
				t.Errorf("FunctionResponseTypes = %v, want it to contain ReportBatchItemFailures", e.props["FunctionResponseTypes"])
			}
			if n, ok := Int(e.props["BatchSize"]); !ok || n < 1 || n > 10 {
				t.Errorf("BatchSize = %v, want 1..10", e.props["BatchSize"])
			}
			mc := Get(e.props, "ScalingConfig", "MaximumConcurrency")
			if param, ok := Ref(mc); ok {
				p := AsMap(AsMap(tmpl["Parameters"])[param])
				if min, ok := Int(p["MinValue"]); p == nil || !ok || min < 2 {
					t.Errorf("ScalingConfig.MaximumConcurrency refers to %s, which needs MinValue >= 2 (Lambda's minimum)", param)
				}
			} else if n, ok := Int(mc); !ok || n < 2 {
				t.Errorf("ScalingConfig.MaximumConcurrency = %v, want >= 2", mc)
			}
		})
	}
}

// consumedQueue returns the queue an SQS event reads (Queue: !GetAtt X.Arn).
func consumedQueue(t *testing.T, tmpl Template, e event) string {
	t.Helper()
	res, attr, ok := GetAtt(e.props["Queue"])
	if !ok || attr != "Arn" {
		t.Fatalf("%s/%s: Queue = %v, want !GetAtt <queue>.Arn", e.function, e.name, e.props["Queue"])
	}
	if typ := tmpl.Type(res); typ != "AWS::SQS::Queue" {
		t.Fatalf("%s/%s: Queue refers to %s of type %q, want AWS::SQS::Queue", e.function, e.name, res, typ)
	}
	return res
}

func TestQueueVisibilityTimeout(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	for _, e := range eventsOfType(t, tmpl, "SQS") {
		t.Run(e.function+"/"+e.name, func(t *testing.T) {
			q := consumedQueue(t, tmpl, e)
			timeout, ok := Int(tmpl.FunctionProperties(e.function)["Timeout"])
			if !ok {
				t.Fatalf("%s has no literal Timeout", e.function)
			}
			vis, ok := Int(tmpl.Properties(q)["VisibilityTimeout"])
			if !ok {
				t.Fatalf("%s has no literal VisibilityTimeout (the SQS default of 30 s is too short)", q)
			}
			if vis < 6*timeout {
				t.Errorf("%s VisibilityTimeout = %d, want >= 6 x %s Timeout (%d) = %d", q, vis, e.function, timeout, 6*timeout)
			}
		})
	}
}

func TestQueueRedrive(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	for _, e := range eventsOfType(t, tmpl, "SQS") {
		t.Run(e.function+"/"+e.name, func(t *testing.T) {
			q := consumedQueue(t, tmpl, e)
			rp := AsMap(tmpl.Properties(q)["RedrivePolicy"])
			if rp == nil {
				t.Fatalf("%s has no RedrivePolicy", q)
			}
			dlq, attr, ok := GetAtt(rp["deadLetterTargetArn"])
			if !ok || attr != "Arn" || tmpl.Type(dlq) != "AWS::SQS::Queue" || dlq == q {
				t.Errorf("RedrivePolicy.deadLetterTargetArn = %v, want !GetAtt <another queue>.Arn", rp["deadLetterTargetArn"])
			}
			if n, ok := Int(rp["maxReceiveCount"]); !ok || n < 2 || n > 10 {
				t.Errorf("RedrivePolicy.maxReceiveCount = %v, want 2..10", rp["maxReceiveCount"])
			}
			if n, _ := Int(tmpl.Properties(dlq)["MessageRetentionPeriod"]); n != 14*24*3600 {
				t.Errorf("%s MessageRetentionPeriod = %v, want 14 days (1209600)", dlq, tmpl.Properties(dlq)["MessageRetentionPeriod"])
			}
		})
	}
}

func TestQueuesEncrypted(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	for _, q := range tmpl.ResourcesOfType("AWS::SQS::Queue") {
		p := tmpl.Properties(q)
		if p["SqsManagedSseEnabled"] != true && p["KmsMasterKeyId"] == nil {
			t.Errorf("%s is not encrypted at rest (SqsManagedSseEnabled or KmsMasterKeyId)", q)
		}
	}
}

// The function serves two routes of one HTTP API: DELETE /threads/{id} and
// the multi-select POST /threads/bulk-delete (one handler, one pool, one
// cold start).
func TestHttpApiRoutes(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	routes := map[string]string{ // path -> method
		"/threads/{thread_id}": "DELETE",
		"/threads/bulk-delete": "POST",
	}
	evs := eventsOfType(t, tmpl, "HttpApi")
	if len(evs) != len(routes) {
		t.Fatalf("want %d HttpApi events, got %d", len(routes), len(evs))
	}
	var api string
	for _, e := range evs {
		if e.function != deleteFn {
			t.Errorf("HttpApi event is on %s, want %s", e.function, deleteFn)
		}
		path, _ := e.props["Path"].(string)
		method, ok := routes[path]
		if !ok || e.props["Method"] != method || e.props["PayloadFormatVersion"] != "2.0" {
			t.Errorf("HttpApi event %v is none of %v (payload 2.0)", e.props, routes)
		}
		id, ok := Ref(e.props["ApiId"])
		if !ok || tmpl.Type(id) != "AWS::Serverless::HttpApi" || (api != "" && id != api) {
			t.Fatalf("ApiId = %v, want !Ref to the one AWS::Serverless::HttpApi", e.props["ApiId"])
		}
		api = id
	}
	// An explicit OpenAPI body must describe the same routes, whichever way
	// its conditions go, or SAM would add second ones beside them.
	if body := AsMap(tmpl.Properties(api)["DefinitionBody"]); body != nil {
		paths := AsMap(body["paths"])
		if len(paths) != len(routes) {
			t.Errorf("DefinitionBody paths %v, want %v", paths, routes)
		}
		for p, method := range routes {
			for _, item := range Alternatives(paths[p]) {
				m := AsMap(item)
				if _, ok := m[strings.ToLower(method)]; !ok || len(m) != 1 {
					t.Errorf("DefinitionBody path %s item %v, want only a %s operation", p, item, method)
				}
			}
		}
	}
	if Get(tmpl, "Outputs", "ApiUrl", "Value") == nil {
		t.Error("no ApiUrl output")
	}
}

// SAM resolves a Ref to a parameter inside CorsConfiguration into the
// parameter's raw text, so a list parameter would reach API Gateway as one
// comma-joined origin. Origins must be a literal list or an Fn::Split.
func TestHttpApiCors(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	for _, api := range tmpl.ResourcesOfType("AWS::Serverless::HttpApi") {
		for _, cors := range Alternatives(tmpl.Properties(api)["CorsConfiguration"]) {
			origins := Get(cors, "AllowOrigins")
			if name, _, ok := Intrinsic(origins); ok && name != "Fn::Split" {
				t.Errorf("%s CorsConfiguration.AllowOrigins = %v, want a list or !Split", api, origins)
			}
		}
	}
}

// A browser calls DELETE /threads/{id} and POST /threads/bulk-delete with
// a token or an API key (and a JSON body), and must be able to read the
// headers of a 401 and a 503. The origins are the deployer's choice.
func TestHttpApiCorsConfiguration(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	c, ok, err := tmpl.HttpApiCors("HttpApi")
	if err != nil || !ok {
		t.Fatalf("HttpApi CorsConfiguration: ok=%v, %v", ok, err)
	}
	sorted := func(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }
	for _, f := range []struct {
		name      string
		got, want []string
	}{
		{"AllowMethods", c.AllowMethods, []string{"DELETE", "POST"}},
		{"AllowHeaders", c.AllowHeaders, []string{"authorization", "content-type", "x-api-key"}},
		{"ExposeHeaders", c.ExposeHeaders, []string{"retry-after", "www-authenticate"}},
	} {
		if !slices.Equal(sorted(f.got), f.want) {
			t.Errorf("CorsConfiguration.%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	// Ten minutes of cached preflights (browsers cap it at 2 hours at most).
	if c.MaxAge != 600 {
		t.Errorf("CorsConfiguration.MaxAge = %d, want 600", c.MaxAge)
	}
	// Credentials travel in headers, never cookies; and API Gateway refuses
	// AllowCredentials with the origin *, which CorsAllowedOrigins allows.
	if c.AllowCredentials {
		t.Error("CorsConfiguration.AllowCredentials = true, want false")
	}
	if c.OriginsParameter != "CorsAllowedOrigins" || c.OriginsDelimiter != "," {
		t.Errorf("CorsConfiguration.AllowOrigins: split %q of parameter %q, want !Split [\",\", !Ref CorsAllowedOrigins]", c.OriginsDelimiter, c.OriginsParameter)
	}
	// Only when origins are given: an empty list would be a deploy error.
	cond, _, otherwise, isIf := IfBranches(tmpl.Properties("HttpApi")["CorsConfiguration"])
	if !isIf || !IsNoValue(otherwise) || cond != "HasCorsOrigins" {
		t.Errorf("CorsConfiguration is not !If [HasCorsOrigins, {...}, !Ref AWS::NoValue]")
	}
}

// The optional JWT authorizer must be exactly the issuer and audience the
// function checks, or it would refuse tokens the function accepts.
func TestJwtAuthorizer(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	body := AsMap(tmpl.Properties("HttpApi")["DefinitionBody"])
	var schemes []map[string]any
	for _, alt := range Alternatives(Get(body, "components", "securitySchemes")) {
		for name, s := range AsMap(alt) {
			if Get(s, "x-amazon-apigateway-authorizer", "type") == "jwt" {
				schemes = append(schemes, AsMap(s))
				if name != "SupabaseJwt" {
					t.Errorf("JWT authorizer named %s, want SupabaseJwt (the route's security refers to it)", name)
				}
			}
		}
	}
	if len(schemes) != 1 {
		t.Fatalf("want one JWT authorizer in the HttpApi body, got %d", len(schemes))
	}
	cfg := Get(schemes[0], "x-amazon-apigateway-authorizer", "jwtConfiguration")
	var issuers []string
	for _, alt := range Alternatives(Get(cfg, "issuer")) {
		if s, ok := Get(alt, "Fn::Sub").(string); ok {
			issuers = append(issuers, s)
		} else if r, ok := Ref(alt); ok {
			issuers = append(issuers, "Ref "+r)
		}
	}
	if !slices.Contains(issuers, "${SupabaseUrl}/auth/v1") {
		t.Errorf("issuer alternatives %v, want ${SupabaseUrl}/auth/v1 among them", issuers)
	}
	aud := AsList(Get(cfg, "audience"))
	if r, _ := Ref(firstOrNil(aud)); len(aud) != 1 || r != "JwtAudience" {
		t.Errorf("audience = %v, want [!Ref JwtAudience]", aud)
	}
	if p := Get(tmpl, "Parameters", "EnableJwtAuthorizer", "Default"); p != "false" {
		t.Errorf("EnableJwtAuthorizer default = %v, want false (it locks out X-API-Key clients)", p)
	}
}

func firstOrNil(s []any) any {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

func TestFunctionEnvironment(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	db := []string{"DATABASE_URL", "DB_SECRET_ARN", "DB_IAM_AUTH", "DB_HOST", "DB_PORT", "DB_NAME", "DB_USER"}
	tests := []struct {
		function string
		// required: every variable the config loader reads, per CONTRACT.md.
		required []string
		// always: set unconditionally (the loader needs a value, or an empty
		// value means something).
		always []string
		// forbidden: secrets and settings of the other function, kept out so
		// that each function sees only what it needs.
		forbidden []string
	}{
		{
			function: deleteFn,
			required: append(slices.Clone(db), "REDIS_URL", "REDIS_CLUSTER", "SANDBOX_CLEANUP_QUEUE_URL",
				"SUPABASE_JWT_SECRET", "SUPABASE_URL", "SUPABASE_JWKS_URL", "JWT_AUDIENCE", "JWT_ISSUER", "JWT_REQUIRE_SESSION", "API_KEY_SECRET",
				"METRICS_NAMESPACE"),
			always:    []string{"REDIS_URL", "SANDBOX_CLEANUP_QUEUE_URL", "JWT_AUDIENCE", "DB_IAM_AUTH", "JWT_REQUIRE_SESSION"},
			forbidden: []string{"DAYTONA_API_KEY", "DAYTONA_SERVER_URL", "DAYTONA_ORGANIZATION_ID", "OUTBOX_RESEND_AFTER", "OUTBOX_RETENTION"},
		},
		{
			function: cleanupFn,
			required: append(slices.Clone(db), "REDIS_URL", "REDIS_CLUSTER", "DAYTONA_SERVER_URL", "DAYTONA_API_KEY",
				"DAYTONA_ORGANIZATION_ID", "SANDBOX_CLEANUP_QUEUE_URL", "OUTBOX_RESEND_AFTER", "OUTBOX_RETENTION", "METRICS_NAMESPACE"),
			always:    []string{"REDIS_URL", "SANDBOX_CLEANUP_QUEUE_URL", "DAYTONA_SERVER_URL", "DAYTONA_API_KEY", "OUTBOX_RESEND_AFTER", "OUTBOX_RETENTION"},
			forbidden: []string{"SUPABASE_JWT_SECRET", "API_KEY_SECRET"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.function, func(t *testing.T) {
			vars := AsMap(Get(tmpl.FunctionProperties(tt.function), "Environment", "Variables"))
			for _, name := range tt.required {
				if _, ok := vars[name]; !ok {
					t.Errorf("Environment lacks %s", name)
				}
			}
			for _, name := range tt.always {
				if _, _, _, conditional := IfBranches(vars[name]); conditional {
					t.Errorf("%s is conditional; it must always be set", name)
				}
			}
			for _, name := range tt.forbidden {
				if _, ok := vars[name]; ok {
					t.Errorf("Environment has %s, which belongs to the other function", name)
				}
			}
			if q, _ := Ref(vars["SANDBOX_CLEANUP_QUEUE_URL"]); q != queueID {
				t.Errorf("SANDBOX_CLEANUP_QUEUE_URL = %v, want !Ref %s", vars["SANDBOX_CLEANUP_QUEUE_URL"], queueID)
			}
		})
	}
	// The queue the delete function sends to is the queue the worker reads.
	for _, e := range eventsOfType(t, tmpl, "SQS") {
		if q := consumedQueue(t, tmpl, e); q != queueID {
			t.Errorf("%s/%s consumes %s, but SANDBOX_CLEANUP_QUEUE_URL points at %s", e.function, e.name, q, queueID)
		}
	}
}

func TestScheduleEvent(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	var found bool
	for _, e := range functionEvents(tmpl, cleanupFn) {
		switch e.typ {
		case "ScheduleV2":
			// EventBridge Scheduler sends only its configured input, without
			// the "detail-type": "Scheduled Event" that starts a sweep.
			t.Errorf("%s is a ScheduleV2 event; use Schedule (an EventBridge rule)", e.name)
		case "Schedule":
			found = true
			expr := e.props["Schedule"]
			if p, ok := Ref(expr); ok {
				expr = Get(tmpl, "Parameters", p, "Default")
			}
			s, _ := expr.(string)
			if !regexp.MustCompile(`^(rate|cron)\(.+\)$`).MatchString(s) {
				t.Errorf("%s Schedule = %v, want a rate(...) or cron(...) expression", e.name, e.props["Schedule"])
			}
		}
	}
	if !found {
		t.Errorf("%s has no Schedule event for the outbox sweep", cleanupFn)
	}
}

func TestDLQAlarm(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	for _, e := range eventsOfType(t, tmpl, "SQS") {
		q := consumedQueue(t, tmpl, e)
		dlq, _, _ := GetAtt(Get(tmpl.Properties(q), "RedrivePolicy", "deadLetterTargetArn"))
		t.Run(dlq, func(t *testing.T) {
			var alarms []string
			for _, id := range tmpl.ResourcesOfType("AWS::CloudWatch::Alarm") {
				p := tmpl.Properties(id)
				if p["Namespace"] != "AWS/SQS" || p["MetricName"] != "ApproximateNumberOfMessagesVisible" {
					continue
				}
				for _, d := range AsList(p["Dimensions"]) {
					res, attr, _ := GetAtt(Get(d, "Value"))
					if Get(d, "Name") == "QueueName" && res == dlq && attr == "QueueName" {
						alarms = append(alarms, id)
						th, _ := Int(p["Threshold"])
						if p["ComparisonOperator"] != "GreaterThanThreshold" || th != 0 {
							t.Errorf("%s fires on %v %v, want GreaterThanThreshold 0 (any message)", id, p["ComparisonOperator"], p["Threshold"])
						}
						var notifies bool
						for _, alt := range Alternatives(p["AlarmActions"]) {
							for _, a := range AsList(alt) {
								if r, _ := Ref(a); r == "AlarmTopicArn" {
									notifies = true
								}
							}
						}
						if !notifies {
							t.Errorf("%s AlarmActions = %v, want AlarmTopicArn when it is set", id, p["AlarmActions"])
						}
					}
				}
			}
			if len(alarms) == 0 {
				t.Errorf("no CloudWatch alarm on %s ApproximateNumberOfMessagesVisible", dlq)
			}
		})
	}
}

// policies returns a function's Policies, both branches of every Fn::If.
func policies(tmpl Template, fn string) []any {
	var out []any
	for _, p := range AsList(tmpl.FunctionProperties(fn)["Policies"]) {
		out = append(out, Alternatives(p)...)
	}
	return out
}

func TestPoliciesLeastPrivilege(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	tests := []struct {
		function    string
		sqsPolicies []string
	}{
		{deleteFn, []string{"SQSSendMessagePolicy"}},
		// The worker polls the queue and the sweeper re-sends to it.
		{cleanupFn, []string{"SQSPollerPolicy", "SQSSendMessagePolicy"}},
	}
	for _, tt := range tests {
		t.Run(tt.function, func(t *testing.T) {
			var have []string
			var rdsConnect bool
			for _, p := range policies(tmpl, tt.function) {
				if s, ok := p.(string); ok {
					t.Errorf("managed policy %s: use scoped policy templates or statements", s)
					continue
				}
				for name, args := range AsMap(p) {
					switch {
					case strings.HasPrefix(name, "SQS"):
						have = append(have, name)
						res, attr, ok := GetAtt(Get(args, "QueueName"))
						if !ok || res != queueID || attr != "QueueName" {
							t.Errorf("%s QueueName = %v, want !GetAtt %s.QueueName", name, Get(args, "QueueName"), queueID)
						}
					case name == "AWSSecretsManagerGetSecretValuePolicy":
						if r, _ := Ref(Get(args, "SecretArn")); r != "DatabaseSecretArn" {
							t.Errorf("%s SecretArn = %v, want !Ref DatabaseSecretArn", name, Get(args, "SecretArn"))
						}
					case name == "Statement":
						for _, st := range AsList(args) {
							res := Get(st, "Resource")
							if res == "*" || slices.Contains(AsList(res), any("*")) {
								t.Errorf("statement %v grants on every resource", Get(st, "Sid"))
							}
							if Get(st, "Action") == "rds-db:connect" {
								rdsConnect = true
								sub, _ := Get(res, "Fn::Sub").(string)
								if !strings.HasSuffix(sub, ":dbuser:${DbResourceId}/${DbUser}") {
									t.Errorf("rds-db:connect on %v, want only dbuser:${DbResourceId}/${DbUser}", res)
								}
							}
						}
					default:
						t.Errorf("unexpected policy %s", name)
					}
				}
			}
			sort.Strings(have)
			want := slices.Clone(tt.sqsPolicies)
			sort.Strings(want)
			if !slices.Equal(have, want) {
				t.Errorf("SQS policies %v, want %v", have, want)
			}
			if !rdsConnect {
				t.Error("no rds-db:connect statement for DbIamAuth")
			}
		})
	}
}

// Without cfn-lint, this is what catches a misspelt logical id, parameter or
// condition before CloudFormation does.
func TestReferencesResolve(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	params := AsMap(tmpl["Parameters"])
	conditions := AsMap(tmpl["Conditions"])
	resources := tmpl.Resources()
	known := func(name string) bool {
		_, p := params[name]
		_, r := resources[name]
		return p || r || strings.HasPrefix(name, "AWS::")
	}
	subVar := regexp.MustCompile(`\$\{([^}!]+)\}`)
	walk(map[string]any(tmpl), func(v any) {
		name, arg, ok := Intrinsic(v)
		if !ok {
			return
		}
		switch name {
		case "Ref":
			if s, _ := arg.(string); !known(s) {
				t.Errorf("Ref to unknown %v", arg)
			}
		case "Condition":
			if _, ok := conditions[arg.(string)]; !ok {
				t.Errorf("Condition %v is not defined", arg)
			}
		case "Fn::If":
			if c, _, _, ok := IfBranches(v); !ok {
				t.Errorf("malformed Fn::If %v", arg)
			} else if _, ok := conditions[c]; !ok {
				t.Errorf("Fn::If on undefined condition %s", c)
			}
		case "Fn::GetAtt":
			if res, _, ok := GetAtt(v); !ok || resources[res] == nil {
				t.Errorf("GetAtt of unknown resource %v", arg)
			}
		case "Fn::Sub":
			s, _ := arg.(string)
			for _, m := range subVar.FindAllStringSubmatch(s, -1) {
				res, _, _ := strings.Cut(m[1], ".")
				if !known(res) {
					t.Errorf("Fn::Sub %q refers to unknown %s", s, m[1])
				}
			}
		}
	})
}

// A default that violates its own AllowedPattern would make every deploy
// that relies on it fail; secrets must never be echoed by CloudFormation.
func TestParameters(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	params := AsMap(tmpl["Parameters"])
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := AsMap(params[name])
		def, hasDefault := p["Default"]
		if pat, ok := p["AllowedPattern"].(string); ok && hasDefault {
			if s, ok := def.(string); ok && !regexp.MustCompile(pat).MatchString(s) {
				t.Errorf("%s default %q does not match its AllowedPattern %s", name, s, pat)
			}
		}
		if allowed := AsList(p["AllowedValues"]); allowed != nil && hasDefault && !slices.Contains(allowed, def) {
			t.Errorf("%s default %v is not among %v", name, def, allowed)
		}
		if p["Description"] == nil {
			t.Errorf("%s has no Description", name)
		}
	}
	for _, secret := range []string{"SupabaseJwtSecret", "ApiKeySecret", "DaytonaApiKey", "DatabaseUrl", "RedisUrl"} {
		if Get(params, secret, "NoEcho") != true {
			t.Errorf("parameter %s must be NoEcho", secret)
		}
	}
}
