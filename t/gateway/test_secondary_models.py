"""vmx.secondaryModelIndex (SPEC §2): the client picks resource.secondaryModels[i] (index 0
included) as the first model instead of the primary. Routing is skipped (the client chose),
the resource's fallback chain follows the chosen model as it follows the primary, and capacity
is that of the chosen model's connection; a value that names no secondary model is a 400 that
names the field."""
import time

import pytest

from gwutil import connection_for


@pytest.fixture(autouse=True)
def _away_from_a_minute_boundary():
    """Capacity windows are aligned to the minute: a test must not straddle two."""
    left = 60 - time.time() % 60
    if left < 20:
        time.sleep(left + 0.1)


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    one_a_minute = [{"period": "minute", "requests": 1}]
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2),
                      "tiny": connection_for(fake2, capacity=one_a_minute)},
        resources={
            "sec": {"model": ("a", "gpt-primary"),
                    "secondary": [("b", "gpt-sec0"), ("a", "fail-503")],
                    "fallback": [("b", "gpt-fb")]},
            "sec-nofb": {"model": ("a", "gpt-primary"), "secondary": [("a", "fail-503")],
                         "fallback": [("b", "gpt-fb")], "useFallback": False},
            "sec-tiny": {"model": ("a", "gpt-primary"), "secondary": [("tiny", "gpt-tiny")]},
            "none": {"model": ("a", "gpt-primary")},
        },
        keys={"k": {"resources": ["sec", "sec-nofb", "sec-tiny", "none"]}})


def pick(env, resource, index, **kw):
    return env.chat(resource, body={"vmx": {"secondaryModelIndex": index}}, **kw)


@pytest.mark.parametrize("index", [-1, 2, 1.5, "0", True, [0], {"i": 0}])
def test_an_index_that_names_no_secondary_model_is_a_400(env, index):
    r = pick(env, "sec", index)
    assert r.status == 400, r
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_request", err
    assert "vmx.secondaryModelIndex" in err["message"], err


def test_a_resource_without_secondary_models_refuses_index_0(env):
    r = pick(env, "none", 0)
    assert r.status == 400 and "vmx.secondaryModelIndex" in r.json()["error"]["message"], r


def test_null_is_no_choice(env):
    r = pick(env, "sec", None)
    assert r.status == 200 and r.header("x-vmx-model") == "gpt-primary", r


def test_the_fallback_chain_follows_the_chosen_model(env, fake, fake2):
    r = pick(env, "sec", 1)             # fail-503, then the resource's fallback
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "gpt-fb", r
    assert fake2.last().body["model"] == "gpt-fb"
    # without fallback the chosen model's failure is the answer
    r = pick(env, "sec-nofb", 0)
    assert r.status == 503, r
    assert r.header("x-vmx-model") == "fail-503", r


def test_capacity_is_the_chosen_models_connection(env):
    r = pick(env, "sec-tiny", 0)
    assert r.status == 200 and r.header("x-vmx-model") == "gpt-tiny", r
    r = pick(env, "sec-tiny", 0)
    assert r.status == 429, r
    assert r.json()["error"]["code"] == "resource_exhausted", r.json()
    assert "has reached its limit of 1 requests per minute" in r.json()["error"]["message"]
    # the primary's connection has no such limit: the same resource still serves
    r = env.chat("sec-tiny")
    assert r.status == 200 and r.header("x-vmx-model") == "gpt-primary", r
