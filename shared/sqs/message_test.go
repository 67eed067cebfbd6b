package sqs_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

const jobID = "0b7e2f4c-1d2a-4c3b-9e8f-a1b2c3d4e5f6"

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    sqs.Message
		wantErr error // nil: success; errAny: any error
	}{
		{"teardown", `{"version":1,"kind":"sandbox_teardown","job_id":"` + jobID + `","project_id":"p","account_id":"a","sandbox_id":"sb-1","thread_id":"t","requested_at":"2025-01-02T03:04:05Z"}`,
			sqs.Message{Version: 1, Kind: "sandbox_teardown", JobID: jobID, Teardown: threads.Teardown{ProjectID: "p", AccountID: "a", SandboxID: "sb-1", ThreadID: "t", RequestedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}}, nil},
		{"cache repair with job id only", `{"version":1,"kind":"cache_repair","job_id":"` + jobID + `"}`,
			sqs.Message{Version: 1, Kind: "cache_repair", JobID: jobID}, nil},
		{"upper-case job id is canonicalised", `{"version":1,"kind":"cache_repair","job_id":"` + strings.ToUpper(jobID) + `"}`,
			sqs.Message{Version: 1, Kind: "cache_repair", JobID: jobID}, nil},
		{"unknown fields are ignored", `{"version":1,"kind":"cache_repair","job_id":"` + jobID + `","trace":"x"}`,
			sqs.Message{Version: 1, Kind: "cache_repair", JobID: jobID}, nil},
		{"surrounding whitespace", " \n{\"version\":1,\"kind\":\"cache_repair\",\"job_id\":\"" + jobID + "\"}\n",
			sqs.Message{Version: 1, Kind: "cache_repair", JobID: jobID}, nil},

		{"no version", `{"kind":"cache_repair","job_id":"` + jobID + `"}`, sqs.Message{}, sqs.ErrVersion},
		{"future version", `{"version":2,"kind":"cache_repair","job_id":"` + jobID + `"}`, sqs.Message{}, sqs.ErrVersion},
		{"unknown kind", `{"version":1,"kind":"reboot","job_id":"` + jobID + `"}`, sqs.Message{}, sqs.ErrKind},
		{"no job id", `{"version":1,"kind":"sandbox_teardown"}`, sqs.Message{}, sqs.ErrJobID},
		{"job id not a uuid", `{"version":1,"kind":"sandbox_teardown","job_id":"42"}`, sqs.Message{}, sqs.ErrJobID},
		{"empty body", ``, sqs.Message{}, errAny},
		{"not an object", `[1,2]`, sqs.Message{}, errAny},
		{"null", `null`, sqs.Message{}, errAny},
		{"trailing data", `{"version":1,"kind":"cache_repair","job_id":"` + jobID + `"} {}`, sqs.Message{}, errAny},
		{"version as string", `{"version":"1","kind":"cache_repair","job_id":"` + jobID + `"}`, sqs.Message{}, errAny},
		{"bad time", `{"version":1,"kind":"sandbox_teardown","job_id":"` + jobID + `","requested_at":"yesterday"}`, sqs.Message{}, errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sqs.Parse([]byte(tc.body))
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.wantErr == nil:
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("got %+v\nwant %+v", got, tc.want)
				}
			case err == nil:
				t.Fatalf("accepted: %+v", got)
			case tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestEncodeRoundTrip(t *testing.T) {
	td := threads.Teardown{JobID: jobID, ProjectID: "p", AccountID: "a", SandboxID: "sb", ResourceID: "r", ThreadID: "t",
		RequestedAt: time.Date(2025, 5, 6, 7, 8, 9, 123000000, time.FixedZone("x", 3600))}
	body, err := sqs.Encode(sqs.TeardownMessage(td))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(body, &raw) //nolint:errcheck
	if raw["version"] != 1.0 || raw["kind"] != "sandbox_teardown" || raw["job_id"] != jobID || raw["requested_at"] != "2025-05-06T06:08:09.123Z" || len(raw) != 9 {
		t.Fatalf("body %s", body)
	}
	m, err := sqs.Parse(body)
	if err != nil || m.SandboxID != "sb" || m.ResourceID != "r" || !m.RequestedAt.Equal(td.RequestedAt) {
		t.Fatalf("round trip: %+v %v", m, err)
	}

	if _, err := sqs.Encode(sqs.Message{Version: 1, Kind: "sandbox_teardown"}); !errors.Is(err, sqs.ErrJobID) {
		t.Fatalf("Encode without job id: %v", err)
	}
}

func TestEntryMessage(t *testing.T) {
	payload, _ := json.Marshal(threads.Teardown{SandboxID: "sb", ProjectID: "p"})
	tests := []struct {
		e    cleanup.Entry
		want sqs.Message
	}{
		{cleanup.Entry{ID: jobID, Kind: cleanup.KindTeardown, Payload: payload},
			sqs.Message{Version: 1, Kind: "sandbox_teardown", JobID: jobID, Teardown: threads.Teardown{SandboxID: "sb", ProjectID: "p"}}},
		{cleanup.Entry{ID: jobID, Kind: cleanup.KindCacheRepair, Payload: json.RawMessage(`{"account_id":"a"}`)},
			sqs.Message{Version: 1, Kind: "cache_repair", JobID: jobID}},
		{cleanup.Entry{ID: jobID, Kind: cleanup.KindTeardown, Payload: json.RawMessage(`"garbage"`)},
			sqs.Message{Version: 1, Kind: "sandbox_teardown", JobID: jobID}},
	}
	for _, tc := range tests {
		if got := sqs.EntryMessage(tc.e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("EntryMessage(%s) = %+v, want %+v", tc.e.Payload, got, tc.want)
		}
	}
}

// FuzzParse checks that Parse never panics, that whatever it accepts is
// valid, and that an accepted message survives Encode and Parse unchanged.
func FuzzParse(f *testing.F) {
	seeds := []string{
		`{"version":1,"kind":"sandbox_teardown","job_id":"` + jobID + `","project_id":"p","account_id":"a","sandbox_id":"sb-1","thread_id":"t","requested_at":"2025-01-02T03:04:05Z"}`,
		`{"version":1,"kind":"cache_repair","job_id":"` + jobID + `"}`,
		`{"version":2,"kind":"cache_repair","job_id":"` + jobID + `"}`,
		`{"version":1,"kind":"cache_repair","job_id":"not-a-uuid"}`,
		`{"version":1,"kind":"sandbox_teardown","job_id":"` + strings.ToUpper(jobID) + `","resource_id":null}`,
		`{"version":1e0,"kind":"cache_repair","job_id":"` + jobID + `"}`,
		`{}`, `null`, `[]`, `"x"`, ``, `{"version":1}{"version":1}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := sqs.Parse(body)
		if err != nil {
			return
		}
		if m.Version != sqs.Version || (m.Kind != sqs.KindTeardown && m.Kind != sqs.KindCacheRepair) {
			t.Fatalf("accepted invalid message %+v", m)
		}
		if id, err := threads.ParseID(m.JobID); err != nil || id != m.JobID {
			t.Fatalf("accepted job id %q", m.JobID)
		}
		again, err := sqs.Encode(m)
		if err != nil {
			t.Fatalf("cannot encode an accepted message: %v", err)
		}
		m2, err := sqs.Parse(again)
		if err != nil {
			t.Fatalf("cannot parse its own encoding %s: %v", again, err)
		}
		if m.RequestedAt.Equal(m2.RequestedAt) {
			m2.RequestedAt = m.RequestedAt
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
		}
	})
}
