-- A faithful fixture of the parts of Kortix's production schema (Supabase)
-- that DELETE /threads/{thread_id} touches. The service does not own these
-- tables; tests, benchmarks and `make dev` create them from this file.
--
-- Source: an introspected dump of Kortix's production schema (drizzle-kit
-- introspection of the Supabase database). For the tables the delete reads,
-- locks or deletes (threads, messages, agent_runs, documents, projects,
-- resources, api_keys, accounts, account_user, user_roles) this file keeps
-- the dump's columns that matter, its foreign keys with their actions, and
-- its indexes, partial ones included. It also has every table whose foreign
-- key points at a deleted row: the cascade visits them on each delete
-- (ON DELETE CASCADE removes their rows, SET NULL rewrites them), so they
-- decide its cost even when empty. Those tables keep only their key
-- columns and the indexes on them.
--
-- Deliberate differences from production, each harmless to the delete:
--   * pgvector's vector(1536) is real[] (pgvector is not in Debian), and
--     the HNSW/IVFFlat indexes on those columns are left out;
--   * no row-level security (the service connects as the table owner,
--     which bypasses it) and no policies;
--   * no foreign keys to auth.users from accounts, account_user and
--     user_roles, and no CHECK that a personal account has no slug: test
--     seeds create users without auth.users rows;
--   * documents.account_id is nullable (production: NOT NULL), so tests
--     can seed vector rows of account-less threads; the delete removes
--     vector rows by thread_id either way;
--   * projects keeps the legacy sandbox jsonb column, which the contract
--     still reads.
-- The introspection does not list triggers: the message-counter trigger and
-- the updated_at triggers are those of Kortix's migrations.

CREATE SCHEMA IF NOT EXISTS basejump;
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TYPE basejump.account_role AS ENUM ('owner', 'member');
CREATE TYPE public.app_role AS ENUM ('user', 'admin', 'super_admin');
CREATE TYPE public.thread_status AS ENUM ('pending', 'initializing', 'ready', 'error');

-- Supabase Auth's users (the columns the fixture needs).
CREATE TABLE auth.users (
    id         uuid PRIMARY KEY,
    email      varchar(255),
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

-- Kortix's updated_at trigger function (its migrations put it on threads,
-- messages, agent_runs and projects).
CREATE FUNCTION public.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at = timezone('utc'::text, now());
    RETURN NEW;
END;
$$;

CREATE TABLE basejump.accounts (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    primary_owner_user_id uuid NOT NULL,
    name                  text,
    slug                  text UNIQUE,
    personal_account      boolean NOT NULL DEFAULT false,
    created_at            timestamptz DEFAULT now(),
    updated_at            timestamptz DEFAULT now()
);
CREATE INDEX idx_accounts_id_owner ON basejump.accounts (id, primary_owner_user_id);
CREATE INDEX idx_accounts_personal_owner ON basejump.accounts (personal_account, primary_owner_user_id) WHERE personal_account = true;
CREATE INDEX idx_accounts_primary_owner ON basejump.accounts (primary_owner_user_id);
CREATE INDEX idx_accounts_primary_owner_user_id ON basejump.accounts (primary_owner_user_id);

CREATE TABLE basejump.account_user (
    user_id      uuid NOT NULL,
    account_id   uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    account_role basejump.account_role NOT NULL,
    PRIMARY KEY (user_id, account_id)
);
CREATE INDEX idx_account_user_account_id ON basejump.account_user (account_id);
CREATE INDEX idx_account_user_composite ON basejump.account_user (user_id, account_id);
CREATE INDEX idx_account_user_user_id ON basejump.account_user (user_id);
CREATE INDEX idx_basejump_account_user_user_id ON basejump.account_user (user_id);

CREATE TABLE public.user_roles (
    user_id uuid PRIMARY KEY,
    role    public.app_role NOT NULL DEFAULT 'user'
);
CREATE INDEX idx_user_roles_role ON public.user_roles (role);
CREATE INDEX idx_user_roles_user_role ON public.user_roles (user_id, role);

