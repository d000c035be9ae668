-- The API's audit object (schema 0014) names the batch and item of a batch
-- item's record (schema 0016); vmx_audit_full_json() builds on it.
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
    'batchId', a.batch_id, 'batchItem', a.batch_item,
    'events', a.events::json, 'attempts', a.attempts::json,
    'payloadTruncated', a.payload_truncated)
$$;

