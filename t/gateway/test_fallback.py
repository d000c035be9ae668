"""SPEC §4 fallback, and provider TLS.

The chain is [primary, ...fallbackModels]; the next entry is tried on a connect
error, a timeout, 429, 5xx, while nothing was sent to the client; a 400 of the
provider is returned as is; useFallback=false turns it off; when every entry
fails the client gets the last provider's status (502 provider_unavailable when
there was none)."""
import calendar
import http.client
import json
import re
import time

import pytest

from gwutil import READ_TIMEOUT, Stream, closed_port, connection_for, sse_events

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def env(gw, fake, fake2, fake_tls, fake_rogue):
    dead = {"provider": "openai", "config": {"apiKey": "sk-dead", "baseUrl": f"http://127.0.0.1:{closed_port()}/v1"}}
    dead2 = {"provider": "openai", "config": {"apiKey": "sk-dead2", "baseUrl": f"http://127.0.0.1:{closed_port()}/v1"}}
    fb = [("b", "gpt-fb")]
    resources = {
        "refused": {"model": ("dead", "gpt-primary"), "fallback": fb},
        "timeout": {"model": ("a", "stall"), "fallback": fb},
        "reset": {"model": ("a", "reset"), "fallback": fb},
        "r400": {"model": ("a", "fail-400"), "fallback": fb},
        "r404": {"model": ("a", "fail-404"), "fallback": fb},
        "nofb": {"model": ("a", "fail-500"), "fallback": fb, "useFallback": False},
        "nofb429": {"model": ("a", "fail-429"), "fallback": fb, "useFallback": False},
        "all-fail": {"model": ("a", "fail-503"), "fallback": [("b", "fail-429")]},
        "all-fail-500": {"model": ("a", "fail-429"), "fallback": [("b", "fail-500")]},
        "all-refused": {"model": ("dead", "m1"), "fallback": [("dead2", "m2")]},
        "refused-only": {"model": ("dead", "m1")},
        "three": {"model": ("a", "fail-500"), "fallback": [("b", "fail-503"), ("a", "gpt-third")]},
        "tls": {"model": ("tls", "gpt-tls")},
        "tls-fb": {"model": ("a", "fail-503"), "fallback": [("tls", "gpt-tls")]},
        "rogue": {"model": ("rogue", "gpt-rogue"), "fallback": fb},
        "rogue-only": {"model": ("rogue", "gpt-rogue")},
    }
    for code in (429, 500, 503):
        resources[f"r{code}"] = {"model": ("a", f"fail-{code}"), "fallback": fb}
    resources["html"] = {"model": ("a", "html-502"), "fallback": fb}
    resources["html-only"] = {"model": ("a", "html-503")}
    resources["stream-stall"] = {"model": ("a", "stream-stall"), "fallback": fb}
    resources["tls-ip"] = {"model": ("tls-ip", "gpt-tls"), "fallback": fb}
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2), "dead": dead, "dead2": dead2,
                     "tls": tls_by_name(fake_tls), "tls-ip": connection_for(fake_tls),
                     "rogue": tls_by_name(fake_rogue)},
        resources=resources,
        keys={"main": {"resources": list(resources)}},
    )


def check_event_timestamp(r, i):
    """x-vmx-event-{i}-timestamp, when sent, is RFC 3339 UTC and about now."""
    ts = r.header(f"x-vmx-event-{i}-timestamp")
    if ts is None:
        return
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", ts)
    assert m, f"x-vmx-event-{i}-timestamp: {ts}"
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    assert abs(t - time.time()) < 120, f"x-vmx-event-{i}-timestamp {ts} is not now"


def check_fallback_answer(r, env, fake2, failed_models, stream=False):
    """The client sees exactly fake2's answer, with one fallback event per failed attempt."""
    assert r.status == 200, r
    if stream:
        events = sse_events(r.body)
        assert events[-1] == "[DONE]"
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1] if json.loads(e)["choices"])
    else:
        text = r.json()["choices"][0]["message"]["content"]
    assert text == "Hello from gpt-fb! You said: hello", r
    assert r.header("x-vmx-model") == "gpt-fb", r
    assert r.header("x-vmx-provider") == "openai"
    assert r.header("x-vmx-connection-id") == env.conns["b"]["id"], r
    assert r.header("x-vmx-event-count") == str(len(failed_models)), r
    for i, m in enumerate(failed_models):
        assert r.header(f"x-vmx-event-{i}-type") == "fallback", r
        failed = r.header(f"x-vmx-event-{i}-fallback-failed-model")
        if failed is not None:
            assert failed == m, r
    rec = fake2.chat_requests()
    assert len(rec) == 1, rec
    assert rec[0].body["model"] == "gpt-fb"
    assert rec[0].headers["authorization"] == f"Bearer {fake2.api_key}"
    assert "vmx" not in rec[0].body


