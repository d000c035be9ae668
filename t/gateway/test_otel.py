"""OpenTelemetry export (docs/ARCHITECTURE.md, "OpenTelemetry export"): the control plane
turns each ingested audit record into a server span and a client span per provider attempt
and POSTs them, with GenAI metrics, as OTLP/HTTP JSON to the session's loopback collector
(t/harness/otlp_collector.py).  The data plane continues the client's W3C trace and sends
each attempt's span id to the provider."""
import json
import re
import secrets
import time
import uuid

import pytest

from gwutil import (Stream, anthropic_connection, bedrock_connection, connection_for,
                    cp_metric, gemini_connection, wait_credentials)

BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.fixture(scope="module")
def env(gw, fake, fake2, fake_anthropic, fake_gemini, fake_bedrock):
    e = gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2),
                     "ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock)},
        resources={"chat": {"model": ("a", "gpt-otel")},
                   "fb": {"model": ("a", "fail-503"), "fallback": [("b", "gpt-otel-fb")]},
                   "bad": {"model": ("a", "fail-400"), "fallback": [("b", "gpt-otel-fb")]},
                   "anthropic": {"model": ("ant", "claude-test")},
                   "gemini": {"model": ("gem", "gemini-test")},
                   "aws-bedrock": {"model": ("bed", BEDROCK_MODEL)}},
        keys={"k": {"resources": ["chat", "fb", "bad", "anthropic", "gemini", "aws-bedrock"]}})
    wait_credentials(gw, e, ["bed"])
    return e


def trace_spans(otlp, trace_id, n, timeout=20):
    """The n spans of a trace, once all arrived: (server span, [client spans by index])."""
    spans = otlp.wait_spans(
        lambda all_: (lambda s: s if len(s) >= n else None)(
            [s for s in all_ if s["traceId"] == trace_id]),
        timeout=timeout, what=f"{n} spans of trace {trace_id}")
    assert len(spans) == n, spans
    servers = [s for s in spans if s["kind"] == 2]
    clients = sorted((s for s in spans if s["kind"] == 3),
                     key=lambda s: s["attrs"]["vmx.attempt.index"])
    assert len(servers) == 1 and len(clients) == n - 1, spans
    return servers[0], clients


def new_traceparent():
    return secrets.token_hex(16), secrets.token_hex(8)


def sent_traceparents(fake, trace_id):
    """The traceparents of the requests `fake` received in trace trace_id: the fakes are
    shared by the session, so the last request may be another test's late one."""
    return [r.headers.get("traceparent") for r in list(fake.requests)
            if (r.headers.get("traceparent") or "").startswith(f"00-{trace_id}-")]


def check_times(server, clients):
    start, end = int(server["startTimeUnixNano"]), int(server["endTimeUnixNano"])
    assert abs(start / 1e9 - time.time()) < 120 and end >= start, server
    for c in clients:
        cs, ce = int(c["startTimeUnixNano"]), int(c["endTimeUnixNano"])
        assert start <= cs <= ce and ce <= end + 5_000_000, (server, c)


