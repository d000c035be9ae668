-- VM-X control plane: users, sessions, workspaces, environments, AI
-- connections, AI resources and API keys, plus the config version that the
-- data planes follow.
--
-- The *_docs views build the JSON documents the management API answers, so
-- a read is one query and the JSON field names live in one place.

CREATE FUNCTION vmx_rfc3339(t timestamptz) RETURNS text
    LANGUAGE sql STABLE STRICT
    AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') $$;

-- Bumped by a statement trigger in the transaction of every change that
-- reaches the data plane; starts at 1 so an empty data plane (version 0)
-- always receives the first snapshot.
CREATE TABLE config_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint  NOT NULL
);
INSERT INTO config_version (version) VALUES (1);

CREATE FUNCTION vmx_bump_config_version() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN UPDATE config_version SET version = version + 1; RETURN NULL; END $$;

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Login tokens, stored only as the SHA-256 of the token.
CREATE TABLE sessions (
    token_hash  text PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE workspaces (
    id           uuid PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text NOT NULL DEFAULT '',
    created_by   uuid REFERENCES users ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace_members (
    workspace_id  uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('OWNER', 'MEMBER')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);

CREATE TABLE environments (
    id             uuid PRIMARY KEY,
    workspace_id   uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    name           text NOT NULL,
    description    text NOT NULL DEFAULT '',
    store_payload  boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- config holds the non-secret fields; secrets maps each secret field name
-- to its encrypted blob ("v1:<key id>:<base64>").
CREATE TABLE connections (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    environment_id  uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    provider        text NOT NULL,
    config          jsonb NOT NULL DEFAULT '{}',
    secrets         jsonb NOT NULL DEFAULT '{}',
    allowed_models  jsonb NOT NULL DEFAULT '[]',
    capacity        jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, name)
);

CREATE TABLE resources (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    environment_id    uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    model             jsonb NOT NULL,
    routing           jsonb NOT NULL DEFAULT '{"enabled": false, "conditions": []}',
    fallback_models   jsonb NOT NULL DEFAULT '[]',
    use_fallback      boolean NOT NULL DEFAULT true,
    secondary_models  jsonb NOT NULL DEFAULT '[]',
    enforce_capacity  boolean NOT NULL DEFAULT false,
    capacity          jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, name)
);

-- Which connections a resource's models use: the foreign key to
-- connections (NO ACTION, checked at statement end so environment cascades
-- still work) makes deleting a used connection fail with 23503.
CREATE TABLE resource_connections (
    resource_id    uuid NOT NULL REFERENCES resources ON DELETE CASCADE,
    connection_id  uuid NOT NULL REFERENCES connections,
    PRIMARY KEY (resource_id, connection_id)
);
CREATE INDEX resource_connections_connection ON resource_connections (connection_id);

CREATE TABLE api_keys (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    environment_id    uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    name              text NOT NULL,
    description       text NOT NULL DEFAULT '',
    enabled           boolean NOT NULL DEFAULT true,
    key_hash          text NOT NULL UNIQUE,
    masked_key        text NOT NULL,
    resources         jsonb NOT NULL DEFAULT '[]',
    labels            jsonb NOT NULL DEFAULT '{}',
    enforce_capacity  boolean NOT NULL DEFAULT false,
    capacity          jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (environment_id, name)
);

-- A deleted resource leaves every key that listed it.
CREATE FUNCTION vmx_forget_deleted_resource() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
    BEGIN
        UPDATE api_keys SET resources = resources - OLD.id::text
         WHERE environment_id = OLD.environment_id AND resources ? OLD.id::text;
        RETURN NULL;
    END $$;
CREATE TRIGGER resources_forget AFTER DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION vmx_forget_deleted_resource();

CREATE TRIGGER workspaces_config_version AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();
CREATE TRIGGER environments_config_version AFTER INSERT OR UPDATE OR DELETE ON environments
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();
CREATE TRIGGER connections_config_version AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();
CREATE TRIGGER resources_config_version AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();
CREATE TRIGGER api_keys_config_version AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_bump_config_version();

CREATE VIEW user_docs AS
SELECT u.id, u.username,
       jsonb_build_object('id', u.id, 'username', u.username,
                          'createdAt', vmx_rfc3339(u.created_at),
                          'updatedAt', vmx_rfc3339(u.updated_at)) AS doc
  FROM users u;

CREATE VIEW workspace_docs AS
SELECT w.id, w.created_at,
       jsonb_build_object('id', w.id, 'name', w.name, 'description', w.description,
                          'createdBy', w.created_by,
                          'createdAt', vmx_rfc3339(w.created_at),
                          'updatedAt', vmx_rfc3339(w.updated_at)) AS doc
  FROM workspaces w;

CREATE VIEW member_docs AS
SELECT m.workspace_id, m.user_id AS id, m.created_at,
       jsonb_build_object('workspaceId', m.workspace_id, 'userId', m.user_id,
                          'username', u.username, 'role', m.role,
                          'createdAt', vmx_rfc3339(m.created_at)) AS doc
  FROM workspace_members m JOIN users u ON u.id = m.user_id;

CREATE VIEW environment_docs AS
SELECT e.id, e.workspace_id, e.created_at,
       jsonb_build_object('id', e.id, 'workspaceId', e.workspace_id, 'name', e.name,
                          'description', e.description, 'storePayload', e.store_payload,
                          'createdAt', vmx_rfc3339(e.created_at),
                          'updatedAt', vmx_rfc3339(e.updated_at)) AS doc
  FROM environments e;

-- Secret fields read as "********", whatever they hold.
CREATE VIEW connection_docs AS
SELECT c.id, c.workspace_id, c.environment_id, c.created_at,
       jsonb_build_object('id', c.id, 'workspaceId', c.workspace_id,
                          'environmentId', c.environment_id, 'name', c.name,
                          'description', c.description, 'provider', c.provider,
                          'config', c.config || coalesce(
                              (SELECT jsonb_object_agg(k, to_jsonb('********'::text))
                                 FROM jsonb_object_keys(c.secrets) k), '{}'),
                          'allowedModels', c.allowed_models, 'capacity', c.capacity,
                          'discoveredCapacity', '{}'::jsonb,
                          'createdAt', vmx_rfc3339(c.created_at),
                          'updatedAt', vmx_rfc3339(c.updated_at)) AS doc
  FROM connections c;

CREATE VIEW resource_docs AS
SELECT r.id, r.workspace_id, r.environment_id, r.created_at,
       jsonb_build_object('id', r.id, 'workspaceId', r.workspace_id,
                          'environmentId', r.environment_id, 'name', r.name,
                          'description', r.description, 'model', r.model,
                          'routing', r.routing, 'fallbackModels', r.fallback_models,
                          'useFallback', r.use_fallback,
                          'secondaryModels', r.secondary_models,
                          'enforceCapacity', r.enforce_capacity, 'capacity', r.capacity,
                          'createdAt', vmx_rfc3339(r.created_at),
                          'updatedAt', vmx_rfc3339(r.updated_at)) AS doc
  FROM resources r;

CREATE VIEW api_key_docs AS
SELECT k.id, k.workspace_id, k.environment_id, k.created_at,
       jsonb_build_object('id', k.id, 'workspaceId', k.workspace_id,
                          'environmentId', k.environment_id, 'name', k.name,
                          'description', k.description, 'enabled', k.enabled,
                          'maskedKey', k.masked_key, 'resources', k.resources,
                          'labels', k.labels, 'enforceCapacity', k.enforce_capacity,
                          'capacity', k.capacity,
                          'createdAt', vmx_rfc3339(k.created_at),
                          'updatedAt', vmx_rfc3339(k.updated_at)) AS doc
  FROM api_keys k;
