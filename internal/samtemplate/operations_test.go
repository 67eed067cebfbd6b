package samtemplate

// These tests hold the dashboard and the alarms to the metrics the code
// emits (the catalog of package metrics, which the functions' tests hold
// the log lines to), and every alarm to a runbook entry.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kortix-ai/thread-delete/shared/metrics"
)

// namespace is the METRICS_NAMESPACE both functions get.
func namespace(t *testing.T, tmpl Template) any {
	t.Helper()
	ns := Get(tmpl, "Globals", "Function", "Environment", "Variables", "METRICS_NAMESPACE")
	if ns == nil {
		t.Fatal("Globals set no METRICS_NAMESPACE")
	}
	return ns
}

// customAlarms lists the alarms on the service's own metrics.
func customAlarms(tmpl Template) []string {
	var ids []string
	for _, id := range tmpl.ResourcesOfType("AWS::CloudWatch::Alarm") {
		if ns, ok := tmpl.Properties(id)["Namespace"].(string); ok && strings.HasPrefix(ns, "AWS/") {
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

// The functions, the alarms, the dashboard and the output agree on one
// namespace: the parameter, else ThreadDelete/{stack name}.
func TestMetricsNamespaceIsOneExpression(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	ns := namespace(t, tmpl)
	cond, then, otherwise, ok := IfBranches(ns)
	if p, _ := Ref(then); !ok || cond != "HasMetricsNamespace" || p != "MetricsNamespace" ||
		Get(otherwise, "Fn::Sub") != metrics.DefaultNamespace+"/${AWS::StackName}" {
		t.Fatalf("METRICS_NAMESPACE = %v, want the MetricsNamespace parameter, else %s/{stack name}", ns, metrics.DefaultNamespace)
	}
	uses := map[string]any{"output MetricsNamespace": Get(tmpl, "Outputs", "MetricsNamespace", "Value")}
	for _, id := range customAlarms(tmpl) {
		uses["alarm "+id] = tmpl.Properties(id)["Namespace"]
	}
	for _, id := range tmpl.ResourcesOfType("AWS::CloudWatch::Dashboard") {
		_, vars := dashboardSub(t, tmpl, id)
		uses["dashboard "+id] = vars["Ns"]
	}
	if len(uses) < 4 {
		t.Fatalf("namespace used by %v only", uses)
	}
	for where, v := range uses {
		if !reflect.DeepEqual(v, ns) {
			t.Errorf("%s uses namespace %v, the functions %v", where, v, ns)
		}
	}
}

// dashboardSub returns a dashboard's body and its Fn::Sub variables.
func dashboardSub(t *testing.T, tmpl Template, id string) (string, map[string]any) {
	t.Helper()
	parts := AsList(Get(tmpl.Properties(id), "DashboardBody", "Fn::Sub"))
	if len(parts) != 2 {
		t.Fatalf("%s DashboardBody is not !Sub [body, {variables}]", id)
	}
	body, _ := parts[0].(string)
	return body, AsMap(parts[1])
}

// dashboard is the JSON CloudFormation would produce, with the namespace
// as NS, the region as us-east-1, alarm ARNs as arn:<logical id>, and
// parameters as their defaults.
func dashboard(t *testing.T, tmpl Template, id string) map[string]any {
	t.Helper()
	body, _ := dashboardSub(t, tmpl, id)
	params := AsMap(tmpl["Parameters"])
	var bad []string
	body = regexp.MustCompile(`\$\{([^}]+)\}`).ReplaceAllStringFunc(body, func(m string) string {
		name := m[2 : len(m)-1]
		switch {
		case name == "Ns":
			return "NS"
		case name == "AWS::Region":
			return "us-east-1"
		case name == "AWS::StackName":
			return "stack"
		case strings.HasSuffix(name, ".Arn"):
			return "arn:" + strings.TrimSuffix(name, ".Arn")
		case params[name] != nil:
			return strings.TrimSpace(toString(Get(params, name, "Default")))
		}
		bad = append(bad, name)
		return m
	})
	if len(bad) > 0 {
		t.Fatalf("dashboard %s refers to %v", id, bad)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("dashboard %s body is not JSON once substituted: %v", id, err)
	}
	return d
}

// searchExpr is a metric-math SEARCH over one metric name in one
// dimension schema: SEARCH('{NS,Dim,...} MetricName="X"', 'Stat', period).
var searchExpr = regexp.MustCompile(`^SEARCH\('\{([^}]*)\} MetricName="([^"]+)"', '[A-Za-z0-9.]+', \d+\)$`)

// The dashboard plots every metric the code emits, each by its declared
// name and dimensions, in the functions' namespace; and shows every alarm.
func TestDashboardShowsEveryMetricTheCodeEmits(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	ids := tmpl.ResourcesOfType("AWS::CloudWatch::Dashboard")
	if len(ids) != 1 {
		t.Fatalf("dashboards %v, want one", ids)
	}
	d := dashboard(t, tmpl, ids[0])
	shown := map[string]bool{}
	var alarms []string
	check := func(name string, dims []string, where string) {
		def, ok := metrics.Lookup(name)
		if !ok {
			t.Errorf("%s plots %s, which the code does not emit", where, name)
			return
		}
		want := slices.Clone(def.Dims)
		sort.Strings(want)
		sort.Strings(dims)
		if !slices.Equal(dims, want) {
			t.Errorf("%s plots %s by %v; the code emits it by %v", where, name, dims, want)
		}
		shown[name] = true
	}
	for i, w := range AsList(d["widgets"]) {
		props := AsMap(Get(w, "properties"))
		switch Get(w, "type") {
		case "alarm":
			for _, a := range AsList(props["alarms"]) {
				alarms = append(alarms, strings.TrimPrefix(toString(a), "arn:"))
			}
		case "metric":
			where := toString(props["title"])
			if where == "" || props["region"] != "us-east-1" {
				t.Errorf("metric widget %d needs a title and the stack's region: %v", i, props)
			}
			for _, m := range AsList(props["metrics"]) {
				row := AsList(m)
				if expr, ok := Get(row[0], "expression").(string); ok {
					sm := searchExpr.FindStringSubmatch(expr)
					if sm == nil {
						t.Errorf("%s: expression %q is not a SEARCH over one metric name", where, expr)
						continue
					}
					schema := strings.Split(sm[1], ",")
					if schema[0] != "NS" {
						t.Errorf("%s: SEARCH in namespace %s", where, schema[0])
					}
					check(sm[2], schema[1:], where)
					continue
				}
				if len(row) < 2 || row[0] != "NS" {
					t.Errorf("%s: metric %v not in the functions' namespace", where, row)
					continue
				}
				var dims []string
				rest := row[2:]
				if len(rest)%2 == 1 { // trailing rendering options
					rest = rest[:len(rest)-1]
				}
				for j := 0; j < len(rest); j += 2 {
					dims = append(dims, toString(rest[j]))
					if rest[j] == metrics.DimEndpoint && !slices.Contains([]any{"delete", "bulk_delete"}, rest[j+1]) {
						t.Errorf("%s: Endpoint %v is not one the code emits", where, rest[j+1])
					}
				}
				check(toString(row[1]), dims, where)
			}
		}
	}
	for _, def := range metrics.Catalog() {
		if !shown[def.Name] {
			t.Errorf("the dashboard does not show %s", def.Name)
		}
	}
	all := tmpl.ResourcesOfType("AWS::CloudWatch::Alarm")
	sort.Strings(alarms)
	if !slices.Equal(alarms, all) {
		t.Errorf("the alarm widget shows %v, the template has %v", alarms, all)
	}
}

// The alarms on the service's own metrics: dead outbox rows (any) and the
// oldest pending teardown (PendingTeardownAlarmSeconds, default 30 min).
func TestOutboxAlarms(t *testing.T) {
	tmpl, _ := repoTemplate(t)
	byMetric := map[string]map[string]any{}
	for _, id := range customAlarms(tmpl) {
		p := tmpl.Properties(id)
		name := toString(p["MetricName"])
		def, ok := metrics.Lookup(name)
		if !ok {
			t.Errorf("%s watches %s, which the code does not emit", id, name)
			continue
		}
		var dims []string
		for _, d := range AsList(p["Dimensions"]) {
			dims = append(dims, toString(Get(d, "Name")))
		}
		if !slices.Equal(dims, def.Dims) && !(len(dims) == 0 && len(def.Dims) == 0) {
			t.Errorf("%s watches %s by %v; the code emits it by %v", id, name, dims, def.Dims)
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
			t.Errorf("%s does not notify AlarmTopicArn", id)
		}
		byMetric[name] = p
	}

	dead := byMetric["DeadRows"]
	if th, _ := Int(dead["Threshold"]); dead == nil || th != 0 || dead["ComparisonOperator"] != "GreaterThanThreshold" || dead["Statistic"] != "Maximum" {
		t.Errorf("dead rows alarm %v, want Maximum of DeadRows > 0", dead)
	}
	age := byMetric["OldestPendingTeardownAge"]
	param, _ := Ref(age["Threshold"])
	if def, _ := Int(Get(tmpl, "Parameters", param, "Default")); age == nil || param != "PendingTeardownAlarmSeconds" || def != 30*60 ||
		age["ComparisonOperator"] != "GreaterThanThreshold" || age["Statistic"] != "Maximum" {
		t.Errorf("pending teardown alarm %v (threshold %s), want Maximum of OldestPendingTeardownAge > PendingTeardownAlarmSeconds, default 1800 s", age, param)
	}
	if def, _ := metrics.Lookup("OldestPendingTeardownAge"); def.Unit != metrics.Seconds {
		t.Errorf("the threshold is in seconds but the metric is in %s", def.Unit)
	}
	// A sweep that stops reporting is an outage, not "no problem".
	if age["TreatMissingData"] != "breaching" {
		t.Errorf("pending teardown alarm treats missing data as %v", age["TreatMissingData"])
	}
}

// Every alarm says what to do and links its entry in docs/operations.md,
// which says what it means and what to run.
func TestEveryAlarmHasARunbook(t *testing.T) {
	tmpl, root := repoTemplate(t)
	raw, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	var current string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "#") {
			current = ""
			if h, ok := strings.CutPrefix(line, "### "); ok {
				current = strings.TrimSpace(h)
			}
			continue
		}
		if current != "" {
			sections[current] += line + "\n"
		}
	}
	for _, id := range tmpl.ResourcesOfType("AWS::CloudWatch::Alarm") {
		p := tmpl.Properties(id)
		name, _ := Get(p, "AlarmName", "Fn::Sub").(string)
		suffix, ok := strings.CutPrefix(name, "${AWS::StackName}-")
		if !ok {
			t.Errorf("%s AlarmName %v is not ${AWS::StackName}-<name>", id, p["AlarmName"])
			continue
		}
		if desc := toString(p["AlarmDescription"]); !strings.Contains(desc, "docs/operations.md#"+suffix) {
			t.Errorf("%s description does not link docs/operations.md#%s: %q", id, suffix, desc)
		}
		sec, ok := sections[suffix]
		if !ok {
			t.Errorf("docs/operations.md has no section ### %s for %s", suffix, id)
			continue
		}
		if !strings.Contains(sec, "```") {
			t.Errorf("docs/operations.md ### %s gives no command to run", suffix)
		}
	}
}

// The runbook describes every metric the code emits.
func TestOperationsDocumentsEveryMetric(t *testing.T) {
	_, root := repoTemplate(t)
	raw, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, def := range metrics.Catalog() {
		if !strings.Contains(string(raw), "`"+def.Name+"`") {
			t.Errorf("docs/operations.md does not describe %s", def.Name)
		}
	}
}
