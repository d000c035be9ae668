"""The fake Anthropic, Gemini and Bedrock providers themselves (t/harness/fake_*.py): checked
with the providers' official Node SDKs talking to them directly (t/provider-sdk, pinned in its
package-lock.json), and at the byte level here.  Needs neither the module nor the control plane.
"""
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gwutil import http_request

from harness.fake_anthropic import FakeAnthropic
from harness.fake_base import Recorded
from harness.fake_bedrock import FakeBedrock, decode_frames, encode_frame
from harness.fake_gemini import FakeGemini

SDK_DIR = Path(__file__).resolve().parent.parent / "provider-sdk"


# ---------------------------------------------------------------------- fixtures
def _start_all(tls=None):
    fakes = (FakeAnthropic(tls=tls).start(), FakeGemini(tls=tls).start(),
             FakeBedrock(tls=tls).start())
    for f in fakes:
        f.split_delay = 0.002
    return fakes


@pytest.fixture(scope="module")
def fakes():
    fs = _start_all()
    yield fs
    for f in fs:
        f.stop()


@pytest.fixture
def anthropic(fakes):
    f = fakes[0]
    f.set_behavior(None)
    f.clear()
    return f


@pytest.fixture
def gemini(fakes):
    f = fakes[1]
    f.set_behavior(None)
    f.clear()
    return f


@pytest.fixture
def bedrock(fakes):
    f = fakes[2]
    f.set_behavior(None)
    f.clear()
    return f


def _ensure_node_modules():
    if (SDK_DIR / "node_modules" / "@aws-sdk" / "client-bedrock-runtime").exists() and \
            (SDK_DIR / "node_modules" / "@anthropic-ai" / "sdk").exists() and \
            (SDK_DIR / "node_modules" / "@google" / "genai").exists():
        return
    if not shutil.which("npm"):
        pytest.fail("npm is not installed", pytrace=False)
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"npm ci failed in t/provider-sdk:\n{r.stdout}\n{r.stderr}", pytrace=False)


