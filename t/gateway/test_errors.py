"""SPEC §2 error table, and bad input of every kind: nothing may crash nginx
(the autouse fixture checks the error log after every test)."""
import json
import os
import random
import re
import socket
import time

import pytest

from harness.spool import records_in as spool_records

from gwutil import connection_for, http_request

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def env(gw, fake):
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={"chat": {"model": ("a", "gpt-test")},
                   "secret": {"model": ("a", "gpt-secret")}},
        keys={"main": {"resources": ["chat"]},
              "off": {"resources": ["chat"], "enabled": False}},
    )


def assert_error(r, status, code, param=None):
    assert r.status == status, r
    ct = r.header("content-type") or ""
    assert ct.startswith("application/json"), r
    b = r.json()
    assert set(b) == {"error"}, b
    e = b["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    assert isinstance(e["type"], str) and e["type"], e
    assert e["param"] == param, e
    if code is not None:
        assert e["code"] == code, e
    assert r.header("x-vmx-request-id"), f"x-vmx-request-id missing on an error: {r}"
    return e


def post(env, body, headers=None, path="/v1/chat/completions"):
    h = {"Authorization": f"Bearer {env.key('main')}", "Content-Type": "application/json"}
    if headers is not None:
        h = headers
    return http_request(env.gw.url, "POST", path, body, h)


# ------------------------------------------------------------------ keys
@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "Bearer vmx-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    {"Authorization": "Bearer not-a-key"},
    {"x-api-key": "vmx-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
    {"x-api-key": ""},
    {"Authorization": "Bearer " + "k" * 6000},
], ids=["none", "bearer-empty", "bearer-space", "basic", "unknown", "garbage", "x-api-key-unknown",
        "x-api-key-empty", "huge"])
def test_invalid_key(env, fake, headers):
    h = dict(headers, **{"Content-Type": "application/json"})
    r = post(env, {"model": "chat", "messages": MSG}, h)
    assert_error(r, 401, "invalid_api_key")
    assert fake.chat_requests() == []


def test_disabled_key(env, fake):
    r = post(env, {"model": "chat", "messages": MSG}, {"Authorization": f"Bearer {env.key('off')}"})
    assert_error(r, 401, "invalid_api_key")
    r = http_request(env.gw.url, "GET", "/v1/models", headers={"x-api-key": env.key("off")})
    assert_error(r, 401, "invalid_api_key")
    assert fake.chat_requests() == []


def test_key_prefix_or_suffix_is_not_the_key(env):
    k = env.key("main")
    for bad in (k[:-1], k + "x", k.upper(), " " + k + "x"):
        r = post(env, {"model": "chat", "messages": MSG}, {"Authorization": f"Bearer {bad}"})
        assert r.status == 401, (bad, r)


def test_resource_not_authorized(env, fake):
    r = post(env, {"model": "secret", "messages": MSG})
    assert_error(r, 403, "api_key_resource_not_authorized")
    assert fake.chat_requests() == []


def test_unknown_model(env, fake):
    r = post(env, {"model": "no-such-resource", "messages": MSG})
    assert_error(r, 404, "model_not_found")
    assert fake.chat_requests() == []


def test_model_of_another_environment_is_unknown(gw, env, fake):
    other = gw.provision(connections={"a": connection_for(fake)},
                         resources={"elsewhere": {"model": ("a", "gpt-x")}},
                         keys={"k": {"resources": ["elsewhere"]}})
    r = post(env, {"model": "elsewhere", "messages": MSG})
    assert r.status in (403, 404), r
    assert fake.chat_requests() == []


# ------------------------------------------------------------------ body
@pytest.mark.parametrize("body", [
    b"", b"{", b"not json", b'{"model": "chat", "messages": [}', b"[]", b'"str"', b"null", b"42",
    b'{"model": "chat", "messages": [{"role": "user", "content": "x"}]} trailing',
    b'{"model": "chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
    b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}x',
], ids=["empty", "open", "text", "broken", "array", "string", "null", "number", "trailing",
        "bad-utf8", "bad-escape"])
def test_malformed_json(env, fake, body):
    r = post(env, body)
    assert_error(r, 400, "invalid_request")
    assert fake.chat_requests() == []


@pytest.mark.parametrize("body", [
    {"model": "chat"},
    {"model": "chat", "messages": None},
    {"model": "chat", "messages": "hello"},
    {"model": "chat", "messages": {"role": "user"}},
])
def test_missing_messages(env, fake, body):
    r = post(env, body)
    assert_error(r, 400, "invalid_request")
    assert fake.chat_requests() == []


