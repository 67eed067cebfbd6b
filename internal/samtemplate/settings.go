package samtemplate

import (
	"fmt"
	"strconv"
	"strings"
)

// This file reads settings that local tools apply as the deployed stack
// would (the dev server's CORS and queues), so that they are read from the
// template rather than copied from it.

// Cors is the CorsConfiguration of an AWS::Serverless::HttpApi, which API
// Gateway applies to every request of the API.
type Cors struct {
	// AllowOrigins are the origins when the template lists them literally.
	AllowOrigins []string
	// OriginsParameter names the parameter the origins are split from
	// (AllowOrigins: !Split [OriginsDelimiter, !Ref OriginsParameter]),
	// when they come from one; it is then the deployer's choice.
	OriginsParameter string
	OriginsDelimiter string

	AllowMethods  []string
	AllowHeaders  []string
	ExposeHeaders []string
	// MaxAge is Access-Control-Max-Age in seconds; 0 when the template sets
	// none (API Gateway then sends no such header).
	MaxAge           int
	AllowCredentials bool
}

// HttpApiCors returns the CorsConfiguration of the HTTP API id. ok is false
// when the API has none. A configuration switched by a condition (!If [C,
// {...}, !Ref AWS::NoValue]) is returned as it is when the condition holds.
// Anything CloudFormation would only resolve at deploy time, other than
// origins split from a parameter, is an error: a local tool could not apply
// it.
func (t Template) HttpApiCors(id string) (c Cors, ok bool, err error) {
	if typ := t.Type(id); typ != "AWS::Serverless::HttpApi" {
		return c, false, fmt.Errorf("%s is %q, not an AWS::Serverless::HttpApi", id, typ)
	}
	raw, present := t.Properties(id)["CorsConfiguration"]
	if !present {
		return c, false, nil
	}
	alts := Alternatives(raw)
	switch {
	case len(alts) == 0:
		return c, false, nil
	case len(alts) > 1:
		return c, false, fmt.Errorf("%s CorsConfiguration: %d different configurations depending on conditions; want one, or one and AWS::NoValue", id, len(alts))
	}
	if b, isBool := alts[0].(bool); isBool {
		// SAM's shorthand: true allows every origin.
		if b {
			c.AllowOrigins = []string{"*"}
		}
		return c, b, nil
	}
	m := AsMap(alts[0])
	if m == nil {
		return c, false, fmt.Errorf("%s CorsConfiguration is neither a mapping nor a boolean: %v", id, alts[0])
	}
	field := func(name string) ([]string, error) {
		list, err := stringList(m[name])
		if err != nil {
			return nil, fmt.Errorf("%s CorsConfiguration.%s: %w", id, name, err)
		}
		return list, nil
	}
	if delim, param, isSplit := splitOfRef(m["AllowOrigins"]); isSplit {
		c.OriginsDelimiter, c.OriginsParameter = delim, param
	} else if c.AllowOrigins, err = field("AllowOrigins"); err != nil {
		return c, false, err
	}
	if c.AllowMethods, err = field("AllowMethods"); err != nil {
		return c, false, err
	}
	if c.AllowHeaders, err = field("AllowHeaders"); err != nil {
		return c, false, err
	}
	if c.ExposeHeaders, err = field("ExposeHeaders"); err != nil {
		return c, false, err
	}
	if v, set := m["MaxAge"]; set {
		var isInt bool
		if c.MaxAge, isInt = Int(v); !isInt {
			return c, false, fmt.Errorf("%s CorsConfiguration.MaxAge is not a literal number: %v", id, v)
		}
	}
	if v, set := m["AllowCredentials"]; set {
		var isBool bool
		if c.AllowCredentials, isBool = v.(bool); !isBool {
			return c, false, fmt.Errorf("%s CorsConfiguration.AllowCredentials is not a literal boolean: %v", id, v)
		}
	}
	return c, true, nil
}

