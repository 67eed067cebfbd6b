-- The service's own schema: a transactional outbox of post-commit work.
-- A sandbox teardown is inserted in the same transaction as the delete that
-- makes it necessary; a cache repair is inserted when the inline Redis
-- invalidation failed. The cleanup worker completes rows; the sweeper
-- re-sends rows that stayed pending too long.
CREATE SCHEMA IF NOT EXISTS thread_delete;

CREATE TABLE IF NOT EXISTS thread_delete.outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL CHECK (kind IN ('sandbox_teardown', 'cache_repair')),
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    sends           integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz
);

-- The sweeper scans only pending rows, oldest due first.
CREATE INDEX IF NOT EXISTS outbox_pending_due_idx
    ON thread_delete.outbox (next_attempt_at) WHERE status = 'pending';
