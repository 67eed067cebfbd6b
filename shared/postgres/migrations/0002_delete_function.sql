-- The whole delete, as a function in the service's own schema, so that
-- PostgreSQL plans its statements once per connection instead of once per
-- request (the functions send unnamed statements, which RDS Proxy does not
-- pin, and so could not reuse plans otherwise): parsing and planning the
-- statement below was about 1.5 ms of every delete (make bench: Breakdown).
--
-- Semantics are those documented at deleteSQL in shared/postgres/store.go:
-- first lock the thread's project row, then, with a snapshot taken after
-- that lock is granted (each statement of a VOLATILE function takes its own
-- under READ COMMITTED), one statement of data-modifying CTEs that checks
-- the caller, deletes the thread with its sub-agent threads and their rows,
-- deletes the project when no thread is left and records its sandbox
-- teardown in the outbox. It runs inside the caller's transaction.
CREATE OR REPLACE FUNCTION thread_delete.delete_thread(
    p_thread_id uuid, p_user_id uuid, p_public_key text, p_secret_hash text)
RETURNS TABLE (
    o_authenticated boolean, o_found boolean, o_allowed boolean,
    o_account_id text, o_project_id text, o_thread_ids text[],
    o_messages bigint, o_runs bigint, o_project_deleted boolean,
    o_job_id text, o_payload jsonb, o_key_touched bigint)
LANGUAGE plpgsql
VOLATILE
-- Parameters only select rows by key: the generic plan is the right one,
-- and forcing it spares the five custom plans plpgsql would make first.
SET plan_cache_mode = force_generic_plan
AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM 1
       FROM public.projects p
      WHERE p.project_id = (SELECT t.project_id FROM public.threads t WHERE t.thread_id = p_thread_id)
        FOR UPDATE OF p;

    RETURN QUERY
    WITH RECURSIVE
    key AS (
        SELECT k.key_id, a.primary_owner_user_id AS user_id
          FROM public.api_keys k
          JOIN basejump.accounts a ON a.id = k.account_id
         WHERE p_public_key IS NOT NULL
           AND k.public_key = p_public_key
           AND sha256(convert_to(k.secret_key_hash, 'UTF8')) = sha256(convert_to(p_secret_hash, 'UTF8'))
           AND k.status = 'active'
           AND (k.expires_at IS NULL OR k.expires_at > now())
    ),
    caller AS (
        SELECT p_user_id AS user_id WHERE p_public_key IS NULL
        UNION ALL
        SELECT user_id FROM key
    ),
    target AS (
        SELECT t.thread_id, t.account_id, t.project_id
          FROM public.threads t
         WHERE t.thread_id = p_thread_id
           AND EXISTS (SELECT 1 FROM caller)
           FOR UPDATE
    ),
    allowed AS (
        SELECT 1 AS ok
          FROM target t, caller c
         WHERE t.account_id = c.user_id
            OR EXISTS (SELECT 1 FROM public.user_roles r
                        WHERE r.user_id = c.user_id AND r.role IN ('admin', 'super_admin'))
            OR EXISTS (SELECT 1 FROM basejump.account_user au
                        WHERE au.user_id = c.user_id AND au.account_id = t.account_id)
         LIMIT 1
    ),
    doomed AS (
        SELECT t.thread_id FROM target t WHERE EXISTS (SELECT 1 FROM allowed)
        UNION
        SELECT c.thread_id FROM public.threads c JOIN doomed d ON c.parent_thread_id = d.thread_id
    ),
    del_runs AS (
        DELETE FROM public.agent_runs r
         WHERE r.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))
        RETURNING 1
    ),
    del_docs AS (
        DELETE FROM public.documents x
         WHERE x.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))
    ),
    del_threads AS (
        DELETE FROM public.threads t
         WHERE t.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))
        RETURNING t.thread_id, t.total_message_count
    ),
    project AS (
        SELECT p.project_id, p.account_id, p.sandbox_resource_id, p.sandbox
          FROM public.projects p
          JOIN target t ON p.project_id = t.project_id
         WHERE EXISTS (SELECT 1 FROM allowed)
           AND NOT EXISTS (SELECT 1 FROM public.threads o
                            WHERE o.project_id = t.project_id
                              AND o.thread_id NOT IN (SELECT thread_id FROM doomed))
    ),
    del_project AS (
        DELETE FROM public.projects p USING project x WHERE p.project_id = x.project_id RETURNING 1
    ),
    sandbox AS (
        SELECT x.project_id, x.account_id, r.id AS resource_id,
               COALESCE(NULLIF(r.external_id, ''), NULLIF(x.sandbox->>'id', '')) AS sandbox_id
          FROM project x
          LEFT JOIN public.resources r ON r.id = x.sandbox_resource_id
    ),
    outbox AS (
        INSERT INTO thread_delete.outbox (kind, payload)
        SELECT 'sandbox_teardown',
               jsonb_strip_nulls(jsonb_build_object(
                   'project_id', s.project_id, 'account_id', s.account_id,
                   'sandbox_id', s.sandbox_id, 'resource_id', s.resource_id,
                   'thread_id', p_thread_id, 'requested_at', now()))
          FROM sandbox s
         WHERE s.sandbox_id IS NOT NULL
        RETURNING id, payload
    ),
    touch_key AS (
        UPDATE public.api_keys k SET last_used_at = now()
          FROM key
         WHERE k.key_id = key.key_id
           AND EXISTS (SELECT 1 FROM target)
           AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute')
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM caller),
           EXISTS (SELECT 1 FROM target),
           EXISTS (SELECT 1 FROM allowed),
           (SELECT account_id::text FROM target),
           (SELECT project_id::text FROM target),
           ARRAY(SELECT thread_id::text FROM del_threads ORDER BY thread_id <> p_thread_id, thread_id),
           (SELECT coalesce(sum(total_message_count), 0) FROM del_threads),
           (SELECT count(*) FROM del_runs),
           EXISTS (SELECT 1 FROM del_project),
           (SELECT id::text FROM outbox),
           (SELECT payload FROM outbox),
           (SELECT count(*) FROM touch_key);
END;
$fn$;