# a key twice: the gateway would read the first, the provider act on the last
@pytest.mark.parametrize("body,key,param", [
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"model":"secret"}',
     "model", "model"),
    (b'{"model":"chat","messages":[{"role":"user","content":"a"}],'
     b'"messages":[{"role":"user","content":"b"}]}', "messages", "messages"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi","role":"system"}]}',
     "role", "messages[0].role"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"},{"role":"assistant",'
     b'"tool_calls":[{"id":"c","type":"function","function":{"name":"f",'
     b'"arguments":{"city":"Paris","city":"Rome"}}}]}]}',
     "city", "messages[1].tool_calls[0].function.arguments.city"),
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],'
     b'"metadata":{"a.b":1,"a.b":2}}', "a.b", 'metadata["a.b"]'),
    # the same key, written once plainly and once escaped
    (b'{"model":"chat","messages":[{"role":"user","content":"hi"}],"\\u006dodel":"x"}',
     "model", "model"),
], ids=["top-level", "messages", "in-a-message", "tool-arguments", "quoted-key", "escaped"])
def test_duplicated_key(env, fake, body, key, param):
    r = post(env, body)
    assert r.status == 400, r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert e["code"] == "invalid_request" and e["type"] == "invalid_request_error", e
    assert e["param"] == param, e
    assert f'duplicate key "{key}"' in e["message"], e
    assert e["message"].endswith("in the request body"), e
    if param != key:
        assert f" at {param} " in e["message"], e
    assert r.header("x-vmx-request-id"), r
    assert fake.chat_requests() == []


def test_same_key_in_two_objects_is_no_duplicate(env, fake):
    body = (b'{"model":"chat","messages":[{"role":"system","content":"be brief"},'
            b'{"role":"user","content":"hello"}],"metadata":{"model":"x","messages":1}}')
    r = post(env, body)
    assert r.status == 200, r
    assert len(fake.chat_requests()) == 1


def test_missing_model(env, fake):
    r = post(env, {"messages": MSG})
    assert r.status in (400, 404), r
    assert_error(r, r.status, None)
    assert fake.chat_requests() == []


def test_body_too_large(env, fake):
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    r = post(env, big)
    assert_error(r, 413, "request_too_large")
    assert fake.chat_requests() == []


def _audit_of(api, rid, timeout=20):
    """The audit record of request rid across workspaces, once the control plane has it."""
    deadline = time.time() + timeout
    while True:
        st, body, _ = api.request("GET", f"/api/v1/audit/{rid}")
        if st == 200:
            return body
        assert st == 404 and time.time() < deadline, (rid, st, body)
        time.sleep(0.2)


def _spooled(gw, rid, timeout=10):
    """The metadata of request rid's record in the spool (where the trace ids are)."""
    deadline = time.time() + timeout
    while True:
        for meta, _, _ in spool_records(gw.stack.nginx.base_dir / "spool"):
            if meta["id"] == rid:
                return meta
        assert time.time() < deadline, f"no audit record of {rid} in the spool"
        time.sleep(0.1)


def test_body_too_large_before_the_handler_is_a_request_of_its_own(env, api, fake):
    """nginx refuses a Content-Length past client_max_body_size before the module's
    handler runs: the answer and its audit record still have their own request id, trace
    and a duration from the request's arrival."""
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * (1024 * 1024 + 10)}]}
    rids = []
    for _ in range(2):
        r = post(env, big)
        assert_error(r, 413, "request_too_large")
        rids.append(r.header("x-vmx-request-id"))
    assert rids[0] != rids[1] and "00000000-0000-0000-0000-000000000000" not in rids, rids
    traces = set()
    for rid in rids:
        meta = _spooled(env.gw, rid)
        assert meta["requestId"] == rid, meta
        assert re.fullmatch(r"[0-9a-f]{32}", meta["traceId"]) and meta["traceId"].strip("0")
        assert re.fullmatch(r"[0-9a-f]{16}", meta["spanId"]) and meta["spanId"].strip("0")
        traces.add(meta["traceId"])
        rec = _audit_of(api, rid)
        assert rec["statusCode"] == 413 and rec["errorCode"] == "request_too_large", rec
        assert rec["authenticated"] is False and rec["workspaceId"] is None, rec
        assert 0 <= rec["duration"] < 10000, rec
    assert len(traces) == 2
    st, body, _ = api.request("GET", "/api/v1/audit?authenticated=false&statusCode=413"
                                     "&pageSize=1000")
    assert st == 200, body
    assert set(rids) <= {d["id"] for d in body["data"]}, body
    assert fake.chat_requests() == []


def test_body_too_large_chunked(env, fake):
    """Same limit without a Content-Length (chunked request body)."""
    data = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "y" * (1100 * 1024)}]}).encode()
    s = socket.create_connection(("127.0.0.1", env.gw.nginx.port), timeout=10)
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key('main')}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    try:
        s.sendall(head)
        for i in range(0, len(data), 65536):
            part = data[i:i + 65536]
            s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            resp += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert resp.startswith(b"HTTP/1.1 413"), resp[:500]
    assert b'"request_too_large"' in resp, resp[:1000]
    assert fake.chat_requests() == []


