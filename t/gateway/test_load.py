"""Many concurrent requests of every kind (plain, streamed, fallback, errors)
through both workers: every answer is right and nothing crashes."""
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from gwutil import closed_port, connection_for, sse_events


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    dead = {"provider": "openai",
            "config": {"apiKey": "sk-dead", "baseUrl": f"http://127.0.0.1:{closed_port()}/v1"}}
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2), "dead": dead},
        resources={"chat": {"model": ("a", "gpt-load")},
                   "fb": {"model": ("dead", "x"), "fallback": [("a", "fail-503"), ("b", "gpt-fb")]},
                   "split": {"model": ("b", "split-stream")},
                   "bad": {"model": ("a", "fail-400")}},
        keys={"k": {"resources": ["chat", "fb", "split", "bad"]}},
    )


def one(env, i):
    kind = i % 6
    if kind == 0:
        r = env.chat("chat", body={"messages": [{"role": "user", "content": f"n{i}"}]})
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == f"Hello from gpt-load! You said: n{i}"
    elif kind == 1:
        r = env.chat("chat", body={"stream": True, "stream_options": {"include_usage": True},
                                   "messages": [{"role": "user", "content": f"s{i}"}]})
        ev = sse_events(r.body)
        assert r.status == 200 and ev[-1] == "[DONE]", r
        text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                       for e in ev[:-1] if json.loads(e)["choices"])
        assert text == f"Hello from gpt-load! You said: s{i}"
        assert json.loads(ev[-2])["usage"]
    elif kind == 2:
        r = env.chat("fb", body={"stream": i % 4 == 0})
        assert r.status == 200, r
        assert r.header("x-vmx-event-count") == "2", r
    elif kind == 3:
        r = env.chat("split", body={"stream": True})
        assert r.status == 200 and sse_events(r.body)[-1] == "[DONE]", r
    elif kind == 4:
        r = env.chat("bad")
        assert r.status == 400, r
    else:
        r = env.chat("nope")
        assert r.status == 404, r


def test_concurrent_mix(env):
    with ThreadPoolExecutor(24) as ex:
        list(ex.map(lambda i: one(env, i), range(240)))
