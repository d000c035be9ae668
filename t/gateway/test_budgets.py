"""Budgets (issue 14, docs/ARCHITECTURE.md "Budgets"): a capacity entry's "cost" in
USD, counted by the data plane in micro-dollars at the prices of /api/v1/prices.

The fake answers one "hello" message with 8 prompt and 6 completion tokens, and the
gateway estimates the prompt at 8.  At the test prices (10 USD per million input
tokens, 20 per million output), a request with max_tokens 10 reserves
8 * 10 + 10 * 20 = 280 micro-dollars and settles to 8 * 10 + 6 * 20 = 200."""
import time
import uuid

import pytest

from gwutil import connection_for, dp_metric

INPUT, OUTPUT = 10, 20                  # USD per million tokens
RESERVED, SPENT = 280, 200              # micro-dollars of a request with max_tokens 10


def priced_model(gw, input=INPUT, output=OUTPUT):
    """A model of its own with a price valid from now on."""
    model = "budget-" + uuid.uuid4().hex[:10]
    status, price, _ = gw.api.request("POST", "/api/v1/prices",
                                      {"provider": "openai", "model": model,
                                       "input": input, "output": output})
    assert status == 201, price
    return model


def per_day(cost, **extra):
    return dict({"period": "day", "cost": cost}, **extra)


def seconds_to_midnight():
    return 86400 - int(time.time()) % 86400


def key_with_budget(gw, fake, model, capacity):
    """Resource "r" on model, key "k" with capacity entries."""
    return gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r": {"model": ("c", model)}},
        keys={"k": {"resources": ["r"], "enforceCapacity": True, "capacity": capacity}})


def chat(env, resource, key, max_tokens=10):
    return env.chat(resource, key=env.keys[key], body={"max_tokens": max_tokens})


def usd(micros):
    """As the gateway writes dollars: cents always, smaller digits when there are."""
    whole, frac = divmod(micros, 10**6)
    return f"{whole}." + f"{frac:06d}"[:2] + f"{frac:06d}"[2:].rstrip("0")


def counted(gw, model, requests):
    """Waits until vmx_status counts the model's requests: a request is counted in its
    log phase, just after its answer was sent."""
    deadline = time.time() + 5
    while dp_metric(gw, "vmx_requests_total", model=model) < requests:
        assert time.time() < deadline, f"vmx_status counts fewer than {requests} of {model}"
        time.sleep(0.05)


def assert_cost_headers(r, limit, remaining):
    assert r.header("x-ratelimit-limit-cost") == limit, r
    assert r.header("x-ratelimit-remaining-cost") == remaining, r
    assert abs(int(r.header("x-ratelimit-reset-cost")[:-1]) - seconds_to_midnight()) <= 2, r


def assert_budget_429(r, message):
    assert r.status == 429, r
    e = r.json()["error"]
    assert e["code"] == "budget_exceeded", e
    assert e["type"] == "rate_limit_error", e
    assert e["message"] == message, e
    assert abs(int(r.header("retry-after")) - seconds_to_midnight()) <= 2, r


def test_api_key_budget(gw, fake):
    """Reservations of 280 settled to 200: four requests fit in $0.001, the fifth's
    reservation does not; one reserving 80 (max_tokens 0) brings the key to $0.001
    exactly, and then nothing fits."""
    model = priced_model(gw)
    env = key_with_budget(gw, fake, model, [per_day(0.001)])
    for i in range(4):
        r = chat(env, "r", "k")
        assert r.status == 200, r
        # in dollars, after this request's reservation
        assert_cost_headers(r, "0.001", usd(1000 - 200 * i - 280))
    # 800 spent: 800 + 280 is over, 800 + 80 is not
    r = chat(env, "r", "k")
    assert_budget_429(r, 'API key "k" has reached its budget of $0.001 per day')
    assert_cost_headers(r, "0.001", "0.0002")
    assert chat(env, "r", "k", max_tokens=0).status == 200
    assert_budget_429(chat(env, "r", "k", max_tokens=0),
                      'API key "k" has reached its budget of $0.001 per day')


def test_settle_leaves_room(gw, fake):
    """Without the settlement, three reservations of 280 would leave no room in 700 for
    a fourth request of 80; settled to 200 each, 600 are spent and it fits."""
    model = priced_model(gw)
    env = key_with_budget(gw, fake, model, [per_day(0.0007)])
    for _ in range(3):
        assert chat(env, "r", "k").status == 200
    assert chat(env, "r", "k", max_tokens=0).status == 200
    assert_budget_429(chat(env, "r", "k", max_tokens=0),
                      'API key "k" has reached its budget of $0.0007 per day')


def test_resource_budget(gw, fake):
    model = priced_model(gw)
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r": {"model": ("c", model), "enforceCapacity": True,
                         "capacity": [per_day(0.0005)]}},
        keys={"k": {"resources": ["r"]}})
    assert chat(env, "r", "k").status == 200
    assert chat(env, "r", "k").status == 200        # 200 + 280 <= 500
    assert_budget_429(chat(env, "r", "k"), 'Resource "r" has reached its budget of $0.0005 per day')


