package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// store is the operator's view of thread_delete.outbox.
type store struct {
	pool *pgxpool.Pool
}

// listFilter selects the jobs list shows.
type listFilter struct {
	statuses []string
	kind     string
	limit    int
}

var kinds = []string{cleanup.KindTeardown, cleanup.KindRedisWork, cleanup.KindCacheRepair}

func newListFilter(status, kind string, limit int) (listFilter, error) {
	f := listFilter{kind: kind, limit: limit}
	switch status {
	case "open":
		f.statuses = []string{cleanup.StatusPending, cleanup.StatusDead}
	case "all":
		f.statuses = []string{cleanup.StatusPending, cleanup.StatusDead, cleanup.StatusDone}
	case cleanup.StatusPending, cleanup.StatusDead:
		f.statuses = []string{status}
	default:
		return f, fmt.Errorf("%w: -status must be pending, dead or all, got %q", errUsage, status)
	}
	if kind != "" && !slices.Contains(kinds, kind) {
		return f, fmt.Errorf("%w: -kind must be one of %s, got %q", errUsage, strings.Join(kinds, ", "), kind)
	}
	if limit < 1 {
		return f, fmt.Errorf("%w: -limit must be at least 1", errUsage)
	}
	return f, nil
}

// job is one outbox row as list shows it.
type job struct {
	id, kind, status  string
	attempts, sends   int
	age               time.Duration
	nextAttempt       time.Duration // from now; negative: due
	leased            bool
	lastError, detail string
}

// list prints the jobs f selects, oldest first, and the totals by kind and
// status of the rows not done.
func (s *store) list(ctx context.Context, out io.Writer, f listFilter) error {
	rows, err := s.pool.Query(ctx, `
		SELECT id::text, kind, status, attempts, sends,
		       extract(epoch FROM now() - created_at)::float8,
		       extract(epoch FROM next_attempt_at - now())::float8,
		       coalesce(locked_until > now(), false),
		       coalesce(last_error, ''),
		       coalesce(payload->>'sandbox_id', '')
		  FROM thread_delete.outbox
		 WHERE status = ANY($1) AND ($2 = '' OR kind = $2)
		 ORDER BY created_at, id
		 LIMIT $3`, f.statuses, f.kind, f.limit)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
		var j job
		var age, next float64
		err := r.Scan(&j.id, &j.kind, &j.status, &j.attempts, &j.sends, &age, &next, &j.leased, &j.lastError, &j.detail)
		j.age, j.nextAttempt = seconds(age), seconds(next)
		return j, err
	})
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}

	fmt.Fprintf(out, "%d %s jobs%s, oldest first (at most %d):\n", len(jobs), strings.Join(f.statuses, "/"), kindNote(f.kind), f.limit)
	if len(jobs) > 0 {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tKIND\tSTATUS\tATTEMPTS\tSENDS\tAGE\tNEXT\tSANDBOX\tLAST ERROR")
		for _, j := range jobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", j.id, j.kind, j.status, j.attempts, j.sends,
				short(j.age), next(j), orDash(j.detail), orDash(oneLine(j.lastError, 160)))
		}
		tw.Flush()
	}

	totals, err := s.pool.Query(ctx, `
		SELECT kind, status, count(*) FROM thread_delete.outbox
		 WHERE status <> 'done' GROUP BY kind, status ORDER BY kind, status`)
	if err != nil {
		return fmt.Errorf("list totals: %w", err)
	}
	var parts []string
	var kind, status string
	var n int
	_, err = pgx.ForEachRow(totals, []any{&kind, &status, &n}, func() error {
		parts = append(parts, fmt.Sprintf("%s %s %d", kind, status, n))
		return nil
	})
	if err != nil {
		return fmt.Errorf("list totals: %w", err)
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(out, "not done, in all: %s\n", strings.Join(parts, ", "))
	return nil
}

