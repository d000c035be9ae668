-- Prices of the providers' models and the cost of every usage row
-- (docs/ARCHITECTURE.md, "Cost").
--
-- prices           USD per million tokens, exact to the micro-dollar: input
--                  (prompt), output (completion), cached_input (prompt tokens
--                  read from the provider's cache; NULL: billed as input).  A
--                  row is valid from valid_from until the next valid_from of
--                  the same provider and model (validTo is derived, so rows
--                  never overlap).  A usage row's model takes the price of its
--                  own name, else of the longest priced name it starts with
--                  followed by '-' (gpt-4o-2024-08-06 takes gpt-4o's); a Bedrock
--                  inference profile (us.anthropic...), the price of its model.
-- prices_version   bumped by every change, so that the ingestion, which keeps
--                  the table in memory, reloads it only then
-- usage_records.cost, audit_records.cost
--                  USD (numeric, exact); NULL when the row has no token count
--                  or its model no price.  A record's cost is the sum of its
--                  attempts' costs.
-- usage_minutely.cost_*   as the other usage fields
--
-- The seed: the five providers' public list prices (standard tier, prompts
-- under any long-context threshold, Bedrock on-demand in us-east-1) as of
-- 2025-12-01, valid from 2025-01-01.  Edit them through /api/v1/prices.

CREATE TABLE prices (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider      text NOT NULL
                  CHECK (provider IN ('openai', 'anthropic', 'gemini', 'groq', 'aws-bedrock')),
    model         text NOT NULL CHECK (octet_length(model) BETWEEN 1 AND 128),
    currency      text NOT NULL DEFAULT 'USD' CHECK (currency = 'USD'),
    input         numeric(12, 6) NOT NULL CHECK (input >= 0),
    output        numeric(12, 6) NOT NULL CHECK (output >= 0),
    cached_input  numeric(12, 6) CHECK (cached_input >= 0),
    valid_from    timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, model, valid_from)
);

CREATE TABLE prices_version (
    version  bigint NOT NULL
);
INSERT INTO prices_version VALUES (1);

CREATE FUNCTION vmx_prices_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$ BEGIN UPDATE prices_version SET version = version + 1; RETURN NULL; END $$;
CREATE TRIGGER prices_changed AFTER INSERT OR UPDATE OR DELETE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION vmx_prices_changed();

CREATE VIEW price_docs AS
SELECT p.id, p.provider, p.model, p.created_at,
       jsonb_build_object('id', p.id, 'provider', p.provider, 'model', p.model,
                          'currency', p.currency, 'input', trim_scale(p.input),
                          'output', trim_scale(p.output),
                          'cachedInput', trim_scale(p.cached_input),
                          'validFrom', vmx_rfc3339(p.valid_from),
                          'validTo', vmx_rfc3339(lead(p.valid_from)
                                                 OVER (PARTITION BY p.provider, p.model
                                                       ORDER BY p.valid_from)),
                          'createdAt', vmx_rfc3339(p.created_at),
                          'updatedAt', vmx_rfc3339(p.updated_at)) AS doc
  FROM prices p;

