// Package samtemplate reads the repository's AWS SAM template into plain Go
// values, so that tests can hold the deployment to what the code relies on
// (build method, runtime, queue settings, environment, permissions) without
// the sam CLI or a network.
//
// CloudFormation YAML uses short-form tags (!Ref, !GetAtt, !Sub, ...) that a
// plain YAML decoder either rejects or silently drops. This package walks the
// yaml.v3 node tree and turns every such tag into its long JSON form, so the
// result looks exactly like the JSON template CloudFormation sees:
//
//	!Ref Queue             -> {"Ref": "Queue"}
//	!GetAtt Queue.Arn      -> {"Fn::GetAtt": ["Queue", "Arn"]}
//	!If [C, a, b]          -> {"Fn::If": ["C", "a", "b"]}
//
// Libraries that model CloudFormation types (goformation) were avoided on
// purpose: they drop properties they do not know, such as the
// FunctionResponseTypes of SAM SQS events, which is one of the things the
// tests must see.
package samtemplate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// shortTags maps each CloudFormation short-form tag to the key of its long
// form. Ref and Condition have no "Fn::" prefix in their long form.
var shortTags = map[string]string{
	"!Ref":         "Ref",
	"!Condition":   "Condition",
	"!GetAtt":      "Fn::GetAtt",
	"!Sub":         "Fn::Sub",
	"!If":          "Fn::If",
	"!Equals":      "Fn::Equals",
	"!Not":         "Fn::Not",
	"!And":         "Fn::And",
	"!Or":          "Fn::Or",
	"!Join":        "Fn::Join",
	"!Select":      "Fn::Select",
	"!Split":       "Fn::Split",
	"!FindInMap":   "Fn::FindInMap",
	"!Base64":      "Fn::Base64",
	"!GetAZs":      "Fn::GetAZs",
	"!ImportValue": "Fn::ImportValue",
	"!Cidr":        "Fn::Cidr",
}

// Template is a decoded CloudFormation/SAM template: maps are
// map[string]any, lists []any, scalars string, int, float64, bool or nil,
// and intrinsic functions single-key maps in their long form.
type Template map[string]any

// Load reads and parses the template at path.
func Load(path string) (Template, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Parse decodes a template from YAML (or JSON, which is YAML).
func Parse(data []byte) (Template, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("empty template")
	}
	v, err := decode(&doc)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("template is not a mapping")
	}
	return Template(m), nil
}

// decode turns a node into plain values, rewriting short-form tags.
func decode(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		return decode(n.Content[0])
	case yaml.AliasNode:
		return decode(n.Alias)
	}
	if long, ok := shortTags[n.Tag]; ok {
		return intrinsic(long, n)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return nil, fmt.Errorf("line %d: unsupported tag %s", n.Line, n.Tag)
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, vn := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: YAML merge keys (<<) are not supported by CloudFormation", k.Line)
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping key is not a scalar", k.Line)
			}
			// CloudFormation rejects duplicate keys; a YAML decoder into a
			// map would quietly keep the last one.
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			v, err := decode(vn)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		s := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := decode(c)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node kind %d", n.Line, n.Kind)
}

// intrinsic builds the long form {long: argument} of a short-form tag.
func intrinsic(long string, n *yaml.Node) (any, error) {
	if n.Kind == yaml.ScalarNode {
		// A tagged scalar is always a string argument: "!Ref 1" names a
		// logical id "1", not a number.
		if long == "Fn::GetAtt" {
			res, attr, ok := strings.Cut(n.Value, ".")
			if !ok || res == "" || attr == "" {
				return nil, fmt.Errorf("line %d: !GetAtt %q is not Resource.Attribute", n.Line, n.Value)
			}
			return map[string]any{long: []any{res, attr}}, nil
		}
		return map[string]any{long: n.Value}, nil
	}
	// Decode the tagged collection as if it carried no tag.
	plain := *n
	plain.Tag = ""
	switch n.Kind {
	case yaml.SequenceNode:
		plain.Tag = "!!seq"
	case yaml.MappingNode:
		plain.Tag = "!!map"
	}
	arg, err := decode(&plain)
	if err != nil {
		return nil, err
	}
	return map[string]any{long: arg}, nil
}

// FindRepoRoot walks up from dir to the directory holding go.mod.
func FindRepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Resources returns the Resources section.
func (t Template) Resources() map[string]any { return AsMap(t["Resources"]) }

// Resource returns one resource's definition, or nil.
func (t Template) Resource(id string) map[string]any { return AsMap(t.Resources()[id]) }

// Type returns a resource's Type, or "".
func (t Template) Type(id string) string {
	s, _ := t.Resource(id)["Type"].(string)
	return s
}

