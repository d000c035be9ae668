"""Configuration reaching the data plane: changes apply without an nginx reload,
the admin endpoint's contract (docs/ARCHITECTURE.md "Config channel"), reload
and restart (the last config is served from the disk copy while the control
plane is down), and the $vmx_* variables in the access log."""
import json
import re
import time

import pytest

from gwutil import Stream, connection_for, http_request

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2)},
        resources={"r": {"model": ("a", "model-one")}, "s": {"model": ("a", "model-s")}},
        keys={"k": {"resources": ["r"]}, "k2": {"resources": ["r"]}},
    )


def test_resource_update_applies_without_reload(gw, env, fake, fake2):
    workers = gw.nginx.worker_pids()
    r = env.chat("r", key=env.key("k"))
    assert r.status == 200 and r.header("x-vmx-model") == "model-one", r
    assert fake.last().body["model"] == "model-one"
    gw.update(env, "resources", "r", model={"provider": "openai", "model": "model-two",
                                             "connectionId": env.conns["b"]["id"]})
    r = env.chat("r", key=env.key("k"))
    assert r.status == 200, r
    assert r.header("x-vmx-model") == "model-two", r
    assert r.header("x-vmx-connection-id") == env.conns["b"]["id"]
    assert fake2.last().body["model"] == "model-two"
    assert r.json()["choices"][0]["message"]["content"] == "Hello from model-two! You said: hello"
    assert gw.nginx.worker_pids() == workers, "nginx workers changed: a reload happened"
    # every worker runs the new version (several requests land on both workers)
    for _ in range(10):
        assert env.chat("r", key=env.key("k")).header("x-vmx-model") == "model-two"


def test_key_changes_apply(gw, env):
    assert env.chat("s", key=env.key("k2")).status == 403
    gw.update(env, "api-keys", "k2", resources=[env.res["r"]["id"], env.res["s"]["id"]])
    r = env.chat("s", key=env.key("k2"))
    assert r.status == 200, r
    ids = {m["id"] for m in http_request(gw.url, "GET", "/v1/models",
                                          headers={"x-api-key": env.key("k2")}).json()["data"]}
    assert ids == {"r", "s"}
    gw.update(env, "api-keys", "k2", enabled=False)
    for _ in range(6):
        r = env.chat("r", key=env.key("k2"))
        assert r.status == 401, r


def test_connection_secret_update(gw, fake):
    """A new apiKey for a connection is what the provider receives next."""
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"x": {"model": ("a", "gpt-x")}},
                     keys={"k": {"resources": ["x"]}})
    old = fake.api_key
    try:
        fake.api_key = "sk-rotated"
        assert e.chat("x").status != 200, "the fake refuses the old key"
        gw.update(e, "connections", "a", config={"apiKey": "sk-rotated", "baseUrl": fake.url})
        r = e.chat("x")
        assert r.status == 200, r
        assert fake.last().headers["authorization"] == "Bearer sk-rotated"
    finally:
        fake.api_key = old


def test_deleted_key_is_refused(gw, api, env, fake):
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"x": {"model": ("a", "gpt-x")}},
                     keys={"gone": {"resources": ["x"]}, "stays": {"resources": ["x"]}})
    assert e.chat("x", key=e.key("gone")).status == 200
    v0 = gw.nginx.config_version()
    st, body, _ = api.request("DELETE", f"{e.prefix}/api-keys/{e.key_objs['gone']['id']}")
    assert st == 204, body
    gw.wait_version_above(v0)
    assert e.chat("x", key=e.key("gone")).status == 401
    assert e.chat("x", key=e.key("stays")).status == 200


# ------------------------------------------------------------------ admin endpoint
def test_config_endpoint_requires_token(gw):
    for h in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {gw.nginx.token}"}):
        r = http_request(gw.url, "GET", "/vmx/config", headers=h)
        assert r.status == 401, r
        r = http_request(gw.url, "PUT", "/vmx/config", b'{"version": 999999}', h)
        assert r.status == 401, r


def test_config_endpoint_get(gw, env):
    r = http_request(gw.url, "GET", "/vmx/config", headers={"Authorization": f"Bearer {gw.nginx.token}"})
    assert r.status == 200, r
    b = r.json()
    assert isinstance(b["version"], int) and b["version"] > 0
    assert b["received"] >= b["version"], b   # held; run once every worker compiled it
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", b["loadedAt"]), b


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"version": "x"}', b'{"version": 5, "apiKeys": 7}',
                                  b'{"version": 99999999, "resources": [{"id": 1}]}'])
