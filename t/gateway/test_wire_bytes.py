"""Every provider's real answer bytes through the gateway (t/fixtures, in the byte shapes of
public recordings of the real services; see t/fixtures/README.md).

The fakes serve a fixture verbatim for the model `fixture-<name>`: whole answers (OpenAI's
indented JSON, Groq's compact one, Anthropic's, Gemini's indented one with a final newline,
Bedrock's sorted one), streams (OpenAI's and Groq's SSE, Anthropic's padded events, Gemini's
CRLF events, Bedrock's eventstream frames with their "p" padding) and errors.  Streams also
come split at chosen bytes, one flushed HTTP chunk per piece with a pause between them, so that
the gateway reads them in pieces: one byte at a time, inside a multi-byte UTF-8 character,
inside `data:`, inside an eventstream prelude and between its CRC bytes.  Last, a client that
accepts gzip and deflate (as the official Python SDK does) gets a correct answer, plain and
streamed, from every provider.
"""
import gzip
import http.client
import json
import struct
import time
import zlib
from pathlib import Path

import pytest

from gwutil import (Stream, anthropic_connection, bedrock_connection, connection_for,
                    gemini_connection, sse_events, wait_credentials)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TEXT = "Bonjour! Le café est prêt 🌤 à Tōkyō."
TOOL_ARGS = {"city": "Zürich"}
PROVIDERS = ["openai", "groq", "anthropic", "gemini", "aws-bedrock"]
CONN = {"openai": "oai", "groq": "grq", "anthropic": "ant", "gemini": "gem", "aws-bedrock": "bed"}
DIR = {"openai": "openai", "groq": "groq", "anthropic": "anthropic", "gemini": "gemini",
       "aws-bedrock": "bedrock"}
PLAIN = {"openai": "chat", "groq": "chat", "anthropic": "message", "gemini": "generate",
         "aws-bedrock": "converse"}
STREAM_EXT = {"aws-bedrock": ".bin"}
# the fixtures' usage: prompt, completion
USAGE = {"openai": (19, 14), "groq": (19, 14), "anthropic": (21, 18), "gemini": (9, 14),
         "aws-bedrock": (14, 18)}
# errors served from fixtures: provider -> [(fixture, status the client gets, words of the
# provider's message that must reach the client)]
ERRORS = {
    "openai": [("error_400", 400, "Invalid value for 'temperature'"),
               ("error_429", 429, "Rate limit reached for gpt-4o-mini")],
    "groq": [("error_400", 400, "must be satisfied")],
    "anthropic": [("error_429", 429, "exceed the rate limit"), ("error_529", None, None)],
    "gemini": [("error_400", 400, "contents is not specified"),
               ("error_429", 429, "You exceeded your current quota")],
    "aws-bedrock": [("error_400", 400, "model identifier is invalid"),
                    ("error_429", 429, "Too many requests")],
}
ECHO = {"openai": "gpt-wire", "groq": "llama-wire", "anthropic": "claude-wire",
        "gemini": "gemini-wire", "aws-bedrock": "anthropic.claude-3-haiku-20240307-v1:0"}


def fixture(provider, name):
    return (FIXTURES / DIR[provider] / name).read_bytes()


def stream_fixture(provider, name):
    return fixture(provider, name + STREAM_EXT.get(provider, ".sse"))


def res(provider, what):
    return f"w-{CONN[provider]}-{what}"


