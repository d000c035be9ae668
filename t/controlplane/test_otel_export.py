"""OpenTelemetry export from records a fake data plane serves (docs/ARCHITECTURE.md,
"OpenTelemetry export"): the spans' fields and attributes, records as objects or lines,
records without trace context, the connections' addresses, the bounded queue (drops counted)
and invalid settings.  The gateway-level tests are t/gateway/test_otel.py."""
import json
import secrets
import time
import urllib.request
import uuid

import pytest

from conftest import FakeDataPlane
from cphelpers import unique
from harness.api import Api
from harness.control_plane import ControlPlane, write_secret_files
from harness.otlp_collector import Collector
from harness.ports import free_port

QUEUE = 4


@pytest.fixture(scope="module")
def ot(cp_stack):
    """A control plane of its own (own database) pulling a fake data plane every 100 ms
    and exporting to a collector, with a queue of QUEUE records."""
    s = type("OtelStack", (), {})()
    s.base = cp_stack.base / "otel"
    cp_stack.pg.psql("CREATE DATABASE vmx_otel", dbname="postgres")
    s.token_file, s.master_key_file = write_secret_files(s.base / "secrets")
    s.dataplane = FakeDataPlane(s.token_file.read_text().strip()).start()
    s.collector = Collector().start()
    s.cp = ControlPlane(s.base / "cp", free_port(), cp_stack.pg.dsn_of("vmx_otel"),
                        [s.dataplane.url], s.token_file, s.master_key_file,
                        env={"VMX_INGEST_INTERVAL_MS": "100", "VMX_OTLP_ENDPOINT":
                             s.collector.url + "/", "VMX_OTLP_METRICS_INTERVAL": "1",
                             "VMX_OTLP_QUEUE_SIZE": str(QUEUE)})
    s.cp.start()
    try:
        s.api = Api(s.cp.url)
        s.api.login()
        ws = s.api.create_workspace(unique("ws"))
        s.ws, s.env = ws["id"], s.api.create_environment(ws["id"], "production")["id"]
        yield s
    finally:
        rc = s.cp.stop()
        s.dataplane.stop()
        s.collector.stop()
        assert rc == 0, f"control plane exited with {rc}"


def connection(ot, provider, config):
    return ot.api.create_connection(ot.ws, ot.env, name=unique("c"), provider=provider,
                                    config=config)["id"]


def record(ot, attempts, **fields):
    rid = str(uuid.uuid4())
    r = {"v": 1, "id": rid, "timestamp": "2026-11-22T00:00:01.250Z", "workspaceId": ot.ws,
         "environmentId": ot.env, "requestId": rid, "traceId": secrets.token_hex(16),
         "spanId": secrets.token_hex(8), "parentSpanId": None, "correlationId": None,
         "resourceId": str(uuid.uuid4()), "resource": "chat", "apiKeyId": str(uuid.uuid4()),
         "sourceIp": "127.0.0.1", "method": "POST", "path": "/v1/chat/completions",
         "statusCode": attempts[-1]["statusCode"] if attempts else 401,
         "errorCode": None, "errorMessage": None, "stream": False, "duration": 12.5,
         "gateDuration": 0.1, "routingDuration": 0.1, "events": [], "attempts": attempts,
         "request": None, "response": None, "payloadTruncated": False}
    last = attempts[-1] if attempts else {}
    r.update(provider=last.get("provider"), model=last.get("model"),
             connectionId=last.get("connectionId"))
    r.update(fields)
    return r


def attempt(provider, model, connection_id, status, **fields):
    a = {"provider": provider, "model": model, "connectionId": connection_id,
         "spanId": secrets.token_hex(8), "statusCode": status,
         "failureReason": None if status == 200 else "provider_error",
         "startedAt": "2026-11-22T00:00:01.253Z", "providerDuration": 8.0,
         "timeToFirstToken": 3.5, "promptTokens": 9 if status == 200 else None,
         "completionTokens": 5 if status == 200 else None,
         "totalTokens": 14 if status == 200 else None, "tokensPerSecond": 600.0}
    a.update(fields)
    return a


def spans_of(ot, trace, n, timeout=15):
    return ot.collector.wait_spans(
        lambda all_: (lambda s: s if len(s) >= n else None)(
            [s for s in all_ if s["traceId"] == trace]), timeout=timeout, what=f"trace {trace}")