INSERT INTO prices (provider, model, input, output, cached_input, valid_from)
SELECT s.provider, s.model, s.input, s.output, s.cached_input, '2025-01-01T00:00:00Z'
  FROM (VALUES
    ('openai', 'gpt-5.1', 1.25, 10.00, 0.125),
    ('openai', 'gpt-5', 1.25, 10.00, 0.125),
    ('openai', 'gpt-5-mini', 0.25, 2.00, 0.025),
    ('openai', 'gpt-5-nano', 0.05, 0.40, 0.005),
    ('openai', 'gpt-4.1', 2.00, 8.00, 0.50),
    ('openai', 'gpt-4.1-mini', 0.40, 1.60, 0.10),
    ('openai', 'gpt-4.1-nano', 0.10, 0.40, 0.025),
    ('openai', 'gpt-4o', 2.50, 10.00, 1.25),
    ('openai', 'gpt-4o-mini', 0.15, 0.60, 0.075),
    ('openai', 'o3', 2.00, 8.00, 0.50),
    ('openai', 'o3-mini', 1.10, 4.40, 0.55),
    ('openai', 'o4-mini', 1.10, 4.40, 0.275),
    ('anthropic', 'claude-opus-4-5', 5.00, 25.00, 0.50),
    ('anthropic', 'claude-opus-4-1', 15.00, 75.00, 1.50),
    ('anthropic', 'claude-opus-4', 15.00, 75.00, 1.50),
    ('anthropic', 'claude-sonnet-4-5', 3.00, 15.00, 0.30),
    ('anthropic', 'claude-sonnet-4', 3.00, 15.00, 0.30),
    ('anthropic', 'claude-3-7-sonnet', 3.00, 15.00, 0.30),
    ('anthropic', 'claude-3-5-sonnet', 3.00, 15.00, 0.30),
    ('anthropic', 'claude-haiku-4-5', 1.00, 5.00, 0.10),
    ('anthropic', 'claude-3-5-haiku', 0.80, 4.00, 0.08),
    ('anthropic', 'claude-3-haiku', 0.25, 1.25, 0.03),
    ('gemini', 'gemini-3-pro-preview', 2.00, 12.00, 0.20),
    ('gemini', 'gemini-2.5-pro', 1.25, 10.00, 0.125),
    ('gemini', 'gemini-2.5-flash', 0.30, 2.50, 0.03),
    ('gemini', 'gemini-2.5-flash-lite', 0.10, 0.40, 0.01),
    ('gemini', 'gemini-2.0-flash', 0.10, 0.40, 0.025),
    ('gemini', 'gemini-2.0-flash-lite', 0.075, 0.30, NULL),
    ('groq', 'llama-3.1-8b-instant', 0.05, 0.08, NULL),
    ('groq', 'llama-3.3-70b-versatile', 0.59, 0.79, NULL),
    ('groq', 'meta-llama/llama-4-scout-17b-16e-instruct', 0.11, 0.34, NULL),
    ('groq', 'meta-llama/llama-4-maverick-17b-128e-instruct', 0.20, 0.60, NULL),
    ('groq', 'openai/gpt-oss-120b', 0.15, 0.75, NULL),
    ('groq', 'openai/gpt-oss-20b', 0.10, 0.50, NULL),
    ('groq', 'qwen/qwen3-32b', 0.29, 0.59, NULL),
    ('groq', 'moonshotai/kimi-k2-instruct', 1.00, 3.00, NULL),
    ('aws-bedrock', 'anthropic.claude-opus-4-1-20250805-v1:0', 15.00, 75.00, 1.50),
    ('aws-bedrock', 'anthropic.claude-sonnet-4-20250514-v1:0', 3.00, 15.00, 0.30),
    ('aws-bedrock', 'anthropic.claude-3-7-sonnet-20250219-v1:0', 3.00, 15.00, 0.30),
    ('aws-bedrock', 'anthropic.claude-3-5-haiku-20241022-v1:0', 0.80, 4.00, 0.08),
    ('aws-bedrock', 'amazon.nova-pro-v1:0', 0.80, 3.20, 0.20),
    ('aws-bedrock', 'amazon.nova-lite-v1:0', 0.06, 0.24, 0.015),
    ('aws-bedrock', 'amazon.nova-micro-v1:0', 0.035, 0.14, 0.00875),
    ('aws-bedrock', 'meta.llama3-3-70b-instruct-v1:0', 0.72, 0.72, NULL),
    ('aws-bedrock', 'meta.llama3-1-70b-instruct-v1:0', 0.72, 0.72, NULL),
    ('aws-bedrock', 'meta.llama3-1-8b-instruct-v1:0', 0.22, 0.22, NULL)
  ) AS s (provider, model, input, output, cached_input);

ALTER TABLE usage_records ADD COLUMN cost numeric;
ALTER TABLE audit_records ADD COLUMN cost numeric;
ALTER TABLE usage_minutely
    ADD COLUMN cost_sum double precision NOT NULL DEFAULT 0,
    ADD COLUMN cost_n bigint NOT NULL DEFAULT 0,
    ADD COLUMN cost_min double precision,
    ADD COLUMN cost_max double precision;

-- The API's audit object (schema 0005) with its cost
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
    'authenticated', a.authenticated, 'cost', a.cost,
    'events', a.events::json, 'attempts', a.attempts::json,
    'payloadTruncated', a.payload_truncated)
$$;
