// Package bench holds the service's benchmarks, run by `make bench`:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench
//
// Each benchmark measures one property the service promises — latency
// under the Lambda runtime emulator against the physical floor and a replay
// of the original Kortix handler, where the difference goes (PostgreSQL per
// statement, WAL, the Go side's CPU), bulk against one-by-one deletes, round
// trips per request, cost against thread size and the longest thread the
// deadline allows, cold start and footprint, throughput on this machine —
// and prints what it measured as a table. They run once (-benchtime 1x):
// every benchmark loops over its own samples and reports percentiles, since
// b.N-style averaging would hide the tail that matters for latency.
//
// The package has no tests: `make test` compiles it and runs nothing.
// docs/benchmarks.md records the figures of the latest run.
package bench