// ResourcesOfType lists the logical ids of a type, sorted.
func (t Template) ResourcesOfType(typ string) []string {
	var ids []string
	for id := range t.Resources() {
		if t.Type(id) == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Properties returns a resource's Properties as written, or nil.
func (t Template) Properties(id string) map[string]any {
	return AsMap(t.Resource(id)["Properties"])
}

// FunctionProperties returns an AWS::Serverless::Function's properties with
// Globals.Function applied the way the SAM transform applies them: maps are
// merged key by key (the function wins on conflicts), lists are concatenated
// (globals first), and for anything else, including intrinsic functions, the
// function's own value replaces the global one.
func (t Template) FunctionProperties(id string) map[string]any {
	globals := AsMap(AsMap(t["Globals"])["Function"])
	merged, _ := mergeGlobal(globals, t.Properties(id)).(map[string]any)
	if merged == nil {
		merged = map[string]any{}
	}
	return merged
}

func mergeGlobal(global, local any) any {
	if global == nil {
		return local
	}
	if local == nil {
		return global
	}
	gm, gIsMap := global.(map[string]any)
	lm, lIsMap := local.(map[string]any)
	if gIsMap && lIsMap && !isIntrinsic(gm) && !isIntrinsic(lm) {
		out := make(map[string]any, len(gm)+len(lm))
		for k, v := range gm {
			out[k] = v
		}
		for k, v := range lm {
			out[k] = mergeGlobal(gm[k], v)
		}
		return out
	}
	gs, gIsList := global.([]any)
	ls, lIsList := local.([]any)
	if gIsList && lIsList {
		return append(append([]any{}, gs...), ls...)
	}
	return local
}

func isIntrinsic(m map[string]any) bool {
	_, _, ok := Intrinsic(m)
	return ok
}

// Intrinsic reports whether v is an intrinsic function in long form and
// returns its name ("Ref", "Fn::If", ...) and argument.
func Intrinsic(v any) (name string, arg any, ok bool) {
	m, isMap := v.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", nil, false
	}
	for k, a := range m {
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, a, true
		}
	}
	return "", nil, false
}

// Ref returns the name in {"Ref": name}.
func Ref(v any) (string, bool) {
	name, arg, ok := Intrinsic(v)
	if !ok || name != "Ref" {
		return "", false
	}
	s, ok := arg.(string)
	return s, ok
}

// GetAtt returns the resource and attribute of {"Fn::GetAtt": [res, attr]}.
func GetAtt(v any) (resource, attribute string, ok bool) {
	name, arg, isFn := Intrinsic(v)
	if !isFn || name != "Fn::GetAtt" {
		return "", "", false
	}
	parts, _ := arg.([]any)
	if len(parts) != 2 {
		return "", "", false
	}
	resource, ok1 := parts[0].(string)
	attribute, ok2 := parts[1].(string)
	return resource, attribute, ok1 && ok2
}

// IfBranches returns the condition and both values of {"Fn::If": [c, a, b]}.
func IfBranches(v any) (condition string, then, otherwise any, ok bool) {
	name, arg, isFn := Intrinsic(v)
	if !isFn || name != "Fn::If" {
		return "", nil, nil, false
	}
	parts, _ := arg.([]any)
	if len(parts) != 3 {
		return "", nil, nil, false
	}
	condition, ok = parts[0].(string)
	return condition, parts[1], parts[2], ok
}

// IsNoValue reports whether v is {"Ref": "AWS::NoValue"}.
func IsNoValue(v any) bool {
	name, ok := Ref(v)
	return ok && name == "AWS::NoValue"
}

// Alternatives returns the values v may take at deploy time: both branches
// of an Fn::If (recursively), without AWS::NoValue; otherwise v itself.
// Checks that must hold "whichever way the conditions go" iterate over it.
func Alternatives(v any) []any {
	if _, a, b, ok := IfBranches(v); ok {
		return append(Alternatives(a), Alternatives(b)...)
	}
	if IsNoValue(v) {
		return nil
	}
	return []any{v}
}

// AsMap returns v as a map, or nil when it is not one.
func AsMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// AsList returns v as a list, or nil when it is not one.
func AsList(v any) []any {
	s, _ := v.([]any)
	return s
}

// Get follows a path of map keys from v; it returns nil when a step is
// missing or not a map.
func Get(v any, path ...string) any {
	if t, ok := v.(Template); ok {
		v = map[string]any(t)
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Int returns a literal integer, accepting the quoted numbers CloudFormation
// also accepts ("30").
func Int(v any) (int, bool) {
	switch x := v.(type) {
	case int:
		return x, true
	case int64:
		return int(x), true
	case uint64:
		return int(x), true
	case float64:
		if x == float64(int(x)) {
			return int(x), true
		}
	case string:
		if i, err := strconv.Atoi(x); err == nil {
			return i, true
		}
	}
	return 0, false
}
