"""SPEC §2: the data-plane API, the happy paths: chat completions (plain and
streaming), the workspace/environment path, /v1/models, key headers, what is
forwarded to the provider, and the x-vmx-* response headers."""
import calendar
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gwutil import Stream, connection_for, http_request, sse_events
from harness.fake_openai import RATELIMIT_HEADERS

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def env(gw, fake):
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={
            "chat": {"model": ("a", "gpt-test")},
            "other": {"model": ("a", "gpt-other")},
            "tools": {"model": ("a", "tools")},
            "slow": {"model": ("a", "slow-stream")},
            "split": {"model": ("a", "split-stream")},
            "cut": {"model": ("a", "stream-cut")},
        },
        keys={"main": {"resources": ["chat", "tools", "slow", "split", "cut"]},
              "other": {"resources": ["other"]}},
    )


def expected_text(model, said="hello"):
    return f"Hello from {model}! You said: {said}"


def assert_vmx_headers(r, env, resource="chat", model="gpt-test", conn="a", events=0):
    assert r.header("x-vmx-request-id"), r
    assert r.header("x-vmx-provider") == "openai", r
    assert r.header("x-vmx-model") == model, r
    assert r.header("x-vmx-connection-id") == env.conns[conn]["id"], r
    for h in ("x-vmx-gate-duration-ms", "x-vmx-routing-duration-ms"):
        assert r.header(h) is not None, f"{h} missing: {r}"
        assert re.fullmatch(r"\d+(\.\d+)?", r.header(h)), f"{h}: {r.header(h)}"
    if events == 0:
        assert r.header("x-vmx-event-count") in (None, "0"), r
    else:
        assert r.header("x-vmx-event-count") == str(events), r


def assert_no_provider_ratelimit(r):
    for name, value in r.headers.items():
        if name.lower().startswith("x-ratelimit-"):
            assert value != RATELIMIT_HEADERS.get(name.lower()), \
                f"provider header leaked: {name}: {value}"


# ------------------------------------------------------------------ non-streaming
def test_chat_non_streaming(env, fake):
    r = env.chat("chat")
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json"), r
    b = r.json()
    assert b["object"] == "chat.completion"
    assert b["choices"][0]["message"]["content"] == expected_text("gpt-test")
    assert b["choices"][0]["finish_reason"] == "stop"
    assert b["usage"]["total_tokens"] == b["usage"]["prompt_tokens"] + b["usage"]["completion_tokens"]
    assert_vmx_headers(r, env)
    assert r.header("x-vmx-correlation-id") is None
    assert_no_provider_ratelimit(r)
    assert len(fake.chat_requests()) == 1


def test_request_ids_are_unique(env):
    """UUID v7 from each worker's generator (seeded once per worker): unique
    across requests and workers, time-ordered by their first 48 bits."""
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda _: env.chat("chat").header("x-vmx-request-id"), range(200)))
    assert len(set(ids)) == 200
    for i in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            i), i
    assert len({i[19:] for i in ids}) == 200      # the random part alone differs


def test_forwarded_request(env, fake):
    body = {
        "model": "chat",
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": "héllo \u2603 \"quoted\"\n"}],
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 50, "n": 1, "stop": ["\n\n"],
        "presence_penalty": 0.1, "frequency_penalty": 0.2, "seed": 42, "user": "user-1",
        "logit_bias": {"50256": -100}, "response_format": {"type": "text"},
        "metadata": {"team": "x"},
        "vmx": {"correlationId": "corr-123"},
    }
    r = http_request(env.gw.url, "POST", "/v1/chat/completions", body,
                     {"Authorization": f"Bearer {env.key('main')}", "X-Custom": "nope"})
    assert r.status == 200, r
    assert r.header("x-vmx-correlation-id") == "corr-123"
    rec = fake.last()
    assert rec.method == "POST"
    assert rec.path == "/v1/chat/completions"
    assert rec.headers["authorization"] == f"Bearer {fake.api_key}"
    assert rec.headers.get("content-type", "").startswith("application/json")
    assert env.key("main") not in json.dumps(rec.header_list), "client key leaked to the provider"
    sent = dict(body)
    del sent["vmx"]
    sent["model"] = "gpt-test"
    assert rec.body == sent


def test_api_key_header(env, fake):
    r = http_request(env.gw.url, "POST", "/v1/chat/completions",
                     {"model": "chat", "messages": MSG}, {"x-api-key": env.key("main")})
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == expected_text("gpt-test")
    rec = fake.last()
    assert "x-api-key" not in rec.headers, "client x-api-key forwarded to the provider"
    assert rec.headers["authorization"] == f"Bearer {fake.api_key}"


