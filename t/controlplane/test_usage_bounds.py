"""POST .../usage bounds everything it builds from the body (metrics,
dimensions, filter fields and their values): a hostile body is a 400, never
a crash."""
from cphelpers import env_path

METRICS = ("requestCount", "attemptCount", "errorCount", "promptTokens", "completionTokens",
           "totalTokens", "tokensPerSecond", "timeToFirstToken", "requestDuration",
           "providerDuration", "gateDuration", "routingDuration")


def usage(api, env, raw):
    return api.request("POST", env_path(env, "/usage"), raw,
                       headers={"Content-Type": "application/json"})


def alive(api, cp_stack):
    assert cp_stack.cp.proc.poll() is None, cp_stack.cp.log_text()[-3000:]
    status, _, _ = api.request("GET", "/api/v1/health", token=None)
    assert status == 200


def test_duplicate_metric_keys(api, cp_stack, env):
    raw = ('{"granularity":"hour","metrics":{'
           + ",".join(['"requestCount":"sum"'] * 3000) + "}}")
    status, body, _ = usage(api, env, raw)
    alive(api, cp_stack)
    assert status == 400, body
    assert body["error"]["details"]["field"] == "metrics.requestCount"


def test_every_metric_once_is_fine(api, cp_stack, env):
    raw = ('{"granularity":"hour","metrics":{'
           + ",".join(f'"{m}":"sum"' for m in METRICS) + "}}")
    status, body, _ = usage(api, env, raw)
    assert status == 200, body
    assert body["data"] == []


def test_duplicate_filter_fields(api, cp_stack, env):
    raw = ('{"granularity":"hour","metrics":{"requestCount":"sum"},"filter":{"fields":{'
           + ",".join(['"model":["a","b"]'] * 3000) + "}}}")
    status, body, _ = usage(api, env, raw)
    alive(api, cp_stack)
    assert status == 400, body
    assert refused_at(body, "filter.fields.model")


def refused_at(body, field):
    """Refused naming field, or, for a body of many short values, as too dense for its size
    before any handler reads it (the parse's memory is bounded)."""
    return (body["error"]["details"].get("field") == field
            or "too many values for its size" in body["error"]["message"])


def test_many_dimensions_and_values(api, cp_stack, env):
    raw = ('{"granularity":"hour","metrics":{"requestCount":"sum"},"dimensions":['
           + ",".join(['"model"'] * 3000) + "]}")
    status, body, _ = usage(api, env, raw)
    assert status == 400 and refused_at(body, "dimensions[1]"), body
    for values in (['"m"'] * 3000, ['"' + "x" * 600 + '"'] * 50):
        raw = ('{"granularity":"hour","metrics":{"requestCount":"sum"},"filter":{"fields":'
               '{"model":[' + ",".join(values) + "]}}}")
        status, body, _ = usage(api, env, raw)
        assert status == 400, body
        assert refused_at(body, "filter.fields.model"), body
    alive(api, cp_stack)
