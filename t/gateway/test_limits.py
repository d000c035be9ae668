"""Capacity limits on one node (SPEC.md §5): API key, resource and connection counted
apart, the SPEC's 429 message, Retry-After and x-ratelimit-* headers, an exhausted
connection falling back to the next model."""
import json
import random
import string
import threading
import time

import pytest

from gwutil import connection_for, http_request


@pytest.fixture(autouse=True)
def _away_from_a_minute_boundary():
    """Windows are aligned to the minute: a test must not straddle two."""
    left = 60 - time.time() % 60
    if left < 20:       # provisioning and the calls take seconds on a busy machine
        time.sleep(left + 0.1)


def per_minute(requests=None, tokens=None, **extra):
    c = {"period": "minute"}
    if requests is not None:
        c["requests"] = requests
    if tokens is not None:
        c["tokens"] = tokens
    c.update(extra)
    return c


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    return gw.provision(
        connections={
            "small": connection_for(fake, capacity=[per_minute(requests=2)]),
            "big": connection_for(fake2),
            "tiny": connection_for(fake2, capacity=[per_minute(requests=1)]),
        },
        resources={
            "r-free": {"model": ("big", "gpt-free")},
            "r-limited": {"model": ("big", "gpt-res"), "enforceCapacity": True,
                          "capacity": [per_minute(requests=3)]},
            "r-spill": {"model": ("small", "gpt-small"), "fallback": [("big", "gpt-big")]},
            "r-tiny": {"model": ("tiny", "gpt-tiny")},
            "r-disabled": {"model": ("big", "gpt-off"), "enforceCapacity": True,
                           "capacity": [per_minute(requests=1, enabled=False)]},
        },
        keys={
            "ci": {"resources": ["r-free", "r-limited", "r-spill", "r-tiny", "r-disabled"],
                   "enforceCapacity": True, "capacity": [per_minute(requests=100)]},
            "capped": {"resources": ["r-free"], "enforceCapacity": True,
                       "capacity": [per_minute(requests=2)]},
            "unenforced": {"resources": ["r-free"], "enforceCapacity": False,
                           "capacity": [per_minute(requests=1)]},
        },
    )


def assert_ratelimit(r, what, limit, remaining):
    """The gateway's own x-ratelimit-*-<what> (SPEC.md §2), reset as OpenAI writes it."""
    assert r.header(f"x-ratelimit-limit-{what}") == str(limit), r
    assert r.header(f"x-ratelimit-remaining-{what}") == str(remaining), r
    reset = r.header(f"x-ratelimit-reset-{what}")
    assert reset and reset.endswith("s") and 1 <= int(reset[:-1]) <= 60, r


def test_api_key_limit(env):
    for i in range(2):
        r = env.chat("r-free", key=env.keys["capped"])
        assert r.status == 200, r
        assert_ratelimit(r, "requests", 2, 1 - i)
    r = env.chat("r-free", key=env.keys["capped"])
    assert r.status == 429, r
    e = r.json()["error"]
    assert e["code"] == "resource_exhausted"
    assert e["message"] == 'API key "capped" has reached its limit of 2 requests per minute'
    assert 1 <= int(r.header("retry-after")) <= 60
    # the refused request is not counted
    assert_ratelimit(r, "requests", 2, 0)


def test_429_carries_requests_and_tokens_headers(gw, fake, fake2):
    """Every answer a limit applies to carries x-ratelimit-* for requests and tokens,
    the 429 of an exhausted key, resource or connection chain above all."""
    e = gw.provision(
        connections={"c": connection_for(fake, capacity=[per_minute(requests=1, tokens=500)]),
                     "free": connection_for(fake2)},
        resources={"r-key": {"model": ("c", "gpt-k")},
                   "r-res": {"model": ("free", "gpt-r"), "enforceCapacity": True,
                             "capacity": [per_minute(requests=1, tokens=400)]}},
        keys={"k": {"resources": ["r-key"], "enforceCapacity": True,
                    "capacity": [per_minute(requests=1, tokens=1000)]},
              "free": {"resources": ["r-key", "r-res"]}})
    # one "hello" message is estimated at 8 tokens, settled to the fake's 8 + 6
    r = e.chat("r-key", key=e.keys["k"])
    assert r.status == 200, r
    assert_ratelimit(r, "requests", 1, 0)
    assert_ratelimit(r, "tokens", 500, 492)          # the connection's, after the estimate
    r = e.chat("r-key", key=e.keys["k"])
    assert r.status == 429, r
    assert r.json()["error"]["message"].startswith('API key "k"'), r.json()
    assert_ratelimit(r, "requests", 1, 0)
    assert_ratelimit(r, "tokens", 1000, 986)         # the key's, as settled
    assert 1 <= int(r.header("retry-after")) <= 60
    # the resource's own limit
    r = e.chat("r-res", key=e.keys["free"])
    assert r.status == 200, r
    assert_ratelimit(r, "tokens", 400, 392)
    r = e.chat("r-res", key=e.keys["free"])
    assert r.status == 429, r
    assert r.json()["error"]["message"].startswith('Resource "r-res"'), r.json()
    assert_ratelimit(r, "requests", 1, 0)
    assert_ratelimit(r, "tokens", 400, 386)
    assert 1 <= int(r.header("retry-after")) <= 60
    # every connection of the chain spent
    r = e.chat("r-key", key=e.keys["free"])
    assert r.status == 429, r
    assert r.json()["error"]["message"].startswith('Connection "c"'), r.json()
    assert_ratelimit(r, "requests", 1, 0)
    assert_ratelimit(r, "tokens", 500, 486)
    assert 1 <= int(r.header("retry-after")) <= 60


