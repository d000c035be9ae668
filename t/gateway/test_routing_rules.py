"""Routing rules (SPEC.md §4) in the data plane: groups tried in order, the first that
matches wins; CALL_MODEL sends the request to the group's model, BLOCK refuses it;
ADVANCED expressions with errorRate(); a routing event in the headers."""
import pytest

from gwutil import connection_for


def cond(expression, comparator, value, vtype="string"):
    return {"type": "condition", "id": f"c-{expression}", "label": expression,
            "expression": expression, "comparator": comparator,
            "value": {"type": vtype, "expression": value}}


def group(gid, conditions=(), action="CALL_MODEL", then=None, mode="UI", expression="",
          operator="AND", traffic=None):
    g = {"type": "group", "id": gid, "description": gid, "enabled": True,
         "operator": operator, "conditions": list(conditions), "mode": mode,
         "expression": expression, "action": action}
    if then is not None:
        g["then"] = dict(then)
        if traffic is not None:
            g["then"]["traffic"] = traffic
    return g


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    e = gw.provision(connections={"a": connection_for(fake), "b": connection_for(fake2)},
                     resources={"plain": {"model": ("a", "gpt-primary")}},
                     keys={"k": {"resources": ["plain"], "labels": {"team": "research"}}})
    b = e.conns["b"]["id"]
    big = {"provider": "openai", "model": "gpt-long", "connectionId": b}
    team = {"provider": "openai", "model": "gpt-team", "connectionId": b}
    never = {"provider": "openai", "model": "gpt-never", "connectionId": b}
    shaky = {"provider": "openai", "model": "gpt-backup", "connectionId": b}
    routing = {"enabled": True, "conditions": [
        group("block-secrets", [cond("request.lastMessage.content", "CONTAINS", "forbidden")],
              action="BLOCK"),
        group("never", [], then=never, traffic=0),
        group("long-prompts", [cond("tokens.input", "GREATER_THAN", "200", "number")], then=big),
        group("team", mode="ADVANCED",
              expression='apiKey.labels.team == "research" && request.messagesCount >= 2',
              then=team),
        group("failing-primary", mode="ADVANCED", expression="errorRate(5) > 50", then=shaky),
    ]}
    gw.update(e, "resources", "plain", routing=routing)
    return e


def test_no_group_matches_stays_on_the_primary(env):
    r = env.chat("plain")
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "gpt-primary"
    assert r.header("x-vmx-event-count") == "0"


def test_block(env):
    r = env.chat("plain", body={"messages": [{"role": "user", "content": "a forbidden word"}]})
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "blocked_by_routing_condition"


def test_long_prompt_is_routed_with_an_event(env, fake2):
    r = env.chat("plain", body={"messages": [{"role": "user", "content": "word " * 400}]})
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "gpt-long"
    assert fake2.last().body["model"] == "gpt-long"
    assert r.header("x-vmx-event-count") == "1"
    assert r.header("x-vmx-event-0-type") == "routing"
    assert r.header("x-vmx-event-0-routing-original-model") == "gpt-primary"
    assert r.header("x-vmx-event-0-routing-routed-model") == "gpt-long"


def test_advanced_expression_with_key_labels(env):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
            {"role": "user", "content": "again"}]
    r = env.chat("plain", body={"messages": msgs})
    assert r.header("x-vmx-model") == "gpt-team", r


def test_route_test_bench_agrees_with_the_gateway(gw, env):
    """the control plane's test bench (POST .../route-test) answers what the data plane
    does with the same request: the same compiled rules, token estimate and key labels"""
    key = env.key_objs["k"]
    bodies = [
        {},
        {"messages": [{"role": "user", "content": "a forbidden word"}]},
        {"messages": [{"role": "user", "content": "word " * 400}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
                      {"role": "user", "content": "again"}]},
    ]
    seen = set()
    for body in bodies:
        request = {"model": "plain", "messages": [{"role": "user", "content": "hello"}]}
        request.update(body)
        st, bench, _ = gw.api.request(
            "POST", f"{env.prefix}/resources/{env.res['plain']['id']}/route-test",
            {"request": request, "apiKey": {"id": key["id"], "labels": key["labels"]}})
        assert st == 200, bench
        r = env.chat("plain", body=body)
        if bench["action"] == "BLOCK":
            assert r.status == 400, r
            assert r.json()["error"]["code"] == "blocked_by_routing_condition"
        else:
            assert r.status == 200, r
            assert r.header("x-vmx-model") == bench["model"]["model"], (bench, r)
        seen.add(bench["action"] if bench["action"] == "BLOCK" else bench["model"]["model"])
    assert seen == {"gpt-primary", "BLOCK", "gpt-long", "gpt-team"}


