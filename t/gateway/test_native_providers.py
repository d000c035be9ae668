"""SPEC §3: Anthropic, Gemini and AWS Bedrock through the gateway, end to end.

Raw HTTP against the session's nginx, with the fake native providers behind it: the client
sees OpenAI's shapes only; each fake records the native request it received (path, auth,
translated body).  Bedrock connections get their credentials from the session's fake STS
(through the control plane), and the fake Bedrock verifies every SigV4 signature.
"""
import base64
import json
import re
import time

import pytest

from gwutil import (Stream, anthropic_connection, bedrock_connection, connection_for,
                    gemini_connection, sse_events, wait_credentials)

PROVIDERS = ["anthropic", "gemini", "aws-bedrock"]
CONN = {"anthropic": "ant", "gemini": "gem", "aws-bedrock": "bed"}
ECHO = {"anthropic": "claude-test", "gemini": "gemini-test",
        "aws-bedrock": "anthropic.claude-3-haiku-20240307-v1:0"}
# behaviours of the fakes (the model name chooses it), one resource each: "<conn>-<behavior>"
BEHAVIORS = {
    "ant": ["tools", "fail-400", "fail-401", "fail-403", "fail-429", "fail-529", "fail-500",
            "stream-error", "split-stream", "max-tokens"],
    "gem": ["tools", "fail-400", "fail-403", "fail-429", "fail-503", "fail-500", "blocked",
            "stream-error", "split-stream", "max-tokens"],
    "bed": ["tools", "fail-400", "fail-403", "fail-429", "fail-503", "fail-500",
            "stream-error", "stream-error-validationException", "split-stream", "max-tokens"],
}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
# a 1x1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
                       "hQGAhKmMIQAAAABJRU5ErkJggg==")
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
DENIED_ROLE = "arn:aws:iam::123456789012:role/vmx-test-denied"


def expected_text(model, said="hello"):
    return f"Hello from {model}! You said: {said}"


@pytest.fixture(scope="module")
def env(gw, fake, fake_anthropic, fake_gemini, fake_bedrock, fake_bedrock_tls, fake_sts):
    fake_sts.bad_roles[DENIED_ROLE] = ("AccessDenied", "User: arn:aws:sts::123456789012:"
                                       "assumed-role/base is not authorized to perform: "
                                       "sts:AssumeRole on resource: " + DENIED_ROLE)
    resources = {}
    for p in PROVIDERS:
        c = CONN[p]
        resources[c] = {"model": (c, ECHO[p])}
        for b in BEHAVIORS[c]:
            resources[f"{c}-{b}"] = {"model": (c, b)}
    resources.update({
        "bed-tls": {"model": ("bedtls", ECHO["aws-bedrock"])},
        # fallback across formats
        "ant529-gem": {"model": ("ant", "fail-529"), "fallback": [("gem", "gemini-test")]},
        "gem503-bed": {"model": ("gem", "fail-503"), "fallback": [("bed", "bedrock-fb")]},
        "bed429-oai": {"model": ("bed", "fail-429"), "fallback": [("oai", "gpt-fb")]},
        "oai503-ant": {"model": ("oai", "fail-503"), "fallback": [("ant", "claude-fb")]},
        "ant401-gem": {"model": ("ant", "fail-401"), "fallback": [("gem", "gemini-test")]},
        "denied-ant": {"model": ("denied", ECHO["aws-bedrock"]),
                       "fallback": [("ant", "claude-fb")]},
        "denied": {"model": ("denied", ECHO["aws-bedrock"])},
        "ant-n": {"model": ("ant", "claude-test"), "fallback": [("gem", "gemini-test")]},
        "oai": {"model": ("oai", "gpt-test")},
    })
    e = gw.provision(
        connections={"ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock),
                     "bedtls": bedrock_connection(fake_bedrock_tls),
                     "denied": bedrock_connection(fake_bedrock, role=DENIED_ROLE),
                     "oai": connection_for(fake)},
        resources=resources,
        keys={"main": {"resources": list(resources)}},
    )
    wait_credentials(gw, e, ["bed", "bedtls"])
    wait_credentials(gw, e, ["denied"], state="failed")
    return e


@pytest.fixture
def fakes(fake_anthropic, fake_gemini, fake_bedrock):
    return {"anthropic": fake_anthropic, "gemini": fake_gemini, "aws-bedrock": fake_bedrock}


def native_requests(fake):
    """The model calls a fake received (not its other routes)."""
    return [r for r in fake.requests if r.method == "POST"]


def only_request(fake):
    rec = native_requests(fake)
    assert len(rec) == 1, [(r.path, r.raw_body[:200]) for r in rec]
    return rec[0]


