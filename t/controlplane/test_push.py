"""The config channel: snapshots pushed to data planes, reconciliation,
and GET /api/v1/dataplanes."""
import hashlib
import time

from conftest import FakeDataPlane
from cphelpers import env_path, unique

SNAPSHOT_KEYS = {"version", "environments", "connections", "resources", "apiKeys",
                 "poolDefinitions", "prices"}
ENV_KEYS = {"id", "workspaceId", "name", "storePayload", "auditRequired"}
CONN_KEYS = {"id", "workspaceId", "environmentId", "name", "provider", "baseUrl",
             "addresses", "credentials", "allowedModels", "capacity", "timeouts"}
RES_KEYS = {"id", "workspaceId", "environmentId", "name", "model", "fallbackModels",
            "useFallback", "secondaryModels", "routing", "enforceCapacity", "capacity",
            "timeouts"}
KEY_KEYS = {"id", "workspaceId", "environmentId", "name", "keyHash", "enabled",
            "resources", "labels", "enforceCapacity", "capacity", "expiresAt",
            "previousKeyHash", "previousKeyExpiresAt"}


def by_id(items, id_):
    return next((i for i in items if i["id"] == id_), None)


def test_snapshot_pushed_after_change(api, env, cp_stack):
    dp = cp_stack.dataplane
    secret = "sk-push-" + unique("s")
    c = api.create_connection(env[0], env[1], name="local", provider="openai",
                              config={"apiKey": secret, "baseUrl": "http://127.0.0.1:9/v1"},
                              allowedModels=["gpt-4o-mini"],
                              capacity=[{"period": "minute", "requests": 5}])
    named = api.create_connection(env[0], env[1], name="named", provider="groq",
                                  config={"apiKey": "gk", "baseUrl": "http://localhost:8181"})
    default = api.create_connection(env[0], env[1], name="default", provider="anthropic",
                                    config={"apiKey": "ak"})
    r = api.create_resource(env[0], env[1], name="chat",
                            model={"provider": "openai", "model": "gpt-4o-mini",
                                   "connectionId": c["id"]},
                            fallbackModels=[{"provider": "groq", "model": "llama",
                                             "connectionId": named["id"]}])
    k = api.create_api_key(env[0], env[1], name="ci", resources=[r["id"]],
                           labels={"team": "x"})

    snap = dp.wait_for(lambda s: by_id(s["apiKeys"], k["id"]) is not None)
    assert set(snap) == SNAPSHOT_KEYS
    version = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    assert isinstance(snap["version"], int) and 0 < snap["version"] <= version

    e = by_id(snap["environments"], env[1])
    assert set(e) == ENV_KEYS
    assert e["workspaceId"] == env[0] and e["name"] == "production" and e["storePayload"]

    sc = by_id(snap["connections"], c["id"])
    assert set(sc) == CONN_KEYS
    assert sc["credentials"] == {"apiKey": secret}
    assert sc["baseUrl"] == "http://127.0.0.1:9/v1" and sc["addresses"] == []
    assert sc["provider"] == "openai" and sc["allowedModels"] == ["gpt-4o-mini"]
    assert sc["capacity"] == [{"period": "minute", "requests": 5, "enabled": True}]
    assert sc["workspaceId"] == env[0] and sc["environmentId"] == env[1]

    sn = by_id(snap["connections"], named["id"])
    assert "127.0.0.1:8181" in sn["addresses"]
    assert all(a.rsplit(":", 1)[1] == "8181" for a in sn["addresses"])
    sd = by_id(snap["connections"], default["id"])
    assert sd["baseUrl"] == "https://api.anthropic.com"
    assert sd["credentials"] == {"apiKey": "ak"}

    sr = by_id(snap["resources"], r["id"])
    assert set(sr) == RES_KEYS
    assert sr["model"] == r["model"] and sr["fallbackModels"] == r["fallbackModels"]
    assert sr["routing"] == {"enabled": False, "conditions": []} and sr["useFallback"]

    sk = by_id(snap["apiKeys"], k["id"])
    assert set(sk) == KEY_KEYS
    assert sk["keyHash"] == hashlib.sha256(k["key"].encode()).hexdigest()
    assert sk["resources"] == [r["id"]] and sk["labels"] == {"team": "x"}
    assert sk["enabled"] is True

    assert dp.unauthorized == 0
    # the pushed credentials never reach the log
    assert secret not in cp_stack.cp.log_text()

    # a deletion is pushed too
    status, _, _ = api.request("DELETE", env_path(env, f"/api-keys/{k['id']}"))
    assert status == 204
    dp.wait_for(lambda s: s["version"] > snap["version"]
                and by_id(s["apiKeys"], k["id"]) is None)


def test_every_change_bumps_the_version(api, env, cp_stack):
    before = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    status, _, _ = api.request("PATCH", f"/api/v1/workspaces/{env[0]}", {"description": "d"})
    assert status == 200
    after = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    assert after > before
    cp_stack.dataplane.wait_for(lambda s: s["version"] >= after)


