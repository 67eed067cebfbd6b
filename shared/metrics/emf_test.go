package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/metrics"
)

// line writes one record with the doc's attributes through slog's JSON
// handler, as the functions' logger does, and returns the line.
func line(t *testing.T, doc *metrics.Doc, extra ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.InfoContext(context.Background(), "some event", append(extra, doc.Attrs()...)...)
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Fatalf("%d lines written, want 1: %s", n, buf.String())
	}
	return buf.Bytes()
}

// byName indexes extracted data by metric name; a name must occur once.
func byName(t *testing.T, ds []metrics.Datum) map[string]metrics.Datum {
	t.Helper()
	out := map[string]metrics.Datum{}
	for _, d := range ds {
		if _, dup := out[d.Name]; dup {
			t.Fatalf("metric %s extracted twice", d.Name)
		}
		out[d.Name] = d
	}
	return out
}

func TestDocIsWhatCloudWatchExtracts(t *testing.T) {
	t.Parallel()
	before := time.Now().Truncate(time.Millisecond)
	doc := metrics.New("Test/NS").
		Dimension(metrics.DimEndpoint, "delete").
		Dimension(metrics.DimOutcome, "deleted").
		Put(metrics.Requests, 1).
		Put(metrics.Duration, 12.5).
		Put(metrics.ThreadsDeleted, 3).
		Put(metrics.TeardownLatency, 1.5, 2.5).
		Put(metrics.TeardownLatency, 4) // a second Put adds samples
	raw := line(t, doc, "endpoint", "delete", "requestId", "r-1")
	ds, err := metrics.Extract(raw)
	if err != nil {
		t.Fatalf("%v in %s", err, raw)
	}
	got := byName(t, ds)
	want := map[string]metrics.Datum{
		"Requests":        {Namespace: "Test/NS", Name: "Requests", Unit: metrics.Count, Dimensions: map[string]string{"Endpoint": "delete", "Outcome": "deleted"}, Values: []float64{1}},
		"Duration":        {Namespace: "Test/NS", Name: "Duration", Unit: metrics.Milliseconds, Dimensions: map[string]string{"Endpoint": "delete"}, Values: []float64{12.5}},
		"ThreadsDeleted":  {Namespace: "Test/NS", Name: "ThreadsDeleted", Unit: metrics.Count, Dimensions: map[string]string{"Endpoint": "delete"}, Values: []float64{3}},
		"TeardownLatency": {Namespace: "Test/NS", Name: "TeardownLatency", Unit: metrics.Seconds, Dimensions: map[string]string{}, Values: []float64{1.5, 2.5, 4}},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Fatalf("%s not extracted from %s", name, raw)
		}
		if g.Timestamp.Before(before) || g.Timestamp.After(time.Now()) {
			t.Errorf("%s timestamp %v not the time of the line", name, g.Timestamp)
		}
		g.Timestamp = time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %+v, want %+v", name, g, w)
		}
		if err := g.Conforms(); err != nil {
			t.Error(err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("extracted %d metrics, want %d", len(got), len(want))
	}
	// The line stays an ordinary log line: the other fields are untouched.
	var rec map[string]any
	json.Unmarshal(raw, &rec) //nolint:errcheck
	if rec["msg"] != "some event" || rec["endpoint"] != "delete" || rec["requestId"] != "r-1" {
		t.Errorf("log fields lost: %s", raw)
	}
	// One directive per dimension set, so the cost is what the catalog says.
	var meta struct {
		AWS struct {
			CloudWatchMetrics []struct{ Dimensions [][]string }
		} `json:"_aws"`
	}
	json.Unmarshal(raw, &meta) //nolint:errcheck
	var sets []string
	for _, d := range meta.AWS.CloudWatchMetrics {
		sets = append(sets, strings.Join(d.Dimensions[0], "+"))
	}
	if !slices.Equal(sets, []string{"Endpoint+Outcome", "Endpoint", ""}) {
		t.Errorf("dimension sets %q", sets)
	}
}

func TestDocEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		doc   *metrics.Doc
		check func(t *testing.T, raw []byte, ds []metrics.Datum)
	}{
		{
			name: "no values: no _aws at all",
			doc:  metrics.New("").Put(metrics.Requests),
			check: func(t *testing.T, raw []byte, ds []metrics.Datum) {
				if bytes.Contains(raw, []byte("_aws")) {
					t.Fatalf("metadata without metrics: %s", raw)
				}
			},
		},
		{
			name: "default namespace, empty and missing dimension values",
			doc:  metrics.New("").Dimension(metrics.DimEndpoint, "").Put(metrics.Requests, 1),
			check: func(t *testing.T, raw []byte, ds []metrics.Datum) {
				want := map[string]string{"Endpoint": "none", "Outcome": "unknown"}
				if len(ds) != 1 || ds[0].Namespace != metrics.DefaultNamespace || !reflect.DeepEqual(ds[0].Dimensions, want) {
					t.Fatalf("%+v", ds)
				}
			},
		},
		{
			name: "non-finite values dropped, at most 100 kept",
			doc: func() *metrics.Doc {
				d := metrics.New("").Put(metrics.TeardownLatency, math.NaN(), math.Inf(1))
				for i := range 150 {
					d.Put(metrics.TeardownLatency, float64(i))
				}
				return d
			}(),
			check: func(t *testing.T, raw []byte, ds []metrics.Datum) {
				if len(ds) != 1 || len(ds[0].Values) != 100 || ds[0].Values[0] != 0 || ds[0].Values[99] != 99 {
					t.Fatalf("%d values", len(ds[0].Values))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := line(t, tc.doc)
			ds, err := metrics.Extract(raw)
			if errors.Is(err, metrics.ErrNotEMF) {
				ds = nil
			} else if err != nil {
				t.Fatalf("%v in %s", err, raw)
			}
			tc.check(t, raw, ds)
		})
	}
}

