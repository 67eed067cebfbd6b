package samtemplate

// samconfig.toml is read by the sam CLI, which is not installed here; this
// test keeps it consistent with template.yaml (no override of a parameter
// that does not exist, every required parameter given, no secret in it).

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const placeholder = "REPLACE_ME"

// readSamconfig parses the subset of TOML samconfig.toml uses: [a.b.c]
// tables and one-line key = value pairs. Values are returned raw (strings
// still quoted).
func readSamconfig(t *testing.T, path string) (version string, tables map[string]map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tables = map[string]map[string]string{}
	current := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			current = strings.Trim(line, "[]")
			if _, dup := tables[current]; dup {
				t.Fatalf("line %d: table [%s] defined twice", n, current)
			}
			tables[current] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("line %d: not key = value: %q", n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if current == "" {
				if k == "version" {
					version = v
				}
				continue
			}
			tables[current][k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return version, tables
}

var overrideRE = regexp.MustCompile(`^([A-Za-z0-9]+)="([^"]*)"(?:\s+|$)`)

// parseOverrides splits a parameter_overrides value (Key="Value" ...).
func parseOverrides(t *testing.T, raw string) map[string]string {
	t.Helper()
	s, err := strconv.Unquote(raw)
	if err != nil {
		t.Fatalf("parameter_overrides is not a one-line string: %v", err)
	}
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		m := overrideRE.FindStringSubmatch(s)
		if m == nil {
			t.Fatalf("cannot parse parameter_overrides at %q", s)
		}
		if _, dup := out[m[1]]; dup {
			t.Errorf("parameter %s overridden twice", m[1])
		}
		out[m[1]] = m[2]
		s = s[len(m[0]):]
	}
	return out
}

func TestSamconfig(t *testing.T) {
	tmpl, root := repoTemplate(t)
	version, tables := readSamconfig(t, filepath.Join(root, "samconfig.toml"))
	if version != "0.1" {
		t.Errorf("version = %q, want 0.1", version)
	}
	params := AsMap(tmpl["Parameters"])

	for _, env := range []string{"default", "prod"} {
		t.Run(env, func(t *testing.T) {
			deploy := tables[env+".deploy.parameters"]
			if deploy == nil {
				t.Fatalf("no [%s.deploy.parameters]", env)
			}
			if tables[env+".global.parameters"]["stack_name"] == "" && deploy["stack_name"] == "" {
				t.Error("no stack_name")
			}
			if !strings.Contains(deploy["capabilities"], "CAPABILITY_IAM") {
				t.Errorf("capabilities = %s, want CAPABILITY_IAM (SAM creates the functions' roles)", deploy["capabilities"])
			}
			for _, k := range []string{"resolve_s3", "confirm_changeset"} {
				if deploy[k] == "" {
					t.Errorf("deploy parameters lack %s", k)
				}
			}
			overrides := parseOverrides(t, deploy["parameter_overrides"])
			// A parameter without a default must be given, or the deploy stops.
			for name, p := range params {
				if _, hasDefault := AsMap(p)["Default"]; !hasDefault && overrides[name] == "" {
					t.Errorf("required parameter %s is not in parameter_overrides", name)
				}
			}
		})
	}

	for table, kv := range tables {
		raw, ok := kv["parameter_overrides"]
		if !ok {
			continue
		}
		for name, value := range parseOverrides(t, raw) {
			p := AsMap(params[name])
			if p == nil {
				t.Errorf("[%s] overrides %s, which template.yaml does not declare", table, name)
				continue
			}
			if p["NoEcho"] == true && value != "" && value != placeholder {
				t.Errorf("[%s] gives NoEcho parameter %s a value; only the %s placeholder belongs here", table, name, placeholder)
			}
			if value == placeholder {
				continue
			}
			if allowed := AsList(p["AllowedValues"]); allowed != nil && !slices.ContainsFunc(allowed, func(a any) bool {
				return toString(a) == value
			}) {
				t.Errorf("[%s] %s=%q is not among %v", table, name, value, allowed)
			}
			if pat, ok := p["AllowedPattern"].(string); ok && !regexp.MustCompile(pat).MatchString(value) {
				t.Errorf("[%s] %s=%q does not match %s", table, name, value, pat)
			}
			if p["Type"] == "Number" {
				n, err := strconv.Atoi(value)
				min, hasMin := Int(p["MinValue"])
				max, hasMax := Int(p["MaxValue"])
				if err != nil || (hasMin && n < min) || (hasMax && n > max) {
					t.Errorf("[%s] %s=%q is not a number within the parameter's bounds", table, name, value)
				}
			}
		}
	}
}

func toString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return ""
}

// The dev stack serves a web front end run locally (npm run dev and the
// like, on http://localhost:3000): its deploy and sync both allow it.
func TestSamconfigDevCorsOrigins(t *testing.T) {
	tmpl, root := repoTemplate(t)
	_, tables := readSamconfig(t, filepath.Join(root, "samconfig.toml"))
	c, ok, err := tmpl.HttpApiCors("HttpApi")
	if err != nil || !ok || c.OriginsParameter == "" {
		t.Fatalf("HttpApi CorsConfiguration takes no origins parameter (ok=%v, %v)", ok, err)
	}
	for _, table := range []string{"default.deploy.parameters", "default.sync.parameters"} {
		raw, ok := tables[table]["parameter_overrides"]
		if !ok {
			t.Errorf("[%s] has no parameter_overrides", table)
			continue
		}
		value, set := parseOverrides(t, raw)[c.OriginsParameter]
		if got := c.Origins(value); !set || !slices.Equal(got, []string{"http://localhost:3000"}) {
			t.Errorf("[%s] %s=%q allows origins %q, want [http://localhost:3000]", table, c.OriginsParameter, value, got)
		}
	}
}