// Origins returns the allowed origins, splitting value (the parameter's
// value) when they come from a parameter, as CloudFormation's Fn::Split
// does.
func (c Cors) Origins(value string) []string {
	if c.OriginsParameter == "" {
		return c.AllowOrigins
	}
	return strings.Split(value, c.OriginsDelimiter)
}

// splitOfRef recognises {"Fn::Split": [delimiter, {"Ref": parameter}]}.
func splitOfRef(v any) (delimiter, parameter string, ok bool) {
	name, arg, isFn := Intrinsic(v)
	if !isFn || name != "Fn::Split" {
		return "", "", false
	}
	parts := AsList(arg)
	if len(parts) != 2 {
		return "", "", false
	}
	delimiter, ok1 := parts[0].(string)
	parameter, ok2 := Ref(parts[1])
	return delimiter, parameter, ok1 && ok2 && delimiter != ""
}

// stringList returns a literal list of strings; nil stays nil.
func stringList(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, fmt.Errorf("not a literal list: %v", v)
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, isString := e.(string)
		if !isString {
			return nil, fmt.Errorf("entry %v is not a literal string", e)
		}
		out = append(out, s)
	}
	return out, nil
}

// sqsAttributeProperties are the AWS::SQS::Queue properties that are SQS
// queue attributes of the same name and meaning. Encryption and tags mean
// nothing to a local emulator and are left out.
var sqsAttributeProperties = []string{
	"DelaySeconds",
	"MaximumMessageSize",
	"MessageRetentionPeriod",
	"ReceiveMessageWaitTimeSeconds",
	"VisibilityTimeout",
}

// SQSQueue is what an AWS::SQS::Queue resource asks of SQS.
type SQSQueue struct {
	// Attributes are the queue attributes the resource sets, as
	// CreateQueue takes them (VisibilityTimeout: "360", ...).
	Attributes map[string]string
	// DeadLetterQueue is the logical id of the queue its RedrivePolicy
	// moves messages to after MaxReceiveCount receives; "" without one.
	DeadLetterQueue string
	MaxReceiveCount int
}

// SQSQueue returns the queue settings of the AWS::SQS::Queue id. Values
// that only deploy time resolves (a Ref to a parameter) are an error: a
// local tool could not apply them.
func (t Template) SQSQueue(id string) (SQSQueue, error) {
	q := SQSQueue{Attributes: map[string]string{}}
	if typ := t.Type(id); typ != "AWS::SQS::Queue" {
		return q, fmt.Errorf("%s is %q, not an AWS::SQS::Queue", id, typ)
	}
	props := t.Properties(id)
	if fifo, _ := props["FifoQueue"].(bool); fifo {
		return q, fmt.Errorf("%s is a FIFO queue, which this reader does not support", id)
	}
	for _, name := range sqsAttributeProperties {
		v, set := props[name]
		if !set {
			continue
		}
		n, ok := Int(v)
		if !ok {
			return q, fmt.Errorf("%s %s is not a literal number: %v", id, name, v)
		}
		q.Attributes[name] = strconv.Itoa(n)
	}
	rp, set := props["RedrivePolicy"]
	if !set {
		return q, nil
	}
	policy := AsMap(rp)
	dlq, attr, ok := GetAtt(policy["deadLetterTargetArn"])
	if !ok || attr != "Arn" {
		return q, fmt.Errorf("%s RedrivePolicy.deadLetterTargetArn is %v, want !GetAtt <queue>.Arn", id, policy["deadLetterTargetArn"])
	}
	if typ := t.Type(dlq); typ != "AWS::SQS::Queue" {
		return q, fmt.Errorf("%s RedrivePolicy.deadLetterTargetArn names %s, which is %q, not an AWS::SQS::Queue", id, dlq, typ)
	}
	if q.MaxReceiveCount, ok = Int(policy["maxReceiveCount"]); !ok || q.MaxReceiveCount < 1 {
		return q, fmt.Errorf("%s RedrivePolicy.maxReceiveCount is %v, want a literal number of at least 1", id, policy["maxReceiveCount"])
	}
	q.DeadLetterQueue = dlq
	return q, nil
}