def test_invalid_snapshot_is_refused(gw, env, body):
    h = {"Authorization": f"Bearer {gw.nginx.token}"}
    v0 = gw.nginx.config_version()
    r = http_request(gw.url, "PUT", "/vmx/config", body, h)
    assert r.status == 400, r
    assert "error" in r.json()
    assert gw.nginx.config_version() == v0
    assert env.chat("r", key=env.key("k")).status == 200


# ------------------------------------------------------------------ access log
def test_access_log_variables(gw, env):
    r = env.chat("r", key=env.key("k"), body={"stream": True})
    assert r.status == 200
    rid = r.header("x-vmx-request-id")
    line = None
    for _ in range(50):
        lines = [ln for ln in gw.nginx.access_log().splitlines() if f"rid={rid} " in ln]
        if lines:
            line = lines[-1]
            break
        time.sleep(0.1)
    assert line, f"no access log line with rid={rid}:\n{gw.nginx.access_log()[-2000:]}"
    assert " resource=r " in line, line
    assert " provider=openai " in line, line
    assert f" model={r.header('x-vmx-model')} " in line, line
    m = re.search(r" prompt=(\d+) completion=(\d+) attempts=(\d+) ", line)
    assert m, line
    assert int(m.group(1)) > 0 and int(m.group(2)) > 0 and int(m.group(3)) == 1, line


# ------------------------------------------------------------------ reload and restart
def test_reload_keeps_config(gw, env):
    gw.nginx.reload()
    r = env.chat("r", key=env.key("k"))    # no waiting: the zone survives a reload
    assert r.status == 200, r


def test_disk_copy_is_encrypted(gw, env, fake, fake2):
    data = gw.nginx.snapshot_path.read_bytes()
    assert data, "no disk copy"
    for secret in (fake.api_key, fake2.api_key, "sk-rotated"):
        assert secret.encode() not in data, f"{secret} in clear in the disk copy"
    assert b'"resources"' not in data


def test_restart_without_control_plane(stack, gw, env):
    """nginx restarted while the control plane is down serves the last config from disk."""
    v = gw.nginx.config_version()
    model = env.chat("r", key=env.key("k")).header("x-vmx-model")
    stack.cp.stop()
    try:
        gw.nginx.restart()
        assert gw.nginx.config_version() == v
        for _ in range(4):
            r = env.chat("r", key=env.key("k"))
            assert r.status == 200, r
            assert r.header("x-vmx-model") == model, r
    finally:
        stack.cp.start()
    # and the control plane catches up with it again
    gw.wait_synced(env, v - 1)


def test_config_change_during_streams(gw, fake):
    """Streams in flight keep working while new config versions arrive and are compiled."""
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"slow": {"model": ("a", "slow-stream")}, "x": {"model": ("a", "gpt-x")}},
                     keys={"k": {"resources": ["slow", "x"]}})
    fake.stream_delay = 0.15
    streams = [Stream(gw.url, "/v1/chat/completions", {"model": "slow", "stream": True, "messages": MSG},
                      {"Authorization": f"Bearer {e.key()}"}) for _ in range(4)]
    try:
        for s in streams:
            assert s.status == 200
            assert s.next_event()
        for i in range(3):
            gw.update(e, "resources", "x", description=f"change {i}")
            assert e.chat("x").status == 200       # this worker compiles the new version
        for s in streams:
            rest = s.rest()
            assert rest and rest[-1] == "[DONE]", rest
    finally:
        for s in streams:
            s.close()


def test_reload_during_stream(gw, fake):
    """A graceful reload lets a stream in flight finish."""
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"slow": {"model": ("a", "slow-stream")}},
                     keys={"k": {"resources": ["slow"]}})
    fake.stream_delay = 0.2
    s = Stream(gw.url, "/v1/chat/completions", {"model": "slow", "stream": True, "messages": MSG},
               {"Authorization": f"Bearer {e.key()}"})
    try:
        assert s.status == 200
        assert s.next_event()
        gw.nginx.proc.send_signal(__import__("signal").SIGHUP)
        rest = s.rest()
        assert rest and rest[-1] == "[DONE]", rest
    finally:
        s.close()
    time.sleep(0.5)
    assert e.chat("slow").status == 200