// requeue resets dead jobs to pending: the named ones, or with all every
// dead job. A reset row is pending and due as if just written: sends 0 (so
// it has the sweeper's whole re-send budget again), next attempt now, no
// lease; attempts and the last error are kept, the error marked as from
// before the re-queue. Then each teardown is sent to the queue for the
// worker; should a send fail, the sweeper re-sends the row after
// OUTBOX_RESEND_AFTER. Redis work needs no message: the next sweep
// completes it (its grace period has long passed).
func (s *store) requeue(ctx context.Context, out io.Writer, pub *sqs.Publisher, ids []string, all bool) error {
	for i, id := range ids {
		canon, err := threads.ParseID(id)
		if err != nil {
			return fmt.Errorf("%w: %q is not a job id (a UUID)", errUsage, id)
		}
		ids[i] = canon
	}
	rows, err := s.pool.Query(ctx, `
		UPDATE thread_delete.outbox
		   SET status = 'pending', sends = 0, next_attempt_at = now(), locked_until = NULL, updated_at = now(),
		       last_error = 'before the re-queue: ' || coalesce(last_error, 'no error recorded')
		 WHERE status = 'dead' AND ($2 OR id = ANY($1::uuid[]))
		RETURNING id::text, kind, payload`, ids, all)
	if err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (cleanup.Entry, error) {
		var e cleanup.Entry
		var payload []byte
		err := r.Scan(&e.ID, &e.Kind, &payload)
		e.Payload = payload
		return e, err
	})
	if err != nil {
		return fmt.Errorf("requeue: %w", err)
	}
	slices.SortFunc(entries, func(a, b cleanup.Entry) int { return strings.Compare(a.ID, b.ID) })

	incomplete := false
	for _, e := range entries {
		if e.Kind != cleanup.KindTeardown {
			fmt.Fprintf(out, "re-queued %s (%s): pending again; the next outbox sweep completes it\n", e.ID, e.Kind)
			continue
		}
		if err := pub.Send(ctx, sqs.EntryMessage(e)); err != nil {
			incomplete = true
			fmt.Fprintf(out, "re-queued %s (%s): pending again, but NOT sent (%v); the sweeper re-sends it after OUTBOX_RESEND_AFTER\n", e.ID, e.Kind, err)
			continue
		}
		fmt.Fprintf(out, "re-queued %s (%s): pending again and sent to the queue\n", e.ID, e.Kind)
	}

	// Say why each named job that was not re-queued was left alone.
	requeued := map[string]bool{}
	for _, e := range entries {
		requeued[e.ID] = true
	}
	var others []string
	for _, id := range ids {
		if !requeued[id] {
			others = append(others, id)
		}
	}
	if len(others) > 0 {
		incomplete = true
		found := map[string]string{}
		var id, status string
		rows, err := s.pool.Query(ctx, `SELECT id::text, status FROM thread_delete.outbox WHERE id = ANY($1::uuid[])`, others)
		if err != nil {
			return fmt.Errorf("requeue: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&id, &status}, func() error { found[id] = status; return nil }); err != nil {
			return fmt.Errorf("requeue: %w", err)
		}
		for _, id := range others {
			switch st := found[id]; st {
			case "":
				fmt.Fprintf(out, "not re-queued %s: no such job\n", id)
			case cleanup.StatusPending:
				fmt.Fprintf(out, "not re-queued %s: it is pending, not dead (the worker and the sweeper are on it)\n", id)
			default:
				fmt.Fprintf(out, "not re-queued %s: it is %s, not dead\n", id, st)
			}
		}
	}
	fmt.Fprintf(out, "%d job(s) re-queued\n", len(entries))
	if incomplete {
		return errIncomplete
	}
	return nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// short renders a duration to the second, at most two units.
func short(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return d.String()
}

// next says when the row is next acted on.
func next(j job) string {
	switch {
	case j.status != cleanup.StatusPending:
		return "-"
	case j.leased:
		return "leased"
	case j.nextAttempt <= 0:
		return "due"
	}
	return "in " + short(j.nextAttempt)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func kindNote(kind string) string {
	if kind == "" {
		return ""
	}
	return " of kind " + kind
}