@pytest.fixture(scope="module")
def env(gw, fake, fake_anthropic, fake_gemini, fake_bedrock):
    names = ["chat", "message", "generate", "converse", "stream", "tools"]
    names += [e for errs in ERRORS.values() for e, _, _ in errs]
    resources = {}
    for p in PROVIDERS:
        c = CONN[p]
        for n in set(names):
            resources[res(p, n)] = {"model": (c, "fixture-" + n), "useFallback": False}
        resources[res(p, "echo")] = {"model": (c, ECHO[p])}
    e = gw.provision(
        connections={"oai": connection_for(fake),
                     # Groq's base URL path: the fake answers Groq's shapes under /openai/v1
                     "grq": connection_for(fake, provider="groq", config={
                         "apiKey": fake.api_key, "baseUrl": fake.origin + "/openai/v1"}),
                     "ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock)},
        resources=resources,
        keys={"wire": {"resources": list(resources)}},
    )
    wait_credentials(gw, e, ["bed"])
    return e


@pytest.fixture
def fakes(fake, fake_anthropic, fake_gemini, fake_bedrock):
    return {"openai": fake, "groq": fake, "anthropic": fake_anthropic, "gemini": fake_gemini,
            "aws-bedrock": fake_bedrock}


def stream_chat(gw, env, model, include_usage=True, headers=None):
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    h = {"Authorization": f"Bearer {env.key()}"}
    h.update(headers or {})
    s = Stream(gw.url, "/v1/chat/completions", body, h)
    try:
        events = s.rest()
        return s.status, s.headers, s.raw, events
    finally:
        s.close()


def chunks_of(status, raw, events):
    assert status == 200, raw[:500]
    assert events and events[-1] == "[DONE]", raw[-500:]
    assert raw.endswith(b"data: [DONE]\n\n"), raw[-300:]
    return [json.loads(e) for e in events[:-1]]


def text_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c.get("choices"))


def tool_calls_of(chunks):
    calls = {}
    for c in chunks:
        for ch in c.get("choices") or []:
            for tc in ch["delta"].get("tool_calls") or []:
                cur = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
                fn = tc.get("function") or {}
                cur["name"] += fn.get("name") or ""
                cur["arguments"] += fn.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def finish_of(chunks):
    return [ch["finish_reason"] for c in chunks for ch in c.get("choices") or []
            if ch.get("finish_reason")]


# ---------------------------------------------------------------- the fakes serve the fixtures
def test_fixture_shapes_match_the_fakes_defaults():
    """The fixtures are in the shapes the fakes' own serializers write (so a default answer
    and a fixture differ in content only)."""
    from harness import fake_bedrock, fake_gemini
    from harness.fake_base import compact, pretty
    for name in ("chat.json", "tools.json"):
        b = fixture("openai", name)
        assert b == pretty(json.loads(b)) + b"\n"
        b = fixture("groq", name)
        assert b == compact(json.loads(b)) + b"\n"
    for name in ("error_400.json", "error_429.json"):
        b = fixture("openai", name)
        assert b == pretty(json.loads(b)) and not b.endswith(b"\n")
    for name in ("message.json", "tools.json", "error_429.json"):
        b = fixture("anthropic", name)
        assert b == compact(json.loads(b))
        if name != "error_429.json":
            assert b.startswith(b'{"model":')
    for name in ("generate.json", "tools.json", "error_400.json", "error_429.json"):
        b = fixture("gemini", name)
        assert b == fake_gemini.pretty(json.loads(b))
    for line in fixture("gemini", "stream.sse").split(b"\r\n\r\n")[:-1]:
        assert line.startswith(b"data: ")
        assert line[6:] == fake_gemini.line(json.loads(line[6:]))
    for name in ("converse.json", "tools.json", "error_429.json"):
        b = fixture("aws-bedrock", name)
        assert b == fake_bedrock.compact(json.loads(b))
    for name in ("stream.bin", "tools.bin"):
        b = fixture("aws-bedrock", name)
        frames = fake_bedrock.decode_frames(b)
        again = b""
        for h, payload in frames:
            obj = json.loads(payload)
            assert obj["p"] == fake_bedrock.PAD[:len(obj["p"])]
            assert list(h) == [":event-type", ":content-type", ":message-type"]
            again += fake_bedrock.event_frame(h[":event-type"], obj)
        assert again == b
    a = fixture("anthropic", "stream.sse")
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in a
    assert b'}        }\n\n' in a               # the service pads data objects with spaces