@pytest.mark.parametrize("resource,failed", [
    ("refused", "gpt-primary"), ("r429", "fail-429"), ("r500", "fail-500"), ("r503", "fail-503"),
    ("reset", "reset"), ("html", "html-502"),
])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fallback(env, fake, fake2, resource, failed, stream):
    body = {"stream": True} if stream else {}
    r = env.chat(resource, body=body)
    check_fallback_answer(r, env, fake2, [failed], stream)
    models = [q.body["model"] for q in fake.chat_requests()]
    if resource == "reset":
        # a reset on a kept-alive connection may be a connection the provider had
        # closed: the same model is tried once more on a new one (as nginx does)
        assert models in ([failed], [failed, failed]), models
    elif resource != "refused":
        assert models == [failed]


def test_fallback_on_timeout(env, fake, fake2):
    t0 = time.time()
    r = env.chat("timeout", body={"vmx": {"correlationId": "t-1"}})
    took = time.time() - t0
    check_fallback_answer(r, env, fake2, ["stall"])
    assert r.header("x-vmx-correlation-id") == "t-1"
    assert READ_TIMEOUT - 0.2 <= took < READ_TIMEOUT + 5, took


def test_event_timestamps(env):
    r = env.chat("all-fail")
    assert r.header("x-vmx-event-count") == "2", r
    check_event_timestamp(r, 0)
    check_event_timestamp(r, 1)


def test_provider_400_is_returned_as_is(env, fake, fake2):
    for stream in (False, True):
        r = env.chat("r400", body={"stream": stream})
        assert r.status == 400, r
        assert r.header("content-type").startswith("application/json")
        e = r.json()["error"]
        assert e["code"] == "invalid_value", e
        assert e["message"].startswith("Invalid value for 'messages'"), e
        assert r.header("x-vmx-event-count") in (None, "0"), r
        assert fake2.chat_requests() == []


def test_provider_404_is_returned_as_is(env, fake2):
    r = env.chat("r404")
    assert r.status == 404, r
    assert r.json()["error"]["code"] == "model_not_found"
    assert fake2.chat_requests() == []


def test_use_fallback_false(env, fake, fake2):
    r = env.chat("nofb")
    assert r.status == 500, r
    assert "error" in r.json()
    r = env.chat("nofb429")
    assert r.status == 429, r
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.header("retry-after") is not None, r
    assert fake2.chat_requests() == []
    assert len(fake.chat_requests()) == 2


def test_chain_exhausted_returns_last_status(env, fake, fake2):
    r = env.chat("all-fail")          # 503 then 429
    assert r.status == 429, r
    e = r.json()["error"]
    assert e["code"] == "rate_limit_exceeded", e
    assert r.header("x-vmx-event-count") == "2", r
    assert r.header("x-vmx-event-0-type") == "fallback"
    assert r.header("x-vmx-event-1-type") == "fallback"
    assert len(fake.chat_requests()) == 1 and len(fake2.chat_requests()) == 1
    r = env.chat("all-fail-500")      # 429 then 500
    assert r.status == 500, r
    assert "error" in r.json()


def test_chain_exhausted_streaming(env):
    r = env.chat("all-fail", body={"stream": True})
    assert r.status == 429, r
    assert r.header("content-type").startswith("application/json"), r
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_non_json_provider_error_gets_the_envelope(env):
    """The last provider answered 503 with an HTML page: the client gets 503 in OpenAI's envelope."""
    r = env.chat("html-only")
    assert r.status == 503, r
    assert r.header("content-type").startswith("application/json"), r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}, e


def test_stall_after_first_byte_ends_with_error_event(env, fake2):
    """Read timeout in the middle of a stream: no fallback, an error event ends the stream,
    and the response itself ends properly (last chunk)."""
    t0 = time.time()
    s = Stream(env.gw.url, "/v1/chat/completions",
               {"model": "stream-stall", "stream": True, "messages": MSG},
               {"Authorization": f"Bearer {env.key()}"})
    events = []
    try:
        assert s.status == 200
        try:
            while True:
                e = s.next_event()
                if e is None:
                    break
                events.append(e)
        except http.client.IncompleteRead:
            pytest.fail(f"the response was cut without its last chunk; events: {events}")
    finally:
        s.close()
    took = time.time() - t0
    assert any(e.startswith("{") and "error" in json.loads(e) for e in events), events
    assert took < READ_TIMEOUT + 5, took
    assert fake2.chat_requests() == []