CREATE TABLE public.resources (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    type        text NOT NULL DEFAULT 'sandbox',
    external_id text,
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'stopped', 'deleted', 'pooled')),
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    pooled_at   timestamptz
);
CREATE INDEX idx_resources_account_id ON public.resources (account_id);
CREATE INDEX idx_resources_external_id ON public.resources (external_id);
CREATE INDEX idx_resources_external_id_type ON public.resources (external_id, type);
CREATE INDEX idx_resources_id ON public.resources (id);
CREATE INDEX idx_resources_pooled ON public.resources (status, type, pooled_at) WHERE status = 'pooled' AND type = 'sandbox';
CREATE INDEX idx_resources_pooled_fifo ON public.resources (pooled_at) WHERE status = 'pooled' AND type = 'sandbox';
CREATE INDEX idx_resources_status ON public.resources (status);
CREATE INDEX idx_resources_type ON public.resources (type);

CREATE TABLE public.projects (
    project_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,
    description         text,
    account_id          uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    is_public           boolean DEFAULT false,
    sandbox_resource_id uuid REFERENCES public.resources (id),
    sandbox             jsonb DEFAULT '{}'::jsonb,
    icon_name           text,
    category            text DEFAULT 'Uncategorized',
    categories          text[] DEFAULT '{}',
    last_categorized_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_projects_account_created ON public.projects (account_id, created_at);
CREATE INDEX idx_projects_account_id ON public.projects (account_id);
CREATE INDEX idx_projects_account_id_is_public ON public.projects (account_id, is_public) WHERE is_public IS NOT NULL;
CREATE INDEX idx_projects_categories_gin ON public.projects USING gin (categories);
CREATE INDEX idx_projects_categorization_stale ON public.projects (updated_at, last_categorized_at)
    WHERE last_categorized_at IS NULL OR last_categorized_at < updated_at;
CREATE INDEX idx_projects_category ON public.projects (category);
CREATE INDEX idx_projects_category_created_at ON public.projects (category, created_at);
CREATE INDEX idx_projects_created_at ON public.projects (created_at);
CREATE INDEX idx_projects_is_public_account_id ON public.projects (is_public, account_id) WHERE is_public IS NOT NULL;
CREATE INDEX idx_projects_last_categorized ON public.projects (last_categorized_at) WHERE last_categorized_at IS NOT NULL;
CREATE INDEX idx_projects_last_categorized_at ON public.projects (last_categorized_at);
CREATE INDEX idx_projects_project_id ON public.projects (project_id);
CREATE INDEX idx_projects_project_id_account ON public.projects (project_id, account_id);
CREATE INDEX idx_projects_sandbox_resource ON public.projects (sandbox_resource_id) WHERE sandbox_resource_id IS NOT NULL;
CREATE INDEX idx_projects_sandbox_resource_id ON public.projects (sandbox_resource_id);
CREATE TRIGGER update_projects_updated_at BEFORE UPDATE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

CREATE TABLE public.threads (
    thread_id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id                  uuid REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    project_id                  uuid REFERENCES public.projects (project_id) ON DELETE CASCADE,
    parent_thread_id            uuid REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    depth_level                 integer DEFAULT 0 CHECK (depth_level >= 0),
    name                        text DEFAULT 'New Chat',
    is_public                   boolean DEFAULT false,
    metadata                    jsonb DEFAULT '{}'::jsonb,
    created_by_user_id          uuid REFERENCES auth.users (id),
    team_context                jsonb DEFAULT '{}'::jsonb,
    user_message_count          integer NOT NULL DEFAULT 0,
    total_message_count         integer NOT NULL DEFAULT 0,
    status                      public.thread_status DEFAULT 'ready',
    initialization_error        text,
    initialization_started_at   timestamptz,
    initialization_completed_at timestamptz,
    memory_enabled              boolean DEFAULT true,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, account_id)
);
CREATE INDEX idx_threads_account_created_desc ON public.threads (account_id, created_at DESC);
CREATE INDEX idx_threads_account_id ON public.threads (account_id);
CREATE INDEX idx_threads_account_id_created_at ON public.threads (account_id, created_at);
CREATE INDEX idx_threads_account_id_is_public ON public.threads (account_id, is_public) WHERE is_public IS NOT NULL;
CREATE INDEX idx_threads_account_project ON public.threads (thread_id, account_id, project_id);
CREATE INDEX idx_threads_account_status ON public.threads (account_id, status);
CREATE INDEX idx_threads_account_updated_desc ON public.threads (account_id, updated_at DESC);
CREATE INDEX idx_threads_created_at ON public.threads (created_at);
CREATE INDEX idx_threads_created_by ON public.threads (created_by_user_id) WHERE created_by_user_id IS NOT NULL;
CREATE INDEX idx_threads_depth_level ON public.threads (depth_level) WHERE depth_level > 0;
CREATE INDEX idx_threads_is_public_account_id ON public.threads (is_public, account_id) WHERE is_public IS NOT NULL;
CREATE INDEX idx_threads_memory_enabled ON public.threads (thread_id) WHERE memory_enabled = false;
CREATE INDEX idx_threads_metadata ON public.threads USING gin (metadata);
CREATE INDEX idx_threads_name ON public.threads (name);
CREATE INDEX idx_threads_parent_thread_id ON public.threads (parent_thread_id) WHERE parent_thread_id IS NOT NULL;
CREATE INDEX idx_threads_project_account ON public.threads (project_id, account_id);
CREATE INDEX idx_threads_project_created ON public.threads (project_id, created_at);
CREATE INDEX idx_threads_project_id ON public.threads (project_id);
CREATE INDEX idx_threads_project_updated ON public.threads (project_id, updated_at);
CREATE INDEX idx_threads_public ON public.threads (is_public) WHERE is_public = true;
CREATE INDEX idx_threads_status ON public.threads (status);
CREATE INDEX idx_threads_thread_id ON public.threads (thread_id) WHERE thread_id IS NOT NULL;
CREATE INDEX idx_threads_thread_id_account ON public.threads (thread_id, account_id);
CREATE INDEX idx_threads_thread_id_account_project ON public.threads (thread_id, account_id, project_id) WHERE thread_id IS NOT NULL;
CREATE INDEX idx_threads_thread_id_project ON public.threads (thread_id, project_id);
CREATE INDEX idx_threads_updated_at ON public.threads (updated_at);
CREATE INDEX idx_threads_user_message_count ON public.threads (user_message_count);
CREATE TRIGGER update_threads_updated_at BEFORE UPDATE ON public.threads
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Agents and their versions: messages and agent runs point at them (SET
-- NULL when an agent goes). Key columns only.
CREATE TABLE public.agents (
    agent_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE
);
CREATE TABLE public.agent_versions (
    version_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id   uuid NOT NULL REFERENCES public.agents (agent_id) ON DELETE CASCADE
);