def chunks_of(r):
    events = sse_events(r.body)
    assert events and events[-1] == "[DONE]", events[-3:]
    assert r.body.endswith(b"data: [DONE]\n\n"), r.body[-200:]
    assert re.fullmatch(rb"(data: [^\n]+\n\n)+", r.body), r.body[:300]
    return [json.loads(e) for e in events[:-1]]


def text_of(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or ""
                   for c in chunks if c["choices"])


def assert_error(r, status, code=None, type_=None):
    assert r.status == status, r
    assert r.header("content-type").startswith("application/json"), r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    assert isinstance(e["message"], str) and e["message"], e
    if code is not None:
        assert e["code"] == code, e
    if type_ is not None:
        assert e["type"] == type_, e
    return e


def assert_native_auth(provider, rec, fake, sts=None, role=None):
    """The native request carries the provider's own authentication."""
    if provider == "anthropic":
        assert rec.headers.get("x-api-key") == fake.api_key, rec.headers
        assert rec.headers.get("anthropic-version") == "2023-06-01", rec.headers
        assert "authorization" not in rec.headers, rec.headers
    elif provider == "gemini":
        assert rec.headers.get("x-goog-api-key") == fake.api_key, rec.headers
        assert "key=" not in rec.query, rec.path
        assert "authorization" not in rec.headers, rec.headers
    else:
        auth = rec.info["auth"]
        assert auth["ok"], auth
        assert auth["region"] == fake.region and auth["service"] == "bedrock", auth
        assert "x-amz-security-token" in auth["signed_headers"], auth
        if sts is not None:
            issued = [c["issued"]["AccessKeyId"] for c in sts.calls_for(role) if c["ok"]]
            assert auth["access_key_id"] in issued, (auth["access_key_id"], issued)


def assert_native_model(provider, rec, model, stream):
    if provider == "anthropic":
        assert rec.route == "/v1/messages", rec.path
        assert rec.body["model"] == model
        assert bool(rec.body.get("stream")) == stream, rec.body
    elif provider == "gemini":
        method = "streamGenerateContent" if stream else "generateContent"
        assert rec.route == f"/v1beta/models/{model}:{method}", rec.path
        assert (rec.query == "alt=sse") == stream, rec.path
        assert "model" not in rec.body and "stream" not in rec.body, rec.body
    else:
        op = "converse-stream" if stream else "converse"
        assert rec.route == f"/model/{model.replace(':', '%3A')}/{op}", rec.path
        assert rec.info["model"] == model
        assert "model" not in rec.body and "stream" not in rec.body, rec.body


# ------------------------------------------------------------------ plain answers
@pytest.mark.parametrize("provider", PROVIDERS)
def test_chat(env, fakes, fake_sts, provider):
    f = fakes[provider]
    c = CONN[provider]
    r = env.chat(c, body={"temperature": 0.5, "top_p": 0.9, "max_tokens": 100, "stop": ["###"]})
    assert r.status == 200, r
    assert r.header("content-type").startswith("application/json"), r
    assert r.header("x-vmx-provider") == provider
    assert r.header("x-vmx-model") == ECHO[provider]
    assert r.header("x-vmx-connection-id") == env.conns[c]["id"]
    assert r.header("x-vmx-event-count") == "0"
    for h in r.headers:
        assert not h.lower().startswith(("anthropic-", "x-ratelimit-limit", "x-amz", "request-id")), h
    b = r.json()
    assert b["object"] == "chat.completion", b
    assert b["id"].startswith("chatcmpl-"), b
    assert isinstance(b["created"], int) and abs(b["created"] - time.time()) < 300, b
    assert b["model"] == ECHO[provider]
    assert len(b["choices"]) == 1, b
    ch = b["choices"][0]
    assert ch["index"] == 0
    assert ch["finish_reason"] == "stop", ch
    assert ch["message"]["role"] == "assistant"
    assert ch["message"]["content"] == expected_text(ECHO[provider]), ch
    assert "tool_calls" not in ch["message"] or not ch["message"]["tool_calls"], ch
    u = b["usage"]
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0, u
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u

    rec = only_request(f)
    assert_native_auth(provider, rec, f, fake_sts, env.conns.get(c, {}).get("config", {})
                       .get("iamRoleArn"))
    assert_native_model(provider, rec, ECHO[provider], stream=False)
    nb = rec.body
    if provider == "anthropic":
        assert nb["max_tokens"] == 100 and nb["temperature"] == 0.5 and nb["top_p"] == 0.9, nb
        assert nb["stop_sequences"] == ["###"], nb
    elif provider == "gemini":
        gc = nb["generationConfig"]
        assert gc["maxOutputTokens"] == 100 and gc["temperature"] == 0.5, nb
        assert gc["topP"] == 0.9 and gc["stopSequences"] == ["###"], nb
    else:
        ic = nb["inferenceConfig"]
        assert ic["maxTokens"] == 100 and ic["temperature"] == 0.5 and ic["topP"] == 0.9, nb
        assert ic["stopSequences"] == ["###"], nb


