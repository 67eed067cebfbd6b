// Package bench holds the service's benchmarks, run by `make bench`:
//
//	go test -run '^$' -bench . -benchtime 1x ./bench
//
// Each benchmark measures one property the service promises — latency
// against a replay of the original Kortix handler, round trips per request,
// cost against thread size and the order of deletes inside the transaction,
// cold start and footprint under aws-lambda-rie, throughput on this machine
// — and prints what it measured as a table. They run once (-benchtime 1x):
// every benchmark loops over its own samples and reports percentiles, since
// b.N-style averaging would hide the tail that matters for latency.
//
// The package has no tests: `make test` compiles it and runs nothing.
// docs/benchmarks.md records the figures of the latest run.
package bench
