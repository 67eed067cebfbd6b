package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/shared/sqs"
)

// redriver moves the messages of the dead-letter queue back to the queue
// with the plain SQS calls, ten at a time: receive a batch from the DLQ
// (hidden from other readers while it is moved), send it to the queue in
// one SendMessageBatch, delete from the DLQ, in one DeleteMessageBatch,
// exactly the messages the queue accepted. A message the queue refused
// stays in the DLQ and becomes visible again after the visibility timeout.
//
// Each message is sent once per run: the run remembers the messages it has
// sent, and one that is received again (its delete failed) is only
// deleted. A message sent whose delete failed and that reappears only after
// the run is sent again by the next run: a duplicate delivery, which the
// worker acknowledges without a second teardown.
//
// On AWS, StartMessageMoveTask does the same server-side (`aws sqs
// start-message-move-task --source-arn <DLQ ARN>`, the destination being
// the queue the messages came from); the local SQS emulator does not
// implement it, and this works on both.
type redriver struct {
	client   *awssqs.Client
	from, to string
	out      io.Writer
	max      int // most messages to move; 0: all
	// visibility hides a received batch while it is moved; long enough
	// for one send and one delete. Zero: 60 s.
	visibility int32
}

// run moves messages until the DLQ has none visible (or max were moved).
func (r *redriver) run(ctx context.Context) error {
	visibility := r.visibility
	if visibility == 0 {
		visibility = 60
	}
	sent := map[string]bool{} // message ids sent to the queue by this run
	moved, refused, undeleted := 0, 0, 0
	for r.max == 0 || moved < r.max {
		want := int32(10)
		if r.max > 0 {
			want = int32(min(10, r.max-moved))
		}
		out, err := r.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
			QueueUrl:              aws.String(r.from),
			MaxNumberOfMessages:   want,
			WaitTimeSeconds:       1, // long polling: an empty answer means the DLQ has none visible
			VisibilityTimeout:     visibility,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return fmt.Errorf("redrive: receive from the dead-letter queue: %w (%d moved before)", err, moved)
		}
		if len(out.Messages) == 0 {
			break
		}
		var (
			entries []types.SendMessageBatchRequestEntry
			byEntry = map[string]types.Message{}
			deletes []types.Message
		)
		for i, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if sent[id] {
				deletes = append(deletes, m) // sent before; its delete failed
				continue
			}
			key := strconv.Itoa(i)
			byEntry[key] = m
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id: aws.String(key), MessageBody: m.Body, MessageAttributes: m.MessageAttributes,
			})
		}
		if len(entries) > 0 {
			res, err := r.client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(r.to), Entries: entries})
			if err != nil {
				return fmt.Errorf("redrive: send %d messages to the queue: %w (%d moved before; these stay in the dead-letter queue)", len(entries), err, moved)
			}
			for _, f := range res.Failed {
				m := byEntry[aws.ToString(f.Id)]
				refused++
				fmt.Fprintf(r.out, "not moved %s%s: the queue refused it (%s %s); it stays in the dead-letter queue\n",
					aws.ToString(m.MessageId), describe(m), aws.ToString(f.Code), aws.ToString(f.Message))
			}
			for _, ok := range res.Successful {
				m := byEntry[aws.ToString(ok.Id)]
				sent[aws.ToString(m.MessageId)] = true
				deletes = append(deletes, m)
			}
			if len(res.Successful) == 0 {
				break // the queue refuses everything: stop rather than spin
			}
		}
		n, err := r.delete(ctx, deletes)
		moved += n
		undeleted += len(deletes) - n
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(r.out, "%d message(s) moved from the dead-letter queue to the queue\n", moved)
	if refused > 0 || undeleted > 0 {
		return fmt.Errorf("%w: %d message(s) refused by the queue, %d sent but left in the dead-letter queue", errIncomplete, refused, undeleted)
	}
	return nil
}

// delete removes messages now in the queue from the DLQ and prints each;
// it returns how many were deleted.
func (r *redriver) delete(ctx context.Context, ms []types.Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	entries := make([]types.DeleteMessageBatchRequestEntry, len(ms))
	for i, m := range ms {
		entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	res, err := r.client.DeleteMessageBatch(ctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(r.from), Entries: entries})
	if err != nil {
		return 0, fmt.Errorf("redrive: %d messages are in the queue but still in the dead-letter queue (delete failed: %w); run redrive again later: they are delivered once more, which the worker tolerates", len(ms), err)
	}
	for _, f := range res.Failed {
		i, _ := strconv.Atoi(aws.ToString(f.Id))
		fmt.Fprintf(r.out, "sent %s%s to the queue, but it is still in the dead-letter queue (delete failed: %s); a later redrive sends it again, a duplicate the worker tolerates\n",
			aws.ToString(ms[i].MessageId), describe(ms[i]), aws.ToString(f.Code))
	}
	for _, ok := range res.Successful {
		i, _ := strconv.Atoi(aws.ToString(ok.Id))
		fmt.Fprintf(r.out, "moved %s%s\n", aws.ToString(ms[i].MessageId), describe(ms[i]))
	}
	if len(res.Successful) == 0 && len(res.Failed) > 0 {
		return 0, errors.New("redrive: the dead-letter queue refuses every delete; stopping")
	}
	return len(res.Successful), nil
}

// describe names the job a message carries, when it is a valid job.
func describe(m types.Message) string {
	msg, err := sqs.Parse([]byte(aws.ToString(m.Body)))
	if err != nil {
		return " (not a valid job message)"
	}
	return fmt.Sprintf(" (%s %s)", msg.Kind, msg.JobID)
}