def test_secondary_model_index_skips_routing(gw, fake, fake2):
    e = gw.provision(connections={"a": connection_for(fake), "b": connection_for(fake2)},
                     resources={"r": {"model": ("a", "gpt-primary"),
                                      "secondary": [("b", "gpt-second")]}},
                     keys={"k": {"resources": ["r"]}})
    b = e.conns["b"]["id"]
    gw.update(e, "resources", "r", routing={"enabled": True, "conditions": [
        group("all", [], then={"provider": "openai", "model": "gpt-routed", "connectionId": b})]})
    assert e.chat("r").header("x-vmx-model") == "gpt-routed"
    r = e.chat("r", body={"vmx": {"secondaryModelIndex": 0}})
    assert r.header("x-vmx-model") == "gpt-second", r


def test_error_rate_routes_away_from_a_failing_primary(gw, fake, fake2):
    e = gw.provision(connections={"a": connection_for(fake), "b": connection_for(fake2)},
                     resources={"r": {"model": ("a", "fail-500"), "fallback": [("b", "gpt-fb")],
                                      "useFallback": True}},
                     keys={"k": {"resources": ["r"]}})
    b = e.conns["b"]["id"]
    gw.update(e, "resources", "r", routing={"enabled": True, "conditions": [
        group("shaky", mode="ADVANCED", expression="errorRate(5, 500) > 50",
              then={"provider": "openai", "model": "gpt-healthy", "connectionId": b})]})
    first = e.chat("r")
    assert first.header("x-vmx-model") == "gpt-fb", first       # the primary failed once
    r = e.chat("r")
    assert r.header("x-vmx-model") == "gpt-healthy", r
    assert r.header("x-vmx-event-0-type") == "routing"


SPLIT_SHARES = (1, 10, 30, 50, 70, 100)
SPLIT_REQUESTS = 400


def test_traffic_share_is_the_configured_one(gw, fake, fake2):
    """then.traffic sends that share of the matching requests to the group (SPEC.md §4):
    400 requests per share, within 5 standard deviations of the binomial (never flaky).
    A 31-bit draw against a 32-bit threshold sent all under 70 and 50, twice the share under
    30 and 10."""
    import math
    from concurrent.futures import ThreadPoolExecutor

    e = gw.provision(connections={"a": connection_for(fake), "b": connection_for(fake2)},
                     resources={f"split-{s}": {"model": ("a", "gpt-rest")} for s in SPLIT_SHARES},
                     keys={"k": {"resources": [f"split-{s}" for s in SPLIT_SHARES]}})
    split = {"provider": "openai", "model": "gpt-split", "connectionId": e.conns["b"]["id"]}
    for s in SPLIT_SHARES:
        gw.update(e, "resources", f"split-{s}", routing={"enabled": True, "conditions": [
            group("split", [], then=split, traffic=s)]})

    def model(res):
        r = e.chat(res)
        assert r.status == 200, r
        return r.header("x-vmx-model")

    with ThreadPoolExecutor(4) as pool:
        for s in SPLIT_SHARES:
            models = list(pool.map(model, [f"split-{s}"] * SPLIT_REQUESTS))
            assert set(models) <= {"gpt-split", "gpt-rest"}, set(models)
            taken, p = models.count("gpt-split"), s / 100
            bound = 5 * math.sqrt(SPLIT_REQUESTS * p * (1 - p)) + 1
            assert abs(taken - SPLIT_REQUESTS * p) <= bound, \
                f"traffic {s}: {taken} of {SPLIT_REQUESTS} requests to the split"