def test_anthropic_max_tokens_default(env, fake_anthropic):
    r = env.chat("ant")
    assert r.status == 200, r
    body = only_request(fake_anthropic).body
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] >= 1, body
    fake_anthropic.clear()
    r = env.chat("ant", body={"max_completion_tokens": 77})
    assert r.status == 200, r
    assert only_request(fake_anthropic).body["max_tokens"] == 77


def _texts(blocks, key="text"):
    if isinstance(blocks, str):
        return [blocks]
    return [b[key] for b in blocks if isinstance(b, dict) and key in b]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_system_and_merged_messages(env, fakes, provider):
    """System messages go where the provider wants them; consecutive turns of one role are
    merged (Anthropic and Bedrock refuse two user turns in a row)."""
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "third"}]
    r = env.chat(CONN[provider], body={"messages": msgs})
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"].startswith(f"Hello from {ECHO[provider]}")
    nb = only_request(fakes[provider]).body
    if provider == "anthropic":
        assert _texts(nb["system"]) == ["You are terse."], nb
        turns = [(m["role"], _texts(m["content"])) for m in nb["messages"]]
        assert turns == [("user", ["first", "second"]), ("assistant", ["ok"]),
                         ("user", ["third"])], turns
    elif provider == "gemini":
        assert _texts(nb["systemInstruction"]["parts"]) == ["You are terse."], nb
        turns = [(m["role"], _texts(m["parts"])) for m in nb["contents"]]
        assert turns == [("user", ["first", "second"]), ("model", ["ok"]),
                         ("user", ["third"])], turns
    else:
        assert _texts(nb["system"]) == ["You are terse."], nb
        turns = [(m["role"], _texts(m["content"])) for m in nb["messages"]]
        assert turns == [("user", ["first", "second"]), ("assistant", ["ok"]),
                         ("user", ["third"])], turns


