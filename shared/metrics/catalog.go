package metrics

import (
	"fmt"
	"slices"
)

// Def declares one metric: its name, unit and the dimensions it is
// published with. Each name has exactly one declaration, below.
//
// Dimensions are few on purpose: every combination of dimension values is
// a custom metric CloudWatch bills for, so no id is ever a dimension and
// each dimension takes a handful of values.
type Def struct {
	Name string
	Unit Unit
	Dims []string
}

// Dimensions.
const (
	// DimEndpoint is the API route: "delete" or "bulk_delete".
	DimEndpoint = "Endpoint"
	// DimOutcome is how a request ended: deleted, not_found, forbidden,
	// processed (bulk), invalid_id, invalid_body, unauthenticated,
	// unavailable, error, method_not_allowed.
	DimOutcome = "Outcome"
	// DimKind is an outbox row's kind: sandbox_teardown, redis_work,
	// cache_repair (legacy), or unknown.
	DimKind = "Kind"
	// DimResult is what the cleanup worker made of one queued job; see the
	// Result* constants of package cleanup.
	DimResult = "Result"
)

// Metrics of the delete-thread function: one request, one log line.
var (
	// Requests counts requests (1 per line).
	Requests = Def{"Requests", Count, []string{DimEndpoint, DimOutcome}}
	// Duration is the handler's time for the request.
	Duration = Def{"Duration", Milliseconds, []string{DimEndpoint}}
	// ThreadsDeleted counts the threads a request deleted, sub-agent
	// threads included.
	ThreadsDeleted = Def{"ThreadsDeleted", Count, []string{DimEndpoint}}
	// ProjectsDeleted counts the projects left empty and deleted.
	ProjectsDeleted = Def{"ProjectsDeleted", Count, []string{DimEndpoint}}
	// TeardownsQueued counts sandbox teardowns handed to the queue right
	// after the commit.
	TeardownsQueued = Def{"TeardownsQueued", Count, []string{DimEndpoint}}
	// TeardownsDeferred counts teardowns whose send failed (all of a
	// request's, when any of its sends failed): the sweeper re-sends them.
	TeardownsDeferred = Def{"TeardownsDeferred", Count, []string{DimEndpoint}}
	// RedisWorkInline counts deletes whose Redis follow-up was applied
	// inline (0 or 1 per request).
	RedisWorkInline = Def{"RedisWorkInline", Count, []string{DimEndpoint}}
	// RedisWorkDeferred counts deletes whose Redis follow-up failed inline
	// and is left to the sweeper.
	RedisWorkDeferred = Def{"RedisWorkDeferred", Count, []string{DimEndpoint}}
)

// Metrics of the cleanup worker: one line per kind and result in a batch.
var (
	// Jobs counts queued jobs by kind and result.
	Jobs = Def{"Jobs", Count, []string{DimKind, DimResult}}
	// Attempts is, for each job the worker claimed, the number of the
	// attempt it made (1 for the first): one sample per job.
	Attempts = Def{"Attempts", Count, []string{DimKind}}
	// TeardownLatency is, for each sandbox torn down, the time from the
	// delete's commit (the outbox row's creation) to Daytona accepting the
	// delete: one sample per teardown.
	TeardownLatency = Def{"TeardownLatency", Seconds, []string{}}
)

// Metrics of the outbox sweep: one line per sweep. The backlog figures
// come from one aggregate query at the end of the sweep.
var (
	// PendingTeardowns counts sandbox teardowns not completed yet.
	PendingTeardowns = Def{"PendingTeardowns", Count, []string{}}
	// PendingRedisWork counts Redis follow-ups not marked done yet (every
	// delete's stays pending for the sweeper's grace period, a minute by
	// default, even when it was applied inline).
	PendingRedisWork = Def{"PendingRedisWork", Count, []string{}}
	// OldestPendingTeardownAge is the age of the oldest pending teardown
	// (0 when none is pending).
	OldestPendingTeardownAge = Def{"OldestPendingTeardownAge", Seconds, []string{}}
	// OldestPendingRedisWorkAge is the age of the oldest pending Redis
	// follow-up (0 when none is pending).
	OldestPendingRedisWorkAge = Def{"OldestPendingRedisWorkAge", Seconds, []string{}}
	// DeadRows counts outbox rows given up on, of every kind: each needs an
	// operator (docs/operations.md).
	DeadRows = Def{"DeadRows", Count, []string{}}
	// TeardownsResent counts teardowns the sweep put back on the queue.
	TeardownsResent = Def{"TeardownsResent", Count, []string{}}
	// RowsMarkedDead counts rows the sweep gave up on in this sweep.
	RowsMarkedDead = Def{"RowsMarkedDead", Count, []string{}}
	// RedisWorkCompleted counts Redis follow-ups the sweep marked done
	// (found applied, or repaired).
	RedisWorkCompleted = Def{"RedisWorkCompleted", Count, []string{}}
	// RowsPruned counts done rows past the retention that the sweep
	// deleted.
	RowsPruned = Def{"RowsPruned", Count, []string{}}
)

// Catalog lists every metric the service emits.
func Catalog() []Def {
	return []Def{
		Requests, Duration, ThreadsDeleted, ProjectsDeleted, TeardownsQueued, TeardownsDeferred,
		RedisWorkInline, RedisWorkDeferred,
		Jobs, Attempts, TeardownLatency,
		PendingTeardowns, PendingRedisWork, OldestPendingTeardownAge, OldestPendingRedisWorkAge,
		DeadRows, TeardownsResent, RowsMarkedDead, RedisWorkCompleted, RowsPruned,
	}
}

// Lookup returns the declaration of the metric called name.
func Lookup(name string) (Def, bool) {
	for _, d := range Catalog() {
		if d.Name == name {
			return d, true
		}
	}
	return Def{}, false
}

// Conforms reports whether an extracted datum is a metric of the catalog,
// with its declared unit and exactly its declared dimensions.
func (d Datum) Conforms() error {
	def, ok := Lookup(d.Name)
	if !ok {
		return fmt.Errorf("metric %q is not in the catalog", d.Name)
	}
	if d.Unit != def.Unit {
		return fmt.Errorf("metric %s has unit %q, declared %q", d.Name, d.Unit, def.Unit)
	}
	var keys []string
	for k := range d.Dimensions {
		keys = append(keys, k)
	}
	want := slices.Clone(def.Dims)
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		return fmt.Errorf("metric %s has dimensions %v, declared %v", d.Name, keys, want)
	}
	return nil
}