def test_fallback_spans_continue_the_clients_trace(env, fake, fake2, otlp, stack):
    trace, parent = new_traceparent()
    corr = "otel-" + uuid.uuid4().hex[:8]
    r = env.chat("fb", headers={"traceparent": f"00-{trace}-{parent}-01"},
                 body={"vmx": {"correlationId": corr}})
    assert r.status == 200, r
    server, (first, second) = trace_spans(otlp, trace, 3)

    # the request: a server span child of the client's span, named after the model served
    assert server["parentSpanId"] == parent and re.fullmatch(r"[0-9a-f]{16}", server["spanId"])
    assert server["name"] == "chat gpt-otel-fb"
    assert server["resource"]["service.name"] == "vmx-gateway"
    a = server["attrs"]
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-otel-fb"
    assert a["gen_ai.response.model"] == r.json()["model"]
    usage = r.json()["usage"]
    assert a["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    assert a["vmx.workspace.id"] == env.ws_id and a["vmx.environment.id"] == env.env_id
    assert a["vmx.resource.id"] == env.res["fb"]["id"] and a["vmx.resource.name"] == "fb"
    assert a["vmx.api_key.id"] == env.key_objs["k"]["id"]
    assert a["vmx.request.id"] == r.header("x-vmx-request-id")
    assert a["vmx.correlation.id"] == corr and a["vmx.attempts"] == 2
    assert a["vmx.connection.id"] == env.conns["b"]["id"]
    assert server["status"].get("code", 0) == 0

    # the attempts: client spans, children of the request, each sent to its provider
    for c in (first, second):
        assert c["parentSpanId"] == server["spanId"] and c["spanId"] != server["spanId"]
        assert c["attrs"]["gen_ai.system"] == "openai"
        assert c["attrs"]["server.address"] == "127.0.0.1"
        assert c["attrs"]["vmx.request.id"] == a["vmx.request.id"]
        assert c["attrs"]["vmx.correlation.id"] == corr
    assert first["name"] == "chat fail-503" and first["attrs"]["vmx.attempt.index"] == 0
    assert first["attrs"]["server.port"] == fake.port
    assert first["attrs"]["http.response.status_code"] == 503
    assert first["attrs"]["error.type"] and first["status"]["code"] == 2
    assert first["attrs"]["vmx.connection.id"] == env.conns["a"]["id"]
    assert sent_traceparents(fake, trace) == [f"00-{trace}-{first['spanId']}-01"]

    assert second["name"] == "chat gpt-otel-fb" and second["attrs"]["vmx.attempt.index"] == 1
    assert second["attrs"]["server.port"] == fake2.port
    assert second["attrs"]["http.response.status_code"] == 200
    assert "error.type" not in second["attrs"] and second["status"].get("code", 0) == 0
    assert second["attrs"]["gen_ai.request.model"] == "gpt-otel-fb"
    assert second["attrs"]["gen_ai.response.model"] == r.json()["model"]
    assert second["attrs"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert sent_traceparents(fake2, trace) == [f"00-{trace}-{second['spanId']}-01"]
    check_times(server, [first, second])

    # the collector got the configured authorization header
    with otlp.lock:
        headers = [h for h, _ in otlp.traces]
    assert all(h.get("authorization") == f"Bearer {stack.otlp_token}" for h in headers)
    assert not otlp.bad, otlp.bad


def test_streamed_request_starts_a_trace(env, fake):
    """Without a traceparent the gateway starts the trace: a root server span."""
    s = Stream(env.gw.url, "/v1/chat/completions",
               {"model": "chat", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "hi"}]},
               {"Authorization": f"Bearer {env.key()}"})
    assert s.status == 200
    events = s.rest()
    s.close()
    usage = json.loads(events[-2])["usage"]
    otlp = env.gw.stack.otlp
    rid = s.header("x-vmx-request-id")
    trace = otlp.wait_spans(
        lambda all_: next((x["traceId"] for x in all_ if x["kind"] == 2
                           and x["attrs"].get("vmx.request.id") == rid), None),
        what=f"the server span of request {rid}")
    server, (attempt,) = trace_spans(otlp, trace, 2)
    (sent,) = sent_traceparents(fake, trace)
    span = sent.split("-")[2]
    assert "parentSpanId" not in server or not server["parentSpanId"]
    assert attempt["spanId"] == span and attempt["parentSpanId"] == server["spanId"]
    assert server["attrs"]["vmx.stream"] is True
    assert server["name"] == "chat gpt-otel" and attempt["name"] == "chat gpt-otel"
    assert attempt["attrs"]["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attempt["attrs"]["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attempt["attrs"]["gen_ai.response.model"] == json.loads(events[0])["model"]
    assert "vmx.correlation.id" not in server["attrs"]
    check_times(server, [attempt])


def test_client_error_is_not_a_server_error(env, otlp):
    """A provider's 400 is returned as is (no fallback): the attempt failed, the server span
    carries the status and error.type but is not an error (4xx is the client's)."""
    trace, parent = new_traceparent()
    r = env.chat("bad", headers={"traceparent": f"00-{trace}-{parent}-01"})
    assert r.status == 400, r
    server, (attempt,) = trace_spans(otlp, trace, 2)
    assert server["attrs"]["http.response.status_code"] == 400
    assert server["attrs"]["error.type"] and server["status"].get("code", 0) == 0
    assert attempt["attrs"]["http.response.status_code"] == 400
    assert attempt["status"]["code"] == 2 and attempt["attrs"]["error.type"]


@pytest.mark.parametrize("provider,system", [("anthropic", "anthropic"),
                                             ("gemini", "gcp.gemini"),
                                             ("aws-bedrock", "aws.bedrock")])
def test_native_providers_gen_ai_system(env, otlp, provider, system, fake_anthropic,
                                        fake_gemini, fake_bedrock):
    fk = {"anthropic": fake_anthropic, "gemini": fake_gemini, "aws-bedrock": fake_bedrock}
    trace, parent = new_traceparent()
    r = env.chat(provider, headers={"traceparent": f"00-{trace}-{parent}-01"})
    assert r.status == 200, r
    server, (attempt,) = trace_spans(otlp, trace, 2)
    assert server["attrs"]["gen_ai.system"] == system
    assert attempt["attrs"]["gen_ai.system"] == system
    assert attempt["attrs"]["server.port"] == fk[provider].port
    sent = [q for q in fk[provider].requests if q.method == "POST"][-1]
    assert sent.headers.get("traceparent") == f"00-{trace}-{attempt['spanId']}-01"


def test_metrics(env, otlp):
    """Cumulative GenAI histograms and the request counter, well formed and growing."""
    def totals():
        m = otlp.last_metrics()
        if not {"gen_ai.client.token.usage", "gen_ai.client.operation.duration",
                "vmx.requests"} <= set(m):
            return None
        return m

    for _ in range(3):
        assert env.chat("chat").status == 200
    deadline = time.time() + 20
    while not totals():
        assert time.time() < deadline, "no metrics export with the three instruments"
        time.sleep(0.2)
    m = totals()
    assert m["vmx.requests"]["resource"]["service.name"] == "vmx-gateway"
    for name in ("gen_ai.client.token.usage", "gen_ai.client.operation.duration"):
        h = m[name]["histogram"]
        assert h["aggregationTemporality"] == 2
        for dp in h["dataPoints"]:
            counts = [int(c) for c in dp["bucketCounts"]]
            assert len(counts) == len(dp["explicitBounds"]) + 1
            assert sum(counts) == int(dp["count"]) > 0
            assert dp["min"] <= dp["max"] and dp["sum"] >= 0
            assert int(dp["startTimeUnixNano"]) <= int(dp["timeUnixNano"])
    assert m["gen_ai.client.operation.duration"]["unit"] == "s"
    types = {attr["value"]["stringValue"]
             for dp in m["gen_ai.client.token.usage"]["histogram"]["dataPoints"]
             for attr in dp["attributes"] if attr["key"] == "gen_ai.token.type"}
    assert types == {"input", "output"}
    req = m["vmx.requests"]["sum"]
    assert req["isMonotonic"] is True and req["aggregationTemporality"] == 2

    def ok_requests(metrics):
        for dp in metrics["vmx.requests"]["sum"]["dataPoints"]:
            a = {x["key"]: x["value"] for x in dp["attributes"]}
            if a.get("http.response.status_code") == {"intValue": "200"}:
                return int(dp["asInt"])
        return 0

    before = ok_requests(m)
    assert before >= 3
    for _ in range(2):
        assert env.chat("chat").status == 200
    deadline = time.time() + 20
    while ok_requests(otlp.last_metrics()) < before + 2:
        assert time.time() < deadline, "vmx.requests did not grow"
        time.sleep(0.2)


def test_collector_down_then_back(env, otlp, stack):
    """The collector answering 503: the spans are sent again with backoff, once it is back,
    and the failures are counted."""
    errors = cp_metric(stack, "vmx_cp_otlp_exports_total", signal="traces", result="error")
    dropped = cp_metric(stack, "vmx_cp_otlp_dropped_spans_total")
    otlp.status = 503
    try:
        trace, parent = new_traceparent()
        assert env.chat("chat", headers={"traceparent": f"00-{trace}-{parent}-01"}).status == 200
        deadline = time.time() + 20
        while cp_metric(stack, "vmx_cp_otlp_exports_total", signal="traces",
                        result="error") < errors + 2:
            assert time.time() < deadline, "no failed trace export counted"
            time.sleep(0.1)
        assert not [s for s in otlp.spans() if s["traceId"] == trace]
    finally:
        otlp.status = None
    trace_spans(otlp, trace, 2, timeout=30)
    assert cp_metric(stack, "vmx_cp_otlp_dropped_spans_total") == dropped