def test_workspace_environment_path(env):
    path = f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions"
    r = env.chat("chat", path=path)
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == expected_text("gpt-test")
    assert_vmx_headers(r, env)


def test_workspace_environment_path_other_environment_key(gw, env, fake):
    # a second environment of the same workspace, and one of another workspace
    env2 = gw.provision(connections={"a": connection_for(fake)},
                        resources={"chat": {"model": ("a", "gpt-env2")}},
                        keys={"k": {"resources": ["chat"]}}, ws=env.ws)
    path = f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions"
    r = env.chat("chat", key=env2.key("k"), path=path)
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "invalid_api_key"
    # the same key on its own environment's path works
    r = env.chat("chat", key=env2.key("k"), path=f"/v1/completion/{env2.ws_id}/{env2.env_id}/chat/completions")
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "gpt-env2"
    # a right environment under the wrong workspace
    env3 = gw.provision(connections={"a": connection_for(fake)},
                        resources={"chat": {"model": ("a", "gpt-env3")}},
                        keys={"k": {"resources": ["chat"]}})
    r = env.chat("chat", path=f"/v1/completion/{env3.ws_id}/{env.env_id}/chat/completions")
    assert r.status == 401, r


def test_expired_key(gw, env):
    """A key expires by the data plane's clock, with no snapshot pushed."""
    expires = time.time() + 2
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(expires)) + f"{expires % 1:.3f}"[1:] + "Z"
    gw.provision(keys={"expiring": {"resources": ["chat"], "expiresAt": at}}, env=env)
    key = env.keys.pop("expiring")          # the environment's later syncs skip it
    env.key_objs.pop("expiring")
    r = env.chat("chat", key=key)
    assert r.status == 200, r
    version = gw.nginx.config_version()
    time.sleep(max(0, expires - time.time()) + 0.2)
    r = env.chat("chat", key=key)
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert "expired" in r.json()["error"]["message"]
    assert gw.nginx.config_version() == version
    assert env.chat("chat").status == 200

def rotate_key(gw, env, name, grace):
    """Rotates the key name with a grace period; returns the new key once it runs (and
    keeps it as the environment's key name)."""
    v0 = gw.nginx.config_version() or 0
    obj = env.key_objs[name]
    st, rot, _ = gw.api.request(
        "POST", f"/api/v1/workspaces/{env.ws_id}/environments/{env.env_id}"
                f"/api-keys/{obj['id']}/rotate", {"gracePeriodSeconds": grace})
    assert st == 200, rot
    gw.wait_version_above(v0)
    env.keys[name] = rot["key"]
    return rot["key"]


def test_rotated_key_at_once(gw, env):
    gw.provision(keys={"rot0": {"resources": ["chat"]}}, env=env)
    old = env.key("rot0")
    new = rotate_key(gw, env, "rot0", 0)
    r = env.chat("chat", key=old)
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert env.chat("chat", key=new).status == 200


def test_rotated_key_grace_period(gw, env):
    gw.provision(keys={"rot3": {"resources": ["chat"]}}, env=env)
    old = env.key("rot3")
    rotated = time.time()
    new = rotate_key(gw, env, "rot3", 3)
    assert env.chat("chat", key=old).status == 200
    assert env.chat("chat", key=new).status == 200
    version = gw.nginx.config_version()
    time.sleep(max(0, rotated + 4.1 - time.time()))
    r = env.chat("chat", key=old)
    assert r.status == 401, r
    assert "expired" in r.json()["error"]["message"]
    assert env.chat("chat", key=new).status == 200
    assert gw.nginx.config_version() == version

