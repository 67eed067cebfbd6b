-- The delete core: a set of requested threads, decided one by one as if
-- each were deleted alone, all deletable ones removed in one transaction.
-- DELETE /threads/{id} is the set of one; POST /threads/bulk-delete is the
-- set of up to 100.
--
-- A file of functions/ is re-applied whenever it changes (make migrate
-- records its checksum). The names carry a version: a deployed Lambda calls
-- the name it was built with, so a change that the running version could
-- not live with (other parameters, another result) goes under a new name in
-- a new file, and the old file stays until no running version calls it. A
-- compatible fix (a faster plan, a bug in the body) is made in place.

-- may_write_v1 is the write rule of DESIGN.md §3, for one thread's account:
-- with an API key (p_key_account set) the key's own account only; with a
-- JWT, an admin or super_admin, the owning user (a personal account's id is
-- its user's id), or a member of the owning account. A thread without an
-- account is writable by admins only. A plain SQL expression, so PostgreSQL
-- inlines it into the queries that use it.
CREATE OR REPLACE FUNCTION thread_delete.may_write_v1(
    p_account uuid, p_user_id uuid, p_key_account uuid, p_admin boolean)
RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT CASE
        WHEN p_key_account IS NOT NULL THEN coalesce(p_account = p_key_account, false)
        ELSE p_admin
          OR coalesce(p_account = p_user_id, false)
          OR EXISTS (SELECT 1 FROM basejump.account_user au
                      WHERE au.user_id = p_user_id AND au.account_id = p_account)
    END
$fn$;

-- delete_threads_v1 runs the whole delete inside the caller's transaction
-- (READ COMMITTED) and returns one JSON summary. Each statement of a
-- VOLATILE PL/pgSQL function takes a fresh snapshot: that is what lets a
-- statement see every row committed while an earlier statement waited for
-- a lock ("lock, then look", DESIGN.md §4).
--
-- Parameters: the requested ids (distinct); the caller: a user id (JWT), or
-- an API key's public part and secret hash; the JWT's session id when
-- sessions must still exist (JWT_REQUIRE_SESSION), else NULL.
--
-- Summary: {"auth": "ok" | "invalid_api_key" | "session_revoked"} and, when
-- ok: "forbidden" (requested ids refused), "threads" (every thread deleted),
-- "messages", "runs" (rows deleted with them), "teardowns" (outbox rows of
-- sandbox teardowns, payload plus job_id), "work" (the Redis follow-up:
-- payload plus job_id, absent when nothing was deleted). A requested id in
-- "threads" was deleted; one in neither list was not found.
CREATE OR REPLACE FUNCTION thread_delete.delete_threads_v1(
    p_thread_ids uuid[], p_user_id uuid, p_public_key text, p_secret_hash text,
    p_session_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
-- Parameters only select rows by key: the generic plan is the right one,
-- and forcing it spares the five custom plans plpgsql would make first.
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_key_id      uuid;
    v_key_account uuid;              -- set for an API key: it acts for this account only
    v_admin       boolean := false;
    v_found       uuid[];            -- requested ids that exist
    v_cand        uuid[];            -- ... of those, the ones the caller may write
    v_projects    uuid[];            -- projects locked so far: those of the candidates first
    v_set         uuid[];            -- locked threads: candidates and their sub-agent closure
    v_front       uuid[];
    v_forbidden   uuid[];            -- candidates refused after the locks
    v_del         uuid[];            -- threads to delete
    v_more        uuid[];            -- projects to lock next
    v_any         boolean;
    v_summary     jsonb;
BEGIN
    -- Who is asking. The API key is resolved here rather than in a query of
    -- its own: no extra round trip. The hashes are compared through sha256
    -- on both sides, so the comparison's timing does not depend on how many
    -- leading characters of the stored hash match.
    IF p_public_key IS NOT NULL THEN
        SELECT k.key_id, k.account_id INTO v_key_id, v_key_account
          FROM public.api_keys k
         WHERE k.public_key = p_public_key
           AND sha256(convert_to(k.secret_key_hash, 'UTF8')) = sha256(convert_to(p_secret_hash, 'UTF8'))
           AND k.status = 'active'
           AND (k.expires_at IS NULL OR k.expires_at > now());
        IF v_key_id IS NULL THEN
            RETURN jsonb_build_object('auth', 'invalid_api_key');
        END IF;
    ELSE
        -- Nested, so that auth.sessions is only planned when the check is
        -- on (a database without Supabase Auth has no such table).
        IF p_session_id IS NOT NULL THEN
            IF NOT EXISTS (SELECT 1 FROM auth.sessions s
                            WHERE s.id = p_session_id AND s.user_id = p_user_id
                              AND (s.not_after IS NULL OR s.not_after > now())) THEN
                RETURN jsonb_build_object('auth', 'session_revoked');
            END IF;
        END IF;
        v_admin := EXISTS (SELECT 1 FROM public.user_roles r
                            WHERE r.user_id = p_user_id AND r.role IN ('admin', 'super_admin'));
    END IF;

    -- 0. Decide access from a plain read, before taking any lock: a caller
    --    who may not write a requested thread, or a thread of its sub-agent
    --    set, gets its 403/404 without blocking anyone (a stranger must not
    --    hold up the owner's inserts). The same read gives the projects of
    --    the whole sub-agent set, so that all of them are locked up front,
    --    in one sorted pass: two deletes whose sets share projects then
    --    queue up instead of deadlocking.
    WITH RECURSIVE c (root, thread_id, project_id, ok) AS (
        SELECT t.thread_id, t.thread_id, t.project_id,
               thread_delete.may_write_v1(t.account_id, p_user_id, v_key_account, v_admin)
          FROM public.threads t
         WHERE t.thread_id = ANY (p_thread_ids)
        UNION
        SELECT c.root, t.thread_id, t.project_id,
               thread_delete.may_write_v1(t.account_id, p_user_id, v_key_account, v_admin)
          FROM c JOIN public.threads t ON t.parent_thread_id = c.thread_id),
    r AS (SELECT root, bool_and(ok) AS ok FROM c GROUP BY root)
    SELECT ARRAY(SELECT root FROM r),
           ARRAY(SELECT root FROM r WHERE ok ORDER BY root),
           ARRAY(SELECT DISTINCT c.project_id FROM c JOIN r USING (root)
                  WHERE r.ok AND c.project_id IS NOT NULL ORDER BY c.project_id)
      INTO v_found, v_cand, v_projects;

    IF cardinality(v_cand) > 0 THEN
        -- 1. Lock in PostgreSQL's own order: projects (of the whole set
        --    as read above), then the requested threads. Its
        --    cascades and foreign-key checks lock a project before its
        --    threads, so locking a thread first would deadlock against an
        --    ordinary sub-agent insert or a project delete. Each level is
        --    locked in key order, so two deletes over the same rows queue up
        --    instead of deadlocking. A project row lock also makes inserts
        --    of new threads into the project wait (their foreign-key check
        --    takes KEY SHARE on it): the "is it empty now?" decision below
        --    cannot be overtaken.
        IF cardinality(v_projects) > 0 THEN
            PERFORM 1 FROM public.projects p
              WHERE p.project_id = ANY (v_projects)
              ORDER BY p.project_id
                FOR UPDATE;
        END IF;
        -- A thread deleted meanwhile drops out here (not found). From now on
        -- no child thread, message or agent run can attach to a locked
        -- thread: inserting one takes KEY SHARE on it.
        v_set := ARRAY(SELECT t.thread_id FROM public.threads t
                        WHERE t.thread_id = ANY (v_cand)
                        ORDER BY t.thread_id
                          FOR UPDATE);

        -- 2. Close the set under fresh snapshots: each round is a statement
        --    of its own, so it sees every sub-agent thread committed before
        --    the previous round's locks were granted. Threads already in the
        --    set are skipped, which ends cycles of parent_thread_id. A round
        --    first reads the next level without locking it; when some of it
        --    lives in projects not locked yet (it was committed after the
        --    plain read), those are locked first, so that project-before-
        --    thread holds here too.
        v_front := v_set;
        WHILE cardinality(v_front) > 0 LOOP
            SELECT ARRAY(SELECT DISTINCT c.project_id FROM public.threads c
                          WHERE c.parent_thread_id = ANY (v_front)
                            AND c.thread_id <> ALL (v_set)
                            AND c.project_id IS NOT NULL
                            AND c.project_id <> ALL (v_projects)
                          ORDER BY c.project_id),
                   EXISTS (SELECT 1 FROM public.threads c
                            WHERE c.parent_thread_id = ANY (v_front)
                              AND c.thread_id <> ALL (v_set))
              INTO v_more, v_any;
            EXIT WHEN NOT v_any;
            IF cardinality(v_more) > 0 THEN
                PERFORM 1 FROM public.projects p
                  WHERE p.project_id = ANY (v_more)
                  ORDER BY p.project_id
                    FOR UPDATE;
                v_projects := v_projects || v_more;
            END IF;
            v_front := ARRAY(SELECT c.thread_id FROM public.threads c
                              WHERE c.parent_thread_id = ANY (v_front)
                                AND c.thread_id <> ALL (v_set)
                              ORDER BY c.thread_id
                                FOR UPDATE);
            v_set := v_set || v_front;
        END LOOP;

        -- 3. Decide again, for every thread of the closure: a requested id
        --    whose sub-agent set holds a thread the caller may not write is
        --    forbidden, and nothing of it is deleted ("bad" walks up from
        --    each such thread through its ancestors in the set). The rest
        --    of the requested ids are deleted with everything below them.
        WITH RECURSIVE t AS MATERIALIZED (
            SELECT t.thread_id, t.parent_thread_id, t.project_id,
                   thread_delete.may_write_v1(t.account_id, p_user_id, v_key_account, v_admin) AS ok
              FROM public.threads t
             WHERE t.thread_id = ANY (v_set)),
        bad AS (
            SELECT t.thread_id, t.parent_thread_id FROM t WHERE NOT t.ok
            UNION
            SELECT t.thread_id, t.parent_thread_id FROM t JOIN bad b ON t.thread_id = b.parent_thread_id),
        del AS (
            SELECT t.thread_id, t.project_id FROM t
             WHERE t.thread_id = ANY (v_cand)
               AND t.thread_id NOT IN (SELECT thread_id FROM bad)
            UNION
            SELECT t.thread_id, t.project_id FROM t JOIN del d ON t.parent_thread_id = d.thread_id)
        SELECT ARRAY(SELECT thread_id FROM bad WHERE thread_id = ANY (v_cand)),
               ARRAY(SELECT thread_id FROM del),
               ARRAY(SELECT DISTINCT project_id FROM del
                      WHERE project_id IS NOT NULL AND project_id <> ALL (v_projects)
                      ORDER BY project_id)
          INTO v_forbidden, v_del, v_more;

        -- 4. Lock the other affected projects (of a thread moved or a
        --    sub-agent thread committed while the closure ran), in key
        --    order. No single lock order avoids every deadlock (two deletes
        --    whose sub-agent threads live in each other's projects); the
        --    caller re-sends the transaction once on 40P01.
        IF cardinality(v_more) > 0 THEN
            PERFORM 1 FROM public.projects p
              WHERE p.project_id = ANY (v_more)
              ORDER BY p.project_id
                FOR UPDATE;
        END IF;
    ELSE
        v_forbidden := '{}';
        v_del := '{}';
    END IF;

    -- A successful key check is recorded at most once a minute, and only
    -- when a requested thread exists: a 404 writes nothing.
    IF v_key_id IS NOT NULL AND cardinality(v_found) > 0 THEN
        UPDATE public.api_keys k SET last_used_at = now()
         WHERE k.key_id = v_key_id
           AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    END IF;

    v_forbidden := v_forbidden || ARRAY(SELECT unnest(v_found) EXCEPT SELECT unnest(v_cand));
    IF cardinality(v_del) = 0 THEN
        RETURN jsonb_build_object('auth', 'ok', 'forbidden', to_jsonb(v_forbidden),
                                  'threads', '[]'::jsonb, 'teardowns', '[]'::jsonb,
                                  'messages', 0, 'runs', 0);
    END IF;

    -- 5. Delete, in a statement of its own after all locks (a fresh
    --    snapshot: rows committed while we waited are seen and go too).
    --    Agent runs (foreign key NO ACTION) and vector-store rows (the
    --    composite foreign key misses rows whose account_id is NULL) are
    --    deleted explicitly, then the threads; messages go by the cascade.
    --    A locked project is empty when no thread outside the set remains
    --    (the set's own rows are still visible to this statement): it is
    --    deleted, with one teardown in the outbox if it had a sandbox. The
    --    Redis follow-up is recorded in the outbox too: per-account counts,
    --    the keys to drop, the running agent runs to stop.
    WITH runs AS (
        DELETE FROM public.agent_runs r
         WHERE r.thread_id = ANY (v_del)
        RETURNING r.id, r.status),
    docs AS (
        DELETE FROM public.documents x
         WHERE x.thread_id = ANY (v_del)),
    gone AS (
        DELETE FROM public.threads t
         WHERE t.thread_id = ANY (v_del)
        RETURNING t.thread_id, t.account_id, t.project_id, t.total_message_count),
    emptied AS (
        SELECT p.project_id, p.account_id, p.sandbox_resource_id, p.sandbox
          FROM public.projects p
         WHERE p.project_id IN (SELECT project_id FROM gone)
           AND NOT EXISTS (SELECT 1 FROM public.threads o
                            WHERE o.project_id = p.project_id
                              AND o.thread_id <> ALL (v_del))),
    dropped AS (
        DELETE FROM public.projects p USING emptied e
         WHERE p.project_id = e.project_id
        RETURNING p.project_id, p.account_id),
    teardowns AS (
        INSERT INTO thread_delete.outbox (kind, payload)
        SELECT 'sandbox_teardown',
               jsonb_strip_nulls(jsonb_build_object(
                   'project_id', e.project_id, 'account_id', e.account_id,
                   'sandbox_id', s.sandbox_id, 'resource_id', r.id,
                   'thread_id', (SELECT min(g.thread_id::text) FROM gone g WHERE g.project_id = e.project_id),
                   'requested_at', now()))
          FROM emptied e
          LEFT JOIN public.resources r ON r.id = e.sandbox_resource_id
         CROSS JOIN LATERAL (SELECT coalesce(nullif(r.external_id, ''), nullif(e.sandbox->>'id', '')) AS sandbox_id) s
         WHERE s.sandbox_id IS NOT NULL
        RETURNING id, payload),
    accounts AS (
        SELECT account_id, sum(threads)::int AS threads, sum(projects)::int AS projects
          FROM (SELECT account_id, 1 AS threads, 0 AS projects FROM gone WHERE account_id IS NOT NULL
                UNION ALL
                SELECT account_id, 0, 1 FROM dropped) x
         GROUP BY account_id),
    work AS (
        INSERT INTO thread_delete.outbox (kind, payload)
        SELECT 'redis_work', jsonb_build_object(
                   'accounts', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                   'account_id', a.account_id, 'threads', a.threads, 'projects', a.projects)
                                   ORDER BY a.account_id) FROM accounts a), '[]'::jsonb),
                   'thread_ids', (SELECT jsonb_agg(g.thread_id ORDER BY g.thread_id) FROM gone g),
                   'project_ids', coalesce((SELECT jsonb_agg(d.project_id ORDER BY d.project_id) FROM dropped d), '[]'::jsonb),
                   'stop_runs', coalesce((SELECT jsonb_agg(r.id ORDER BY r.id) FROM runs r WHERE r.status = 'running'), '[]'::jsonb))
        RETURNING id, payload)
    SELECT jsonb_build_object(
               'auth', 'ok',
               'forbidden', to_jsonb(v_forbidden),
               'threads', (SELECT jsonb_agg(g.thread_id ORDER BY g.thread_id) FROM gone g),
               'messages', (SELECT coalesce(sum(g.total_message_count), 0) FROM gone g),
               'runs', (SELECT count(*) FROM runs),
               'teardowns', coalesce((SELECT jsonb_agg(t.payload || jsonb_build_object('job_id', t.id) ORDER BY t.id)
                                        FROM teardowns t), '[]'::jsonb),
               'work', (SELECT w.payload || jsonb_build_object('job_id', w.id) FROM work w))
      INTO v_summary;
    RETURN v_summary;
END;
$fn$;
