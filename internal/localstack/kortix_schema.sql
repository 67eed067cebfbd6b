-- A faithful fixture of the parts of Kortix's production schema (Supabase)
-- that DELETE /threads/{thread_id} touches. The service does not own these
-- tables; tests, benchmarks and `make dev` create them from this file.
-- Columns that do not matter to the delete are left out, but the foreign-key
-- actions, the message-counter trigger and the indexes are kept exactly,
-- because they decide correctness and speed.

CREATE SCHEMA IF NOT EXISTS basejump;

CREATE TYPE basejump.account_role AS ENUM ('owner', 'member');
CREATE TYPE public.app_role AS ENUM ('user', 'admin', 'super_admin');

CREATE TABLE basejump.accounts (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    primary_owner_user_id uuid NOT NULL,
    name                  text,
    slug                  text UNIQUE,
    personal_account      boolean NOT NULL DEFAULT false,
    created_at            timestamptz DEFAULT now(),
    updated_at            timestamptz DEFAULT now()
);

CREATE TABLE basejump.account_user (
    user_id      uuid NOT NULL,
    account_id   uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    account_role basejump.account_role NOT NULL,
    PRIMARY KEY (user_id, account_id)
);

CREATE TABLE public.user_roles (
    user_id uuid PRIMARY KEY,
    role    public.app_role NOT NULL DEFAULT 'user'
);

CREATE TABLE public.resources (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    type        text NOT NULL DEFAULT 'sandbox',
    external_id text,
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'stopped', 'deleted', 'pooled')),
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_resources_account_id ON public.resources (account_id);
CREATE INDEX idx_resources_external_id ON public.resources (external_id);

CREATE TABLE public.projects (
    project_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL,
    description         text,
    account_id          uuid NOT NULL REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    is_public           boolean DEFAULT false,
    sandbox_resource_id uuid REFERENCES public.resources (id),
    sandbox             jsonb DEFAULT '{}'::jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_projects_account_id ON public.projects (account_id);

CREATE TABLE public.threads (
    thread_id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          uuid REFERENCES basejump.accounts (id) ON DELETE CASCADE,
    project_id          uuid REFERENCES public.projects (project_id) ON DELETE CASCADE,
    parent_thread_id    uuid REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    name                text,
    is_public           boolean DEFAULT false,
    metadata            jsonb DEFAULT '{}'::jsonb,
    user_message_count  integer NOT NULL DEFAULT 0,
    total_message_count integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (thread_id, account_id)
);
CREATE INDEX idx_threads_account_id ON public.threads (account_id);
CREATE INDEX idx_threads_project_id ON public.threads (project_id);
CREATE INDEX idx_threads_parent_thread_id ON public.threads (parent_thread_id);

CREATE TABLE public.messages (
    message_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id      uuid NOT NULL REFERENCES public.threads (thread_id) ON DELETE CASCADE,
    type           text NOT NULL,
    is_llm_message boolean NOT NULL DEFAULT true,
    content        jsonb NOT NULL,
    metadata       jsonb DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_messages_thread_id ON public.messages (thread_id);

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
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id    uuid NOT NULL REFERENCES public.threads (thread_id), -- NO ACTION
    status       text NOT NULL DEFAULT 'running',
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    error        text,
    metadata     jsonb DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_agent_runs_thread_id ON public.agent_runs (thread_id);

-- The semantic-search vector store. Production uses pgvector's vector(1536);
-- real[] stands in where pgvector is not installed. The composite foreign
-- key is what matters to the delete.
CREATE TABLE public.documents (
    chunk_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id    uuid,
    thread_id     uuid,
    chunk_content text,
    embedding     real[],
    created_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, thread_id)
        REFERENCES public.threads (account_id, thread_id) ON DELETE CASCADE
);

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

-- Supabase Auth's sessions (GoTrue's auth.sessions, the columns it
-- defines): a row exists while the user is signed in; signing out deletes
-- it, and not_after (when set) ends it. Access tokens carry its id as
-- session_id; with JWT_REQUIRE_SESSION the delete requires it to exist.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TYPE auth.aal_level AS ENUM ('aal1', 'aal2', 'aal3');

CREATE TABLE auth.users (
    id         uuid PRIMARY KEY,
    email      varchar(255),
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);

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