# ------------------------------------------------------------------ streams
@pytest.mark.parametrize("usage", [False, True], ids=["no-usage", "include-usage"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream(env, fakes, fake_sts, provider, usage):
    f = fakes[provider]
    body = {"stream": True}
    if usage:
        body["stream_options"] = {"include_usage": True}
    r = env.chat(CONN[provider], body=body)
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/event-stream"), r
    assert r.header("content-length") is None, r
    assert r.header("x-vmx-provider") == provider
    chunks = chunks_of(r)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(c["model"] == ECHO[provider] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
    assert text_of(chunks) == expected_text(ECHO[provider])
    with_choices = [c for c in chunks if c["choices"]]
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices]
    assert finishes[-1] == "stop" and all(x is None for x in finishes[:-1]), finishes
    if usage:
        last = chunks[-1]
        assert last["choices"] == [], last
        u = last["usage"]
        assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0, u
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
        assert all(not c.get("usage") for c in chunks[:-1]), chunks
    else:
        assert all(c["choices"] and not c.get("usage") for c in chunks), chunks
    rec = only_request(f)
    assert_native_auth(provider, rec, f, fake_sts, env.conns[CONN[provider]]["config"]
                       .get("iamRoleArn"))
    assert_native_model(provider, rec, ECHO[provider], stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_connection_is_kept(env, fakes, fake_sts, provider, stream):
    """An answer read to its framing's end leaves its connection for the next call, Gemini's
    stream too, which has no end event of its own (its end is its body's)."""
    f = fakes[provider]
    assert env.chat(CONN[provider], body={"stream": stream}).status == 200
    before = f.connections
    for _ in range(10):
        r = env.chat(CONN[provider], body={"stream": stream})
        assert r.status == 200, r
        if stream:
            assert text_of(chunks_of(r)) == expected_text(ECHO[provider])
    assert f.connections - before <= 4, f"{f.connections - before} new connections for 10 calls"


@pytest.mark.parametrize("tail", [0.05, 5.0], ids=["late", "missing"])
def test_stream_framing_tail(env, fakes, gw, tail):
    """A stream that its format ended, whose last HTTP chunk comes later, is read to that
    chunk, so that its connection serves again; when the chunk does not come, the client's
    stream ends all the same, a moment after (no timeout, no error, no failed call)."""
    f = fakes["anthropic"]
    f.tail_delay = tail
    log_from = len(gw.nginx.error_log())
    try:
        t0 = time.monotonic()
        r = env.chat(CONN["anthropic"], body={"stream": True})
        took = time.monotonic() - t0
    finally:
        f.tail_delay = 0
    assert r.status == 200, r
    assert text_of(chunks_of(r)) == expected_text(ECHO["anthropic"])
    assert sse_events(r.body)[-1] == "[DONE]"
    assert took < 2, f"the client waited {took:.2f} s for its stream's end"
    before = f.connections
    for _ in range(4):
        assert env.chat(CONN["anthropic"], body={"stream": True}).status == 200
    assert f.connections - before <= 2
    errors = [line for line in gw.nginx.error_log()[log_from:].splitlines()
              if "[error]" in line or "[warn]" in line]
    assert errors == [], errors


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream_is_incremental(env, fakes, provider):
    """The first chunk reaches the client while the provider is still streaming."""
    f = fakes[provider]
    f.set_behavior("slow-stream")
    f.stream_delay = 0.25
    s = Stream(env.gw.url, "/v1/chat/completions",
               {"model": CONN[provider], "stream": True,
                "messages": [{"role": "user", "content": "hello"}]},
               {"Authorization": f"Bearer {env.key()}"})
    try:
        assert s.status == 200
        t0 = time.time()
        first = s.next_event()
        assert first is not None
        t_first = time.time() - t0
        rest = s.rest()
        t_all = time.time() - t0
    finally:
        s.close()
    assert rest[-1] == "[DONE]"
    assert t_all - t_first > 0.5, (t_first, t_all)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_split_stream_reassembled(env, fakes, provider, stream):
    """The provider's bytes in many TCP writes cut mid-event (mid-frame for Bedrock)."""
    r = env.chat(f"{CONN[provider]}-split-stream", body={"stream": stream})
    assert r.status == 200, r
    if stream:
        chunks = chunks_of(r)
        assert text_of(chunks) == expected_text("split-stream")
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    else:
        assert r.json()["choices"][0]["message"]["content"] == expected_text("split-stream")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_max_tokens_finish_reason(env, provider, stream):
    r = env.chat(f"{CONN[provider]}-max-tokens", body={"stream": stream})
    assert r.status == 200, r
    if stream:
        fr = [c["choices"][0]["finish_reason"] for c in chunks_of(r) if c["choices"]][-1]
    else:
        fr = r.json()["choices"][0]["finish_reason"]
    assert fr == "length", r


# ------------------------------------------------------------------ tools
def _tool_call_from(r, stream):
    """(tool call {id, name, arguments}, finish_reason, content) of an answer."""
    if not stream:
        msg = r.json()["choices"][0]
        tcs = msg["message"].get("tool_calls")
        assert tcs and len(tcs) == 1, msg
        tc = tcs[0]
        assert tc["type"] == "function", tc
        return ({"id": tc["id"], "name": tc["function"]["name"],
                 "arguments": tc["function"]["arguments"]}, msg["finish_reason"],
                msg["message"].get("content"))
    chunks = chunks_of(r)
    calls = {}
    for c in chunks:
        if not c["choices"]:
            continue
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            i = tc["index"]
            cur = calls.setdefault(i, {"id": None, "name": "", "arguments": ""})
            if tc.get("id"):
                assert cur["id"] is None, "id sent twice"
                cur["id"] = tc["id"]
                assert tc["type"] == "function", tc
            fn = tc.get("function") or {}
            cur["name"] += fn.get("name") or ""
            cur["arguments"] += fn.get("arguments") or ""
    assert list(calls) == [0], calls
    fr = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    return calls[0], fr, text_of(chunks)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_round_trip(env, fakes, provider, stream):
    f = fakes[provider]
    res = f"{CONN[provider]}-tools"
    msgs = [{"role": "system", "content": "Use the tools."},
            {"role": "user", "content": "What is the weather in Paris?"}]
    r = env.chat(res, body={"messages": msgs, "tools": TOOLS, "tool_choice": "auto",
                            "stream": stream})
    assert r.status == 200, r
    call, fr, _ = _tool_call_from(r, stream)
    assert fr == "tool_calls", r
    assert call["name"] == "get_weather" and call["id"], call
    assert json.loads(call["arguments"]) == {"city": "Paris"}, call

    nb = only_request(f).body
    if provider == "anthropic":
        t = nb["tools"]
        assert t == [{"name": "get_weather", "description": "The weather of a city",
                      "input_schema": TOOLS[0]["function"]["parameters"]}], t
        assert nb["tool_choice"] == {"type": "auto"}, nb
    elif provider == "gemini":
        decls = [d for t in nb["tools"] for d in t.get("functionDeclarations", [])]
        assert len(decls) == 1 and decls[0]["name"] == "get_weather", nb["tools"]
        assert decls[0]["description"] == "The weather of a city"
        params = decls[0].get("parameters") or decls[0].get("parametersJsonSchema")
        assert params["properties"]["city"]["type"].lower() == "string", decls
    else:
        t = nb["toolConfig"]["tools"]
        assert t == [{"toolSpec": {"name": "get_weather",
                                   "description": "The weather of a city",
                                   "inputSchema": {"json": TOOLS[0]["function"]["parameters"]}}}], t
    f.clear()

    # the client runs the tool and sends the result back
    msgs += [{"role": "assistant", "content": None,
              "tool_calls": [{"id": call["id"], "type": "function",
                              "function": {"name": "get_weather",
                                           "arguments": call["arguments"]}}]},
             {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature":21}'}]
    r = env.chat(res, body={"messages": msgs, "tools": TOOLS, "stream": stream})
    assert r.status == 200, r
    if stream:
        chunks = chunks_of(r)
        text = text_of(chunks)
        fr = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    else:
        text = r.json()["choices"][0]["message"]["content"]
        fr = r.json()["choices"][0]["finish_reason"]
    assert fr == "stop", r
    assert text.startswith("The tool answered: ") and "21" in text, text

    nb = only_request(f).body
    if provider == "anthropic":
        m = nb["messages"]
        assert [x["role"] for x in m] == ["user", "assistant", "user"], m
        use = [b for b in m[1]["content"] if b["type"] == "tool_use"]
        assert use == [{"type": "tool_use", "id": call["id"], "name": "get_weather",
                        "input": {"city": "Paris"}}], m[1]
        results = [b for b in m[2]["content"] if b["type"] == "tool_result"]
        assert len(results) == 1 and results[0]["tool_use_id"] == call["id"], m[2]
        assert "21" in json.dumps(results[0]["content"]), results
    elif provider == "gemini":
        c = nb["contents"]
        assert [x["role"] for x in c] == ["user", "model", "user"], c
        fc = [p["functionCall"] for p in c[1]["parts"] if "functionCall" in p]
        assert fc and fc[0]["name"] == "get_weather" and fc[0]["args"] == {"city": "Paris"}, c
        fr_ = [p["functionResponse"] for p in c[2]["parts"] if "functionResponse" in p]
        assert len(fr_) == 1 and fr_[0]["name"] == "get_weather", c[2]
        assert "21" in json.dumps(fr_[0]["response"]), fr_
    else:
        m = nb["messages"]
        assert [x["role"] for x in m] == ["user", "assistant", "user"], m
        use = [b["toolUse"] for b in m[1]["content"] if "toolUse" in b]
        assert use == [{"toolUseId": call["id"], "name": "get_weather",
                        "input": {"city": "Paris"}}], m[1]
        results = [b["toolResult"] for b in m[2]["content"] if "toolResult" in b]
        assert len(results) == 1 and results[0]["toolUseId"] == call["id"], m[2]
        assert "21" in json.dumps(results[0]["content"]), results


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_choice_named(env, fakes, provider):
    r = env.chat(f"{CONN[provider]}-tools", body={
        "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}})
    assert r.status == 200, r
    nb = only_request(fakes[provider]).body
    if provider == "anthropic":
        assert nb["tool_choice"] == {"type": "tool", "name": "get_weather"}, nb
    elif provider == "gemini":
        fcc = nb["toolConfig"]["functionCallingConfig"]
        assert fcc["mode"] == "ANY" and fcc["allowedFunctionNames"] == ["get_weather"], nb
    else:
        assert nb["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}, nb


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("provider", PROVIDERS)
def test_image_data_url(env, fakes, provider):
    msgs = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG_URL}}]}]
    r = env.chat(CONN[provider], body={"messages": msgs})
    assert r.status == 200, r
    nb = only_request(fakes[provider]).body
    b64 = base64.b64encode(PNG).decode()
    if provider == "anthropic":
        blocks = nb["messages"][0]["content"]
        img = [b for b in blocks if b["type"] == "image"]
        assert img == [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                    "data": b64}}], blocks
    elif provider == "gemini":
        parts = nb["contents"][0]["parts"]
        img = [p["inlineData"] for p in parts if "inlineData" in p]
        assert img == [{"mimeType": "image/png", "data": b64}], parts
    else:
        blocks = nb["messages"][0]["content"]
        img = [b["image"] for b in blocks if "image" in b]
        assert img == [{"format": "png", "source": {"bytes": b64}}], blocks


def test_untranslatable_requests_are_400(env, fake_anthropic, fake_bedrock, fake_gemini):
    # n=2: Anthropic answers one choice only
    r = env.chat("ant-n", body={"n": 2})
    assert_error(r, 400, "invalid_request")
    assert native_requests(fake_anthropic) == [] and native_requests(fake_gemini) == []
    # an image by http URL: Bedrock takes bytes only
    msgs = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]
    for stream in (False, True):
        r = env.chat("bed", body={"messages": msgs, "stream": stream})
        assert_error(r, 400, "invalid_request")
    assert native_requests(fake_bedrock) == []