def test_connection_budget_falls_back(gw, fake, fake2):
    """A connection over its budget is passed over for the next model, which reserves
    at its own price; with every connection over budget the answer is 429."""
    small, big = priced_model(gw), priced_model(gw, input=1, output=1)
    env = gw.provision(
        connections={"small": connection_for(fake, capacity=[per_day(0.0005)]),
                     "big": connection_for(fake2, capacity=[per_day(0.000045)])},
        resources={"r": {"model": ("small", small), "fallback": [("big", big)]}},
        keys={"k": {"resources": ["r"]}})
    models = [chat(env, "r", "k").header("x-vmx-model") for _ in range(3)]
    assert models == [small, small, big], models
    r = chat(env, "r", "k")
    assert r.status == 200 and r.header("x-vmx-model") == big, r
    assert "budget" in r.header("x-vmx-event-0-fallback-failure-reason"), r
    # big: 18 reserved, 14 spent each: 28 of 45 after two, and 28 + 18 is over
    r = chat(env, "r", "k")
    assert_budget_429(r, 'Connection "big" has reached its budget of $0.000045 per day')


@pytest.mark.parametrize("stream", [False, True])
def test_routed_request_is_priced_by_the_model_it_is_routed_to(gw, fake, stream):
    """The primary has no price; a routing group sends every request to a priced model,
    whose price reserves and settles (a routed target once had no prices and crashed
    the worker that settled it)."""
    model = priced_model(gw)
    env = key_with_budget(gw, fake, "unpriced-" + uuid.uuid4().hex[:8], [per_day(0.001)])
    then = {"provider": "openai", "model": model, "connectionId": env.conns["c"]["id"]}
    gw.update(env, "resources", "r", routing={"enabled": True, "conditions": [
        {"type": "group", "id": "all", "description": "all", "enabled": True,
         "operator": "AND", "conditions": [], "mode": "UI", "expression": "",
         "action": "CALL_MODEL", "then": then}]})
    body = {"max_tokens": 10}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    for i in range(2):
        r = env.chat("r", key=env.keys["k"], body=body)
        assert r.status == 200, r
        assert r.header("x-vmx-model") == model
        assert_cost_headers(r, "0.001", usd(1000 - SPENT * i - RESERVED))
    counted(gw, model, 2)
    assert dp_metric(gw, "vmx_budget_unpriced_requests_total", model=model) == 0


def test_model_without_price_is_outside_budgets(gw, fake):
    """Logged, and counted in the request's series of vmx_status."""
    model = "unpriced-" + uuid.uuid4().hex[:8]
    env = key_with_budget(gw, fake, model, [per_day(0.000001)])
    for _ in range(3):
        assert chat(env, "r", "k").status == 200
    log = open(gw.nginx.error_log_path).read()
    assert f'openai model "{model}" has no price: budgets do not count its requests' in log
    counted(gw, model, 3)
    assert dp_metric(gw, "vmx_budget_unpriced_requests_total", model=model) == 3


def test_priced_model_is_not_counted_unpriced(gw, fake):
    model = priced_model(gw)
    env = key_with_budget(gw, fake, model, [per_day(1)])
    assert chat(env, "r", "k").status == 200
    counted(gw, model, 1)
    assert dp_metric(gw, "vmx_budget_unpriced_requests_total", model=model) == 0


def test_default_completion_reservation(gw, fake):
    """Without max_tokens a request reserves 1024 completion tokens:
    8 * 10 + 1024 * 20 = 20560 micro-dollars, more than a budget of $0.01."""
    env = key_with_budget(gw, fake, priced_model(gw), [per_day(0.01)])
    assert_budget_429(env.chat("r", key=env.keys["k"]),
                      'API key "k" has reached its budget of $0.01 per day')


def test_default_completion_tokens_directive(own_stack, fake):
    """vmx_budget_default_completion_tokens 100 (http level, inherited by the gateway's
    location): 8 * 10 + 100 * 20 = 2080 reserved without max_tokens; max_tokens still
    states the completion when given."""
    s = own_stack(http_directives="vmx_budget_default_completion_tokens 100;")
    env = key_with_budget(s.gw, fake, priced_model(s.gw), [per_day(0.01)])
    r = env.chat("r", key=env.keys["k"])
    assert r.status == 200, r
    assert_cost_headers(r, "0.01", usd(10000 - 2080))
    # the first settled to 200
    r = chat(env, "r", "k")
    assert r.status == 200, r
    assert_cost_headers(r, "0.01", usd(10000 - 200 - RESERVED))


def test_price_of_a_dated_model_and_lifetime_budget(gw, fake):
    """"<model>-2025-01-01" takes <model>'s price; a lifetime budget has no
    Retry-After."""
    model = priced_model(gw)
    env = key_with_budget(gw, fake, model + "-2025-01-01",
                          [{"period": "lifetime", "cost": 0.0003}])
    assert chat(env, "r", "k").status == 200
    r = chat(env, "r", "k")
    assert r.status == 429, r
    assert r.json()["error"]["message"] == \
        'API key "k" has reached its lifetime budget of $0.0003', r.json()
    assert r.header("retry-after") is None


@pytest.mark.parametrize("cost", [-1, "5", True])
def test_cost_is_validated(gw, cost):
    ws = gw.api.create_workspace("ws-" + uuid.uuid4().hex[:8])
    env = gw.api.create_environment(ws["id"], "e")
    status, err, _ = gw.api.request(
        "POST", f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/api-keys",
        {"name": "k", "capacity": [{"period": "day", "cost": cost}]})
    assert status == 400, err
    assert err["error"]["details"]["field"] == "capacity[0].cost", err
