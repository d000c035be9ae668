"""The fake provider itself: it must speak OpenAI's wire format, checked with the
official OpenAI Node SDK talking to it directly (no gateway), and at the byte level.
Needs neither the module nor the control plane."""
import json
import socket
import ssl
import time

from gwutil import http_request, sse_events


def test_openai_sdk_against_fake(fake, run_node_tests):
    out = run_node_tests({
        "VMX_TARGET": "fake",
        "VMX_BASE_URL": fake.url,
        "VMX_API_KEY": fake.api_key,
        "VMX_MODEL_CHAT": "gpt-4o-mini",
        "VMX_MODEL_TOOLS": "tools",
        "VMX_MODEL_RATE_LIMITED": "fail-429",
        "VMX_MODEL_FORBIDDEN": "fail-403",
        "VMX_MODEL_MISSING": "fail-404",
    })
    assert "ℹ fail 0" in out, out


def test_openai_sdk_against_fake_tls(fake_tls, pki, run_node_tests):
    run_node_tests({
        "VMX_TARGET": "fake",
        "VMX_BASE_URL": fake_tls.url,
        "VMX_API_KEY": fake_tls.api_key,
        "VMX_MODEL_CHAT": "split-stream",
        "VMX_MODEL_TOOLS": "tools",
        "NODE_EXTRA_CA_CERTS": pki[0],
    })


def _auth(f):
    return {"Authorization": f"Bearer {f.api_key}"}


def test_fake_non_streaming_format(fake):
    r = http_request(fake.url.rsplit("/v1", 1)[0], "POST", "/v1/chat/completions",
                     {"model": "m1", "messages": [{"role": "user", "content": "hi"}]}, _auth(fake))
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.header("x-request-id").startswith("req_")
    assert r.header("x-ratelimit-limit-requests") == "30000"
    b = r.json()
    assert b["object"] == "chat.completion"
    assert b["choices"][0]["message"] == {"role": "assistant", "content": "Hello from m1! You said: hi",
                                          "refusal": None, "annotations": []}
    # OpenAI's bytes: two-space indented, a final newline, chunked (t/fixtures/openai/chat.json)
    assert r.body == json.dumps(b, indent=2, ensure_ascii=False).encode() + b"\n"
    assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
    assert b["choices"][0]["logprobs"] is None
    assert set(b["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    rec = fake.last()
    assert rec.body["model"] == "m1" and rec.headers["authorization"] == f"Bearer {fake.api_key}"


def test_fake_errors(fake):
    base = fake.url.rsplit("/v1", 1)[0]
    r = http_request(base, "POST", "/v1/chat/completions", {"model": "m", "messages": []},
                     {"Authorization": "Bearer wrong"})
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key"
    for code in (400, 404, 429, 500, 503):
        r = http_request(base, "POST", "/v1/chat/completions",
                         {"model": f"fail-{code}", "messages": []}, _auth(fake))
        assert r.status == code
        e = r.json()["error"]
        assert set(e) == {"message", "type", "param", "code"}
    r = http_request(base, "POST", "/v1/chat/completions", {"model": "fail-429", "messages": []},
                     _auth(fake))
    assert r.header("retry-after") == "1"
    fake.set_behavior("fail-503")
    r = http_request(base, "POST", "/v1/chat/completions", {"model": "x", "messages": []}, _auth(fake))
    assert r.status == 503


def test_fake_stream_usage_only_when_asked(fake):
    base = fake.url.rsplit("/v1", 1)[0]
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "a b"}]}
    r = http_request(base, "POST", "/v1/chat/completions", body, _auth(fake))
    assert r.header("content-type").startswith("text/event-stream")
    assert r.header("transfer-encoding") == "chunked"
    ev = sse_events(r.body)
    assert ev[-1] == "[DONE]"
    chunks = [json.loads(e) for e in ev[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    body["stream_options"] = {"include_usage": True}
    r = http_request(base, "POST", "/v1/chat/completions", body, _auth(fake))
    chunks = [json.loads(e) for e in sse_events(r.body)[:-1]]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_fake_stall_and_reset(fake):
    base = fake.url.rsplit("/v1", 1)[0]
    body = json.dumps({"model": "reset", "messages": []}).encode()
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
           + fake.api_key.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    s.sendall(req)
    try:
        data = s.recv(100)
        assert data == b""
    except ConnectionResetError:
        pass
    s.close()
    body = json.dumps({"model": "stall", "messages": []}).encode()
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=0.5)
    s.sendall(req.replace(b"reset", b"stall"))
    t0 = time.time()
    try:
        s.recv(100)
        assert False, "stall answered"
    except socket.timeout:
        pass
    assert time.time() - t0 >= 0.4
    s.close()


def test_fake_tls_trusts_only_its_ca(fake_tls, fake_rogue, pki):
    ctx = ssl.create_default_context(cafile=pki[0])
    with socket.create_connection(("127.0.0.1", fake_tls.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.version()
    with socket.create_connection(("127.0.0.1", fake_rogue.port), timeout=5) as s:
        try:
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
            assert False, "rogue certificate accepted"
        except ssl.SSLCertVerificationError:
            pass