# ------------------------------------------------------------------ provider errors
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_400(env, fakes, provider, stream):
    r = env.chat(f"{CONN[provider]}-fail-400", body={"stream": stream})
    e = assert_error(r, 400, type_="invalid_request_error")
    assert r.header("x-vmx-event-count") == "0", r
    assert len(native_requests(fakes[provider])) == 1
    assert e["message"]


@pytest.mark.parametrize("res", ["ant-fail-401", "ant-fail-403", "gem-fail-403",
                                 "bed-fail-403"])
def test_provider_auth_errors_are_502(env, res):
    r = env.chat(res)
    assert_error(r, 502, "provider_unavailable")
    assert r.header("x-vmx-event-count") == "1", r
    assert r.header("x-vmx-event-0-type") == "fallback"
    assert r.header("x-vmx-event-0-fallback-status-code") in ("401", "403"), r


def test_provider_auth_error_falls_back(env, fake_anthropic, fake_gemini):
    r = env.chat("ant401-gem")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini"
    assert r.header("x-vmx-event-0-fallback-failed-provider") == "anthropic"
    assert r.header("x-vmx-event-0-fallback-status-code") == "401"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_429(env, fakes, provider, stream, monkeypatch):
    if provider == "gemini":
        # its delay is in the body only (RetryInfo), a Duration: whole seconds, rounded up
        monkeypatch.setattr(fakes[provider], "retry_delay", "1.5s")
    r = env.chat(f"{CONN[provider]}-fail-429", body={"stream": stream})
    e = assert_error(r, 429)
    # the provider's own code (SPEC §2): rate_limit_error, resource_exhausted, ...
    assert isinstance(e["code"], str) and e["code"], e
    if provider == "anthropic":
        assert r.header("retry-after") == fakes[provider].retry_after, r
    elif provider == "gemini":
        assert r.header("retry-after") == "2", r
    else:
        # Bedrock tells no delay
        assert r.header("retry-after") is None, r


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_5xx(env, fakes, provider):
    r = env.chat(f"{CONN[provider]}-fail-500")
    assert_error(r, 500)
    res = {"anthropic": "ant-fail-529", "gemini": "gem-fail-503",
           "aws-bedrock": "bed-fail-503"}[provider]
    r = env.chat(res)
    assert_error(r, 503)
    # the event tells what the provider answered (Anthropic's 529 counts as 503)
    assert r.header("x-vmx-event-0-fallback-status-code") == (
        "529" if provider == "anthropic" else "503"), r


