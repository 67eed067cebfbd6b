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

-- may_write_v2 is the write rule of DESIGN.md §3, for one thread's account:
-- with an API key (p_key_account set) the key's own account only; with a
-- JWT, an admin or super_admin, the owning user (a personal account's id is
-- its user's id), or a member of the owning account (p_members: the
-- accounts the caller belongs to, read once per request). A thread without
-- an account is writable by admins only. A plain expression without a
-- subquery, so that PostgreSQL inlines it into the statements that use it:
-- a SQL function it cannot inline is parsed and planned again on every
-- execution of the statement that calls it (about 0.2 ms each here).
CREATE OR REPLACE FUNCTION thread_delete.may_write_v2(
    p_account uuid, p_user_id uuid, p_key_account uuid, p_admin boolean, p_members uuid[])
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $fn$
    SELECT CASE
        WHEN p_key_account IS NOT NULL THEN coalesce(p_account = p_key_account, false)
        ELSE p_admin
          OR coalesce(p_account = p_user_id, false)
          OR coalesce(p_account = ANY (p_members), false)
    END
$fn$;

-- may_write_v1 is the rule as the previous body of delete_threads_v1 used
-- it. Nothing calls it any more; it stays until no database can still be
-- running that body (dropping it under a call in flight would fail it).
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

