"""One bad object never freezes the configuration (issue: "Configuration must never freeze").

The data plane and the control plane compile snapshots with the same code (lib/vmx_config.c).
A connection whose host does not resolve is accepted (the name may resolve later, or only on
the data plane's network), and the data plane runs that connection alone as unavailable: every
other change of every workspace still applies. What the data plane would refuse as invalid, the
API refuses before it commits, naming the field.
"""
import time
import uuid

import pytest

from gwutil import connection_for

# .invalid never resolves (RFC 6761)
TYPO = {"provider": "openai",
        "config": {"apiKey": "sk-typo", "baseUrl": "http://vllm-typo.invalid:8000/v1"}}


def wait_for(predicate, timeout, step=0.05):
    """Seconds until predicate() held, or None when it did not within timeout."""
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return time.time() - start
        time.sleep(step)
    return None


@pytest.fixture()
def typo_env(gw):
    """Workspace B with a connection to a host that does not resolve, and a resource on it."""
    b = gw.provision(connections={"typo": TYPO},
                     resources={"chat": {"model": ("typo", "llama")}},
                     keys={"k": {"resources": ["chat"]}})
    yield b
    # the session's other tests should not see it
    for name, r in b.res.items():
        gw.api.request("DELETE", f"{b.prefix}/resources/{r['id']}")
    gw.api.request("DELETE", f"{b.prefix}/connections/{b.conns['typo']['id']}")


def test_unresolvable_host_confined_to_its_connection(gw, fake, typo_env):
    b = typo_env
    a = gw.provision(connections={"a": connection_for(fake)},
                     resources={"chat": {"model": ("a", "gpt-a")}},
                     keys={"old": {"resources": ["chat"]}})
    assert a.chat("chat", key=a.key("old")).status == 200

    # workspace A changes: a key created and another deleted, both take effect
    new = gw.api.create_api_key(a.ws_id, a.env_id, name="new", resources=[a.res["chat"]["id"]],
                                enabled=True)
    st, _, _ = gw.api.request("DELETE", f"{a.prefix}/api-keys/{a.key_objs['old']['id']}")
    assert st in (200, 204)
    assert wait_for(lambda: a.chat("chat", key=new["key"]).status == 200, 5) is not None
    assert wait_for(lambda: a.chat("chat", key=a.key("old")).status == 401, 5) is not None

    # B's requests fail over (no fallback here): 502 naming the connection and the reason
    r = b.chat("chat")
    assert r.status == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "provider_unavailable"
    assert b.conns["typo"]["id"] in err["message"] and "did not resolve" in err["message"]

    # the connection and the data planes say why
    st, conn, _ = gw.api.request("GET", f"{b.prefix}/connections/{b.conns['typo']['id']}")
    assert st == 200
    problems = conn["dataplaneProblems"]
    assert problems and problems[0]["field"] == "baseUrl"
    assert "vllm-typo.invalid" in problems[0]["message"] and problems[0]["invalid"] is False
    st, planes, _ = gw.api.request("GET", "/api/v1/dataplanes")
    assert any(p["id"] == b.conns["typo"]["id"] for d in planes["data"] for p in d["problems"])

    # a connection that works says nothing
    st, conn, _ = gw.api.request("GET", f"{a.prefix}/connections/{a.conns['a']['id']}")
    assert conn["dataplaneProblems"] == []


def test_unresolvable_fallback_skipped(gw, fake, typo_env):
    """A chain whose first entry cannot reach its provider goes on to the next."""
    env = gw.provision(connections={"typo": TYPO, "a": connection_for(fake)},
                       resources={"chat": {"model": ("typo", "llama"), "fallback": [("a", "gpt-fb")]}},
                       keys={"k": {"resources": ["chat"]}})
    try:
        r = env.chat("chat")
        assert r.status == 200, r.text
        assert r.json()["model"] == "gpt-fb"
    finally:
        gw.api.request("DELETE", f"{env.prefix}/resources/{env.res['chat']['id']}")
        gw.api.request("DELETE", f"{env.prefix}/connections/{env.conns['typo']['id']}")


@pytest.mark.parametrize("base_url", [
    "http://user:secret@10.0.0.1/v1",           # user information: no host the module can use
    "http://10.0.0.1:99999/v1",                 # no such port
    "http://[::1/v1",                           # an IPv6 literal without its bracket
])
def test_api_refuses_what_a_data_plane_would(gw, base_url):
    """Before: 201, and from then on the data plane refused every snapshot."""
    env = gw.provision()
    st, body, _ = gw.api.request("POST", f"{env.prefix}/connections",
                                 {"name": "bad-" + uuid.uuid4().hex[:6], "provider": "openai",
                                  "config": {"apiKey": "sk", "baseUrl": base_url}})
    assert st == 400, body
    assert body["error"]["details"].get("field") in ("baseUrl", "config.baseUrl")


def test_revocation_bound(gw, fake):
    """README: a deleted or disabled key stops working within a second when the data planes are
    reachable (the change is pushed at once; the reconcile interval bounds a missed push)."""
    env = gw.provision(connections={"a": connection_for(fake)},
                       resources={"chat": {"model": ("a", "gpt-a")}},
                       keys={"k1": {"resources": ["chat"]}, "k2": {"resources": ["chat"]}})
    assert env.chat("chat", key=env.key("k1")).status == 200
    st, _, _ = gw.api.request("DELETE", f"{env.prefix}/api-keys/{env.key_objs['k1']['id']}")
    assert st in (200, 204)
    took = wait_for(lambda: env.chat("chat", key=env.key("k1")).status == 401, 5, step=0.01)
    assert took is not None and took < 1.0, took
    st, _, _ = gw.api.request("PATCH", f"{env.prefix}/api-keys/{env.key_objs['k2']['id']}",
                              {"enabled": False})
    assert st == 200
    took = wait_for(lambda: env.chat("chat", key=env.key("k2")).status == 401, 5, step=0.01)
    assert took is not None and took < 1.0, took


def test_check_names_the_object_it_would_break(gw):
    """The check before the commit: its message names the object, the field and the fault."""
    env = gw.provision()
    st, body, _ = gw.api.request("POST", f"{env.prefix}/connections",
                                 {"name": "userinfo", "provider": "openai",
                                  "config": {"apiKey": "sk", "baseUrl": "http://u:p@10.0.0.1/v1"}})
    assert st == 400, body
    msg = body["error"]["message"]
    assert "would leave connection" in msg and "baseUrl" in msg, msg
