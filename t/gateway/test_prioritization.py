"""Prioritization (SPEC §6): two pools sharing a connection's 1000 tokens per
minute. With B idle, A borrows beyond its 50 % up to its 70 % maximum; once B
is busy, B is admitted and A is cut back to its 50 % (429
prioritization_gate_denied) while B keeps being admitted.

A prompt of 93 "hello" words is estimated at 100 tokens (o200k_base: 93 + the
cookbook's 7), and the fake reports 101 (prompt 93 + 7, completion 1 for the
model "big-1"). Pool usage is counted over the last 60 seconds, sliding, so a
minute boundary changes nothing; the connection's own fixed-minute counter
(at most 6 * 101 + 3 * 101 tokens here) stays under its 1000."""
import pytest

from gwutil import connection_for

PROMPT = " ".join(["hello"] * 93)


@pytest.fixture
def env(gw, fake):
    env = gw.provision(
        connections={"shared": connection_for(
            fake, capacity=[{"period": "minute", "tokens": 1000}])},
        resources={"r-a": {"model": ("shared", "big-1")},
                   "r-b": {"model": ("shared", "big-1")},
                   "r-free": {"model": ("shared", "big-1")}},
        keys={"k": {"resources": ["r-a", "r-b", "r-free"]}},
    )
    v0 = gw.nginx.config_version()
    status, body, _ = gw.api.request("PUT", f"{env.prefix}/pool-definition", {"pools": [
        {"name": "A", "rank": 0, "minReservation": 50, "maxReservation": 70,
         "resources": [env.res["r-a"]["id"]]},
        {"name": "B", "rank": 1, "minReservation": 50, "maxReservation": 100,
         "resources": [env.res["r-b"]["id"]]},
    ]})
    assert status == 200, body
    gw.wait_version_above(v0)
    return env


def ask(env, resource):
    return env.chat(resource, body={"messages": [{"role": "user", "content": PROMPT}]})


def denial(r, message):
    assert r.status == 429, r
    e = r.json()["error"]
    assert e["code"] == "prioritization_gate_denied" and e["type"] == "rate_limit_error", e
    assert e["message"] == message, e
    assert 1 <= int(r.header("retry-after")) <= 60, r


def test_idle_share_is_lent_then_taken_back(env, fake):
    admitted = 0
    for _ in range(12):
        r = ask(env, "r-a")
        if r.status != 200:
            break
        assert r.json()["usage"]["total_tokens"] == 101
        admitted += 1
    # beyond its own 50 % (500 tokens), not beyond its 70 %
    assert admitted * 101 > 500 and admitted * 101 <= 700, admitted
    denial(r, 'Pool "A" is over its current share of 70% (700 of 1000 tokens per minute)')

    # B gets busy: it is admitted, and A is back to its 50 %
    for _ in range(3):
        r = ask(env, "r-b")
        assert r.status == 200, r
        denial(ask(env, "r-a"),
               'Pool "A" is over its current share of 50% (500 of 1000 tokens per minute)')

    # a resource in no pool is not gated
    assert env.chat("r-free").status == 200


def test_definition_removed_ungates(gw, env):
    for _ in range(12):
        r = ask(env, "r-a")
        if r.status != 200:
            break
    assert r.status == 429, r
    v0 = gw.nginx.config_version()
    assert gw.api.request("DELETE", f"{env.prefix}/pool-definition")[0] == 204
    gw.wait_version_above(v0)
    assert ask(env, "r-a").status == 200


def test_no_minute_tokens_capacity_no_gate(gw, fake):
    env = gw.provision(
        connections={"free": connection_for(
            fake, capacity=[{"period": "minute", "requests": 1000}])},
        resources={"r-a": {"model": ("free", "big-1")}},
        keys={"k": {"resources": ["r-a"]}},
    )
    v0 = gw.nginx.config_version()
    status, body, _ = gw.api.request("PUT", f"{env.prefix}/pool-definition", {"pools": [
        {"name": "A", "rank": 0, "minReservation": 0, "maxReservation": 1,
         "resources": [env.res["r-a"]["id"]]}]})
    assert status == 200, body
    gw.wait_version_above(v0)
    for _ in range(3):
        assert ask(env, "r-a").status == 200