-- outbox_id_v1 is a time-ordered UUID (the layout of UUID version 7: the
-- first 48 bits are the Unix time in milliseconds, the rest random) for the
-- outbox rows a delete writes. Random keys (gen_random_uuid) land each
-- insert on a random leaf of the primary key, and the first change to a page
-- after a checkpoint writes the whole 8 kB page to the WAL; time-ordered
-- keys land on the last leaf, which later inserts share.
CREATE OR REPLACE FUNCTION thread_delete.outbox_id_v1()
RETURNS uuid
LANGUAGE sql VOLATILE
AS $fn$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
               placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
               FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
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
-- ok: "forbidden" (requested ids refused), "messages", "runs" (rows deleted
-- with the threads), "teardowns" (outbox rows of sandbox teardowns, payload
-- plus job_id), "work" (the Redis follow-up, payload plus job_id: its
-- "thread_ids" are every thread deleted; absent when nothing was deleted).
-- A requested id among the deleted threads was deleted; one in neither
-- list was not found.
--
-- Cost (docs/benchmarks.md): deleting one thread that leaves its project
-- non-empty takes seven statements: the access check, two lock statements,
-- one closure round, the delete with its checks, and the outbox row of the
-- Redis work. A statement to decide again after the locks runs only when
-- the locked set holds a thread the caller may not write, and one to drop
-- projects only when a project is left empty.
CREATE OR REPLACE FUNCTION thread_delete.delete_threads_v1(
    p_thread_ids uuid[], p_user_id uuid, p_public_key text, p_secret_hash text,
    p_session_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
VOLATILE
-- Parameters only select rows by key: the generic plan is the right one,
-- and forcing it spares the five custom plans plpgsql would make first.
SET plan_cache_mode = force_generic_plan
-- Every statement here reaches rows by key. A generic plan has to guess
-- how many ids an array parameter holds (ten), and with the default cost of
-- a random page read a sequential scan then looks cheaper than the index on
-- a table of a few thousand rows; the plan is kept for the connection's
-- life. At the cost of a page read from SSD storage (RDS, Aurora) the index
-- wins whatever the table's size.
SET random_page_cost = 1.1
-- JIT compilation pays off for long analytic queries only: when a big
-- thread's cascade is estimated above jit_above_cost, compiling it costs
-- hundreds of milliseconds before the first row is deleted.
SET jit = off
AS $fn$
DECLARE
    v_key_id      uuid;
    v_key_account uuid;              -- set for an API key: it acts for this account only
    v_admin       boolean;
    v_members     uuid[];            -- accounts the caller (a user) belongs to
    v_cand        uuid[];            -- requested ids that exist and the caller may write
    v_forbidden   uuid[];            -- requested ids that exist and are refused
    v_projects    uuid[];            -- projects locked: those of the candidates first
    v_set         uuid[];            -- locked threads: candidates and their sub-agent closure
    v_set_ok      boolean;           -- the caller may write every locked thread
    v_set_proj    uuid[];            -- projects of the locked threads, as locked
    v_front       uuid[];
    v_front_ok    boolean;
    v_front_proj  uuid[];
    v_refused     uuid[];
    v_del         uuid[] := '{}';    -- threads to delete
    v_more        uuid[];            -- projects of v_del not locked yet
    -- What the delete did:
    g_threads     uuid[];            -- threads deleted, in key order
    g_projects    uuid[];            -- ... their projects and accounts, in the same order
    g_accounts    uuid[];
    v_messages    bigint;
    v_runs        bigint;
    v_stop        uuid[];            -- agent runs deleted while running
    v_emptied     uuid[];            -- locked projects left without a thread
    v_accounts    jsonb;
    v_dropped     jsonb := '[]';
    v_teardowns   jsonb := '[]';
    v_work        jsonb;
    v_job         uuid;
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
    END IF;

    -- 0. Decide access from a plain read, before taking any lock: a caller
    --    who may not write a requested thread, or a thread of its sub-agent
    --    set, gets its 403/404 without blocking anyone (a stranger must not
    --    hold up the owner's inserts). The same read gives the projects of
    --    the whole sub-agent set, so that all of them are locked up front,
    --    in one sorted pass: a delete of a parent and one of its sub-agent
    --    thread in another project, at the same moment, queue up on the
    --    same project instead of deadlocking. The caller's role and
    --    memberships are read in the same statement. The lock statements
    --    order what they lock themselves, so nothing here is sorted.
    WITH RECURSIVE who AS MATERIALIZED (
        SELECT v_key_account IS NULL
               AND EXISTS (SELECT 1 FROM public.user_roles ur
                            WHERE ur.user_id = p_user_id AND ur.role IN ('admin', 'super_admin')) AS admin,
               ARRAY(SELECT au.account_id FROM basejump.account_user au WHERE au.user_id = p_user_id) AS members),
    c (root, thread_id, project_id, ok) AS (
        SELECT t.thread_id, t.thread_id, t.project_id,
               thread_delete.may_write_v2(t.account_id, p_user_id, v_key_account, w.admin, w.members)
          FROM public.threads t CROSS JOIN who w
         WHERE t.thread_id = ANY (p_thread_ids)
        UNION
        SELECT c.root, t.thread_id, t.project_id,
               thread_delete.may_write_v2(t.account_id, p_user_id, v_key_account, w.admin, w.members)
          FROM c JOIN public.threads t ON t.parent_thread_id = c.thread_id CROSS JOIN who w),
    r AS (SELECT root, bool_and(ok) AS ok FROM c GROUP BY root)
    SELECT w.admin, w.members,
           ARRAY(SELECT root FROM r WHERE ok),
           ARRAY(SELECT root FROM r WHERE NOT ok),
           ARRAY(SELECT DISTINCT c.project_id FROM c JOIN r USING (root)
                  WHERE r.ok AND c.project_id IS NOT NULL)
      INTO v_admin, v_members, v_cand, v_forbidden, v_projects
      FROM who w;

    IF cardinality(v_cand) > 0 THEN
        -- 1. Lock in PostgreSQL's own order: projects (of the whole set as
        --    read above), then the requested threads. Its
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
        -- thread: inserting one takes KEY SHARE on it. The statement returns
        -- what the locked rows hold now (a row changed while we waited is
        -- returned as changed), and nothing can change them any more.
        SELECT coalesce(array_agg(x.thread_id), '{}'),
               coalesce(bool_and(thread_delete.may_write_v2(x.account_id, p_user_id, v_key_account, v_admin, v_members)), true),
               coalesce(array_agg(x.project_id) FILTER (WHERE x.project_id IS NOT NULL), '{}')
          INTO v_set, v_set_ok, v_set_proj
          FROM (SELECT t.thread_id, t.account_id, t.project_id FROM public.threads t
                 WHERE t.thread_id = ANY (v_cand)
                 ORDER BY t.thread_id
                   FOR UPDATE) x;

        -- 2. Close the set under fresh snapshots: each round is a statement
        --    of its own, so it sees every sub-agent thread committed before
        --    the previous round's locks were granted. Threads already in the
        --    set are skipped, which ends cycles of parent_thread_id. Their
        --    projects were locked in step 1, unless a sub-agent thread was
        --    committed into another project after the plain read: step 4
        --    locks that one.
        v_front := v_set;
        WHILE cardinality(v_front) > 0 LOOP
            SELECT coalesce(array_agg(x.thread_id), '{}'),
                   coalesce(bool_and(thread_delete.may_write_v2(x.account_id, p_user_id, v_key_account, v_admin, v_members)), true),
                   coalesce(array_agg(x.project_id) FILTER (WHERE x.project_id IS NOT NULL), '{}')
              INTO v_front, v_front_ok, v_front_proj
              FROM (SELECT c.thread_id, c.account_id, c.project_id FROM public.threads c
                     WHERE c.parent_thread_id = ANY (v_front)
                       AND c.thread_id <> ALL (v_set)
                     ORDER BY c.thread_id
                       FOR UPDATE) x;
            v_set := v_set || v_front;
            v_set_ok := v_set_ok AND v_front_ok;
            v_set_proj := v_set_proj || v_front_proj;
        END LOOP;

        -- 3. Decide again, for every thread of the closure. When the caller
        --    may write all of them (what the lock statements just read from
        --    the locked rows), every locked thread goes: each is a requested
        --    one or lies below one. Otherwise a requested id whose sub-agent
        --    set holds a thread the caller may not write is forbidden, and
        --    nothing of it is deleted ("bad" walks up from each such thread
        --    through its ancestors in the set); the rest of the requested
        --    ids are deleted with everything below them.
        IF v_set_ok THEN
            v_del := v_set;
        ELSE
            WITH RECURSIVE t AS MATERIALIZED (
                SELECT t.thread_id, t.parent_thread_id, t.project_id,
                       thread_delete.may_write_v2(t.account_id, p_user_id, v_key_account, v_admin, v_members) AS ok
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
                   ARRAY(SELECT DISTINCT project_id FROM del WHERE project_id IS NOT NULL)
              INTO v_refused, v_del, v_set_proj;
            v_forbidden := v_forbidden || v_refused;
        END IF;

        -- 4. Lock the other affected projects (of a sub-agent thread
        --    committed after the plain read, or of a thread moved meanwhile),
        --    in key order. Here a thread was locked before its project, and
        --    no single lock order avoids every deadlock; the caller re-sends
        --    the transaction once on 40P01.
        IF NOT (v_set_proj <@ v_projects) THEN
            v_more := ARRAY(SELECT DISTINCT p FROM unnest(v_set_proj) p
                             WHERE p <> ALL (v_projects) ORDER BY p);
            PERFORM 1 FROM public.projects p
              WHERE p.project_id = ANY (v_more)
              ORDER BY p.project_id
                FOR UPDATE;
            v_projects := v_projects || v_more;
        END IF;
    END IF;

    -- A successful key check is recorded at most once a minute, and only
    -- when a requested thread exists: a 404 writes nothing.
    IF v_key_id IS NOT NULL AND cardinality(v_cand) + cardinality(v_forbidden) > 0 THEN
        UPDATE public.api_keys k SET last_used_at = now()
         WHERE k.key_id = v_key_id
           AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    END IF;

    IF cardinality(v_del) = 0 THEN
        RETURN jsonb_build_object('auth', 'ok', 'forbidden', to_jsonb(v_forbidden),
                                  'teardowns', '[]'::jsonb, 'messages', 0, 'runs', 0);
    END IF;

    -- 5. Delete, in a statement of its own after all locks (a fresh
    --    snapshot: rows committed while we waited are seen and go too).
    --    Agent runs (foreign key NO ACTION) and vector-store rows (the
    --    composite foreign key misses rows whose account_id is NULL) are
    --    deleted explicitly, then the threads; messages go by the cascade.
    --    A locked project is left empty when no thread outside the set
    --    remains (the set's own rows are still visible to this statement);
    --    no thread can enter a project we hold locked.
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
        RETURNING t.thread_id, t.account_id, t.project_id, t.total_message_count)
    SELECT g.threads, g.projects, g.accounts, g.messages,
           (SELECT count(*) FROM runs),
           ARRAY(SELECT r.id FROM runs r WHERE r.status = 'running' ORDER BY r.id),
           (SELECT jsonb_agg(jsonb_build_object('account_id', a.account_id, 'threads', a.n, 'projects', 0)
                             ORDER BY a.account_id)
              FROM (SELECT account_id, count(*) AS n FROM gone
                     WHERE account_id IS NOT NULL GROUP BY account_id) a),
           ARRAY(SELECT p.project_id FROM public.projects p
                  WHERE p.project_id = ANY (v_projects)
                    AND p.project_id IN (SELECT project_id FROM gone)
                    AND NOT EXISTS (SELECT 1 FROM public.threads o
                                     WHERE o.project_id = p.project_id
                                       AND o.thread_id <> ALL (v_del)))
      INTO g_threads, g_projects, g_accounts, v_messages, v_runs, v_stop, v_accounts, v_emptied
      FROM (SELECT coalesce(array_agg(thread_id ORDER BY thread_id), '{}') AS threads,
                   array_agg(project_id ORDER BY thread_id) AS projects,
                   array_agg(account_id ORDER BY thread_id) AS accounts,
                   coalesce(sum(total_message_count), 0) AS messages
              FROM gone) g;

    -- 6. Each project left empty is deleted, with one teardown in the
    --    outbox if it had a sandbox; its account's project count goes down.
    IF cardinality(v_emptied) > 0 THEN
        WITH dropped AS (
            DELETE FROM public.projects p
             WHERE p.project_id = ANY (v_emptied)
            RETURNING p.project_id, p.account_id, p.sandbox_resource_id, p.sandbox),
        teardowns AS (
            INSERT INTO thread_delete.outbox (id, kind, payload)
            SELECT thread_delete.outbox_id_v1(), 'sandbox_teardown',
                   jsonb_strip_nulls(jsonb_build_object(
                       'project_id', d.project_id, 'account_id', d.account_id,
                       'sandbox_id', s.sandbox_id, 'resource_id', r.id,
                       'thread_id', (SELECT min(x.t::text) FROM unnest(g_threads, g_projects) AS x(t, p)
                                      WHERE x.p = d.project_id),
                       'requested_at', now()))
              FROM dropped d
              LEFT JOIN public.resources r ON r.id = d.sandbox_resource_id
             CROSS JOIN LATERAL (SELECT coalesce(nullif(r.external_id, ''), nullif(d.sandbox->>'id', '')) AS sandbox_id) s
             WHERE s.sandbox_id IS NOT NULL
            RETURNING id, payload)
        SELECT coalesce((SELECT jsonb_agg(t.payload || jsonb_build_object('job_id', t.id) ORDER BY t.id)
                           FROM teardowns t), '[]'::jsonb),
               coalesce((SELECT jsonb_agg(d.project_id ORDER BY d.project_id) FROM dropped d), '[]'::jsonb),
               (SELECT jsonb_agg(jsonb_build_object('account_id', a.account_id, 'threads', a.threads, 'projects', a.projects)
                                 ORDER BY a.account_id)
                  FROM (SELECT u.account_id, sum(u.threads)::int AS threads, sum(u.projects)::int AS projects
                          FROM (SELECT x.a AS account_id, 1 AS threads, 0 AS projects
                                  FROM unnest(g_accounts) AS x(a) WHERE x.a IS NOT NULL
                                UNION ALL
                                SELECT d.account_id, 0, 1 FROM dropped d) u
                         GROUP BY u.account_id) a)
          INTO v_teardowns, v_dropped, v_accounts;
    END IF;

    -- 7. The Redis follow-up, recorded in the outbox in this transaction:
    --    per-account counts, the keys to drop, the running agent runs to
    --    stop.
    v_work := jsonb_build_object('accounts', coalesce(v_accounts, '[]'::jsonb),
                                 'thread_ids', to_jsonb(g_threads),
                                 'project_ids', v_dropped,
                                 'stop_runs', to_jsonb(v_stop));
    INSERT INTO thread_delete.outbox (id, kind, payload) VALUES (thread_delete.outbox_id_v1(), 'redis_work', v_work)
    RETURNING id INTO v_job;

    RETURN jsonb_build_object('auth', 'ok', 'forbidden', to_jsonb(v_forbidden),
                              'messages', v_messages, 'runs', v_runs, 'teardowns', v_teardowns,
                              'work', v_work || jsonb_build_object('job_id', v_job));
END;
$fn$;