def test_chunked_request_body_accepted(env, fake):
    data = json.dumps({"model": "chat", "messages": MSG}).encode()
    s = socket.create_connection(("127.0.0.1", env.gw.nginx.port), timeout=10)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key('main')}\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
              + b"%x\r\n" % 10 + data[:10] + b"\r\n" + b"%x\r\n" % (len(data) - 10) + data[10:] + b"\r\n0\r\n\r\n")
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    assert resp.startswith(b"HTTP/1.1 200"), resp[:800]
    assert b"Hello from gpt-test! You said: hello" in resp


# ------------------------------------------------------------------ methods and paths
def test_body_too_dense_in_values(env, fake):
    """A body within the size limit whose JSON is denser in values than the parse's memory
    bound (lib/vmx_json.h: 16 bytes of tree per byte) is a 413 too, not some 50 times its
    size in the worker."""
    pad = b"[" + b"0," * 400000 + b"0]"
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "pad": ' + pad + b"}"
    r = post(env, body)
    e = assert_error(r, 413, "request_too_large")
    assert "JSON values" in e["message"], e
    assert fake.chat_requests() == []
    # a body as large with few values is served
    r = post(env, {"model": "chat", "messages": [{"role": "user", "content": "x" * 800000}]})
    assert r.status == 200, r


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/chat/completions"),
    ("PUT", "/v1/chat/completions"),
    ("DELETE", "/v1/chat/completions"),
    ("PATCH", "/v1/chat/completions"),
    ("POST", "/v1/models"),
    ("DELETE", "/v1/models"),
])
def test_wrong_method(env, method, path):
    body = json.dumps({"model": "chat", "messages": MSG}) if method in ("PUT", "PATCH", "POST") else None
    r = http_request(env.gw.url, method, path, body,
                     {"Authorization": f"Bearer {env.key('main')}", "Content-Type": "application/json"})
    assert_error(r, 405, None)


@pytest.mark.parametrize("path", [
    "/v1/chat/completion", "/v1/chat/completions/extra", "/v1/", "/v1/embedding",
    "/v1/completion/x/y/chat/completions/z", "/v1/completion//chat/completions",
])
def test_unknown_path(env, fake, path):
    r = http_request(env.gw.url, "POST", path, {"model": "chat", "messages": MSG},
                     {"Authorization": f"Bearer {env.key('main')}"})
    assert 400 <= r.status < 500 and r.status not in (405, 413), r
    assert_error(r, r.status, None)
    assert fake.chat_requests() == []


def test_head_request(env):
    r = http_request(env.gw.url, "HEAD", "/v1/models", headers={"Authorization": f"Bearer {env.key('main')}"})
    assert r.status < 500, r