def test_price_change_is_pushed(api, cp_stack):
    """Budgets: a price is in the snapshot from its change on, in micro-dollars, the one
    in effect and a later one; an earlier one of the same model is not."""
    model = unique("priced")
    ids = []
    for valid_from, amount in (("2025-01-01T00:00:00Z", 1), ("2025-06-01T00:00:00Z", 2.5),
                               ("2099-01-01T00:00:00Z", 3)):
        status, price, _ = api.request("POST", "/api/v1/prices",
                                       {"provider": "openai", "model": model, "input": amount,
                                        "output": 0.000001, "validFrom": valid_from})
        assert status == 201, price
        ids.append(price["id"])
    snap = cp_stack.dataplane.wait_for(
        lambda s: len([p for p in s.get("prices", []) if p["model"] == model]) == 2)
    got = [p for p in snap["prices"] if p["model"] == model]
    assert [p["id"] for p in got] == ids[1:], got
    assert got[0] == {"id": ids[1], "provider": "openai", "model": model,
                      "validFrom": 1748736000, "inputMicros": 2500000, "outputMicros": 1,
                      "cachedInputMicros": None}, got


def test_reconcile_repushes_when_version_differs(api, env, cp_stack):
    dp = cp_stack.dataplane
    api.create_workspace(unique("reconcile"))
    version = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    dp.wait_for(lambda s: s["version"] == version)
    dp.forget()            # the data plane restarted empty: it now runs version 0
    snap = dp.wait_for(lambda s: s["version"] == version, timeout=10)
    assert set(snap) == SNAPSHOT_KEYS


def test_dataplanes_status(api, cp_stack):
    version = int(cp_stack.pg.psql("SELECT version FROM config_version"))
    cp_stack.dataplane.wait_for(lambda s: s["version"] == version)
    deadline = time.time() + 10
    while True:
        status, body, _ = api.request("GET", "/api/v1/dataplanes")
        assert status == 200
        planes = {p["url"]: p for p in body["data"]}
        live = planes[cp_stack.dataplane.url]
        if live["status"] == "in-sync" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert body["total"] == 2
    assert live["status"] == "in-sync", live
    assert live["version"] == live["desiredVersion"]
    assert live["lastSeenAt"] and live["lastError"] is None

    dead = planes[cp_stack.dead_dataplane_url]
    assert dead["status"] == "unreachable"
    assert dead["version"] is None and dead["lastSeenAt"] is None
    assert dead["lastError"]

    status, _, _ = api.request("GET", "/api/v1/dataplanes", token=None)
    assert status == 401


def test_api_not_blocked_by_dead_dataplane(api):
    start = time.time()
    for i in range(5):
        api.create_workspace(unique("fast"))
    assert time.time() - start < 5


def test_a_plane_still_compiling_is_not_pushed_the_same_again(api, env, cp_stack):
    """A data plane that holds the version but whose workers still compile it (its PUT
    answered after 5 s, "received" ahead of "version") is not sent it again: at scale each
    push is a build of the whole snapshot and its transfer, and would start the compile
    over. Once it runs it, the next change is pushed as usual."""
    dp = cp_stack.dataplane
    with dp.lock:
        dp.compiling = True
    try:
        k = api.create_api_key(env[0], env[1], name="slow-" + unique("k"), resources=[])
        dp.wait_for(lambda s: by_id(s["apiKeys"], k["id"]) is not None)
        with dp.lock:
            pushed = len(dp.snapshots)
            held = dp.received
        time.sleep(3.5)   # reconcile rounds every second
        with dp.lock:
            assert len(dp.snapshots) == pushed, "the version it holds was pushed again"
            assert dp.received == held
            dp.version = dp.received
    finally:
        with dp.lock:
            dp.compiling = False
    k2 = api.create_api_key(env[0], env[1], name="next-" + unique("k"), resources=[])
    dp.wait_for(lambda s: by_id(s["apiKeys"], k2["id"]) is not None)


def test_planes_are_pushed_at_once(api, env, cp_stack):
    """A round's pushes run side by side: with three planes whose PUT takes 1.5 s (at scale,
    every worker's compile), a change reaches them all in about 1.5 s, not 4.5."""
    token = cp_stack.token_file.read_text().strip()
    extra = [FakeDataPlane(token).start() for _ in range(2)]
    planes = [cp_stack.dataplane] + extra
    try:
        for p in extra:
            status, body, _ = api.request("POST", "/api/v1/dataplanes/announce", {"url": p.url},
                                          token=token)
            assert status == 204, body
        version = int(cp_stack.pg.psql("SELECT version FROM config_version"))
        for p in planes:
            p.wait_for(lambda s: s["version"] == version)
        for p in planes:
            p.put_delay = 1.5
        k = api.create_api_key(env[0], env[1], name="wide-" + unique("k"), resources=[])
        t0 = time.time()
        for p in planes:
            p.wait_for(lambda s: by_id(s["apiKeys"], k["id"]) is not None)
        took = time.time() - t0
        assert took < 3.5, f"three 1.5 s PUTs took {took:.1f} s: one after the other"
    finally:
        for p in planes:
            p.put_delay = 0
        for p in extra:
            cp_stack.pg.psql(f"DELETE FROM dataplanes WHERE url = '{p.url}'")
            p.stop()
