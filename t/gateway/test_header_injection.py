"""No CR, LF or NUL of the data reaches a header the data plane writes (a model name, a
routing group id, a provider's text in the answer's headers; a connection's credentials in
the provider request's head). A data plane of its own, without control plane, is given a
snapshot whose values carry "\r\nSet-Cookie: ..." straight through its config endpoint, as a
control plane that let them through would."""
import hashlib
import json
import uuid

import pytest

from gwutil import free_port, http_request
from harness.control_plane import write_secret_files
from harness.nginx import Nginx

INJECT = "\r\nSet-Cookie: x=1"
KEY = "vmx-" + "k" * 43


def snapshot(fake, version=1):
    env, ws = str(uuid.uuid4()), str(uuid.uuid4())
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())

    def conn(cid, api_key):
        return {"id": cid, "workspaceId": ws, "environmentId": env, "name": "c" + cid[:8],
                "provider": "openai", "baseUrl": fake.url, "addresses": [],
                "credentials": {"apiKey": api_key}, "allowedModels": [], "capacity": []}

    def resource(name, model, cid, routing=None):
        return {"id": str(uuid.uuid4()), "workspaceId": ws, "environmentId": env, "name": name,
                "model": {"provider": "openai", "model": model, "connectionId": cid},
                "fallbackModels": [], "useFallback": True, "secondaryModels": [],
                "routing": routing or {"enabled": False, "conditions": []},
                "enforceCapacity": False, "capacity": []}

    routed = {"enabled": True, "conditions": [{
        "type": "group", "id": "group" + INJECT, "enabled": True, "operator": "AND",
        "conditions": [], "mode": "UI", "expression": "", "action": "CALL_MODEL",
        "then": {"provider": "openai", "model": "routed" + INJECT, "connectionId": good}}]}
    resources = [resource("plain", "gpt" + INJECT, good),
                 resource("routed", "gpt-primary" + INJECT, good, routed),
                 resource("bad-key", "gpt-bad-key", bad)]
    return {"version": version,
            "environments": [{"id": env, "workspaceId": ws, "name": "e", "storePayload": True,
                              "auditRequired": False}],
            "connections": [conn(good, fake.api_key), conn(bad, fake.api_key + INJECT)],
            "resources": resources,
            "apiKeys": [{"id": str(uuid.uuid4()), "workspaceId": ws, "environmentId": env,
                         "name": "k", "keyHash": hashlib.sha256(KEY.encode()).hexdigest(),
                         "enabled": True, "resources": [r["id"] for r in resources],
                         "labels": {"team": "a" + INJECT}, "enforceCapacity": False,
                         "capacity": []}],
            "poolDefinitions": []}


@pytest.fixture(scope="module")
def dp(built, tmp_path_factory, pki, fake):
    base = tmp_path_factory.mktemp("inject")
    token_file, _ = write_secret_files(base / "secrets")
    n = Nginx(base / "nginx", free_port(), token_file, pki[0])
    n.start()
    try:
        r = http_request(n.url, "PUT", "/vmx/config", json.dumps(snapshot(fake)),
                         {"Authorization": f"Bearer {n.token}"})
        assert r.status == 200, r
        yield n
    finally:
        n.stop()


def chat(dp, model, **body):
    b = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    b.update(body)
    return http_request(dp.url, "POST", "/v1/chat/completions", b,
                        {"Authorization": f"Bearer {KEY}"})


def assert_no_injected_header(r):
    names = [n.lower() for n in r.headers.keys()]
    assert "set-cookie" not in names, r.headers
    for name, value in r.headers.items():
        assert "\r" not in value and "\n" not in value and "\0" not in value, (name, value)


def test_model_name_never_makes_a_header(dp, fake):
    r = chat(dp, "plain")
    assert r.status == 200, r
    assert_no_injected_header(r)
    assert r.header("x-vmx-model") == "gpt  Set-Cookie: x=1"
    assert fake.last().body["model"] == "gpt" + INJECT      # the provider gets it as it is


def test_routing_group_and_models_never_make_a_header(dp):
    for stream in (False, True):
        r = chat(dp, "routed", stream=stream)
        assert r.status == 200, r
        assert_no_injected_header(r)
        assert r.header("x-vmx-event-0-routing-group-id") == "group  Set-Cookie: x=1"
        assert r.header("x-vmx-event-0-routing-original-model") == \
            "gpt-primary  Set-Cookie: x=1"


def test_credentials_never_make_a_provider_header(dp, fake):
    fake.clear()
    r = chat(dp, "bad-key")
    assert r.status == 502, r
    assert r.json()["error"]["code"] == "provider_unavailable"
    assert "control character" in r.json()["error"]["message"], r.json()
    assert_no_injected_header(r)
    assert fake.chat_requests() == []
