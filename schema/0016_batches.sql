-- Batches (docs/ARCHITECTURE.md, "Batches"): a batch and its items live in
-- PostgreSQL, so a batch outlives a control-plane restart.  The API writes a
-- batch and its items (and cancels); the leader's batch runner claims items,
-- sends each through a data plane under the batch's API key, writes the
-- result, delivers callbacks and ends the batch.  Every state change wakes
-- the waiting SYNC streams of any replica through pg_notify('vmx_batch', id).

CREATE TABLE batches (
    id                 uuid PRIMARY KEY,
    workspace_id       uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    environment_id     uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    -- the key whose resources, limits and audit the items run under
    api_key_id         uuid NOT NULL REFERENCES api_keys ON DELETE CASCADE,
    created_by         uuid REFERENCES users ON DELETE SET NULL,
    mode               text NOT NULL CHECK (mode IN ('ASYNC', 'SYNC', 'CALLBACK')),
    status             text NOT NULL DEFAULT 'QUEUED'
                       CHECK (status IN ('QUEUED', 'RUNNING', 'COMPLETED',
                                         'CANCELLING', 'CANCELLED', 'FAILED')),
    -- a prioritization pool of the environment the items are counted in;
    -- NULL: each item's resource's own
    pool               text CHECK (length(pool) <= 200),
    callback_url       text CHECK (length(callback_url) <= 2048),
    -- the HMAC key of the callbacks, sealed as provider secrets are
    callback_secret    bytea,
    -- the batch.completed callback, once the batch has ended
    callback_status    text CHECK (callback_status IN ('PENDING', 'DELIVERED', 'FAILED')),
    callback_tries     integer NOT NULL DEFAULT 0,
    callback_next_at   timestamptz,
    callback_error     text,
    total              integer NOT NULL CHECK (total BETWEEN 1 AND 50000),
    succeeded          integer NOT NULL DEFAULT 0,
    failed             integer NOT NULL DEFAULT 0,
    cancelled          integer NOT NULL DEFAULT 0,
    -- failure of the whole batch (its key deleted or disabled ...)
    error              jsonb,
    -- OpenAI's batch shape (POST /v1/batches): endpoint, input_file_id,
    -- completion_window, metadata, output_file_id, error_file_id; NULL for
    -- a completion-batch
    openai             jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    cancelled_at       timestamptz
);

CREATE INDEX batches_environment_time ON batches (environment_id, created_at DESC);
CREATE INDEX batches_open ON batches (created_at) WHERE status IN ('QUEUED', 'RUNNING', 'CANCELLING');

CREATE TABLE batch_items (
    batch_id           uuid NOT NULL REFERENCES batches ON DELETE CASCADE,
    idx                integer NOT NULL,           -- from 0, in the order given
    custom_id          text CHECK (length(custom_id) <= 512),
    resource           text NOT NULL,              -- the resource's name
    request            jsonb NOT NULL,             -- the chat completion body
    status             text NOT NULL DEFAULT 'PENDING'
                       CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED',
                                         'FAILED', 'CANCELLED')),
    tries              integer NOT NULL DEFAULT 0, -- attempts that reached a provider
    not_before         timestamptz,                -- waits for capacity until then
    claimed_by         text,                       -- the runner's instance id
    claimed_at         timestamptz,
    status_code        integer,
    response           jsonb,                      -- the gateway's answer
    error              jsonb,                      -- {code, message} when FAILED
    request_id         uuid,                       -- x-vmx-request-id: the audit record
    started_at         timestamptz,
    finished_at        timestamptz,
    callback_status    text CHECK (callback_status IN ('PENDING', 'DELIVERED', 'FAILED')),
    callback_tries     integer NOT NULL DEFAULT 0,
    callback_next_at   timestamptz,
    callback_error     text,
    PRIMARY KEY (batch_id, idx)
);

CREATE INDEX batch_items_pending ON batch_items (batch_id, idx) WHERE status IN ('PENDING', 'RUNNING');
CREATE INDEX batch_items_callbacks ON batch_items (callback_next_at) WHERE callback_status = 'PENDING';

-- uploaded files of OpenAI's shape (POST /v1/files, purpose "batch") and the
-- output and error files a batch of that shape writes
CREATE TABLE files (
    id                 uuid PRIMARY KEY,
    workspace_id       uuid NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    environment_id     uuid NOT NULL REFERENCES environments ON DELETE CASCADE,
    purpose            text NOT NULL CHECK (purpose IN ('batch', 'batch_output')),
    filename           text NOT NULL CHECK (length(filename) <= 255),
    bytes              bigint NOT NULL,
    content            bytea NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX files_environment_time ON files (environment_id, created_at DESC);

-- each audit record of a batch item names its batch and item
ALTER TABLE audit_records ADD COLUMN batch_id uuid, ADD COLUMN batch_item integer;
CREATE INDEX audit_records_batch ON audit_records (batch_id, batch_item) WHERE batch_id IS NOT NULL;