def test_key_last_used(gw, env):
    """The control plane sets lastUsedAt from the request's audit record, in seconds."""
    gw.provision(keys={"used": {"resources": ["chat"]}}, env=env)
    path = (f"/api/v1/workspaces/{env.ws_id}/environments/{env.env_id}"
            f"/api-keys/{env.key_objs['used']['id']}")
    assert gw.api.request("GET", path)[1]["lastUsedAt"] is None
    before = time.time()
    assert env.chat("chat", key=env.key("used")).status == 200
    deadline = time.time() + 10
    while (used := gw.api.request("GET", path)[1]["lastUsedAt"]) is None:
        assert time.time() < deadline, "lastUsedAt not set"
        time.sleep(0.2)
    at = calendar.timegm(time.strptime(used[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= at <= time.time(), used

# ------------------------------------------------------------------ /v1/models
def test_models_list(env):
    for h in ({"Authorization": f"Bearer {env.key('main')}"}, {"x-api-key": env.key("main")}):
        r = http_request(env.gw.url, "GET", "/v1/models", headers=h)
        assert r.status == 200, r
        assert r.header("content-type").startswith("application/json")
        b = r.json()
        assert b["object"] == "list"
        assert sorted(m["id"] for m in b["data"]) == ["chat", "cut", "slow", "split", "tools"]
        for m in b["data"]:
            assert m["object"] == "model"
            assert isinstance(m["created"], int)
            assert isinstance(m["owned_by"], str)
    r = http_request(env.gw.url, "GET", "/v1/models",
                     headers={"Authorization": f"Bearer {env.key('other')}"})
    assert [m["id"] for m in r.json()["data"]] == ["other"]


def test_models_without_key(env):
    r = http_request(env.gw.url, "GET", "/v1/models")
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "invalid_api_key"


# ------------------------------------------------------------------ streaming
def _chunks(events):
    assert events and events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


def _text(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_stream(env, fake):
    r = env.chat("chat", body={"stream": True})
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/event-stream"), r
    assert r.header("content-length") is None
    assert_vmx_headers(r, env)
    assert_no_provider_ratelimit(r)
    chunks = _chunks(sse_events(r.body))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert _text(chunks) == expected_text("gpt-test")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # the gateway asked the provider for usage, and did not pass the usage chunk on
    rec = fake.last()
    assert rec.body["stream"] is True
    assert rec.body["stream_options"]["include_usage"] is True
    assert not any(c.get("usage") for c in chunks), "usage chunk sent though not asked for"
    assert all(c["choices"] for c in chunks)
    # the exact framing: one `data: <json>\n\n` per event
    assert r.body.endswith(b"data: [DONE]\n\n")
    assert re.fullmatch(rb"(data: [^\n]+\n\n)+", r.body), r.body[:300]


def test_stream_include_usage(env, fake):
    r = env.chat("chat", body={"stream": True, "stream_options": {"include_usage": True}})
    assert r.status == 200, r
    chunks = _chunks(sse_events(r.body))
    assert _text(chunks) == expected_text("gpt-test")
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    assert fake.last().body["stream_options"] == {"include_usage": True}


def test_stream_include_usage_false(env, fake):
    r = env.chat("chat", body={"stream": True, "stream_options": {"include_usage": False}})
    chunks = _chunks(sse_events(r.body))
    assert not any(c.get("usage") for c in chunks)
    assert fake.last().body["stream_options"]["include_usage"] is True


def test_stream_is_incremental(env, fake):
    """The first chunk reaches the client before the provider sent the last one."""
    fake.stream_delay = 0.25
    t0 = time.time()
    s = Stream(env.gw.url, "/v1/chat/completions",
               {"model": "slow", "stream": True, "messages": MSG},
               {"Authorization": f"Bearer {env.key('main')}"})
    try:
        assert s.status == 200
        first = json.loads(s.next_event())
        t_first = time.time() - t0
        sent, total = fake.stream_events_sent, fake.stream_events_total
        assert first["choices"][0]["delta"].get("role") == "assistant"
        assert sent < total - 2, f"provider had sent {sent}/{total} events before the first arrived"
        rest = s.rest()
        t_all = time.time() - t0
    finally:
        s.close()
    assert rest[-1] == "[DONE]"
    assert _text([first] + [json.loads(e) for e in rest[:-1]]) == expected_text("slow-stream")
    assert t_all - t_first > 1.0, (t_first, t_all)


def test_stream_split_events_reassembled(env, fake):
    for usage in (False, True):
        body = {"stream": True}
        if usage:
            body["stream_options"] = {"include_usage": True}
        r = env.chat("split", body=body)
        assert r.status == 200, r
        assert re.fullmatch(rb"(data: [^\n]+\n\n)+", r.body), r.body[:500]
        chunks = _chunks(sse_events(r.body))
        assert _text(chunks) == expected_text("split-stream")
        assert bool(chunks[-1].get("usage")) == usage


def test_stream_tools(env):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = env.chat("tools", body={"stream": True, "tools": tools})
    chunks = _chunks(sse_events(r.body))
    args = "".join(tc["function"].get("arguments", "")
                   for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    r = env.chat("tools", body={"tools": tools})
    assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_stream_error_after_first_byte(env, fake):
    """The provider drops the connection mid-stream: the stream ends with an error event."""
    r = env.chat("cut", body={"stream": True})
    assert r.status == 200, r
    events = sse_events(r.body)
    assert events, r
    errors = [i for i, e in enumerate(events) if e.startswith("{") and "error" in json.loads(e)]
    assert errors, f"no error event: {events}"
    i = errors[-1]
    assert set(json.loads(events[i])["error"]) >= {"message", "type", "code"}
    assert events[i + 1:] in ([], ["[DONE]"]), events
    assert len(fake.chat_requests()) == 1, "no fallback once bytes were sent"


def test_non_stream_answer_of_streaming_capable_model_is_not_streamed(env):
    r = env.chat("chat", body={"stream": False})
    assert r.status == 200
    assert r.json()["object"] == "chat.completion"


def test_keepalive_many_requests(env):
    """Several requests on one client connection."""
    import http.client
    host, port = env.gw.url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for i in range(5):
            body = {"model": "chat", "messages": [{"role": "user", "content": f"n{i}"}],
                    "stream": i % 2 == 1}
            c.request("POST", "/v1/chat/completions", json.dumps(body),
                      {"Authorization": f"Bearer {env.key('main')}", "Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            assert r.status == 200, data
            assert f"You said: n{i}".encode() in data or f"n{i}".encode() in data
    finally:
        c.close()


def test_provider_connections_are_reused(env, fake):
    """Keepalive to providers: a per-worker pool keyed by address, scheme and SNI."""
    before = fake.connections
    for _ in range(20):
        assert env.chat("chat").status == 200
    opened = fake.connections - before
    assert opened <= 4, f"{opened} new provider connections for 20 requests"


@pytest.fixture(scope="module")
def env_sizes(gw, fake):
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={"chunked": {"model": ("a", "chunked")},
                   "big": {"model": ("a", "big-300000")},
                   "big-event": {"model": ("a", "big-70000")}},
        keys={"k": {"resources": ["chunked", "big", "big-event"]}},
    )


def test_provider_chunked_json_answer(env_sizes):
    """Providers often send JSON answers chunked: the client gets the JSON, no chunk framing."""
    r = env_sizes.chat("chunked")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == expected_text("chunked")


def test_big_answer(env_sizes):
    r = env_sizes.chat("big")
    assert r.status == 200, r
    assert len(r.json()["choices"][0]["message"]["content"]) == 300000


@pytest.mark.parametrize("usage", [False, True])
def test_big_stream_event(env_sizes, usage):
    """One SSE event larger than any read buffer is passed on whole."""
    body = {"stream": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    r = env_sizes.chat("big-event", body=body)
    assert r.status == 200, r
    chunks = _chunks(sse_events(r.body))
    assert len(_text(chunks)) == 70000
    assert bool(chunks[-1].get("usage")) == usage


def test_secondary_model_index(gw, fake, fake2):
    """vmx.secondaryModelIndex picks resource.secondaryModels[i] (0 included) and is not forwarded."""
    e = gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2)},
        resources={"sec": {"model": ("a", "gpt-primary"),
                           "secondary": [("b", "gpt-sec0"), ("b", "gpt-sec1")]}},
        keys={"k": {"resources": ["sec"]}})
    r = e.chat("sec")
    assert r.status == 200 and r.header("x-vmx-model") == "gpt-primary", r
    for i in (0, 1):
        r = e.chat("sec", body={"vmx": {"secondaryModelIndex": i}})
        assert r.status == 200, r
        assert r.header("x-vmx-model") == f"gpt-sec{i}", r
        assert r.header("x-vmx-connection-id") == e.conns["b"]["id"]
        rec = fake2.last()
        assert rec.body["model"] == f"gpt-sec{i}" and "vmx" not in rec.body


def test_http10_client_stream(env):
    """An HTTP/1.0 client (no chunked encoding) gets the stream, closed at the end."""
    import socket
    data = json.dumps({"model": "chat", "stream": True, "messages": MSG}).encode()
    s = socket.create_connection(("127.0.0.1", env.gw.nginx.port), timeout=10)
    s.sendall((f"POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer {env.key('main')}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data)
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" not in head.lower(), head
    assert _text(_chunks(sse_events(body))) == expected_text("gpt-test")


def test_trace_context_is_passed_upstream(env, fake):
    """W3C traceparent: the client's trace continues at the provider, with a span of
    the gateway's own; without one, the gateway starts a trace."""
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = env.chat("chat", headers={"traceparent": f"00-{trace}-{parent}-01"})
    assert r.status == 200, r
    sent = fake.last().headers["traceparent"]
    version, got_trace, span, flags = sent.split("-")
    assert (version, got_trace, flags) == ("00", trace, "01")
    assert len(span) == 16 and span != parent

    r = env.chat("chat", headers={"traceparent": "garbage"})
    assert r.status == 200, r
    version, got_trace, span, flags = fake.last().headers["traceparent"].split("-")
    assert len(got_trace) == 32 and got_trace != trace and int(got_trace, 16) != 0
