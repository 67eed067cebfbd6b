// Package metrics puts CloudWatch metrics into the JSON log lines the
// functions already write, in the CloudWatch Embedded Metric Format (EMF):
// CloudWatch Logs extracts them from the log group, so a metric costs no
// call, no client and no credentials, and a request's one log line carries
// both what a person reads and what a dashboard plots.
//
// An EMF document is a JSON object with a "_aws" member that names the
// metrics, and the metric values and dimension values as top-level members
// of the same object:
//
//	{"message": "delete threads", "Endpoint": "delete", "Requests": 1,
//	 "_aws": {"Timestamp": 1700000000000, "CloudWatchMetrics": [{"Namespace": "ThreadDelete",
//	          "Dimensions": [["Endpoint"]], "Metrics": [{"Name": "Requests", "Unit": "Count"}]}]}}
//
// Doc builds those members as slog attributes, to be added to a log record
// written by a JSON handler (lambdacontext.NewLogger in the functions).
// Every metric the service emits is declared once, with its unit and
// dimensions, in catalog.go; the template's dashboard and alarms and the
// tests are held to that catalog. Extract reads a document back as
// CloudWatch would.
//
// Go libraries for EMF exist, but they write lines of their own to stdout;
// the format is small enough that making the existing line the document is
// simpler than adding a second line per request.
package metrics

import (
	"log/slog"
	"math"
	"strings"
	"time"
)

// Unit is a CloudWatch metric unit.
type Unit string

// The units the service uses.
const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
	Seconds      Unit = "Seconds"
)

// DefaultNamespace is the CloudWatch namespace when METRICS_NAMESPACE is
// unset.
const DefaultNamespace = "ThreadDelete"

// maxValues is the most values one metric may carry in one document (EMF
// spec); further values are dropped.
const maxValues = 100

// Doc is the metrics of one log line. Build it with New, Dimension and Put,
// then add Attrs to the record. It is not safe for concurrent use.
type Doc struct {
	namespace string
	at        time.Time
	dims      map[string]string
	puts      []put
}

type put struct {
	def    Def
	values []float64
}

// New starts the metrics of one log line, timestamped now, in namespace
// (DefaultNamespace when empty).
func New(namespace string) *Doc {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	return &Doc{namespace: namespace, at: time.Now(), dims: map[string]string{}}
}

// Dimension sets the value of a dimension for every metric of the line that
// is declared with it. CloudWatch refuses an empty dimension value, so ""
// becomes "none".
func (d *Doc) Dimension(name, value string) *Doc {
	if value == "" {
		value = "none"
	}
	d.dims[name] = value
	return d
}

// Put records values of a metric. Several values of one metric in one line
// are several samples (a batch's latencies, say): CloudWatch computes its
// statistics over each. Values that are not finite numbers are dropped.
func (d *Doc) Put(def Def, values ...float64) *Doc {
	var p *put
	for i := range d.puts {
		if d.puts[i].def.Name == def.Name {
			p = &d.puts[i]
		}
	}
	if p == nil {
		d.puts = append(d.puts, put{def: def})
		p = &d.puts[len(d.puts)-1]
	}
	for _, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) && len(p.values) < maxValues {
			p.values = append(p.values, v)
		}
	}
	return d
}

// metadata is the "_aws" member.
type metadata struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

type directive struct {
	Namespace  string       `json:"Namespace"`
	Dimensions [][]string   `json:"Dimensions"`
	Metrics    []definition `json:"Metrics"`
}

type definition struct {
	Name string `json:"Name"`
	Unit Unit   `json:"Unit"`
}

// Attrs returns the members of the EMF document as slog attributes: the
// "_aws" metadata (one directive per dimension set), every dimension value
// used, and every metric's value (a number, or an array for several
// values). Metrics without a value are left out. A dimension a metric is
// declared with but whose value was never set is "unknown".
func (d *Doc) Attrs() []any {
	var (
		dirs  []directive
		index = map[string]int{} // dimension set → directive
		attrs []any
		used  = map[string]bool{}
	)
	for _, p := range d.puts {
		if len(p.values) == 0 {
			continue
		}
		key := strings.Join(p.def.Dims, "\x00")
		i, ok := index[key]
		if !ok {
			i = len(dirs)
			index[key] = i
			dirs = append(dirs, directive{Namespace: d.namespace, Dimensions: [][]string{append([]string{}, p.def.Dims...)}})
			for _, dim := range p.def.Dims {
				if !used[dim] {
					used[dim] = true
					v, ok := d.dims[dim]
					if !ok {
						v = "unknown"
					}
					attrs = append(attrs, slog.String(dim, v))
				}
			}
		}
		dirs[i].Metrics = append(dirs[i].Metrics, definition{Name: p.def.Name, Unit: p.def.Unit})
		if len(p.values) == 1 {
			attrs = append(attrs, slog.Float64(p.def.Name, p.values[0]))
		} else {
			attrs = append(attrs, slog.Any(p.def.Name, p.values))
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	return append(attrs, slog.Any("_aws", metadata{Timestamp: d.at.UnixMilli(), CloudWatchMetrics: dirs}))
}

// InSeconds is d in seconds, to the millisecond (1.723, not
// 1.7229999999999999 in the log line).
func InSeconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond).Milliseconds()) / 1000
}