func TestExtractRejectsWhatCloudWatchRejects(t *testing.T) {
	t.Parallel()
	const ok = `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"D":"d","M":1}`
	if _, err := metrics.Extract([]byte(ok)); err != nil {
		t.Fatalf("valid document refused: %v", err)
	}
	tests := map[string]string{
		"not an object":         `[1]`,
		"no timestamp":          `{"_aws":{"CloudWatchMetrics":[]}}`,
		"timestamp not integer": `{"_aws":{"Timestamp":1.5,"CloudWatchMetrics":[]}}`,
		"no directives":         `{"_aws":{"Timestamp":1}}`,
		"empty namespace":       `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"","Dimensions":[[]],"Metrics":[]}]}}`,
		"no dimension set":      `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[],"Metrics":[]}]}}`,
		"dimension missing":     `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"M":1}`,
		"dimension not string":  `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["D"]],"Metrics":[{"Name":"M"}]}]},"D":1,"M":1}`,
		"ten dimensions":        `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["a","b","c","d","e","f","g","h","i","j"]],"Metrics":[]}]}}`,
		"value missing":         `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]}}`,
		"value null":            `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":null}`,
		"value a string":        `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":"1"}`,
		"empty value array":     `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":[]}`,
		"invalid unit":          `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M","Unit":"Sec"}]}]},"M":1}`,
	}
	for name, doc := range tests {
		if _, err := metrics.Extract([]byte(doc)); err == nil {
			t.Errorf("%s: accepted %s", name, doc)
		}
	}
	if _, err := metrics.Extract([]byte(`{"msg":"plain"}`)); !errors.Is(err, metrics.ErrNotEMF) {
		t.Errorf("plain line: %v, want ErrNotEMF", err)
	}
}

// The catalog is what the dashboard, the alarms and the tests rely on.
func TestCatalog(t *testing.T) {
	t.Parallel()
	known := []string{metrics.DimEndpoint, metrics.DimOutcome, metrics.DimKind, metrics.DimResult}
	seen := map[string]bool{}
	for _, d := range metrics.Catalog() {
		if seen[d.Name] {
			t.Errorf("%s declared twice", d.Name)
		}
		seen[d.Name] = true
		if d.Unit != metrics.Count && d.Unit != metrics.Milliseconds && d.Unit != metrics.Seconds {
			t.Errorf("%s has unit %q", d.Name, d.Unit)
		}
		for _, dim := range d.Dims {
			if !slices.Contains(known, dim) {
				t.Errorf("%s has dimension %q outside the few the service uses", d.Name, dim)
			}
		}
		if got, ok := metrics.Lookup(d.Name); !ok || !reflect.DeepEqual(got, d) {
			t.Errorf("Lookup(%s) = %+v, %v", d.Name, got, ok)
		}
		// Every metric of the catalog survives Extract with its declaration.
		doc := metrics.New("")
		for _, dim := range d.Dims {
			doc.Dimension(dim, "x")
		}
		ds, err := metrics.Extract(line(t, doc.Put(d, 1)))
		if err != nil || len(ds) != 1 {
			t.Fatalf("%s: %v %+v", d.Name, err, ds)
		}
		if err := ds[0].Conforms(); err != nil {
			t.Error(err)
		}
	}
	if _, ok := metrics.Lookup("NoSuchMetric"); ok {
		t.Error("Lookup found an undeclared metric")
	}
	bad := metrics.Datum{Name: "Requests", Unit: metrics.Count, Dimensions: map[string]string{"Endpoint": "delete"}}
	if bad.Conforms() == nil {
		t.Error("Requests without Outcome conforms")
	}
	bad = metrics.Datum{Name: "Duration", Unit: metrics.Seconds, Dimensions: map[string]string{"Endpoint": "delete"}}
	if bad.Conforms() == nil {
		t.Error("Duration in seconds conforms")
	}
}

func TestInSeconds(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]float64{1723 * time.Millisecond: 1.723, 1722600 * time.Microsecond: 1.723, 0: 0, 90 * time.Second: 90} {
		if got := metrics.InSeconds(d); got != want {
			t.Errorf("InSeconds(%v) = %v, want %v", d, got, want)
		}
	}
}
