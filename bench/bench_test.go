package bench

import "testing"

// The benchmarks, in the order `make bench` runs and prints them. Each one
// loops over its own samples, prints its tables and ignores b.N: run them
// with -benchtime 1x, as `make bench` does.

// BenchmarkLatency: p50/p90 of our delete under aws-lambda-rie against the
// physical floor and the original's call sequence, 1 ms per PostgreSQL
// reply (issue 16's table).
func BenchmarkLatency(b *testing.B) { benchLatency(b) }

// BenchmarkBreakdown: where our delete's time goes that the floor's does
// not: the in-process split, PostgreSQL per statement, WAL, the Go side's
// CPU.
func BenchmarkBreakdown(b *testing.B) { benchBreakdown(b) }

// BenchmarkBulk: multi-select — bulk deletes of 1, 10 and 100 threads
// against 10 and 100 sequential single deletes, and the floor.
func BenchmarkBulk(b *testing.B) { benchBulk(b) }

// BenchmarkRoundTrips: round trips per request to PostgreSQL, Redis and
// SQS, counted at the proxies; the Redis and SQS follow-ups overlap.
func BenchmarkRoundTrips(b *testing.B) { benchRoundTrips(b) }

// BenchmarkScale: threads of 1k to 300k messages on the production
// schema through the Deleter: time, client memory, and the longest thread
// deletable within the function's deadline.
func BenchmarkScale(b *testing.B) { benchScale(b) }

// BenchmarkLambda: binary sizes, init time and resident memory of the
// delete-thread function under aws-lambda-rie.
func BenchmarkLambda(b *testing.B) { benchLambda(b) }

// BenchmarkThroughput: deletes per second with 1 and 4 concurrent function
// instances, and what bounds the rate.
func BenchmarkThroughput(b *testing.B) { benchThroughput(b) }
