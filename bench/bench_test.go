package bench

import "testing"

// The benchmarks, in the order `make bench` runs and prints them. Each one
// loops over its own samples, prints its tables and ignores b.N: run them
// with -benchtime 1x, as `make bench` does.

// BenchmarkLatency: p50/p99 of our delete and of the original's call
// sequence, 0 and 1 ms per round trip.
func BenchmarkLatency(b *testing.B) { benchLatency(b) }

// BenchmarkBreakdown: where the time of our delete goes, phase by phase.
func BenchmarkBreakdown(b *testing.B) { benchBreakdown(b) }

// BenchmarkRoundTrips: round trips per request to PostgreSQL, Redis and
// SQS, counted at the proxies; the Redis and SQS follow-ups overlap.
func BenchmarkRoundTrips(b *testing.B) { benchRoundTrips(b) }

// BenchmarkScale: threads of 1k, 10k and 100k messages through the
// Deleter: time and client memory.
func BenchmarkScale(b *testing.B) { benchScale(b) }

// BenchmarkOrder: orders of the deletes inside the transaction, and the
// cost of the message-counter trigger.
func BenchmarkOrder(b *testing.B) { benchOrder(b) }

// BenchmarkLambda: binary sizes, init time and resident memory of the
// delete-thread function under aws-lambda-rie.
func BenchmarkLambda(b *testing.B) { benchLambda(b) }

// BenchmarkThroughput: deletes per second with 1 and 4 concurrent function
// instances, and what bounds the rate.
func BenchmarkThroughput(b *testing.B) { benchThroughput(b) }