def cp_metric(ot, name, **labels):
    with urllib.request.urlopen(ot.cp.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{")
               and all(f'{k}="{v}"' in line for k, v in labels.items()))


def test_spans_of_records(ot):
    custom = connection(ot, "openai", {"apiKey": "sk-otel-" + uuid.uuid4().hex,
                                       "baseUrl": "https://llm.example.invalid:8443/v1"})
    default = connection(ot, "openai", {"apiKey": "sk-otel-" + uuid.uuid4().hex})
    bedrock = connection(ot, "aws-bedrock", {"region": "eu-west-3",
                                             "iamRoleArn": "arn:aws:iam::123456789012:role/x"})
    marker = "payload-" + uuid.uuid4().hex
    fb = record(ot, [attempt("gemini", "gemini-x", custom, 503),
                     attempt("groq", "llama", default, 429, spanId=None),
                     attempt("aws-bedrock", "nova", bedrock, 200)],
                parentSpanId=secrets.token_hex(8), correlationId="corr-1",
                request={"messages": [{"role": "user", "content": marker}]},
                response={"model": "nova-v1:0", "choices": [{"message": {"content": marker}}]})
    streamed = record(ot, [attempt("anthropic", "claude", default, 200)], stream=True,
                      response=[{"model": "claude-3-x", "choices": []}, {"choices": []}])
    denied = record(ot, [], errorCode="invalid_api_key", errorMessage="bad key",
                    workspaceId=None, environmentId=None)
    untraced = record(ot, [attempt("openai", "gpt", default, 200)], traceId=None)
    ot.dataplane.add_records([fb, streamed, denied, untraced])

    server, first, second = sorted(spans_of(ot, fb["traceId"], 3), key=lambda s: s["kind"]
                                   * 10 + s["attrs"].get("vmx.attempt.index", 0))
    assert server["spanId"] == fb["spanId"] and server["parentSpanId"] == fb["parentSpanId"]
    assert server["name"] == "chat nova" and server["kind"] == 2
    assert server["startTimeUnixNano"] == "1795305601250000000"
    assert server["endTimeUnixNano"] == "1795305601262500000"
    assert server["attrs"]["gen_ai.system"] == "aws.bedrock"
    assert server["attrs"]["gen_ai.response.model"] == "nova-v1:0"
    assert server["attrs"]["vmx.correlation.id"] == "corr-1"
    assert server["attrs"]["vmx.attempts"] == 3
    assert first["attrs"]["gen_ai.system"] == "gcp.gemini" and first["status"]["code"] == 2
    assert first["attrs"]["error.type"] == "provider_error"
    assert first["attrs"]["server.address"] == "llm.example.invalid"
    assert first["attrs"]["server.port"] == 8443
    assert first["startTimeUnixNano"] == "1795305601253000000"
    assert first["endTimeUnixNano"] == "1795305601261000000"
    assert first["attrs"]["vmx.time_to_first_token"] == pytest.approx(0.0035)
    assert "gen_ai.response.model" not in first["attrs"]
    assert second["attrs"]["server.address"] == "bedrock-runtime.eu-west-3.amazonaws.com"
    assert second["attrs"]["server.port"] == 443
    assert second["parentSpanId"] == first["parentSpanId"] == fb["spanId"]
    assert second["attrs"]["vmx.attempt.index"] == 2     # the second has no span id: no span
    assert second["attrs"]["gen_ai.usage.output_tokens"] == 5

    server, client = sorted(spans_of(ot, streamed["traceId"], 2), key=lambda s: s["kind"])
    assert "parentSpanId" not in server and server["attrs"]["vmx.stream"] is True
    assert client["attrs"]["gen_ai.response.model"] == "claude-3-x"
    assert client["attrs"]["server.address"] == "api.openai.com"
    assert client["attrs"]["gen_ai.usage.input_tokens"] == 9

    (alone,) = spans_of(ot, denied["traceId"], 1)
    assert alone["name"] == "chat chat" and alone["attrs"]["error.type"] == "invalid_api_key"
    assert alone["status"].get("code", 0) == 0 and "vmx.workspace.id" not in alone["attrs"]

    time.sleep(0.5)
    assert not [s for s in ot.collector.spans()
                if s["attrs"].get("vmx.request.id") == untraced["id"]]
    with ot.collector.lock:
        assert marker not in json.dumps([b for _, b in ot.collector.traces])


def test_cost_is_exported(ot):
    """An attempt's cost (the price table's) is a span attribute and an OTLP sum."""
    model = "otel-" + uuid.uuid4().hex[:12]
    status, body, _ = ot.api.request("POST", "/api/v1/prices",
                                     {"provider": "openai", "model": model, "input": 2,
                                      "output": 4, "validFrom": "2026-01-01T00:00:00Z"})
    assert status == 201, body
    time.sleep(0.5)         # the ingestion's next round loads it
    default = connection(ot, "openai", {"apiKey": "sk-otel-" + uuid.uuid4().hex})
    priced = record(ot, [attempt("openai", model, default, 200)])
    ot.dataplane.add_records([priced])

    # 9 prompt tokens at 2 USD and 5 completion tokens at 4 USD per million
    server, client = sorted(spans_of(ot, priced["traceId"], 2), key=lambda s: s["kind"])
    assert client["attrs"]["vmx.usage.cost"] == pytest.approx(38e-6)
    assert server["attrs"]["vmx.usage.cost"] == pytest.approx(38e-6)

    def cost_point():
        m = ot.collector.last_metrics().get("vmx.usage.cost")
        points = [p for p in (m["sum"]["dataPoints"] if m else [])
                  if {"key": "gen_ai.request.model", "value": {"stringValue": model}}
                  in p["attributes"]]
        return points[0] if points else None

    deadline = time.time() + 10
    while cost_point() is None:
        assert time.time() < deadline, ot.collector.last_metrics().keys()
        time.sleep(0.1)
    assert cost_point()["asDouble"] == pytest.approx(38e-6)
    assert ot.collector.last_metrics()["vmx.usage.cost"]["unit"] == "USD"


def test_queue_full_drops_are_counted(ot):
    """While the collector fails, one batch is retried and the queue holds QUEUE records:
    the others' spans are dropped and counted; the waiting ones arrive afterwards."""
    conn = connection(ot, "openai", {"apiKey": "sk-otel-" + uuid.uuid4().hex})
    dropped = cp_metric(ot, "vmx_cp_otlp_dropped_spans_total", reason="queue_full")
    ot.collector.status = 503
    try:
        first = record(ot, [attempt("openai", "gpt", conn, 200)])
        ot.dataplane.add_records([first])
        deadline = time.time() + 10
        while ot.collector.failed_posts == 0:
            assert time.time() < deadline, "no export attempt"
            time.sleep(0.05)
        more = [record(ot, [attempt("openai", "gpt", conn, 200)]) for _ in range(QUEUE + 3)]
        ot.dataplane.add_records(more)
        deadline = time.time() + 10
        while cp_metric(ot, "vmx_cp_otlp_dropped_spans_total", reason="queue_full") \
                < dropped + 3 * 2:
            assert time.time() < deadline, "no drop counted"
            time.sleep(0.05)
    finally:
        ot.collector.status = None
    for r in [first] + more[:QUEUE]:
        spans_of(ot, r["traceId"], 2)
    assert cp_metric(ot, "vmx_cp_otlp_dropped_spans_total", reason="queue_full") == dropped + 6
    got = {s["traceId"] for s in ot.collector.spans()}
    assert not got & {r["traceId"] for r in more[QUEUE:]}

    def dropped_metric():
        m = ot.collector.last_metrics().get("vmx.otlp.dropped_spans")
        return m and int(m["sum"]["dataPoints"][0]["asInt"])

    deadline = time.time() + 10
    while dropped_metric() != dropped + 6:
        assert time.time() < deadline, ot.collector.last_metrics().keys()
        time.sleep(0.1)


@pytest.mark.parametrize("env,reason", [
    ({"VMX_OTLP_ENDPOINT": "ftp://collector:21"}, "VMX_OTLP_ENDPOINT"),
    ({"VMX_OTLP_HEADERS": "Authorization=Bearer%20hidden-value,novalue"}, "VMX_OTLP_HEADERS"),
    ({"VMX_OTLP_HEADERS": "bad name=hidden-value"}, "VMX_OTLP_HEADERS"),
    ({"VMX_OTLP_METRICS_INTERVAL": "0"}, "VMX_OTLP_METRICS_INTERVAL"),
])
def test_invalid_settings_refuse_to_start(ot, cp_stack, tmp_path, env, reason):
    e = {"VMX_OTLP_ENDPOINT": ot.collector.url}
    e.update(env)
    cp = ControlPlane(tmp_path / "cp", free_port(), cp_stack.pg.dsn_of("vmx_otel"),
                      [], ot.token_file, ot.master_key_file, env=e)
    with pytest.raises(RuntimeError, match="exited"):
        cp.start()
    log = cp.log_text()
    assert f"config {reason}" in log, log
    assert "hidden-value" not in log
