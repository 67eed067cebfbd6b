-- An outbox that stays small, and a sweep that can afford to look at it.
-- Every delete records a row, so the sweep deletes done rows older than
-- OUTBOX_RETENTION in bounded batches, oldest first; and it reports the
-- backlog (pending and dead rows by kind, the oldest pending row) in one
-- aggregate query. Both indexes are partial: they hold only the rows each
-- of those queries reads.
--
-- Building an index blocks writes to the table while it runs (a migration
-- is one transaction, so CONCURRENTLY is not available here). On a large
-- outbox create them beforehand with CREATE INDEX CONCURRENTLY IF NOT
-- EXISTS and the same definitions (docs/operations.md): these statements
-- then do nothing.

-- Pruning: DELETE ... WHERE id IN (SELECT id ... WHERE status = 'done' AND
-- done_at < now() - retention ORDER BY done_at LIMIT n FOR UPDATE SKIP LOCKED).
CREATE INDEX IF NOT EXISTS outbox_done_at_idx
    ON thread_delete.outbox (done_at) WHERE status = 'done';

-- The sweep's backlog figures read only the rows not done (pending and dead).
CREATE INDEX IF NOT EXISTS outbox_open_kind_idx
    ON thread_delete.outbox (kind, status, created_at) WHERE status <> 'done';
