package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Datum is one metric value set as CloudWatch extracts it from a document:
// per directive, per dimension set, per metric.
type Datum struct {
	Namespace  string
	Name       string
	Unit       Unit
	Dimensions map[string]string
	Values     []float64
	Timestamp  time.Time
}

// units are the valid CloudWatch units (the EMF JSON schema's list).
var units = []Unit{"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
	"Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
	"Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
	"Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
	"Count/Second", "None"}

// ErrNotEMF is returned by Extract for a JSON object without "_aws".
var ErrNotEMF = errors.New("metrics: not an EMF document (no _aws member)")

// Extract reads one log line as CloudWatch Logs reads an EMF document and
// returns the metric data it yields, or the first rule of the
// specification the line breaks: the root is one JSON object; "_aws" holds
// an integer Timestamp (ms) and CloudWatchMetrics; each directive has a
// Namespace (1–255 characters), at least one dimension set of at most 9
// keys, each a top-level string member, and at most 100 metrics, each with
// a valid unit and a top-level number or array of at most 100 numbers.
// A line that is JSON but has no "_aws" gives ErrNotEMF.
func Extract(line []byte) ([]Datum, error) {
	var root map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("metrics: root is not a JSON object: %w", err)
	}
	raw, ok := root["_aws"]
	if !ok {
		return nil, ErrNotEMF
	}
	var meta struct {
		Timestamp         *json.Number
		CloudWatchMetrics *[]struct {
			Namespace  string
			Dimensions [][]string
			Metrics    []struct {
				Name string
				Unit *Unit
			}
		}
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("metrics: _aws: %w", err)
	}
	if meta.Timestamp == nil || meta.CloudWatchMetrics == nil {
		return nil, errors.New("metrics: _aws needs Timestamp and CloudWatchMetrics")
	}
	ms, err := meta.Timestamp.Int64()
	if err != nil {
		return nil, fmt.Errorf("metrics: _aws.Timestamp %s is not an integer", *meta.Timestamp)
	}
	var out []Datum
	for _, d := range *meta.CloudWatchMetrics {
		if n := len(d.Namespace); n == 0 || n > 255 {
			return nil, fmt.Errorf("metrics: namespace %q must have 1 to 255 characters", d.Namespace)
		}
		if len(d.Dimensions) == 0 {
			return nil, errors.New("metrics: a directive needs at least one dimension set")
		}
		if len(d.Metrics) > 100 {
			return nil, fmt.Errorf("metrics: %d metrics in one directive, at most 100", len(d.Metrics))
		}
		for _, set := range d.Dimensions {
			if len(set) > 9 {
				return nil, fmt.Errorf("metrics: dimension set %v has more than 9 keys", set)
			}
			dims := map[string]string{}
			for _, key := range set {
				var v string
				if err := json.Unmarshal(root[key], &v); err != nil || v == "" {
					return nil, fmt.Errorf("metrics: dimension %q is not a non-empty top-level string", key)
				}
				dims[key] = v
			}
			for _, m := range d.Metrics {
				unit := Unit("None")
				if m.Unit != nil {
					unit = *m.Unit
				}
				if !slices.Contains(units, unit) {
					return nil, fmt.Errorf("metrics: metric %s has invalid unit %q", m.Name, unit)
				}
				values, err := metricValues(root[m.Name])
				if err != nil {
					return nil, fmt.Errorf("metrics: metric %q: %w", m.Name, err)
				}
				out = append(out, Datum{Namespace: d.Namespace, Name: m.Name, Unit: unit, Dimensions: dims,
					Values: values, Timestamp: time.UnixMilli(ms)})
			}
		}
	}
	return out, nil
}

// metricValues reads a metric target: a number or an array of 1 to 100
// numbers.
func metricValues(raw json.RawMessage) ([]float64, error) {
	if raw == nil || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, errors.New("no top-level member holds its value")
	}
	var one float64
	if err := json.Unmarshal(raw, &one); err == nil {
		return []float64{one}, nil
	}
	var many []float64
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("value is neither a number nor an array of numbers")
	}
	if len(many) == 0 || len(many) > maxValues {
		return nil, fmt.Errorf("%d values, want 1 to %d", len(many), maxValues)
	}
	return many, nil
}
