"""Provider timeouts (issue 9, item 4): a connection's and a resource's `timeouts`
{connectMs, firstByteMs, idleMs, totalMs} over the data plane's defaults, for plain and
streamed answers, each a failure reason of its own.

The nginx of this module runs the defaults (no timeout directive: connect 5 s, first byte
120 s, idle 30 s, total 600 s), so an answer within a few seconds can only come from the
object's own timeouts.  Timings are asserted loosely: the machine may be loaded."""
import json
import socket
import time

import pytest

from gwutil import Stream, connection_for, free_port, record

MSG = [{"role": "user", "content": "hello"}]
FAST = 5.0      # seconds: far below every default


@pytest.fixture(scope="module")
def full_backlog():
    """A loopback port whose accept queue is full: a SYN to it is dropped, so a connect
    neither succeeds nor fails until the client gives up."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", free_port()))
    srv.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(srv.getsockname())
        except BlockingIOError:
            pass
        fillers.append(c)
    time.sleep(0.2)
    yield srv.getsockname()[1]
    for c in fillers:
        c.close()
    srv.close()


@pytest.fixture(scope="module")
def stack(own_stack):
    return own_stack(gateway_directives="")


@pytest.fixture(scope="module")
def env(stack, fake, fake2, full_backlog):
    fb = [("b", "gpt-fb")]
    blackhole = {"provider": "openai", "timeouts": {"connectMs": 300},
                 "config": {"apiKey": "sk-x", "baseUrl": f"http://127.0.0.1:{full_backlog}/v1"}}
    return stack.gw.provision(
        connections={
            "first-byte": connection_for(fake, timeouts={"firstByteMs": 300}),
            "idle": connection_for(fake, timeouts={"idleMs": 300}),
            "total": connection_for(fake, timeouts={"totalMs": 1000}),
            "long": connection_for(fake, timeouts={"firstByteMs": 60000, "idleMs": 60000}),
            "blackhole": blackhole,
            "b": connection_for(fake2),
        },
        resources={
            "stall": {"model": ("first-byte", "stall"), "fallback": fb},
            "stall-last": {"model": ("first-byte", "stall")},
            "stream-stall": {"model": ("idle", "stream-stall"), "fallback": fb},
            "drip": {"model": ("total", "stream-drip"), "fallback": fb},
            "slow-plain": {"model": ("total", "slow-3"), "fallback": fb},
            "connect": {"model": ("blackhole", "m"), "fallback": fb},
            "override": {"model": ("long", "stall"), "fallback": fb,
                         "timeouts": {"firstByteMs": 300}},
        },
        keys={"k": {"resources": ["stall", "stall-last", "stream-stall", "drip", "slow-plain",
                                  "connect", "override"]}},
    )


def timed_chat(env, model, **kw):
    t0 = time.time()
    r = env.chat(model, timeout=30, **kw)
    return r, time.time() - t0


def fell_back_with(stack, r, reason):
    """r is the fallback's answer, and its audit record's failed attempt says reason."""
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "Hello from gpt-fb! You said: hello"
    assert r.header("x-vmx-event-0-fallback-failure-reason").startswith(reason + ":"), r
    rec = record(stack.gw, r)
    first, second = rec["attempts"]
    assert first["failureReason"].startswith(reason + ":"), first
    assert second["failureReason"] is None and second["statusCode"] == 200, second
    return first


def read_stream(stack, env, model):
    t0 = time.time()
    s = Stream(stack.gw.url, "/v1/chat/completions",
               {"model": model, "stream": True, "messages": MSG},
               {"Authorization": f"Bearer {env.key()}"})
    try:
        assert s.status == 200
        events = s.rest()
    finally:
        s.close()
    return s, events, time.time() - t0


def test_first_byte_timeout_falls_back(stack, env, fake2):
    r, took = timed_chat(env, "stall")
    first = fell_back_with(stack, r, "first_byte_timeout")
    assert "300 ms" in first["failureReason"], first
    assert took < FAST, took
    assert [q.body["model"] for q in fake2.chat_requests()][-1] == "gpt-fb"


def test_first_byte_timeout_of_the_last_model_is_502(stack, env):
    r, took = timed_chat(env, "stall-last")
    assert r.status == 502, r
    e = r.json()["error"]
    assert e["code"] == "provider_unavailable" and "first_byte_timeout" in e["message"], e
    assert took < FAST, took


def test_idle_timeout_ends_a_stream_with_its_error(stack, env):
    s, events, took = read_stream(stack, env, "stream-stall")
    assert took < FAST, took
    assert any("choices" in json.loads(e) for e in events[:-1]), events
    err = json.loads(events[-1])["error"]
    assert err["code"] == "provider_timeout" and "idle_timeout" in err["message"], events
    rec = record(stack.gw, s)
    assert rec["statusCode"] == 200 and rec["errorCode"] == "provider_timeout", rec
    assert rec["attempts"][0]["failureReason"].startswith("idle_timeout:"), rec["attempts"]
    assert rec["events"] == [], rec


def test_total_timeout_cuts_a_dripping_stream(stack, env):
    s, events, took = read_stream(stack, env, "drip")
    # chunks every 0.1 s keep the idle timeout (30 s) away: only the total (1 s) ends it
    assert 0.8 < took < FAST, took
    assert len(events) > 3, events
    err = json.loads(events[-1])["error"]
    assert err["code"] == "provider_timeout" and "total_timeout" in err["message"], events
    rec = record(stack.gw, s)
    assert rec["attempts"][0]["failureReason"].startswith("total_timeout:"), rec["attempts"]


def test_total_timeout_of_a_plain_answer_falls_back(stack, env):
    r, took = timed_chat(env, "slow-plain")
    fell_back_with(stack, r, "total_timeout")
    assert took < 3, took


def test_connect_timeout_falls_back(stack, env):
    r, took = timed_chat(env, "connect")
    fell_back_with(stack, r, "connect_timeout")
    assert took < FAST, took


def test_resource_timeouts_override_the_connection(stack, env):
    r, took = timed_chat(env, "override")
    first = fell_back_with(stack, r, "first_byte_timeout")
    assert "300 ms" in first["failureReason"], first
    assert took < FAST, took
