package samtemplate

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseShortTags(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want any
	}{
		{"Ref", "v: !Ref Queue", map[string]any{"Ref": "Queue"}},
		{"Ref to a pseudo parameter", "v: !Ref AWS::NoValue", map[string]any{"Ref": "AWS::NoValue"}},
		{"Ref of a number-like id stays a string", "v: !Ref 1", map[string]any{"Ref": "1"}},
		{"Condition", "v: !Condition HasVpc", map[string]any{"Condition": "HasVpc"}},
		{"GetAtt dotted", "v: !GetAtt Queue.Arn", map[string]any{"Fn::GetAtt": []any{"Queue", "Arn"}}},
		{"GetAtt splits at the first dot only", "v: !GetAtt Db.Endpoint.Address",
			map[string]any{"Fn::GetAtt": []any{"Db", "Endpoint.Address"}}},
		{"GetAtt list", "v: !GetAtt [Queue, QueueName]", map[string]any{"Fn::GetAtt": []any{"Queue", "QueueName"}}},
		{"Sub string", "v: !Sub 'arn:${AWS::Partition}:sqs:${Queue}'",
			map[string]any{"Fn::Sub": "arn:${AWS::Partition}:sqs:${Queue}"}},
		{"Sub with variables", "v: !Sub ['${A}-x', {A: !Ref B}]",
			map[string]any{"Fn::Sub": []any{"${A}-x", map[string]any{"A": map[string]any{"Ref": "B"}}}}},
		{"If with NoValue", "v: !If [C, 1, !Ref AWS::NoValue]",
			map[string]any{"Fn::If": []any{"C", 1, map[string]any{"Ref": "AWS::NoValue"}}}},
		{"Equals inside Not", "v: !Not [!Equals [!Ref P, '']]",
			map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "P"}, ""}}}}},
		{"And with Condition", "v: !And [!Condition A, !Condition B]",
			map[string]any{"Fn::And": []any{map[string]any{"Condition": "A"}, map[string]any{"Condition": "B"}}}},
		{"Or", "v: !Or [!Condition A, !Condition B]",
			map[string]any{"Fn::Or": []any{map[string]any{"Condition": "A"}, map[string]any{"Condition": "B"}}}},
		{"Join", "v: !Join [',', [a, b]]", map[string]any{"Fn::Join": []any{",", []any{"a", "b"}}}},
		{"Select Split", "v: !Select [0, !Split [',', !Ref L]]",
			map[string]any{"Fn::Select": []any{0, map[string]any{"Fn::Split": []any{",", map[string]any{"Ref": "L"}}}}}},
		{"FindInMap", "v: !FindInMap [M, k1, k2]", map[string]any{"Fn::FindInMap": []any{"M", "k1", "k2"}}},
		{"Base64", "v: !Base64 hello", map[string]any{"Fn::Base64": "hello"}},
		{"GetAZs", "v: !GetAZs ''", map[string]any{"Fn::GetAZs": ""}},
		{"ImportValue of Sub", "v: !ImportValue {'Fn::Sub': '${S}-x'}",
			map[string]any{"Fn::ImportValue": map[string]any{"Fn::Sub": "${S}-x"}}},
		{"Cidr", "v: !Cidr ['10.0.0.0/16', 4, 8]", map[string]any{"Fn::Cidr": []any{"10.0.0.0/16", 4, 8}}},
		{"long form passes through", "v: {'Fn::GetAtt': [Q, Arn]}", map[string]any{"Fn::GetAtt": []any{"Q", "Arn"}}},
		{"block sequence argument", "v: !If\n  - C\n  - a: 1\n  - b", map[string]any{"Fn::If": []any{"C", map[string]any{"a": 1}, "b"}}},
		{"plain scalars keep their types", "v: [1, '1', true, 'true', 2.5, null]", []any{1, "1", true, "true", 2.5, nil}},
		{"aliases resolve", "a: &x {k: 1}\nv: *x", map[string]any{"k": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tmpl["v"]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"duplicate key", "a: 1\nb: 2\na: 3", `duplicate key "a"`},
		{"unknown tag", "a: !Refs X", "unsupported tag !Refs"},
		{"GetAtt without attribute", "a: !GetAtt Queue", "not Resource.Attribute"},
		{"merge key", "x: &x {k: 1}\ny:\n  <<: *x", "merge keys"},
		{"not a mapping", "- a\n- b", "not a mapping"},
		{"empty", "", "empty template"},
		{"invalid YAML", "a: [1, 2", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestFunctionPropertiesMergesGlobals(t *testing.T) {
	tmpl, err := Parse([]byte(`
Globals:
  Function:
    Timeout: 10
    Runtime: provided.al2023
    Layers: [g]
    Environment:
      Variables:
        SHARED: global
        OVERRIDDEN: global
    VpcConfig: !If [HasVpc, {SubnetIds: [a]}, !Ref AWS::NoValue]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 30
      Layers: [l]
      Environment:
        Variables:
          OVERRIDDEN: local
          OWN: local
      VpcConfig: {SubnetIds: [b]}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := tmpl.FunctionProperties("Fn")
	want := map[string]any{
		"Timeout": 30,
		"Runtime": "provided.al2023",
		"Layers":  []any{"g", "l"},
		"Environment": map[string]any{"Variables": map[string]any{
			"SHARED": "global", "OVERRIDDEN": "local", "OWN": "local",
		}},
		// An intrinsic on either side is not merged: the function's value wins.
		"VpcConfig": map[string]any{"SubnetIds": []any{"b"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestAlternatives(t *testing.T) {
	v := map[string]any{"Fn::If": []any{"A",
		map[string]any{"Fn::If": []any{"B", "x", map[string]any{"Ref": "AWS::NoValue"}}},
		"y",
	}}
	if got, want := Alternatives(v), []any{"x", "y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Alternatives = %#v, want %#v", got, want)
	}
	if got := Alternatives("z"); !reflect.DeepEqual(got, []any{"z"}) {
		t.Errorf("Alternatives(z) = %#v", got)
	}
}