# ------------------------------------------------------------------ garbage
def test_random_garbage_bodies(env):
    rnd = random.Random(1234)
    valid = json.dumps({"model": "chat", "messages": MSG, "temperature": 0.5}).encode()
    for i in range(120):
        kind = i % 3
        if kind == 0:
            body = os.urandom(rnd.randint(1, 3000))
        elif kind == 1:  # mutate a valid body
            b = bytearray(valid)
            for _ in range(rnd.randint(1, 6)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            body = bytes(b)
        else:  # truncate a valid body
            body = valid[:rnd.randrange(len(valid))]
        r = post(env, body)
        assert r.status < 500, (body, r)
        if r.status != 200:
            assert_error(r, r.status, None)


def test_deep_nesting_and_odd_json(env, fake):
    cases = [
        b'{"model": "chat", "messages": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b'{"model": "chat", "messages": [{"role": "user", "content": ' + b'{"a":' * 20000 + b"1" + b"}" * 20000 + b"}]}",
        b'{"model": "chat", "model": "chat", "messages": []}',
        b'{"model": 12, "messages": []}',
        b'{"model": "chat\\u0000x", "messages": []}',
        b'{"model": "' + b"m" * 100000 + b'", "messages": []}',
        b'{"model": "chat", "messages": [], "vmx": "not-an-object"}',
        b'{"model": "chat", "messages": [], "vmx": {"correlationId": 5}}',
        b'{"model": "chat", "messages": [], "vmx": {"correlationId": "a\\r\\nx-injected: 1"}}',
        b'{"model": "chat", "messages": [], "stream": "yes"}',
        b'{"model": "chat", "messages": [], "stream_options": 7, "stream": true}',
        b'{"model": "chat", "messages": [1e999999, -0, 1.5e-400]}',
    ]
    for body in cases:
        r = post(env, body)
        assert r.status < 500 or r.status in (502, 503), (body[:80], r)
        assert r.header("x-injected") is None
        if r.status >= 400:
            dup = body.startswith(b'{"model": "chat", "model"')
            assert_error(r, r.status, None, param="model" if dup else None)


def test_huge_headers(env):
    # one huge header: nginx itself refuses it; it must not crash
    r = None
    try:
        r = http_request(env.gw.url, "POST", "/v1/chat/completions", {"model": "chat", "messages": MSG},
                         {"Authorization": f"Bearer {env.key('main')}", "X-Big": "a" * 100000})
        assert r.status in (400, 413, 431, 494), r
    except (ConnectionResetError, BrokenPipeError):
        pass
    # many headers
    hs = {f"X-H{i}": "v" * 50 for i in range(300)}
    hs["Authorization"] = f"Bearer {env.key('main')}"
    try:
        r = http_request(env.gw.url, "POST", "/v1/chat/completions", {"model": "chat", "messages": MSG}, hs)
        assert r.status in (200, 400, 413, 431, 494), r
    except (ConnectionResetError, BrokenPipeError):
        pass
    # both key headers at once, and duplicated key headers
    r = http_request(env.gw.url, "POST", "/v1/chat/completions", {"model": "chat", "messages": MSG},
                     {"Authorization": f"Bearer {env.key('main')}", "x-api-key": "vmx-wrong"})
    assert r.status in (200, 400, 401), r
    # the server still answers
    r = post(env, {"model": "chat", "messages": MSG})
    assert r.status == 200, r


def raw_request(env, data):
    """data as it is on a connection of its own; the answer's status, headers and body."""
    import socket
    host, port = env.gw.url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as c:
        c.sendall(data)
        resp = b""
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            resp += chunk
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in
               (line.split(":", 1) for line in lines[1:] if ":" in line)}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("size", [9 * 1024, 64 * 1024], ids=["9k", "64k"])
def test_oversized_header_on_v1_is_the_envelope(env, size):
    """nginx refuses a header line past large_client_header_buffers before it chooses a
    location: on /v1/ the answer is OpenAI's envelope all the same, with a request id."""
    st, h, body = raw_request(env, (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                    f"Authorization: Bearer {env.key('main')}\r\n"
                                    f"X-Big: {'a' * size}\r\nContent-Length: 2\r\n\r\n{{}}").encode())
    assert st == 400, (st, h, body[:200])
    assert h["content-type"].startswith("application/json"), h
    e = json.loads(body)["error"]
    assert e["code"] == "invalid_request" and e["type"] == "invalid_request_error", e
    assert "headers" in e["message"], e
    assert h.get("x-vmx-request-id"), h


@pytest.mark.parametrize("request_head,status,code", [
    # a header line nginx cannot parse
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad\x00Header: 1\r\n\r\n", 400, "invalid_request"),
    # HTTP/1.1 without Host
    (b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "invalid_request"),
    # TRACE, refused by nginx itself
    (b"TRACE /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    # a Transfer-Encoding nginx does not know
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "invalid_request"),
], ids=["bad-header", "no-host", "trace", "transfer-encoding"])
def test_nginx_errors_before_the_location_are_the_envelope(env, request_head, status, code):
    st, h, body = raw_request(env, request_head)
    assert st == status, (st, h, body[:200])
    assert h["content-type"].startswith("application/json"), h
    assert json.loads(body)["error"]["code"] == code, body


def test_oversized_header_elsewhere_is_nginx_s_page(env):
    """The control plane's paths keep nginx's own answer (the envelope is the data plane's)."""
    st, h, body = raw_request(env, (f"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n"
                                    f"X-Big: {'a' * 9 * 1024}\r\n\r\n").encode())
    assert st == 400, (st, h, body[:200])
    assert h["content-type"].startswith("text/html"), h
    assert "x-vmx-request-id" not in h


def test_pipelined_requests(env):
    data = json.dumps({"model": "chat", "messages": MSG}).encode()
    one = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key('main')}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
    last = one.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    s = socket.create_connection(("127.0.0.1", env.gw.nginx.port), timeout=10)
    s.sendall(one + one + last)
    resp = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        resp += d
    s.close()
    assert resp.count(b"HTTP/1.1 200") == 3, resp[:2000]


def test_client_goes_away(env, fake):
    """Clients that disconnect early (before the answer, during a stream) crash nothing."""
    data = json.dumps({"model": "chat", "messages": MSG, "stream": True}).encode()
    for cut in (10, 60, None):
        s = socket.create_connection(("127.0.0.1", env.gw.nginx.port), timeout=10)
        req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.key('main')}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data
        s.sendall(req[:cut] if cut else req)
        if cut is None:
            s.recv(10)
        s.close()
    r = post(env, {"model": "chat", "messages": MSG})
    assert r.status == 200, r