def test_gemini_safety_block_is_content_filter(env, fake_gemini):
    r = env.chat("gem-blocked")
    e = assert_error(r, 400, "content_filter")
    assert "SAFETY" in e["message"] or "safety" in e["message"].lower(), e
    # streamed: the block is the stream's first event, before anything reached the client:
    # the same 400 as a whole answer
    r = env.chat("gem-blocked", body={"stream": True})
    e = assert_error(r, 400, "content_filter")
    assert "SAFETY" in e["message"], e


def test_bedrock_validation_error_is_400(env, fake_bedrock):
    r = env.chat("bed-fail-400")
    e = assert_error(r, 400, type_="invalid_request_error")
    assert "Malformed input request" in e["message"], e


def test_bedrock_bad_signature_is_not_passed_on(env, fake_bedrock):
    """The fake refuses every signature: the client sees 502, never AWS's 403 text."""
    saved = dict(fake_bedrock.credentials)
    fake_bedrock.credentials.clear()
    try:
        r = env.chat("bed")
    finally:
        fake_bedrock.credentials.update(saved)
    e = assert_error(r, 502, "provider_unavailable")
    assert "security token" not in e["message"], e
    assert native_requests(fake_bedrock)[0].info["auth"]["error"].startswith(
        "UnrecognizedClientException")


# ------------------------------------------------------------------ errors mid-stream
@pytest.mark.parametrize("res", ["ant-stream-error", "gem-stream-error", "bed-stream-error",
                                 "bed-stream-error-validationException"])
