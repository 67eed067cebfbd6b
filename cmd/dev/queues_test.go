package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/internal/samtemplate"
)

// templateQueueValues reads, straight from template.yaml, the settings the
// dev queues must have.
type templateQueueValues struct {
	visibility, wait, retention, maxReceive, dlqRetention int
}

func readTemplateQueue(t *testing.T) templateQueueValues {
	t.Helper()
	tmpl, err := samtemplate.Load(filepath.Join(testenv.RepoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	props := tmpl.Properties(templateQueue)
	dlq, _, ok := samtemplate.GetAtt(samtemplate.Get(props, "RedrivePolicy", "deadLetterTargetArn"))
	if !ok {
		t.Fatalf("%s has no !GetAtt dead-letter target", templateQueue)
	}
	var v templateQueueValues
	for _, f := range []struct {
		name string
		raw  any
		dst  *int
	}{
		{"VisibilityTimeout", props["VisibilityTimeout"], &v.visibility},
		{"ReceiveMessageWaitTimeSeconds", props["ReceiveMessageWaitTimeSeconds"], &v.wait},
		{"MessageRetentionPeriod", props["MessageRetentionPeriod"], &v.retention},
		{"RedrivePolicy.maxReceiveCount", samtemplate.Get(props, "RedrivePolicy", "maxReceiveCount"), &v.maxReceive},
		{dlq + ".MessageRetentionPeriod", tmpl.Properties(dlq)["MessageRetentionPeriod"], &v.dlqRetention},
	} {
		n, ok := samtemplate.Int(f.raw)
		if !ok || n <= 0 {
			t.Fatalf("template %s = %v, want a literal positive number", f.name, f.raw)
		}
		*f.dst = n
	}
	return v
}

// checkQueuesMirrorTemplate reads the queues' attributes back from the
// emulator and compares them with template.yaml's values.
func checkQueuesMirrorTemplate(t *testing.T, client *awssqs.Client, q localstack.Queues) {
	t.Helper()
	want := readTemplateQueue(t)
	attrs := func(url string) map[string]string {
		out, err := client.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.Attributes
	}
	main, dlq := attrs(q.URL), attrs(q.DLQURL)
	for _, c := range []struct {
		name string
		got  string
		want int
	}{
		{"queue VisibilityTimeout", main["VisibilityTimeout"], want.visibility},
		{"queue ReceiveMessageWaitTimeSeconds", main["ReceiveMessageWaitTimeSeconds"], want.wait},
		{"queue MessageRetentionPeriod", main["MessageRetentionPeriod"], want.retention},
		{"DLQ MessageRetentionPeriod", dlq["MessageRetentionPeriod"], want.dlqRetention},
	} {
		if c.got != strconv.Itoa(c.want) {
			t.Errorf("%s = %q, want %d (template.yaml)", c.name, c.got, c.want)
		}
	}
	var redrive struct {
		Target     string          `json:"deadLetterTargetArn"`
		MaxReceive json.RawMessage `json:"maxReceiveCount"` // SQS returns a number; a string is accepted on input
	}
	if err := json.Unmarshal([]byte(main["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy %q: %v", main["RedrivePolicy"], err)
	}
	if redrive.Target != dlq["QueueArn"] || redrive.Target == "" {
		t.Errorf("RedrivePolicy target %q, want the DLQ %q", redrive.Target, dlq["QueueArn"])
	}
	if n, err := strconv.Unquote(string(redrive.MaxReceive)); err == nil {
		redrive.MaxReceive = json.RawMessage(n)
	}
	if string(redrive.MaxReceive) != strconv.Itoa(want.maxReceive) {
		t.Errorf("RedrivePolicy maxReceiveCount %s, want %d (template.yaml)", redrive.MaxReceive, want.maxReceive)
	}
}

func TestCreateQueuesMirrorTheTemplate(t *testing.T) {
	endpoint := testenv.SQS(t)
	client := testenv.SQSClient(endpoint)
	mirror, err := loadMirror(testenv.RepoRoot(t), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := func(prefix string) string { return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1e9) }

	t.Run("new queues", func(t *testing.T) {
		n := name("mirror-new")
		q, err := createQueues(ctx, client, n, n+"-dlq", mirror)
		if err != nil {
			t.Fatal(err)
		}
		checkQueuesMirrorTemplate(t, client, q)
		// Starting again on the same emulator keeps the queues.
		again, err := createQueues(ctx, client, n, n+"-dlq", mirror)
		if err != nil || again != q {
			t.Fatalf("second start: %+v, %v; want %+v", again, err, q)
		}
	})

	t.Run("queues an earlier version created", func(t *testing.T) {
		// What make dev used to create: SQS defaults but a 30 s visibility
		// timeout, and no DLQ retention.
		n := name("mirror-old")
		dlq, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(n + "-dlq")})
		if err != nil {
			t.Fatal(err)
		}
		dlqARN, err := localstack.QueueARN(ctx, client, aws.ToString(dlq.QueueUrl))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(n), Attributes: map[string]string{
			"VisibilityTimeout": "30",
			"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"5"}`, dlqARN),
		}}); err != nil {
			t.Fatal(err)
		}
		q, err := createQueues(ctx, client, n, n+"-dlq", mirror)
		if err != nil {
			t.Fatal(err)
		}
		checkQueuesMirrorTemplate(t, client, q)
	})
}
