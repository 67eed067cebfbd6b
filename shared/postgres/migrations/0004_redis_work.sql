-- Besides the sandbox teardowns, every delete records its Redis follow-up
-- in the outbox (kind redis_work), in the same transaction: the work is
-- applied inline after the commit and completed by the sweeper when that
-- did not happen (Redis down, a lost reply, the function killed). The
-- delete itself is functions/delete_threads_v1.sql.

ALTER TABLE thread_delete.outbox DROP CONSTRAINT IF EXISTS outbox_kind_check;
ALTER TABLE thread_delete.outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('sandbox_teardown', 'cache_repair', 'redis_work'));