def test_all_connect_refused_is_502(env):
    for name in ("all-refused", "refused-only"):
        r = env.chat(name)
        assert r.status == 502, r
        e = r.json()["error"]
        assert e["code"] == "provider_unavailable", e
        assert e["param"] is None


def test_three_entry_chain(env, fake, fake2):
    r = env.chat("three")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "Hello from gpt-third! You said: hello"
    assert r.header("x-vmx-event-count") == "2", r
    assert r.header("x-vmx-connection-id") == env.conns["a"]["id"]
    assert [q.body["model"] for q in fake.chat_requests()] == ["fail-500", "gpt-third"]
    assert [q.body["model"] for q in fake2.chat_requests()] == ["fail-503"]


def test_no_fallback_after_first_byte(gw, fake, fake2):
    env = gw.provision(connections={"a": connection_for(fake), "b": connection_for(fake2)},
                       resources={"cut": {"model": ("a", "stream-cut"), "fallback": [("b", "gpt-fb")]}},
                       keys={"k": {"resources": ["cut"]}})
    r = env.chat("cut", body={"stream": True})
    assert r.status == 200
    assert fake2.chat_requests() == []
    assert any(e.startswith("{") and "error" in json.loads(e) for e in sse_events(r.body)), r


# ------------------------------------------------------------------ TLS
def test_tls_provider_with_test_ca(env, fake_tls):
    for stream in (False, True):
        r = env.chat("tls", body={"stream": stream})
        assert r.status == 200, r
        assert r.header("x-vmx-connection-id") == env.conns["tls"]["id"]
    rec = fake_tls.chat_requests()
    assert len(rec) == 2 and rec[0].body["model"] == "gpt-tls"
    assert rec[0].headers["authorization"] == f"Bearer {fake_tls.api_key}"
    assert rec[0].headers.get("host") in ("localhost", f"localhost:{fake_tls.port}"), rec[0].headers
    assert rec[0].sni == "localhost", rec[0].sni


def tls_by_name(fake):
    """A TLS fake reached by host name: the control plane resolves it."""
    return connection_for(fake, config={"apiKey": fake.api_key,
                                        "baseUrl": f"https://localhost:{fake.port}/v1"})


def test_tls_ip_literal_is_not_trusted(env, fake_tls, fake2):
    """nginx 1.22 checks certificates against host names only (README): an HTTPS baseUrl
    with an IP address fails its attempt, and nothing is sent over that connection."""
    r = env.chat("tls-ip")
    check_fallback_answer(r, env, fake2, ["gpt-tls"])
    assert fake_tls.chat_requests() == []


def test_tls_provider_by_host_name(gw, fake_tls):
    """baseUrl with a host name: the control plane resolves it, the data plane connects
    to the address, sends SNI and checks the certificate against the name."""
    e = gw.provision(connections={"t": connection_for(fake_tls, config={
                         "apiKey": fake_tls.api_key, "baseUrl": f"https://localhost:{fake_tls.port}/v1"})},
                     resources={"tls-name": {"model": ("t", "gpt-tls-name")}},
                     keys={"k": {"resources": ["tls-name"]}})
    r = e.chat("tls-name")
    assert r.status == 200, r
    rec = fake_tls.last()
    assert rec.body["model"] == "gpt-tls-name"
    assert rec.sni == "localhost", rec.sni
    assert rec.headers.get("host") in ("localhost", f"localhost:{fake_tls.port}"), rec.headers


def test_fallback_to_tls_provider(env, fake_tls):
    r = env.chat("tls-fb", body={"stream": True})
    assert r.status == 200, r
    assert sse_events(r.body)[-1] == "[DONE]"
    assert r.header("x-vmx-event-count") == "1"


def test_untrusted_certificate_fails_over(env, fake_rogue, fake2):
    r = env.chat("rogue")
    check_fallback_answer(r, env, fake2, ["gpt-rogue"])
    assert fake_rogue.chat_requests() == [], "request sent over an unverified TLS connection"


def test_untrusted_certificate_alone_is_502(env, fake_rogue):
    r = env.chat("rogue-only")
    assert r.status == 502, r
    assert r.json()["error"]["code"] == "provider_unavailable"
    assert fake_rogue.chat_requests() == []