-- Summaries of archived messages; messages point at them (SET NULL), and
-- they go with their thread (CASCADE).
CREATE TABLE public.archived_context (
    archive_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id    uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    account_id   uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    batch_number integer NOT NULL DEFAULT 0,
    archived_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_archived_context_account_id ON public.archived_context (account_id);
CREATE INDEX idx_archived_context_archived_at ON public.archived_context (archived_at);
CREATE INDEX idx_archived_context_batch_number ON public.archived_context (batch_number);
CREATE INDEX idx_archived_context_thread_id ON public.archived_context (thread_id);

CREATE TABLE public.messages (
    message_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id          uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    type               text NOT NULL,
    is_llm_message     boolean NOT NULL DEFAULT true,
    content            jsonb NOT NULL,
    metadata           jsonb DEFAULT '{}'::jsonb,
    agent_id           uuid REFERENCES public.agents (agent_id) ON DELETE SET NULL,
    agent_version_id   uuid REFERENCES public.agent_versions (version_id) ON DELETE SET NULL,
    created_by_user_id uuid REFERENCES auth.users (id),
    is_omitted         boolean DEFAULT false,
    is_archived        boolean DEFAULT false,
    archive_id         uuid REFERENCES public.archived_context (archive_id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_messages_agent_id ON public.messages (agent_id);
CREATE INDEX idx_messages_agent_id_thread_id ON public.messages (agent_id, thread_id, created_at) WHERE agent_id IS NOT NULL;
CREATE INDEX idx_messages_agent_version_id ON public.messages (agent_version_id);
CREATE INDEX idx_messages_agent_version_id_thread_id ON public.messages (agent_version_id, thread_id, created_at) WHERE agent_version_id IS NOT NULL;
CREATE INDEX idx_messages_archive_id ON public.messages (archive_id);
CREATE INDEX idx_messages_created_at ON public.messages (created_at);
CREATE INDEX idx_messages_created_by ON public.messages (created_by_user_id) WHERE created_by_user_id IS NOT NULL;
CREATE INDEX idx_messages_is_archived ON public.messages (is_archived);
CREATE INDEX idx_messages_llm_not_omitted ON public.messages (thread_id, created_at) WHERE is_llm_message = true AND is_omitted = false;
CREATE INDEX idx_messages_llm_thread_created ON public.messages (thread_id, created_at) WHERE is_llm_message = true;
CREATE INDEX idx_messages_metadata_llm_response_id ON public.messages ((metadata ->> 'llm_response_id'));
CREATE INDEX idx_messages_thread_created ON public.messages (thread_id, created_at);
CREATE INDEX idx_messages_thread_created_at ON public.messages (thread_id, created_at);
CREATE INDEX idx_messages_thread_created_desc ON public.messages (thread_id, created_at DESC);
CREATE INDEX idx_messages_thread_id ON public.messages (thread_id);
CREATE INDEX idx_messages_thread_id_created_at ON public.messages (thread_id, created_at);
CREATE INDEX idx_messages_thread_llm ON public.messages (thread_id, created_at) WHERE is_llm_message = true;
CREATE INDEX idx_messages_thread_llm_created ON public.messages (thread_id, created_at) WHERE is_llm_message = true;
CREATE INDEX idx_messages_thread_llm_created_asc ON public.messages (thread_id, created_at) WHERE is_llm_message = true;
CREATE INDEX idx_messages_thread_optimized_types_created_desc ON public.messages (thread_id, created_at DESC)
    WHERE type = ANY (ARRAY['user', 'tool', 'assistant']);
CREATE INDEX idx_messages_thread_type_created ON public.messages (thread_id, type, created_at);
CREATE INDEX idx_messages_thread_type_created_at ON public.messages (thread_id, type, created_at) WHERE type IS NOT NULL;
CREATE INDEX idx_messages_thread_type_created_desc ON public.messages (thread_id, type, created_at DESC);
CREATE INDEX idx_messages_thread_type_llm_summary_created_desc ON public.messages (thread_id, type, is_llm_message, created_at DESC)
    WHERE type = 'summary';
CREATE TRIGGER update_messages_updated_at BEFORE UPDATE ON public.messages
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- Kortix keeps per-thread message counters up to date with a row-level
-- trigger; every deleted message runs it once.
CREATE FUNCTION public.update_thread_message_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE public.threads
           SET total_message_count = total_message_count + 1,
               user_message_count  = user_message_count + CASE WHEN NEW.type = 'user' THEN 1 ELSE 0 END,
               updated_at          = now()
         WHERE thread_id = NEW.thread_id;
        RETURN NEW;
    END IF;
    UPDATE public.threads
       SET total_message_count = GREATEST(total_message_count - 1, 0),
           user_message_count  = GREATEST(user_message_count - CASE WHEN OLD.type = 'user' THEN 1 ELSE 0 END, 0),
           updated_at          = now()
     WHERE thread_id = OLD.thread_id;
    RETURN OLD;
END;
$$;

CREATE TRIGGER trg_update_thread_message_counts
AFTER INSERT OR DELETE ON public.messages
FOR EACH ROW EXECUTE FUNCTION public.update_thread_message_counts();

CREATE TABLE public.agent_runs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id        uuid NOT NULL REFERENCES public.threads (thread_id), -- NO ACTION
    status           text NOT NULL DEFAULT 'running',
    started_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    error            text,
    agent_id         uuid REFERENCES public.agents (agent_id) ON DELETE SET NULL,
    agent_version_id uuid REFERENCES public.agent_versions (version_id) ON DELETE SET NULL,
    metadata         jsonb DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_agent_runs_agent_id ON public.agent_runs (agent_id);
CREATE INDEX idx_agent_runs_agent_version_id ON public.agent_runs (agent_version_id);
CREATE INDEX idx_agent_runs_created_at ON public.agent_runs (created_at);
CREATE INDEX idx_agent_runs_metadata ON public.agent_runs USING gin (metadata);
CREATE INDEX idx_agent_runs_started_at ON public.agent_runs (started_at);
CREATE INDEX idx_agent_runs_status ON public.agent_runs (status);
CREATE INDEX idx_agent_runs_status_created_desc ON public.agent_runs (status, created_at DESC);
CREATE INDEX idx_agent_runs_status_running ON public.agent_runs (status, started_at) WHERE status = 'running';
CREATE INDEX idx_agent_runs_status_started_at ON public.agent_runs (status, started_at) WHERE status IS NOT NULL;
CREATE INDEX idx_agent_runs_status_thread ON public.agent_runs (status, thread_id) WHERE status = 'running';
CREATE INDEX idx_agent_runs_thread_agent_created_desc ON public.agent_runs (thread_id, agent_id, created_at DESC);
CREATE INDEX idx_agent_runs_thread_created_desc ON public.agent_runs (thread_id, created_at DESC);
CREATE INDEX idx_agent_runs_thread_id ON public.agent_runs (thread_id);
CREATE INDEX idx_agent_runs_thread_status ON public.agent_runs (thread_id, status);
CREATE INDEX idx_agent_runs_thread_status_started ON public.agent_runs (thread_id, status, started_at) WHERE status = 'running';
CREATE TRIGGER update_agent_runs_updated_at BEFORE UPDATE ON public.agent_runs
    FOR EACH ROW EXECUTE FUNCTION public.update_updated_at_column();

-- The semantic-search vector store. Production uses pgvector's vector(1536)
-- with an HNSW index; real[] stands in where pgvector is not installed. The
-- composite foreign key is what matters to the delete.
CREATE TABLE public.documents (
    chunk_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id       uuid,
    account_id      uuid,
    chunk_content   text,
    embedding       real[],
    last_updated_at timestamptz DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (thread_id, account_id)
        REFERENCES public.threads (thread_id, account_id) ON DELETE CASCADE
);
CREATE INDEX idx_documents_account_id ON public.documents (account_id);
CREATE INDEX idx_documents_account_thread ON public.documents (account_id, thread_id);
CREATE INDEX idx_documents_thread_id ON public.documents (thread_id);
CREATE INDEX idx_documents_user_id ON public.documents (account_id) WHERE account_id IS NOT NULL;

-- Tables whose rows point at a deleted thread, message, agent run or
-- project: the cascade visits each of them on every delete.
CREATE TABLE public.credit_usage (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id     uuid NOT NULL,
    amount_dollars numeric(10, 2) NOT NULL DEFAULT 0.01,
    thread_id      uuid REFERENCES public.threads (thread_id) ON DELETE SET NULL,
    message_id     uuid REFERENCES public.messages (message_id) ON DELETE SET NULL,
    created_at     timestamptz DEFAULT now()
);
CREATE INDEX idx_credit_usage_account_id ON public.credit_usage (account_id);
CREATE INDEX idx_credit_usage_created_at ON public.credit_usage (created_at);
CREATE INDEX idx_credit_usage_message_id ON public.credit_usage (message_id);
CREATE INDEX idx_credit_usage_thread_id ON public.credit_usage (thread_id);

CREATE TABLE public.feedback (
    feedback_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id   uuid REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    message_id  uuid REFERENCES public.messages (message_id) ON DELETE CASCADE,
    account_id  uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    rating      numeric(2, 1) NOT NULL DEFAULT 5.0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_feedback_account_id ON public.feedback (account_id);
CREATE INDEX idx_feedback_created_at ON public.feedback (created_at);
CREATE INDEX idx_feedback_message_id ON public.feedback (message_id);
CREATE INDEX idx_feedback_thread_id ON public.feedback (thread_id);
CREATE UNIQUE INDEX idx_feedback_unique ON public.feedback (thread_id, message_id, account_id)
    WHERE thread_id IS NOT NULL AND message_id IS NOT NULL;

CREATE TABLE public.notifications (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    thread_id    uuid REFERENCES public.threads (thread_id) ON DELETE SET NULL,
    agent_run_id uuid REFERENCES public.agent_runs (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_notifications_account_id ON public.notifications (account_id);
CREATE INDEX idx_notifications_agent_run_id ON public.notifications (agent_run_id);
CREATE INDEX idx_notifications_created_at ON public.notifications (created_at);
CREATE INDEX idx_notifications_thread_id ON public.notifications (thread_id);

CREATE TABLE public.file_uploads (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id uuid,
    thread_id  uuid REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    agent_id   uuid REFERENCES public.agents (agent_id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX idx_file_uploads_account_id ON public.file_uploads (account_id);
CREATE INDEX idx_file_uploads_agent_id ON public.file_uploads (agent_id);
CREATE INDEX idx_file_uploads_created_at ON public.file_uploads (created_at);
CREATE INDEX idx_file_uploads_thread_id ON public.file_uploads (thread_id);

CREATE TABLE public.vapi_calls (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    call_id    text NOT NULL UNIQUE,
    agent_id   uuid REFERENCES public.agents (agent_id) ON DELETE SET NULL,
    thread_id  uuid REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_vapi_calls_agent_id ON public.vapi_calls (agent_id);
CREATE INDEX idx_vapi_calls_thread_id ON public.vapi_calls (thread_id);

CREATE TABLE public.thread_embeddings (
    thread_id  uuid PRIMARY KEY REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    embedding  real[],
    text_hash  text NOT NULL DEFAULT '',
    updated_at timestamptz DEFAULT now()
);
CREATE INDEX idx_thread_embeddings_updated ON public.thread_embeddings (updated_at);

CREATE TABLE public.conversation_analytics (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id    uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    agent_run_id uuid REFERENCES public.agent_runs (id) ON DELETE SET NULL, -- no index in production
    account_id   uuid NOT NULL,
    analyzed_at  timestamptz DEFAULT now()
);
CREATE INDEX idx_conv_analytics_account ON public.conversation_analytics (account_id);
CREATE INDEX idx_conv_analytics_analyzed_at ON public.conversation_analytics (analyzed_at);
CREATE INDEX idx_conv_analytics_thread ON public.conversation_analytics (thread_id);

CREATE TABLE public.conversation_analytics_queue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id    uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    agent_run_id uuid,
    account_id   uuid NOT NULL,
    status       text DEFAULT 'pending',
    created_at   timestamptz DEFAULT now()
);
CREATE INDEX idx_analytics_queue_status ON public.conversation_analytics_queue (status, created_at);
CREATE INDEX idx_analytics_queue_thread ON public.conversation_analytics_queue (thread_id);

CREATE TABLE public.user_memories (
    memory_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id       uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    content          text NOT NULL DEFAULT '',
    source_thread_id uuid REFERENCES public.threads (thread_id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_user_memories_account_id ON public.user_memories (account_id);
CREATE INDEX idx_user_memories_created_at ON public.user_memories (created_at);
CREATE INDEX idx_user_memories_source_thread ON public.user_memories (source_thread_id) WHERE source_thread_id IS NOT NULL;

CREATE TABLE public.memory_extraction_queue (
    queue_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    thread_id  uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_memory_queue_account_id ON public.memory_extraction_queue (account_id);
CREATE INDEX idx_memory_queue_thread_id ON public.memory_extraction_queue (thread_id);

CREATE TABLE public.clustering_runs (
    run_id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);
CREATE TABLE public.thread_clusters (
    cluster_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id     uuid NOT NULL
);
CREATE TABLE public.thread_cluster_assignments (
    thread_id  uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    run_id     uuid NOT NULL REFERENCES public.clustering_runs (run_id) ON DELETE CASCADE,
    cluster_id uuid REFERENCES public.thread_clusters (cluster_id) ON DELETE CASCADE,
    PRIMARY KEY (thread_id, run_id)
);
CREATE INDEX idx_thread_cluster_assignments_cluster ON public.thread_cluster_assignments (cluster_id);
CREATE INDEX idx_thread_cluster_assignments_run ON public.thread_cluster_assignments (run_id);

CREATE TABLE public.project_embeddings (
    project_id uuid PRIMARY KEY REFERENCES public.projects (project_id) ON DELETE CASCADE,
    embedding  real[],
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_project_embeddings_updated_at ON public.project_embeddings (updated_at);

CREATE TABLE public.taxonomy_nodes (
    node_id uuid PRIMARY KEY DEFAULT gen_random_uuid()
);
CREATE TABLE public.project_taxonomy (
    project_id uuid NOT NULL REFERENCES public.projects (project_id) ON DELETE CASCADE,
    node_id    uuid NOT NULL REFERENCES public.taxonomy_nodes (node_id) ON DELETE CASCADE,
    similarity double precision NOT NULL DEFAULT 1,
    PRIMARY KEY (project_id, node_id)
);
CREATE INDEX idx_project_taxonomy_node ON public.project_taxonomy (node_id);

CREATE TYPE public.api_key_status AS ENUM ('active', 'revoked', 'expired');

-- API keys as the original creates them: the public part is stored in
-- clear, the secret as hex HMAC-SHA256 keyed with API_KEY_SECRET.
CREATE TABLE public.api_keys (
    key_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    public_key      varchar(64) NOT NULL UNIQUE,
    secret_key_hash varchar(64) NOT NULL,
    account_id      uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    title           varchar(255) NOT NULL DEFAULT '',
    description     text,
    status          public.api_key_status DEFAULT 'active',
    expires_at      timestamptz,
    last_used_at    timestamptz,
    created_at      timestamptz DEFAULT now(),
    updated_at      timestamptz DEFAULT now()
);
CREATE INDEX idx_api_keys_account_id ON public.api_keys (account_id);
CREATE INDEX idx_api_keys_public_key ON public.api_keys (public_key);

-- Supabase Auth's sessions (GoTrue's auth.sessions, the columns it
-- defines): a row exists while the user is signed in; signing out deletes
-- it, and not_after (when set) ends it. Access tokens carry its id as
-- session_id; with JWT_REQUIRE_SESSION the delete requires it to exist.
CREATE TYPE auth.aal_level AS ENUM ('aal1', 'aal2', 'aal3');

CREATE TABLE auth.sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at   timestamptz,
    updated_at   timestamptz,
    factor_id    uuid,
    aal          auth.aal_level,
    not_after    timestamptz,
    refreshed_at timestamp,
    user_agent   text,
    ip           inet,
    tag          text
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);
CREATE INDEX sessions_not_after_idx ON auth.sessions (not_after DESC);
CREATE INDEX user_id_created_at_idx ON auth.sessions (user_id, created_at);