def test_next_request_sees_the_last_answer_settled(gw, fake):
    """An answer's tokens are settled before its last byte is sent: the client's next
    request, on a new connection and maybe another worker, counts them as the provider
    reported them, never the estimate (8 estimated, 8 + 6 used for one "hello")."""
    e = gw.provision(
        connections={"c": connection_for(fake, capacity=[per_minute(tokens=100000)])},
        resources={"r": {"model": ("c", "gpt-settle")}},
        keys={"k": {"resources": ["r"]}})
    for i in range(24):
        body = {"stream": True, "stream_options": {"include_usage": True}} if i % 2 else None
        r = e.chat("r", key=e.keys["k"], body=body)
        assert r.status == 200, r
        assert_ratelimit(r, "tokens", 100000, 100000 - 14 * i - 8)


def test_unenforced_key_capacity_is_ignored(env):
    for _ in range(3):
        assert env.chat("r-free", key=env.keys["unenforced"]).status == 200


def test_resource_limit_counts_apart_from_the_key(env):
    for _ in range(3):
        assert env.chat("r-limited", key=env.keys["ci"]).status == 200
    r = env.chat("r-limited", key=env.keys["ci"])
    assert r.status == 429, r
    assert r.json()["error"]["message"] == \
        'Resource "r-limited" has reached its limit of 3 requests per minute'


def test_exhausted_connection_falls_back(env):
    models = [env.chat("r-spill", key=env.keys["ci"]).header("x-vmx-model") for _ in range(4)]
    assert models == ["gpt-small", "gpt-small", "gpt-big", "gpt-big"], models
    r = env.chat("r-spill", key=env.keys["ci"])
    assert r.status == 200, r
    assert r.header("x-vmx-event-count") == "1"
    assert "connection" in r.header("x-vmx-event-0-fallback-failure-reason").lower()


def test_exhausted_chain_is_429(env):
    assert env.chat("r-tiny", key=env.keys["ci"]).status == 200
    r = env.chat("r-tiny", key=env.keys["ci"])
    assert r.status == 429, r
    assert r.json()["error"]["code"] == "resource_exhausted"
    assert "has reached its limit of 1 requests per minute" in r.json()["error"]["message"]
    assert r.header("retry-after") is not None


def test_disabled_entry_is_ignored(env):
    for _ in range(3):
        assert env.chat("r-disabled", key=env.keys["ci"]).status == 200



def test_token_limit_settles_to_usage(gw, fake):
    """Admission reserves the o200k_base estimate of the prompt (8 tokens for one
    "hello" message) and settles to the provider's usage (fake: 8 + 6 = 14)."""
    env = gw.provision(
        connections={"t": connection_for(fake, capacity=[per_minute(tokens=30)])},
        resources={"r-tokens": {"model": ("t", "gpt-tokens")}},
        keys={"k": {"resources": ["r-tokens"]}},
    )
    statuses = []
    for _ in range(3):
        r = env.chat("r-tokens")
        statuses.append(r.status)
    assert statuses == [200, 200, 429], statuses
    assert r.json()["error"]["message"] == \
        'Connection "t" has reached its limit of 30 tokens per minute'
    assert fake.last().body["messages"] == [{"role": "user", "content": "hello"}]


def test_large_body_is_counted_beside_small_requests(own_stack, fake):
    """A body of 10 MB of letters, one word whose merges take seconds, is counted in the
    tokenizer's thread pool: the worker answers other requests meanwhile, and the
    estimate, millions of tokens, meets the token limit (never 0)."""
    s = own_stack(workers=1, max_body="16m")
    env = s.gw.provision(
        connections={"c": connection_for(fake, capacity=[per_minute(tokens=1_000_000)])},
        resources={"r-big": {"model": ("c", "gpt-big")}},
        keys={"k": {"resources": ["r-big"]}},
    )
    word = "".join(random.Random(1).choices(string.ascii_lowercase, k=10 * 1024 * 1024))
    body = json.dumps({"model": "r-big", "messages": [{"role": "user", "content": word}]})
    headers = {"Authorization": f"Bearer {env.key()}", "Content-Type": "application/json"}
    big = {}

    def send_big():
        big["r"] = http_request(env.gw.url, "POST", "/v1/chat/completions", body, headers,
                                timeout=300)

    t = threading.Thread(target=send_big)
    t.start()
    answered = 0
    while t.is_alive():
        r = env.chat("r-big")
        assert r.status == 200, r
        answered += t.is_alive()
    t.join()
    # counted inline, the worker would answer none of them during the count
    assert answered >= 10, answered
    r = big["r"]
    assert r.status == 429, r
    assert r.json()["error"]["message"] == \
        'Connection "c" has reached its limit of 1000000 tokens per minute'


def chat_from(env, source_ip, model, key):
    """A chat request whose client address is source_ip (a loopback address)."""
    import http.client
    import json
    host, port = env.gw.url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source_ip, 0))
    try:
        c.request("POST", "/v1/chat/completions",
                  json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
                  {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def test_source_ip_dimension_counts_each_address_apart(gw, fake):
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r-ip": {"model": ("c", "gpt-ip")}},
        keys={"k": {"resources": ["r-ip"], "enforceCapacity": True,
                    "capacity": [per_minute(requests=2, dimension="source-ip")]}},
    )
    key = env.keys["k"]
    assert [chat_from(env, "127.0.0.2", "r-ip", key) for _ in range(3)] == [200, 200, 429]
    assert [chat_from(env, "127.0.0.3", "r-ip", key) for _ in range(3)] == [200, 200, 429]