def _run_provider_sdks(fs, extra_env=None):
    if not shutil.which("node"):
        pytest.fail("node is not installed", pytrace=False)
    _ensure_node_modules()
    a, g, b = fs
    env = dict(os.environ)
    env.update({
        "VMX_FAKE_ANTHROPIC_URL": a.url, "VMX_FAKE_ANTHROPIC_KEY": a.api_key,
        "VMX_FAKE_GEMINI_URL": g.url, "VMX_FAKE_GEMINI_KEY": g.api_key,
        "VMX_FAKE_BEDROCK_URL": b.url, "VMX_FAKE_BEDROCK_REGION": b.region,
        "VMX_FAKE_BEDROCK_ACCESS_KEY_ID": b.access_key_id,
        "VMX_FAKE_BEDROCK_SECRET_ACCESS_KEY": b.secret_access_key,
        "VMX_FAKE_BEDROCK_SESSION_TOKEN": b.session_token,
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    env.update(extra_env or {})
    files = sorted(str(p) for p in SDK_DIR.glob("*.test.mjs"))
    try:
        r = subprocess.run(["node", "--test", "--test-reporter=spec"] + files, cwd=SDK_DIR,
                           env=env, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        print(out)
        pytest.fail(f"node --test t/provider-sdk did not end in 90 s:\n{out}", pytrace=False)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        print(out)
        pytest.fail(f"node --test t/provider-sdk exited {r.returncode}:\n{out}", pytrace=False)
    assert "ℹ fail 0" in out, out
    assert "ℹ skipped 0" in out, out
    return out


# ---------------------------------------------------------------------- the SDKs
def test_provider_sdks_against_fakes(fakes):
    a, g, b = fakes
    for f in fakes:
        f.clear()
    _run_provider_sdks(fakes)
    # what the SDKs sent is what the fakes are meant to check
    msgs = a.message_requests()
    assert msgs and all(r.headers.get("anthropic-version") for r in msgs)
    assert {r.info.get("auth_scheme") for r in msgs if "auth_scheme" in r.info} == \
        {"bearer", "x-api-key"}
    gen = g.generate_requests()
    assert any(r.info.get("alt") == "sse" for r in gen)
    assert all(r.headers.get("x-goog-api-key") for r in gen)
    ok = [r for r in b.converse_requests() if r.info.get("auth", {}).get("ok")]
    assert len(ok) >= 20
    haiku = [r for r in ok if r.info["model"] == "anthropic.claude-3-haiku-20240307-v1:0"]
    assert haiku and all("%3A" in r.path for r in haiku)
    assert all("x-amz-security-token" in r.info["auth"]["signed_headers"] for r in ok)
    assert any(r.info["auth"].get("error", "").startswith("InvalidSignatureException")
               for r in b.converse_requests())


def test_provider_sdks_against_fakes_tls(pki):
    fs = _start_all(tls=(pki[1], pki[2]))
    try:
        assert all(f.url.startswith("https://") for f in fs)
        _run_provider_sdks(fs, {"NODE_EXTRA_CA_CERTS": pki[0]})
    finally:
        for f in fs:
            f.stop()


# ---------------------------------------------------------------------- Anthropic
def _ant_headers(f, **extra):
    h = {"x-api-key": f.api_key, "anthropic-version": "2023-06-01"}
    h.update(extra)
    return h


def _ant_body(model="claude-x", **extra):
    b = {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    b.update(extra)
    return b


def test_anthropic_message_format(anthropic):
    r = http_request(anthropic.url, "POST", "/v1/messages", _ant_body(), _ant_headers(anthropic))
    assert r.status == 200, r.body
    assert r.header("content-type") == "application/json"
    assert r.header("request-id").startswith("req_011C")
    assert r.header("anthropic-ratelimit-requests-limit") == "4000"
    assert r.header("anthropic-ratelimit-tokens-limit") == "480000"
    assert r.header("anthropic-ratelimit-requests-reset").endswith("Z")
    m = r.json()
    assert m["id"].startswith("msg_01") and m["type"] == "message" and m["role"] == "assistant"
    assert m["content"] == [{"type": "text", "text": "Hello from claude-x! You said: hi"}]
    assert m["stop_reason"] == "end_turn" and m["stop_sequence"] is None
    assert set(m["usage"]) >= {"input_tokens", "output_tokens", "cache_creation_input_tokens",
                               "cache_read_input_tokens"}
    req = anthropic.last()
    assert req.info["auth_scheme"] == "x-api-key" and req.body["max_tokens"] == 32


def test_anthropic_sse_bytes(anthropic):
    r = http_request(anthropic.url, "POST", "/v1/messages", _ant_body("tools", stream=True, tools=[
        {"name": "lookup", "input_schema": {"type": "object", "properties": {
            "q": {"type": "string"}, "n": {"type": "integer"}}}}]), _ant_headers(anthropic))
    assert r.status == 200
    assert r.header("content-type") == "text/event-stream; charset=utf-8"
    assert r.header("transfer-encoding") == "chunked"
    assert r.body.endswith(b"\n\n") and b"\r" not in r.body
    blocks = r.body.decode().split("\n\n")[:-1]
    names = []
    partial = ""
    for blk in blocks:
        ev, data = blk.split("\n")
        assert ev.startswith("event: ") and data.startswith("data: ")
        obj = json.loads(data[6:])
        assert obj["type"] == ev[7:]
        names.append(obj["type"])
        if obj["type"] == "content_block_delta":
            assert obj["delta"]["type"] == "input_json_delta"
            partial += obj["delta"]["partial_json"]
        if obj["type"] == "message_delta":
            assert obj["delta"]["stop_reason"] == "tool_use"
            assert obj["usage"]["output_tokens"] > 0
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") >= 3
    assert json.loads(partial) == {"q": "Paris", "n": 1}


@pytest.mark.parametrize("status,etype", [(400, "invalid_request_error"),
                                          (401, "authentication_error"),
                                          (404, "not_found_error"), (429, "rate_limit_error"),
                                          (500, "api_error"), (529, "overloaded_error")])
def test_anthropic_errors(anthropic, status, etype):
    r = http_request(anthropic.url, "POST", "/v1/messages", _ant_body(f"fail-{status}"),
                     _ant_headers(anthropic))
    assert r.status == status
    b = r.json()
    assert b["type"] == "error" and b["error"]["type"] == etype and b["error"]["message"]
    assert b["request_id"].startswith("req_")
    assert r.header("request-id")
    if status == 429:
        assert r.header("retry-after") == "1"


def test_anthropic_request_checks(anthropic):
    url = anthropic.url

    def post(body, **hdrs):
        return http_request(url, "POST", "/v1/messages", body, _ant_headers(anthropic, **hdrs))

    r = http_request(url, "POST", "/v1/messages", _ant_body(), {"anthropic-version": "2023-06-01"})
    assert r.status == 401 and r.json()["error"]["message"] == "x-api-key header is required"
    r = http_request(url, "POST", "/v1/messages", _ant_body(), {"x-api-key": anthropic.api_key})
    assert r.status == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = post({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 400 and r.json()["error"]["message"] == "max_tokens: Field required"
    r = post(_ant_body(messages=[{"role": "system", "content": "be nice"},
                                 {"role": "user", "content": "x"}]))
    assert r.status == 400 and "Unexpected role \"system\"" in r.json()["error"]["message"]
    use = {"type": "tool_use", "id": "toolu_01abc", "name": "f", "input": {}}
    r = post(_ant_body(messages=[{"role": "user", "content": "x"},
                                 {"role": "assistant", "content": [use]},
                                 {"role": "user", "content": "y"}]))
    assert r.status == 400 and "without `tool_result`" in r.json()["error"]["message"]
    r = post(_ant_body("tools", messages=[
        {"role": "user", "content": "x"}, {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01abc",
                                      "content": [{"type": "text", "text": "42"}]}]}]))
    assert r.status == 200 and r.json()["content"][0]["text"] == "The tool answered: 42"
    r = post(_ant_body(tools=[{"name": "f", "parameters": {}}]))
    assert r.status == 400 and "input_schema" in r.json()["error"]["message"]


def test_anthropic_bearer_refused_when_strict():
    with FakeAnthropic(accept_bearer=False) as f:
        r = http_request(f.url, "POST", "/v1/messages", _ant_body(),
                         {"authorization": f"Bearer {f.api_key}",
                          "anthropic-version": "2023-06-01"})
        assert r.status == 401 and r.json()["error"]["type"] == "authentication_error"
        r = http_request(f.url, "POST", "/v1/messages", _ant_body(), _ant_headers(f))
        assert r.status == 200


def test_anthropic_stream_error_event(anthropic):
    r = http_request(anthropic.url, "POST", "/v1/messages", _ant_body("stream-error", stream=True),
                     _ant_headers(anthropic))
    assert r.status == 200
    text = r.body.decode()
    assert text.count("event: content_block_delta\n") == 2
    last = text.split("\n\n")[-2].split("\n")
    assert last[0] == "event: error"
    assert json.loads(last[1][6:])["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert "message_stop" not in text


# ---------------------------------------------------------------------- Gemini
GEM_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_gemini_json_and_sse_bytes(gemini):
    h = {"x-goog-api-key": gemini.api_key}
    r = http_request(gemini.url, "POST", "/v1beta/models/gemini-2.0-flash:generateContent",
                     GEM_BODY, h)
    assert r.status == 200
    assert r.header("content-type") == "application/json; charset=UTF-8"
    assert r.body.startswith(b"{\n  \"candidates\": [")     # pretty-printed like the real API
    b = r.json()
    c = b["candidates"][0]
    assert c["content"] == {"parts": [{"text": "Hello from gemini-2.0-flash! You said: hi"}],
                            "role": "model"}
    assert c["finishReason"] == "STOP" and c["index"] == 0 and c["safetyRatings"]
    u = b["usageMetadata"]
    assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
    assert b["modelVersion"] == "gemini-2.0-flash" and b["responseId"]

    r = http_request(gemini.url, "POST",
                     "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", GEM_BODY, h)
    assert r.status == 200 and r.header("content-type") == "text/event-stream"
    events = r.body.split(b"\r\n\r\n")
    assert events[-1] == b"" and len(events) >= 4
    chunks = [json.loads(e[6:]) for e in events[:-1] if e.startswith(b"data: ")]
    assert len(chunks) == len(events) - 1
    assert b"\n" not in b"".join(events)     # CRLF CRLF between events, one line each
    assert "".join(p["text"] for ch in chunks for p in ch["candidates"][0]["content"]["parts"]) \
        == "Hello from gemini-2.0-flash! You said: hi"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in ch["candidates"][0] for ch in chunks[:-1])

    # without alt=sse: one JSON array
    r = http_request(gemini.url, "POST", "/v1beta/models/g:streamGenerateContent", GEM_BODY, h)
    arr = json.loads(r.body)
    assert isinstance(arr, list) and arr[-1]["candidates"][0]["finishReason"] == "STOP"


def test_gemini_tools_and_blocked(gemini):
    h = {"x-goog-api-key": gemini.api_key}
    body = dict(GEM_BODY, tools=[{"functionDeclarations": [{
        "name": "lookup", "parameters": {"type": "OBJECT", "properties": {
            "q": {"type": "STRING"}, "n": {"type": "INTEGER"}}}}]}])
    r = http_request(gemini.url, "POST", "/v1beta/models/tools:generateContent", body, h)
    part = r.json()["candidates"][0]["content"]["parts"][0]
    assert part == {"functionCall": {"name": "lookup", "args": {"q": "Paris", "n": 1}}}
    r = http_request(gemini.url, "POST", "/v1beta/models/blocked:streamGenerateContent?alt=sse",
                     GEM_BODY, h)
    (ev,) = [json.loads(e[6:]) for e in r.body.split(b"\r\n\r\n") if e]
    assert "candidates" not in ev and ev["promptFeedback"]["blockReason"] == "SAFETY"


@pytest.mark.parametrize("status,name", [(400, "INVALID_ARGUMENT"), (403, "PERMISSION_DENIED"),
                                         (404, "NOT_FOUND"), (429, "RESOURCE_EXHAUSTED"),
                                         (500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_gemini_errors(gemini, status, name):
    r = http_request(gemini.url, "POST", f"/v1beta/models/fail-{status}:generateContent",
                     GEM_BODY, {"x-goog-api-key": gemini.api_key})
    assert r.status == status
    err = r.json()["error"]
    assert err["code"] == status and err["status"] == name and err["message"]


def test_gemini_request_checks(gemini):
    url, h = gemini.url, {"x-goog-api-key": gemini.api_key}
    path = "/v1beta/models/g:generateContent"
    r = http_request(url, "POST", path, GEM_BODY)
    assert r.status == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = http_request(url, "POST", path, GEM_BODY, {"x-goog-api-key": "wrong"})
    assert r.status == 400 and r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    r = http_request(url, "POST", path + "?key=" + gemini.api_key, GEM_BODY)
    assert r.status == 200
    r = http_request(url, "POST", path, dict(GEM_BODY, messages=[]), h)
    assert r.status == 400 and 'Unknown name "messages"' in r.json()["error"]["message"]
    r = http_request(url, "POST", path, dict(GEM_BODY, generationConfig={"max_tokens": 5}), h)
    assert r.status == 400 and "generation_config" in r.json()["error"]["message"]
    r = http_request(url, "POST", path, {"contents": [{"role": "assistant",
                                                       "parts": [{"text": "x"}]}]}, h)
    assert r.status == 400 and "valid role" in r.json()["error"]["message"]
    r = http_request(url, "POST", path, {"contents": []}, h)
    assert r.status == 400


def test_gemini_stream_error(gemini):
    r = http_request(gemini.url, "POST", "/v1beta/models/stream-error:streamGenerateContent?alt=sse",
                     GEM_BODY, {"x-goog-api-key": gemini.api_key})
    evs = [json.loads(e[6:]) for e in r.body.split(b"\r\n\r\n") if e]
    assert len(evs) == 3 and evs[-1]["error"]["code"] == 500
    assert evs[-1]["error"]["status"] == "INTERNAL"


# ---------------------------------------------------------------------- Bedrock
# AWS's SigV4 test suite: credentials, time, and the signatures of get-vanilla,
# get-vanilla-query-order-key-case and post-vanilla.
SUITE_KEY = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_TIME = 1440938160        # 2015-08-30T12:36:00Z


def _suite_request(method, path, signature, host="example.amazonaws.com",
                   date="20150830T123600Z", body=b""):
    hdrs = [("Host", host), ("X-Amz-Date", date),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/"
                              f"service/aws4_request, SignedHeaders=host;x-amz-date, "
                              f"Signature={signature}")]
    return Recorded(method, path, "HTTP/1.1", {k.lower(): v for k, v in hdrs}, hdrs, body, None, 0)


@pytest.mark.parametrize("method,path,sig", [
    ("GET", "/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("GET", "/?Param2=value2&Param1=value1",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("POST", "/", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
])
def test_bedrock_sigv4_verifier_matches_aws_test_suite(method, path, sig):
    f = FakeBedrock(*SUITE_KEY, session_token=None, region="us-east-1", service="service")
    assert f.verify(_suite_request(method, path, sig), now=SUITE_TIME)["ok"]
    bad = _suite_request(method, path, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    with pytest.raises(Exception) as e:
        f.verify(bad, now=SUITE_TIME)
    assert e.value.name == "InvalidSignatureException"
    assert "The Canonical String for this request should have been" in e.value.message
    with pytest.raises(Exception) as e:       # 10 minutes later: too old
        f.verify(_suite_request(method, path, sig), now=SUITE_TIME + 600)
    assert e.value.message.startswith("Signature expired: 20150830T123600Z")
    # a body that is not the signed one
    with pytest.raises(Exception) as e:
        f.verify(_suite_request(method, path, sig, body=b"x"), now=SUITE_TIME)
    assert e.value.name == "InvalidSignatureException"


def test_bedrock_unsigned_and_expired(bedrock):
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    r = http_request(bedrock.url, "POST", path, body)
    assert r.status == 403
    assert r.header("x-amzn-ErrorType").startswith("MissingAuthenticationTokenException:")
    assert r.json() == {"message": "Missing Authentication Token"}
    assert r.header("x-amzn-RequestId")
    assert bedrock.last().info["model"] == "anthropic.claude-3-haiku-20240307-v1:0"
    # an expired session token, signed correctly otherwise
    f = FakeBedrock(verify_signature=True)
    f.expire_token(f.session_token)
    req = Recorded("POST", path, "HTTP/1.1", {"authorization": "AWS4-HMAC-SHA256 Credential="
                   f"{f.access_key_id}/20240101/us-east-1/bedrock/aws4_request, "
                   "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=00",
                   "x-amz-security-token": f.session_token}, [], b"", None, 0)
    with pytest.raises(Exception) as e:
        f.verify(req)
    assert e.value.name == "ExpiredTokenException"


def _unsigned_bedrock():
    return FakeBedrock(verify_signature=False)


def test_bedrock_eventstream_bytes():
    with _unsigned_bedrock() as f:
        body = {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {
                    "json": {"type": "object", "properties": {"q": {"type": "string"}}}}}}]}}
        r = http_request(f.url, "POST", "/model/tools/converse-stream", body)
        assert r.status == 200
        assert r.header("content-type") == "application/vnd.amazon.eventstream"
        frames = decode_frames(r.body)
        kinds = [h[":event-type"] for h, _ in frames]
        assert kinds[0] == "messageStart" and kinds[1] == "contentBlockStart"
        assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
        for h, p in frames:
            assert h[":message-type"] == "event" and h[":content-type"] == "application/json"
            assert "p" in json.loads(p)
        start = json.loads(frames[1][1])["start"]["toolUse"]
        assert start["name"] == "lookup" and start["toolUseId"].startswith("tooluse_")
        args = "".join(json.loads(p)["delta"]["toolUse"]["input"]
                       for h, p in frames if h[":event-type"] == "contentBlockDelta")
        assert json.loads(args) == {"q": "Paris"}
        assert json.loads(frames[-2][1])["stopReason"] == "tool_use"

        r = http_request(f.url, "POST", "/model/stream-error/converse-stream",
                         {"messages": body["messages"]})
        frames = decode_frames(r.body)
        h, p = frames[-1]
        assert h == {":exception-type": "throttlingException",
                     ":content-type": "application/json", ":message-type": "exception"}
        assert json.loads(p)["message"]
        # a flipped byte is caught by the CRC
        raw = bytearray(encode_frame([(":event-type", "x")], b"{}"))
        raw[-6] ^= 1
        with pytest.raises(ValueError):
            decode_frames(bytes(raw))


@pytest.mark.parametrize("status,name", [(400, "ValidationException"),
                                         (403, "AccessDeniedException"),
                                         (429, "ThrottlingException"),
                                         (500, "InternalServerException"),
                                         (503, "ServiceUnavailableException")])
def test_bedrock_errors(status, name):
    with _unsigned_bedrock() as f:
        r = http_request(f.url, "POST", f"/model/fail-{status}/converse",
                         {"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
        assert r.status == status
        assert r.header("x-amzn-ErrorType").split(":")[0] == name
        assert list(r.json()) == ["message"]


def test_bedrock_request_checks():
    with _unsigned_bedrock() as f:
        def post(body):
            return http_request(f.url, "POST", "/model/m/converse", body)
        assert post({}).status == 400
        r = post({"messages": [{"role": "user", "content": [{"text": "a"}]},
                               {"role": "user", "content": [{"text": "b"}]}]})
        assert r.status == 400 and "alternate" in r.json()["message"]
        assert r.header("x-amzn-ErrorType").startswith("ValidationException:")
        tu = {"toolUse": {"toolUseId": "tooluse_1", "name": "f", "input": {}}}
        tr = {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "42"}]}}
        msgs = [{"role": "user", "content": [{"text": "a"}]},
                {"role": "assistant", "content": [tu]}, {"role": "user", "content": [tr]}]
        r = post({"messages": msgs})
        assert r.status == 400 and "toolConfig field must be defined" in r.json()["message"]
        tools = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}
        r = http_request(f.url, "POST", "/model/tools/converse",
                         {"messages": msgs, "toolConfig": tools})
        assert r.status == 200
        assert r.json()["output"]["message"]["content"] == [{"text": "The tool answered: 42"}]


# ---------------------------------------------------------------------- shared behaviours
def _requests_for(fakes):
    a, g, b = fakes
    return [
        (a, "/v1/messages", _ant_headers(a), lambda m, s: _ant_body(m, stream=s)),
        (g, None, {"x-goog-api-key": g.api_key}, lambda m, s: GEM_BODY),
        (b, None, {}, lambda m, s: {"messages": [{"role": "user", "content": [{"text": "x"}]}]}),
    ]


def _path(f, path, model, stream):
    if path:
        return path
    if isinstance(f, FakeGemini):
        return f"/v1beta/models/{model}:" + ("streamGenerateContent?alt=sse" if stream
                                             else "generateContent")
    return f"/model/{model}/" + ("converse-stream" if stream else "converse")


def _raw(f, path, headers, body, timeout=2.0):
    data = json.dumps(body).encode()
    s = socket.create_connection((f.host, f.port), timeout=timeout)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: {f.host}:{f.port}\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(data)}\r\n\r\n"
        s.sendall(head.encode() + data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return out, "eof"
            out += chunk
        return out, "timeout"
    except socket.timeout:
        return out, "timeout"
    except ConnectionResetError:
        return out, "reset"
    finally:
        s.close()


def test_reset_stall_cut_and_split(fakes):
    bedrock_unsigned = _unsigned_bedrock().start()
    try:
        a, g, _ = fakes
        for f in (a, g, bedrock_unsigned):
            f.split_delay = 0.002
        cases = _requests_for((a, g, bedrock_unsigned))
        for f, path, hdrs, body in cases:
            out, how = _raw(f, _path(f, path, "reset", False), hdrs, body("reset", False))
            assert (out, how) == (b"", "reset"), f.kind
            out, how = _raw(f, _path(f, path, "stall", False), hdrs, body("stall", False),
                            timeout=0.5)
            assert (out, how) == (b"", "timeout"), f.kind
            out, how = _raw(f, _path(f, path, "stream-cut", True), hdrs, body("stream-cut", True))
            assert how == "reset" and out.startswith(b"HTTP/1.1 200 ") and \
                not out.endswith(b"0\r\n\r\n"), f.kind
            assert f.stream_events_sent == min(f.cut_after, f.stream_events_total - 1) > 0
            # split-stream: same bytes as a plain stream once de-chunked
            r = http_request(f.url, "POST", _path(f, path, "split-stream", True),
                             body("split-stream", True), hdrs)
            assert r.status == 200 and f.stream_events_sent == f.stream_events_total >= 3
    finally:
        bedrock_unsigned.stop()