def test_fakes_default_answers_in_the_fixture_shapes(fake, fake_anthropic, fake_gemini):
    """The fakes' generated answers (echo) come in the same bytes shapes, with the real
    headers (content types, request ids, transfer encoding)."""
    from gwutil import http_request
    msg = {"messages": [{"role": "user", "content": "hi"}]}
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    r = http_request(fake.origin, "POST", "/v1/chat/completions", dict(msg, model="m"), auth)
    assert r.body == json.dumps(r.json(), indent=2, ensure_ascii=False).encode() + b"\n"
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("openai-processing-ms") and r.header("x-request-id").startswith("req_")
    r = http_request(fake.origin, "POST", "/openai/v1/chat/completions", dict(msg, model="m"),
                     auth)
    assert r.body == json.dumps(r.json(), separators=(",", ":")).encode() + b"\n"
    assert r.json()["x_groq"]["id"].startswith("req_01")
    r = http_request(fake.origin, "POST", "/v1/chat/completions",
                     dict(msg, model="fail-400"), auth)
    assert r.status == 400 and r.body.startswith(b'{\n  "error": {\n    "message": ')
    assert r.body.endswith(b'\n  }\n}')
    r = http_request(fake_anthropic.origin, "POST", "/v1/messages",
                     dict(msg, model="claude-x", max_tokens=10),
                     {"x-api-key": fake_anthropic.api_key, "anthropic-version": "2023-06-01"})
    assert r.body.startswith(b'{"model":"claude-x","id":"msg_01')
    assert r.header("anthropic-ratelimit-requests-limit") and r.header("request-id")
    r = http_request(fake_gemini.origin, "POST", "/v1beta/models/g:generateContent",
                     {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
                     {"x-goog-api-key": fake_gemini.api_key})
    assert r.body.startswith(b'{\n  "candidates": [\n') and r.body.endswith(b"\n}\n")
    assert r.header("content-type") == "application/json; charset=UTF-8"


# ---------------------------------------------------------------- plain, tools, errors
@pytest.mark.parametrize("provider", PROVIDERS)
def test_plain_answer(env, provider):
    r = env.chat(res(provider, PLAIN[provider]))
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json"), r
    assert r.header("x-vmx-provider") == provider, r
    b = r.json()
    assert b["object"] == "chat.completion", b
    assert b["choices"][0]["message"]["content"] == TEXT, b
    assert b["choices"][0]["finish_reason"] == "stop", b
    pt, ct = USAGE[provider]
    assert (b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"]) == (pt, ct), b
    assert b["usage"]["total_tokens"] == pt + ct, b


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call_answer(env, provider):
    r = env.chat(res(provider, "tools"))
    assert r.status == 200, r
    m = r.json()["choices"][0]
    assert m["finish_reason"] == "tool_calls", m
    calls = m["message"]["tool_calls"]
    assert len(calls) == 1 and calls[0]["type"] == "function", m
    assert calls[0]["function"]["name"] == "get_weather", m
    assert json.loads(calls[0]["function"]["arguments"]) == TOOL_ARGS, m
    assert calls[0]["id"], m


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call_stream(env, provider):
    status, _, raw, events = stream_chat(env.gw, env, res(provider, "tools"))
    chunks = chunks_of(status, raw, events)
    calls = tool_calls_of(chunks)
    assert len(calls) == 1 and calls[0]["name"] == "get_weather", chunks
    assert json.loads(calls[0]["arguments"]) == TOOL_ARGS, chunks
    assert finish_of(chunks) == ["tool_calls"], chunks


@pytest.mark.parametrize("provider,name,status,words",
                         [(p, n, s, w) for p in PROVIDERS for n, s, w in ERRORS[p]],
                         ids=lambda v: str(v))
def test_error_answer(env, provider, name, status, words):
    r = env.chat(res(provider, name))
    if status is None:          # Anthropic's 529 overloaded counts as a 5xx failure
        assert r.status in (502, 503), r
    else:
        assert r.status == status, r
    assert r.header("content-type").startswith("application/json"), r
    e = r.json()["error"]
    assert {"message", "type"} <= set(e), e
    if words:
        assert words in e["message"], e
    assert set(e) == {"message", "type", "param", "code"}, e


def test_groq_error_envelope_is_complete(env):
    """Groq's compact error lacks param and code: the gateway completes OpenAI's envelope
    and keeps what Groq wrote."""
    r = env.chat(res("groq", "error_400"))
    assert r.status == 400, r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, r
    groq = json.loads(fixture("groq", "error_400.json"))["error"]
    assert (e["message"], e["type"]) == (groq["message"], groq["type"]), e
    assert e["param"] is None and e["code"] == groq["type"], e
    assert int(r.header("content-length")) == len(r.body), r


@pytest.mark.parametrize("provider", ["gemini"])
def test_error_of_a_stream_typed_event_stream(env, provider):
    """Gemini answers an error of streamGenerateContent?alt=sse as text/event-stream (pretty
    JSON): the client still gets the status and OpenAI's envelope."""
    status, headers, raw, events = stream_chat(env.gw, env, res(provider, "error_429"))
    assert status == 429, raw
    e = json.loads(raw)["error"]
    assert "You exceeded your current quota" in e["message"], e


# ---------------------------------------------------------------- streams, split at chosen bytes
def _offsets(provider, body, pattern):
    """Where to cut the fixture stream body for a split pattern."""
    if pattern == "utf8":
        # inside "é" (2 bytes) and inside the 4-byte "🌤"
        e = body.index("é".encode())
        s = body.index("🌤".encode())
        return [e + 1, s + 1, s + 2, s + 3]
    if pattern == "data":
        d = body.index(b"data:", 10)
        return [d + 1, d + 3, d + 4, d + 5]
    if pattern == "prelude":
        # inside the prelude of the second and third frames, and between their CRC bytes
        f2 = struct.unpack(">I", body[:4])[0]
        f3 = f2 + struct.unpack(">I", body[f2:f2 + 4])[0]
        end3 = f3 + struct.unpack(">I", body[f3:f3 + 4])[0]
        return [f2 + 2, f2 + 5, f2 + 9, f2 + 10, f2 + 11, f3 - 2, f3 + 4, f3 + 8,
                f3 + 10, end3 - 3, end3 - 1]
    if pattern == "lines":
        # at every line end of the body (CRLF pairs split for Gemini)
        return [i + 1 for i, c in enumerate(body) if c in (0x0a, 0x0d)]
    return None


STREAM_CASES = [(p, pat) for p in PROVIDERS for pat in ("whole", "utf8", "data", "lines")
                if not (p == "aws-bedrock" and pat in ("data", "lines"))]
STREAM_CASES += [("aws-bedrock", "prelude")]


@pytest.mark.parametrize("provider,pattern", STREAM_CASES, ids=lambda v: str(v))
def test_stream_split(env, fakes, provider, pattern):
    f = fakes[provider]
    body = stream_fixture(provider, "stream")
    if pattern != "whole":
        f.split_at = _offsets(provider, body, pattern)
        f.split_delay = 0.01
    status, headers, raw, events = stream_chat(env.gw, env, res(provider, "stream"))
    assert headers.get("content-type").startswith("text/event-stream"), headers
    chunks = chunks_of(status, raw, events)
    assert text_of(chunks) == TEXT, chunks
    assert finish_of(chunks) == ["stop"], chunks
    usage = [c["usage"] for c in chunks if c.get("usage")]
    pt, ct = USAGE[provider]
    assert usage and (usage[-1]["prompt_tokens"], usage[-1]["completion_tokens"]) == (pt, ct), \
        chunks[-2:]


@pytest.mark.parametrize("provider", ["gemini", "anthropic"])
def test_stream_one_byte_at_a_time(env, fakes, provider):
    """A short answer (the tool call stream) in as many pieces as it has bytes."""
    f = fakes[provider]
    f.split_at = "each"
    f.split_delay = 0.001
    status, _, raw, events = stream_chat(env.gw, env, res(provider, "tools"))
    chunks = chunks_of(status, raw, events)
    calls = tool_calls_of(chunks)
    assert len(calls) == 1 and json.loads(calls[0]["arguments"]) == TOOL_ARGS, chunks


def test_bedrock_frames_one_byte_at_a_time(env, fakes):
    f = fakes["aws-bedrock"]
    f.split_at = "each"
    f.split_delay = 0.0005
    status, _, raw, events = stream_chat(env.gw, env, res("aws-bedrock", "tools"))
    chunks = chunks_of(status, raw, events)
    assert json.loads(tool_calls_of(chunks)[0]["arguments"]) == TOOL_ARGS, chunks


@pytest.mark.parametrize("provider", PROVIDERS)
def test_usage_only_when_asked(env, gw, provider):
    """Without stream_options.include_usage no chunk carries usage (Groq puts usage in its
    finish chunk; OpenAI sends a usage chunk of its own since the gateway asks for it); the
    gateway still reads it for the audit."""
    status, headers, raw, events = stream_chat(env.gw, env, res(provider, "stream"),
                                               include_usage=False)
    chunks = chunks_of(status, raw, events)
    assert text_of(chunks) == TEXT, chunks
    assert not [c for c in chunks if c.get("usage")], chunks[-2:]
    assert not [c for c in chunks if (c.get("x_groq") or {}).get("usage")], chunks[-2:]
    assert finish_of(chunks) == ["stop"], chunks
    if provider == "groq":
        # the finish chunk keeps the rest of what Groq wrote
        assert chunks[-1]["x_groq"]["id"].startswith("req_01"), chunks[-1]
    rec = _audit_record(gw, env, headers.get("x-vmx-request-id"))
    assert rec is not None, "no audit record"
    a = rec["attempts"][-1]
    assert (a["promptTokens"], a["completionTokens"]) == USAGE[provider], a


# ---------------------------------------------------------------- Accept-Encoding: gzip, deflate
def _raw_request(gw, body, key, accept_encoding):
    host, port = gw.url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
        data = json.dumps(body).encode()
        for k, v in (("Authorization", f"Bearer {key}"), ("Content-Type", "application/json"),
                     ("Content-Length", str(len(data))), ("Accept-Encoding", accept_encoding),
                     ("Accept", "application/json")):
            c.putheader(k, v)
        c.endheaders(data)
        r = c.getresponse()
        raw = r.read()
        return r.status, r.headers, raw
    finally:
        c.close()


def _decoded(headers, raw):
    enc = (headers.get("content-encoding") or "identity").lower()
    if enc == "gzip":
        return gzip.decompress(raw)
    if enc == "deflate":
        try:
            return zlib.decompress(raw)
        except zlib.error:
            return zlib.decompress(raw, -zlib.MAX_WBITS)
    assert enc == "identity", enc
    return raw


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_accept_encoding_gzip_deflate(env, provider, stream):
    body = {"model": res(provider, "echo"), "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream"] = True
    status, headers, raw = _raw_request(env.gw, body, env.key(), "gzip, deflate")
    data = _decoded(headers, raw)
    assert status == 200, (headers, data[:500])
    want = f"Hello from {ECHO[provider]}! You said: hello"
    if stream:
        assert headers.get("content-type").startswith("text/event-stream"), headers
        events = sse_events(data)
        assert events[-1] == "[DONE]", data[-300:]
        assert text_of([json.loads(e) for e in events[:-1]]) == want, data[:800]
    else:
        b = json.loads(data)
        assert b["choices"][0]["message"]["content"] == want, b


# ---------------------------------------------------------------- audit of real answer bytes
def _audit_record(gw, env, request_id, timeout=20):
    base = f"/api/v1/workspaces/{env.ws_id}/environments/{env.env_id}/audit"
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, body, _ = gw.api.request("GET", base + "?pageSize=200")
        assert status == 200, body
        for rec in body["data"]:
            if rec["requestId"] == request_id:
                status, full, _ = gw.api.request("GET", f"{base}/{rec['id']}")
                assert status == 200, full
                return full
        time.sleep(0.3)
    return None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_audit_keeps_an_indented_answer(env, gw, provider):
    r = env.chat(res(provider, PLAIN[provider]))
    assert r.status == 200, r
    rec = _audit_record(gw, env, r.header("x-vmx-request-id"))
    assert rec is not None, "no audit record"
    assert rec["statusCode"] == 200, rec
    assert TEXT in json.dumps(rec.get("response"), ensure_ascii=False), rec
