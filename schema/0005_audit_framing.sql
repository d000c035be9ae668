-- Audit records as the data plane frames them (docs/ARCHITECTURE.md, "Audit
-- and usage records"): payloads are kept as they were, whatever their bytes.
--
-- audit_records
--   request, response       the payload: JSON text as sent (format 'json'),
--                           other UTF-8 text ('text'), or base64 of bytes that
--                           are not UTF-8 or hold NUL ('base64'); NULL: none
--   request_format, ...     'json' | 'text' | 'base64' | NULL
--   events, attempts        JSON text as the data plane wrote it (validated by the
--                           ingestion; cast when read, never parsed when stored)
--   connection_ids          the connection of every attempt, for filters
--   authenticated           false: no API key matched (the path's ids kept)
--   Payloads compress with lz4: cheaper than pglz at ingestion speed.
-- usage_records
--   attempt                 the row is a provider attempt (else the request
--                           reached no provider)
--   final                   the row is its request's last: it counts the request
--   No primary key: rows arrive with their audit record, whose key refuses
--   a second delivery in the same transaction.  A BRIN index on time rather
--   than a b-tree per environment: rows come in time order, and percentile
--   queries read a time range anyway.
-- usage_minutely
--   request_count           requests (their last row), attempt_count attempts
-- audit_dead_letters        bytes of a spool the control plane could not
--                           store as a record: where, why, and the first 64 KiB

ALTER TABLE audit_records
    ALTER COLUMN events TYPE text USING events::text,
    ALTER COLUMN attempts TYPE text USING attempts::text,
    ALTER COLUMN request TYPE text USING request::text,
    ALTER COLUMN response TYPE text USING response::text,
    ADD COLUMN request_format text,
    ADD COLUMN response_format text,
    ADD COLUMN connection_ids uuid[] NOT NULL DEFAULT '{}',
    ADD COLUMN authenticated boolean NOT NULL DEFAULT true;

UPDATE audit_records
   SET request_format = CASE WHEN request IS NULL THEN NULL ELSE 'json' END,
       response_format = CASE WHEN response IS NULL THEN NULL ELSE 'json' END,
       connection_ids = ARRAY(SELECT (a ->> 'connectionId')::uuid
                                FROM json_array_elements(attempts::json) a
                               WHERE a ->> 'connectionId' IS NOT NULL);

ALTER TABLE audit_records ALTER COLUMN request SET COMPRESSION lz4,
                          ALTER COLUMN response SET COMPRESSION lz4;

ALTER TABLE usage_records DROP CONSTRAINT usage_records_pkey,
    ADD COLUMN attempt boolean NOT NULL DEFAULT true,
    ADD COLUMN final boolean NOT NULL DEFAULT true;
DROP INDEX usage_records_environment_time;
CREATE INDEX usage_records_time ON usage_records USING brin (timestamp);

ALTER TABLE usage_minutely ADD COLUMN attempt_count bigint NOT NULL DEFAULT 0;
UPDATE usage_minutely SET attempt_count = request_count;

CREATE TABLE audit_dead_letters (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    dataplane   text NOT NULL,
    position    text NOT NULL,          -- <spool file>:<byte offset>
    reason      text NOT NULL,
    length      bigint NOT NULL,        -- of the bytes, whole
    raw         bytea NOT NULL          -- their first 64 KiB
);

CREATE INDEX audit_dead_letters_created ON audit_dead_letters (created_at);

-- The API's audit object, without the payloads (lists) ...
CREATE OR REPLACE FUNCTION vmx_audit_json(a audit_records) RETURNS json
    LANGUAGE sql STABLE
    AS $$
SELECT json_build_object(
    'id', a.id, 'timestamp', vmx_rfc3339(a.timestamp),
    'workspaceId', a.workspace_id, 'environmentId', a.environment_id,
    'requestId', a.request_id, 'correlationId', a.correlation_id,
    'resourceId', a.resource_id, 'resource', a.resource, 'apiKeyId', a.api_key_id,
    'connectionId', a.connection_id, 'provider', a.provider, 'model', a.model,
    'sourceIp', a.source_ip, 'method', a.method, 'path', a.path, 'stream', a.stream,
    'statusCode', a.status_code, 'duration', a.duration, 'gateDuration', a.gate_duration,
    'routingDuration', a.routing_duration, 'errorCode', a.error_code,
    'errorMessage', a.error_message, 'failureReason', a.failure_reason,
    'authenticated', a.authenticated,
    'events', a.events::json, 'attempts', a.attempts::json,
    'payloadTruncated', a.payload_truncated)
$$;

-- ... and with them (GET .../audit/{id}): JSON as it was sent, else a string
CREATE OR REPLACE FUNCTION vmx_audit_full_json(a audit_records) RETURNS json
    LANGUAGE sql STABLE
    AS $$
SELECT (left(vmx_audit_json(a)::text, -1)
        || ',"request":' || CASE WHEN a.request IS NULL THEN 'null'
                                 WHEN a.request_format = 'json' THEN a.request
                                 ELSE to_json(a.request)::text END
        || ',"requestFormat":' || coalesce(to_json(a.request_format)::text, 'null')
        || ',"response":' || CASE WHEN a.response IS NULL THEN 'null'
                                  WHEN a.response_format = 'json' THEN a.response
                                  ELSE to_json(a.response)::text END
        || ',"responseFormat":' || coalesce(to_json(a.response_format)::text, 'null')
        || '}')::json
$$;

DROP FUNCTION vmx_audit_full_doc(audit_records);
DROP FUNCTION vmx_audit_doc(audit_records);

-- An environment whose requests must all be audited: while a data plane's
-- spool is full it answers 503 rather than serve an unaudited request.
ALTER TABLE environments ADD COLUMN audit_required boolean NOT NULL DEFAULT false;

CREATE OR REPLACE VIEW environment_docs AS
SELECT e.id, e.workspace_id, e.created_at,
       jsonb_build_object('id', e.id, 'workspaceId', e.workspace_id, 'name', e.name,
                          'description', e.description, 'storePayload', e.store_payload,
                          'auditRequired', e.audit_required,
                          'createdAt', vmx_rfc3339(e.created_at),
                          'updatedAt', vmx_rfc3339(e.updated_at)) AS doc
  FROM environments e;
