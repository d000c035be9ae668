-- Audit and usage records (SPEC §7), pulled from the data planes' spools
-- by the control plane (docs/ARCHITECTURE.md, "Audit and usage records").
--
-- audit_records   one row per client request, keyed by (id, timestamp)
-- usage_records   one row per provider attempt (a request that reached no
--                 provider: one row with attempt_index 0), keyed by
--                 (request_id, attempt_index, timestamp)
-- usage_minutely  per minute and dimensions: counts, sums, non-null
--                 counts, minima and maxima of the usage fields, kept in
--                 the transaction that inserts the usage rows
-- record_cursors  per data plane, the spool cursor committed with the rows
--
-- The three record tables are partitioned by UTC day (partition
-- <table>_pYYYYMMDD); vmx_ensure_partitions() creates days ahead and on
-- demand, vmx_drop_partitions() applies the retention.  A re-ingested
-- record hits the primary key and is ignored (ON CONFLICT DO NOTHING), and
-- usage_minutely only ever adds the rows that were really inserted.

CREATE TABLE record_cursors (
    dataplane   text PRIMARY KEY,
    cursor      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_records (
    id                 uuid NOT NULL,
    timestamp          timestamptz NOT NULL,
    workspace_id       uuid,
    environment_id     uuid,
    request_id         uuid,
    correlation_id     text,
    resource_id        uuid,
    resource           text,
    api_key_id         uuid,
    connection_id      uuid,
    provider           text,
    model              text,
    source_ip          text,
    method             text,
    path               text,
    stream             boolean,
    status_code        integer,
    duration           double precision,
    gate_duration      double precision,
    routing_duration   double precision,
    error_code         text,
    error_message      text,
    failure_reason     text,
    events             jsonb NOT NULL,
    attempts           jsonb NOT NULL,
    request            jsonb,
    response           jsonb,
    payload_truncated  boolean NOT NULL,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp);

CREATE INDEX audit_records_environment_time ON audit_records (environment_id, timestamp DESC);

CREATE TABLE usage_records (
    request_id           uuid NOT NULL,
    attempt_index        integer NOT NULL,
    timestamp            timestamptz NOT NULL,
    workspace_id         uuid,
    environment_id       uuid,
    resource_id          uuid,
    api_key_id           uuid,
    connection_id        uuid,
    correlation_id       text,
    provider             text,
    model                text,
    status_code          integer,
    failure_reason       text,
    prompt_tokens        bigint,
    completion_tokens    bigint,
    total_tokens         bigint,
    tokens_per_second    double precision,
    time_to_first_token  double precision,
    request_duration     double precision,
    provider_duration    double precision,
    gate_duration        double precision,
    routing_duration     double precision,
    PRIMARY KEY (request_id, attempt_index, timestamp)
) PARTITION BY RANGE (timestamp);

CREATE INDEX usage_records_environment_time ON usage_records (environment_id, timestamp);

-- An error is an attempt without a status code or with one of 400 and up.
-- For each usage field <f>: <f>_sum (0 when no value), <f>_n (how many
-- values), <f>_min, <f>_max; avg = sum(<f>_sum) / sum(<f>_n).
CREATE TABLE usage_minutely (
    minute                    timestamptz NOT NULL,
    workspace_id              uuid,
    environment_id            uuid,
    resource_id               uuid,
    api_key_id                uuid,
    connection_id             uuid,
    provider                  text,
    model                     text,
    status_code               integer,
    failure_reason            text,
    request_count             bigint NOT NULL,
    error_count               bigint NOT NULL,
    prompt_tokens_sum         double precision NOT NULL,
    prompt_tokens_n           bigint NOT NULL,
    prompt_tokens_min         double precision,
    prompt_tokens_max         double precision,
    completion_tokens_sum     double precision NOT NULL,
    completion_tokens_n       bigint NOT NULL,
    completion_tokens_min     double precision,
    completion_tokens_max     double precision,
    total_tokens_sum          double precision NOT NULL,
    total_tokens_n            bigint NOT NULL,
    total_tokens_min          double precision,
    total_tokens_max          double precision,
    tokens_per_second_sum     double precision NOT NULL,
    tokens_per_second_n       bigint NOT NULL,
    tokens_per_second_min     double precision,
    tokens_per_second_max     double precision,
    time_to_first_token_sum   double precision NOT NULL,
    time_to_first_token_n     bigint NOT NULL,
    time_to_first_token_min   double precision,
    time_to_first_token_max   double precision,
    request_duration_sum      double precision NOT NULL,
    request_duration_n        bigint NOT NULL,
    request_duration_min      double precision,
    request_duration_max      double precision,
    provider_duration_sum     double precision NOT NULL,
    provider_duration_n       bigint NOT NULL,
    provider_duration_min     double precision,
    provider_duration_max     double precision,
    gate_duration_sum         double precision NOT NULL,
    gate_duration_n           bigint NOT NULL,
    gate_duration_min         double precision,
    gate_duration_max         double precision,
    routing_duration_sum      double precision NOT NULL,
    routing_duration_n        bigint NOT NULL,
    routing_duration_min      double precision,
    routing_duration_max      double precision,
    UNIQUE NULLS NOT DISTINCT (minute, workspace_id, environment_id, resource_id, api_key_id,
                               connection_id, provider, model, status_code, failure_reason)
) PARTITION BY RANGE (minute);

CREATE INDEX usage_minutely_environment_minute ON usage_minutely (environment_id, minute);

-- Creates the missing day partitions of the three tables for each UTC day
-- of days; returns how many it created.  Existence is checked first, so
-- the usual call takes no lock; creations are serialised between control
-- planes by an advisory lock.
CREATE FUNCTION vmx_ensure_partitions(days date[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    d        date;
    parent   text;
    part     text;
    created  integer := 0;
BEGIN
    FOREACH d IN ARRAY days LOOP
        FOREACH parent IN ARRAY ARRAY['audit_records', 'usage_records', 'usage_minutely'] LOOP
            part := parent || '_p' || to_char(d, 'YYYYMMDD');
            IF to_regclass(part) IS NULL THEN
                PERFORM pg_advisory_xact_lock(7428190003);
                EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %I'
                               ' FOR VALUES FROM (%L) TO (%L)', part, parent,
                               d::timestamp AT TIME ZONE 'UTC',
                               (d + 1)::timestamp AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END $$;

-- Drops the day partitions of the three tables older than keep_from;
-- returns how many it dropped.
CREATE FUNCTION vmx_drop_partitions(keep_from date) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    part     text;
    dropped  integer := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
         WHERE p.relname IN ('audit_records', 'usage_records', 'usage_minutely')
           AND c.relname ~ '_p[0-9]{8}$'
           AND to_date(right(c.relname, 8), 'YYYYMMDD') < keep_from
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- The API's audit object, without the payloads (lists) ...
CREATE FUNCTION vmx_audit_doc(a audit_records) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
SELECT jsonb_build_object(
    'id', a.id, 'timestamp', vmx_rfc3339(a.timestamp),
    'workspaceId', a.workspace_id, 'environmentId', a.environment_id,
    'requestId', a.request_id, 'correlationId', a.correlation_id,
    'resourceId', a.resource_id, 'resource', a.resource, 'apiKeyId', a.api_key_id,
    'connectionId', a.connection_id, 'provider', a.provider, 'model', a.model,
    'sourceIp', a.source_ip, 'method', a.method, 'path', a.path, 'stream', a.stream,
    'statusCode', a.status_code, 'duration', a.duration, 'gateDuration', a.gate_duration,
    'routingDuration', a.routing_duration, 'errorCode', a.error_code,
    'errorMessage', a.error_message, 'failureReason', a.failure_reason,
    'events', a.events, 'attempts', a.attempts, 'payloadTruncated', a.payload_truncated)
$$;

-- ... and with them (GET .../audit/{id})
CREATE FUNCTION vmx_audit_full_doc(a audit_records) RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$ SELECT vmx_audit_doc(a) || jsonb_build_object('request', a.request,
                                                         'response', a.response) $$;
