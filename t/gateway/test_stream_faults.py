"""Provider bytes as they really come: a 200 stream that opens with an error, errors and broken
frames after the first content, compressed answers nobody asked for, counts left out, and what
the audit record, the statistics and the client make of them.

Raw HTTP against the session's nginx (the SDKs hide headers and the bytes of an error event);
the audit records are read from nginx's spool, by request id.
"""
import gzip
import json
import re
import time
import zlib

import pytest

from gwutil import (Stream, anthropic_connection, bedrock_connection, connection_for, dp_metric,
                    gemini_connection, record, sse_events, wait_credentials)

ECHO = {"oai": "gpt-echo", "ant": "claude-echo", "gem": "gemini-echo",
        "bed": "anthropic.claude-3-haiku-20240307-v1:0"}
BED_EXCEPTIONS = {"modelStreamErrorException": 502, "throttlingException": 429,
                  "internalServerException": 502, "serviceUnavailableException": 503}


@pytest.fixture(scope="module")
def env(gw, fake, fake2, fake_anthropic, fake_gemini, fake_bedrock, fake_sts):
    res = {
        # a stream that opens with an error falls back; alone, it is an HTTP error
        "oai-first": {"model": ("oai", "stream-error-first"), "fallback": [("oai2", "gpt-fb")]},
        "oai-first-only": {"model": ("oai", "stream-error-first")},
        "ant-first": {"model": ("ant", "stream-error-first"), "fallback": [("gem", "gemini-fb")]},
        "ant-first-only": {"model": ("ant", "stream-error-first")},
        "ant-first-nofb": {"model": ("ant", "stream-error-first"),
                           "fallback": [("gem", "gemini-fb")], "useFallback": False},
        "gem-first": {"model": ("gem", "stream-error-first"), "fallback": [("ant", "claude-fb")]},
        "gem-first-only": {"model": ("gem", "stream-error-first")},
        # errors after the first content
        "oai-mid": {"model": ("oai", "stream-error")},
        "ant-mid": {"model": ("ant", "stream-error"), "fallback": [("gem", "gemini-fb")]},
        "bed-mid": {"model": ("bed", "stream-error")},
        "bed-badcrc": {"model": ("bed", "stream-badcrc"), "fallback": [("ant", "claude-fb")]},
        "bed-badcrc-prelude": {"model": ("bed", "stream-badcrc-prelude")},
        "ant-cut": {"model": ("ant", "stream-cut"), "fallback": [("gem", "gemini-fb")]},
        "gem-safety": {"model": ("gem", "safety-stop")},
        "oai-fail-nofb": {"model": ("oai", "fail-503"), "fallback": [("oai2", "gpt-fb")],
                          "useFallback": False},
    }
    for exc in BED_EXCEPTIONS:
        res[f"bed-first-{exc}"] = {"model": ("bed", f"stream-error-first-{exc}"),
                                   "fallback": [("ant", "claude-fb")]}
        res[f"bed-first-{exc}-only"] = {"model": ("bed", f"stream-error-first-{exc}")}
    for c, m in ECHO.items():
        res[c] = {"model": (c, m)}
        res[f"{c}-gz"] = {"model": (c, m), "fallback": [("oai2", "gpt-fb")]}
        for code in (400, 429, 503):
            res[f"{c}-{code}"] = {"model": (c, f"fail-{code}")}
    e = gw.provision(
        connections={"oai": connection_for(fake), "oai2": connection_for(fake2),
                     "ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock)},
        resources=res, keys={"k": {"resources": list(res)}})
    wait_credentials(gw, e, ["bed"])
    return e


def chat(env, res, stream=False, headers=None, **body):
    b = {"stream": True} if stream else {}
    b.update(body)
    return env.chat(res, body=b, headers=headers)


def events_of(r):
    """The data: payloads of a streamed answer, parsed ([DONE] as the string)."""
    return [e if e == "[DONE]" else json.loads(e) for e in sse_events(r.body)]


def text_of(events):
    return "".join(e["choices"][0]["delta"].get("content") or ""
                   for e in events if isinstance(e, dict) and e.get("choices"))


def assert_clean_error_end(r, code=None):
    """A stream that failed after its first byte: content, one closing error event in
    OpenAI's shape, and a proper end of the body (http.client read it whole: the chunked
    terminator came)."""
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/event-stream"), r
    assert re.fullmatch(rb"(data: [^\n]+\n\n)+", r.body), r.body[-300:]
    ev = events_of(r)
    assert text_of(ev), ev[:3]
    err = ev[-1]
    assert isinstance(err, dict) and set(err) == {"error"}, ev[-2:]
    assert set(err["error"]) == {"message", "type", "param", "code"}, err
    assert err["error"]["message"], err
    if code is not None:
        assert err["error"]["code"] == code, err
    return err["error"]


# ------------------------------------------------------------------ item 1: errors before content
@pytest.mark.parametrize("res,fallback_provider", [
    ("oai-first", "openai"), ("ant-first", "gemini"), ("gem-first", "anthropic"),
    ("bed-first-modelStreamErrorException", "anthropic"),
    ("bed-first-throttlingException", "anthropic"),
    ("bed-first-internalServerException", "anthropic"),
    ("bed-first-serviceUnavailableException", "anthropic")])
def test_stream_opening_with_error_falls_back(gw, env, res, fallback_provider):
    r = chat(env, res, stream=True)
    assert r.status == 200, r
    ev = events_of(r)
    assert ev[-1] == "[DONE]" and text_of(ev).startswith("Hello from"), ev
    assert not any(isinstance(e, dict) and "error" in e for e in ev), ev
    assert r.header("x-vmx-provider") == fallback_provider
    assert r.header("x-vmx-event-count") == "1", r
    assert r.header("x-vmx-event-0-type") == "fallback"
    assert "opened with an error" in r.header("x-vmx-event-0-fallback-failure-reason")
    rec = record(gw, r)
    first, second = rec["attempts"]
    assert first["failureReason"].startswith("the provider's stream opened with an error"), first
    assert second["failureReason"] is None and second["statusCode"] == 200
    assert rec["errorCode"] is None and rec["errorMessage"] is None, rec
    # the audit keeps the answer the client got, not the failed attempt's
    assert rec["response"] and all("error" not in c for c in rec["response"]), rec["response"]


@pytest.mark.parametrize("res,status,code", [
    ("ant-first-only", 429, "overloaded_error"),
    ("oai-first-only", 429, "rate_limit_exceeded"),
    ("gem-first-only", 503, "unavailable"),
    ("bed-first-modelStreamErrorException-only", 502, "modelStreamErrorException"),
    ("bed-first-throttlingException-only", 429, "throttlingException"),
    ("bed-first-internalServerException-only", 502, "internalServerException"),
    ("bed-first-serviceUnavailableException-only", 503, "serviceUnavailableException")])
def test_stream_opening_with_error_without_fallback_is_http_error(gw, env, res, status, code):
    r = chat(env, res, stream=True)
    assert r.status == status, r
    assert r.header("content-type").startswith("application/json"), r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"], e
    assert e["type"] == ("rate_limit_error" if status == 429 else "server_error"), e
    rec = record(gw, r)
    assert rec["statusCode"] == status and rec["errorMessage"] == e["message"], rec
    if res.startswith("bed"):
        # the client's code is OpenAI's; the audit keeps Bedrock's own name
        assert rec["errorCode"] in (code, e["code"]), rec
    else:
        assert e["code"] == code and rec["errorCode"] == code, (e, rec)
    assert rec["attempts"][0]["statusCode"] == status
    assert rec["attempts"][0]["failureReason"], rec["attempts"]


def test_anthropic_overloaded_exact_bytes(gw, env, fake_anthropic):
    """The real API's event byte for byte: 429 in OpenAI's envelope, the provider's message."""
    r = chat(env, "ant-first-only", stream=True)
    assert r.status == 429, r
    assert r.json() == {"error": {"message": "Overloaded", "type": "rate_limit_error",
                                  "param": None, "code": "overloaded_error"}}


def test_split_error_frame_still_falls_back(gw, env, fake_bedrock, fake_anthropic):
    """The exception frame arriving in pieces (mid-prelude, mid-headers) is still read whole."""
    fake_bedrock.split_writes = True
    fake_bedrock.split_offsets = (1, 5, 9, 13, 20)
    try:
        r = chat(env, "bed-first-throttlingException", stream=True)
    finally:
        del fake_bedrock.split_offsets
    assert r.status == 200 and r.header("x-vmx-provider") == "anthropic", r


def test_reset_after_headers_falls_back(gw, env, fake_anthropic, fake_gemini):
    fake_anthropic.cut_after = 0
    try:
        r = chat(env, "ant-cut", stream=True)
    finally:
        fake_anthropic.cut_after = 3
    assert r.status == 200 and r.header("x-vmx-provider") == "gemini", r
    assert events_of(r)[-1] == "[DONE]"
    rec = record(gw, r)
    assert rec["attempts"][0]["failureReason"], rec["attempts"]


# ------------------------------------------------------------------ item 7
def test_no_fallback_event_without_use_fallback(gw, env, fake):
    r = chat(env, "ant-first-nofb", stream=True)
    assert r.status == 429, r
    assert r.header("x-vmx-event-count") == "0", r
    rec = record(gw, r)
    assert rec["events"] == [], rec
    assert len(rec["attempts"]) == 1 and rec["attempts"][0]["failureReason"], rec

    r = chat(env, "oai-fail-nofb")
    assert r.status == 503, r
    assert r.header("x-vmx-event-count") == "0", r
    rec = record(gw, r)
    assert rec["events"] == [] and rec["attempts"][0]["failureReason"], rec


# ------------------------------------------------------------------ item 2: errors after content
@pytest.mark.parametrize("res,code", [("oai-mid", None), ("ant-mid", "overloaded_error"),
                                      ("bed-mid", "rate_limit_exceeded")])
def test_error_after_content_is_a_failure(gw, env, res, code):
    before = dp_metric(gw, "vmx_stream_errors_total", resource=res)
    r = chat(env, res, stream=True)
    err = assert_clean_error_end(r, code)
    assert r.header("x-vmx-event-count") == "0", r
    rec = record(gw, r)
    assert rec["statusCode"] == 200
    assert rec["errorMessage"] == err["message"], rec
    assert rec["errorCode"], rec
    assert rec["attempts"][0]["failureReason"] == \
        "the provider's stream failed with an error event", rec["attempts"]
    assert dp_metric(gw, "vmx_stream_errors_total", resource=res) == before + 1
    assert dp_metric(gw, "vmx_provider_error_rate_percent",
                     connection=env.conns[res[:3]]["id"], window="5m") > 0


@pytest.mark.parametrize("res", ["bed-badcrc", "bed-badcrc-prelude"])
def test_bad_crc_after_content_ends_with_error_event(gw, env, res):
    r = chat(env, res, stream=True)
    err = assert_clean_error_end(r, "provider_stream_broken")
    assert r.header("x-vmx-event-count") == "0", r     # no fallback after content
    rec = record(gw, r)
    assert rec["errorCode"] == "provider_stream_broken" and rec["errorMessage"] == err["message"]
    assert "CRC" in rec["attempts"][0]["failureReason"], rec["attempts"]


def test_reset_mid_stream_ends_with_error_event(gw, env, fake_anthropic):
    fake_anthropic.cut_after = 6
    try:
        r = chat(env, "ant-cut", stream=True)
    finally:
        fake_anthropic.cut_after = 3
    assert_clean_error_end(r, "provider_stream_interrupted")
    assert r.header("x-vmx-provider") == "anthropic"
    rec = record(gw, r)
    assert rec["errorCode"] == "provider_stream_interrupted", rec
    assert rec["attempts"][0]["failureReason"], rec["attempts"]


# ------------------------------------------------------------------ item 3: compression
@pytest.fixture
def compressing(fake, fake_anthropic, fake_gemini, fake_bedrock):
    fakes = {"oai": fake, "ant": fake_anthropic, "gem": fake_gemini, "bed": fake_bedrock}

    def set_(conn, mode):
        fakes[conn].compress = mode
        return fakes[conn]
    return set_


@pytest.mark.parametrize("mode", ["gzip", "deflate", "deflate-raw"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("conn", list(ECHO))
def test_compressed_answers_are_inflated(gw, env, compressing, conn, stream, mode):
    f = compressing(conn, mode)
    r = chat(env, conn, stream=stream, headers={"Accept-Encoding": "gzip, deflate"})
    assert r.status == 200, r
    assert r.header("content-encoding") is None, r
    if stream:
        ev = events_of(r)
        assert ev[-1] == "[DONE]", ev[-3:]
        text = text_of(ev)
    else:
        text = r.json()["choices"][0]["message"]["content"]
        assert r.json()["usage"]["total_tokens"] > 0
    assert text.startswith("Hello from"), text
    assert f.last().headers.get("accept-encoding") == "identity", f.last().headers
    rec = record(gw, r)
    assert rec["attempts"][0]["completionTokens"] > 0, rec["attempts"]
    assert rec["response"], rec


def test_split_gzip_stream(gw, env, compressing):
    f = compressing("bed", "gzip")
    f.split_writes = True
    r = chat(env, "bed", stream=True)
    ev = events_of(r)
    assert r.status == 200 and ev[-1] == "[DONE]" and text_of(ev).startswith("Hello"), r


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("conn", ["oai", "bed"])
def test_corrupt_gzip_falls_back(gw, env, compressing, conn, stream):
    compressing(conn, "gzip-corrupt")
    r = chat(env, f"{conn}-gz", stream=stream)
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "gpt-fb", r
    reason = r.header("x-vmx-event-0-fallback-failure-reason")
    assert reason == "the provider's compressed body is corrupt", r
    rec = record(gw, r)
    assert rec["attempts"][0]["failureReason"] == reason


def test_gzip_stream_without_its_end_is_still_whole(gw, env, compressing):
    """The events came, [DONE] included; only the gzip trailer is missing."""
    compressing("oai", "gzip-truncated")
    r = chat(env, "oai", stream=True)
    assert r.status == 200 and events_of(r)[-1] == "[DONE]", r


def test_compressed_error_answer(gw, env, compressing):
    compressing("ant", "gzip")
    r = chat(env, "ant-429")
    assert r.status == 429, r
    assert r.json()["error"]["code"] == "rate_limit_error", r


# ------------------------------------------------------------------ item 4: left-out counts
@pytest.mark.parametrize("stream", [False, True])
def test_gemini_safety_stop_counts_zero(gw, env, stream):
    r = chat(env, "gem-safety", stream=stream,
             **({"stream_options": {"include_usage": True}} if stream else {}))
    assert r.status == 200, r
    if stream:
        usage = [e for e in events_of(r) if isinstance(e, dict) and e.get("usage")][-1]["usage"]
    else:
        usage = r.json()["usage"]
    assert usage["completion_tokens"] == 0 and usage["prompt_tokens"] > 0, usage
    a = record(gw, r)["attempts"][0]
    assert a["completionTokens"] == 0 and a["promptTokens"] > 0, a
    assert a["totalTokens"] == a["promptTokens"], a


# ------------------------------------------------------------------ item 5: provider errors
@pytest.mark.parametrize("code", [400, 429, 503])
@pytest.mark.parametrize("conn", list(ECHO))
def test_provider_errors_reach_the_audit(gw, env, conn, code):
    r = chat(env, f"{conn}-{code}")
    assert r.status == code, r
    e = r.json()["error"]
    rec = record(gw, r)
    assert rec["errorMessage"] == e["message"], (e, rec)
    assert rec["errorCode"] == (e["code"] or e["type"]), (e, rec)


# ------------------------------------------------------------------ item 6: refusals name the model
def test_refusals_name_the_model(gw, fake):
    e = gw.provision(
        connections={"a": connection_for(fake)},
        resources={
            "limited": {"model": ("a", "gpt-limited"), "enforceCapacity": True,
                        "capacity": [{"period": "minute", "requests": 1}]},
            "blocking": {"model": ("a", "gpt-blocked"), "routing": {"enabled": True, "conditions": [
                {"type": "group", "id": "no", "description": "no", "enabled": True,
                 "operator": "AND", "conditions": [], "mode": "UI", "expression": "",
                 "action": "BLOCK"}]}}},
        keys={"k": {"resources": ["limited", "blocking"]}})
    conn = e.conns["a"]["id"]
    assert e.chat("limited").status == 200
    r = e.chat("limited")
    assert r.status == 429, r
    r2 = e.chat("blocking")
    assert r2.status == 400, r2
    for resp, model in ((r, "gpt-limited"), (r2, "gpt-blocked")):
        rec = record(gw, resp)
        assert (rec["provider"], rec["model"], rec["connectionId"]) == ("openai", model, conn), rec
        assert resp.header("x-vmx-model") == model
        assert rec["attempts"] == [], rec