def test_mid_stream_error(env, res, fake_anthropic, fake_gemini, fake_bedrock):
    r = env.chat(res, body={"stream": True})
    assert r.status == 200, r
    events = sse_events(r.body)
    assert events, r
    errors = [i for i, e in enumerate(events) if e.startswith("{") and "error" in json.loads(e)]
    assert len(errors) == 1, events
    i = errors[0]
    err = json.loads(events[i])["error"]
    assert set(err) >= {"message", "type", "code"}, err
    assert err["message"], err
    assert events[i + 1:] in ([], ["[DONE]"]), events
    before = [json.loads(e) for e in events[:i]]
    assert text_of(before), "the text before the error reached the client"
    assert r.body.endswith(b"\n\n"), r.body[-100:]
    total = sum(len(native_requests(f)) for f in (fake_anthropic, fake_gemini, fake_bedrock))
    assert total == 1, "no fallback once bytes were sent"


# ------------------------------------------------------------------ fallback across formats
def _events(r):
    n = int(r.header("x-vmx-event-count"))
    out = []
    for i in range(n):
        out.append({k: r.header(f"x-vmx-event-{i}-{k}") for k in (
            "type", "fallback-failed-provider", "fallback-failed-model",
            "fallback-failed-connection-id", "fallback-status-code",
            "fallback-failure-reason")})
    return out


def _answer_text(r, stream):
    if stream:
        return text_of(chunks_of(r))
    return r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_anthropic_529_to_gemini(env, fake_anthropic, fake_gemini, stream):
    r = env.chat("ant529-gem", body={"stream": stream})
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini" and r.header("x-vmx-model") == "gemini-test"
    assert r.header("x-vmx-connection-id") == env.conns["gem"]["id"]
    assert _answer_text(r, stream) == expected_text("gemini-test")
    ev = _events(r)
    assert len(ev) == 1 and ev[0]["type"] == "fallback", ev
    assert ev[0]["fallback-failed-provider"] == "anthropic"
    assert ev[0]["fallback-failed-model"] == "fail-529"
    assert ev[0]["fallback-failed-connection-id"] == env.conns["ant"]["id"]
    assert ev[0]["fallback-status-code"] == "529", ev
    assert ev[0]["fallback-failure-reason"], ev
    a, g = only_request(fake_anthropic), only_request(fake_gemini)
    assert_native_auth("anthropic", a, fake_anthropic)
    assert_native_model("anthropic", a, "fail-529", stream)
    assert_native_auth("gemini", g, fake_gemini)
    assert_native_model("gemini", g, "gemini-test", stream)
    assert g.body["contents"][0]["parts"] == [{"text": "hello"}], g.body


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_gemini_503_to_bedrock(env, fake_gemini, fake_bedrock, fake_sts, stream):
    r = env.chat("gem503-bed", body={"stream": stream})
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "aws-bedrock" and r.header("x-vmx-model") == "bedrock-fb"
    assert _answer_text(r, stream) == expected_text("bedrock-fb")
    ev = _events(r)
    assert len(ev) == 1 and ev[0]["fallback-failed-provider"] == "gemini", ev
    assert ev[0]["fallback-status-code"] == "503", ev
    g, b = only_request(fake_gemini), only_request(fake_bedrock)
    assert_native_model("gemini", g, "fail-503", stream)
    assert_native_auth("gemini", g, fake_gemini)
    assert_native_model("aws-bedrock", b, "bedrock-fb", stream)
    assert_native_auth("aws-bedrock", b, fake_bedrock, fake_sts,
                       env.conns["bed"]["config"]["iamRoleArn"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_bedrock_429_to_openai(env, fake, fake_bedrock, stream):
    r = env.chat("bed429-oai", body={"stream": stream})
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "openai" and r.header("x-vmx-model") == "gpt-fb"
    assert _answer_text(r, stream) == expected_text("gpt-fb")
    ev = _events(r)
    assert len(ev) == 1 and ev[0]["fallback-failed-provider"] == "aws-bedrock", ev
    assert ev[0]["fallback-failed-model"] == "fail-429"
    assert ev[0]["fallback-status-code"] == "429", ev
    assert_native_model("aws-bedrock", only_request(fake_bedrock), "fail-429", stream)
    o = fake.chat_requests()
    assert len(o) == 1 and o[0].body["model"] == "gpt-fb", o
    assert o[0].headers["authorization"] == f"Bearer {fake.api_key}"
    assert o[0].body["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback_openai_503_to_anthropic(env, fake, fake_anthropic, stream):
    r = env.chat("oai503-ant", body={"stream": stream,
                                     "stream_options": {"include_usage": True}} if stream
                 else None)
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "anthropic"
    assert _answer_text(r, stream) == expected_text("claude-fb")
    a = only_request(fake_anthropic)
    assert_native_auth("anthropic", a, fake_anthropic)
    # the OpenAI-only field added for the first attempt is not in Anthropic's body
    assert "stream_options" not in a.body, a.body
    if stream:
        assert chunks_of(r)[-1]["usage"]["completion_tokens"] > 0


def test_sts_refused_role_falls_back(env, fake_anthropic, fake_bedrock, fake_sts):
    calls = fake_sts.calls_for(DENIED_ROLE)
    assert calls and not any(c["ok"] for c in calls), calls
    assert calls[-1]["error"] == "AccessDenied"
    r = env.chat("denied-ant")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "anthropic"
    ev = _events(r)
    assert len(ev) == 1 and ev[0]["fallback-failed-provider"] == "aws-bedrock", ev
    assert ev[0]["fallback-failed-connection-id"] == env.conns["denied"]["id"]
    # the fake Bedrock was never called with missing credentials
    assert native_requests(fake_bedrock) == []
    r = env.chat("denied")
    assert_error(r, 502, "provider_unavailable")
    st, body, _ = env.gw.api.request("GET", f"{env.prefix}/connections/{env.conns['denied']['id']}")
    cs = body["credentialsStatus"]
    assert cs["state"] == "failed" and cs["error"]["code"] == "AccessDenied", cs


# ------------------------------------------------------------------ TLS
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_bedrock_tls_by_host_name(env, fake_bedrock_tls, stream):
    r = env.chat("bed-tls", body={"stream": stream})
    assert r.status == 200, r
    assert _answer_text(r, stream) == expected_text(ECHO["aws-bedrock"])
    rec = only_request(fake_bedrock_tls)
    assert rec.sni == "localhost", rec.sni
    assert rec.headers["host"] in ("localhost", f"localhost:{fake_bedrock_tls.port}")
    assert rec.info["auth"]["ok"], rec.info


# ------------------------------------------------------------------ discovered capacity
def test_discovered_capacity(env, gw):
    """The providers' limit headers end up on the connection (the control plane polls
    /vmx/capacity every reconcile interval)."""
    assert env.chat("ant").status == 200
    assert env.chat("oai").status == 200
    want = {("ant", "claude-test"): (4000, 480000), ("oai", "gpt-test"): (30000, 150000000)}
    deadline = time.time() + 15
    for (conn, model), (reqs, toks) in want.items():
        while True:
            st, body, _ = gw.api.request("GET", f"{env.prefix}/connections/{env.conns[conn]['id']}")
            assert st == 200, body
            m = ((body.get("discoveredCapacity") or {}).get("models") or {}).get(model)
            if m:
                cap = m["capacity"]
                assert cap[0]["period"] == "minute", m
                assert cap[0]["requests"] == reqs and cap[0]["tokens"] == toks, m
                assert m["updatedAt"], m
                break
            assert time.time() < deadline, f"{conn}: discoveredCapacity {body.get('discoveredCapacity')}"
            time.sleep(0.2)


# ------------------------------------------------------------------ one shape for all
def _shape(o):
    if isinstance(o, dict):
        return {k: _shape(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_shape(x) for x in o[:1]]
    return "null" if o is None else type(o).__name__


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tools"])
def test_same_shapes_whatever_the_provider(env, tools):
    """A client cannot tell the providers apart by the answers' shapes (only x-vmx-provider
    tells): the same fields, of the same types, in whole answers and in every kind of chunk,
    and those of OpenAI's own answers (message and delta)."""
    shapes = {}
    for p in PROVIDERS:
        res = f"{CONN[p]}-tools" if tools else CONN[p]
        body = {"tools": TOOLS} if tools else {}
        r = env.chat(res, body=body)
        assert r.status == 200, r
        whole = _shape(r.json())
        r = env.chat(res, body=dict(body, stream=True, stream_options={"include_usage": True}))
        ch = chunks_of(r)
        with_choices = [c for c in ch if c["choices"]]
        shapes[p] = {"whole": whole, "first": _shape(ch[0]), "second": _shape(ch[1]),
                     "finish": _shape(with_choices[-1]), "usage": _shape(ch[-1]),
                     "headers": sorted(h.lower() for h in r.headers
                                       if h.lower() not in ("date", "transfer-encoding"))}
    ref = shapes["anthropic"]
    for p in PROVIDERS[1:]:
        for k in ref:
            assert shapes[p][k] == ref[k], (p, k, shapes[p][k], ref[k])
    r = env.chat("oai")
    openai_msg = set(r.json()["choices"][0]["message"])
    # (the real API also sends "annotations": [], which the fake OpenAI leaves out)
    assert openai_msg <= set(ref["whole"]["choices"][0]["message"]), openai_msg
    ch = chunks_of(env.chat("oai", body={"stream": True}))
    assert set(ref["first"]["choices"][0]["delta"]) == set(ch[0]["choices"][0]["delta"])
