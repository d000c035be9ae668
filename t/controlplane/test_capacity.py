"""Discovered capacity: the control plane collects GET /vmx/capacity from the
data planes on each reconcile and merges it into the connections, newest
per model, without a config version."""
import time
import uuid

from cphelpers import env_path, openai_connection


def entry(conn_id, model, updated_at, requests=None, tokens=None):
    e = {"connectionId": conn_id, "model": model, "updatedAt": updated_at}
    if requests is not None:
        e["requests"] = requests
    if tokens is not None:
        e["tokens"] = tokens
    return e


def get_connection(api, env, conn_id):
    status, body, _ = api.request("GET", env_path(env, f"/connections/{conn_id}"))
    assert status == 200, body
    return body


def wait_discovered(api, env, conn_id, predicate, timeout=10.0):
    deadline = time.time() + timeout
    while True:
        found = get_connection(api, env, conn_id)["discoveredCapacity"]
        if predicate(found) or time.time() > deadline:
            assert predicate(found), found
            return found
        time.sleep(0.1)


def version(cp_stack):
    return int(cp_stack.pg.psql("SELECT version FROM config_version"))


def row_version(cp_stack, conn_id):
    """The row's xmin: it changes with every write of the row."""
    return cp_stack.pg.psql(f"SELECT xmin FROM connections WHERE id = '{conn_id}'")


def test_discovered_capacity_merged(api, env, cp_stack):
    dp = cp_stack.dataplane
    c1 = openai_connection(api, env)
    c2 = api.create_connection(env[0], env[1], name="claude", provider="anthropic",
                               config={"apiKey": "ak"})
    assert c1["discoveredCapacity"] == {}
    dp.wait_for(lambda s: any(c["id"] == c2["id"] for c in s["connections"]))
    before = version(cp_stack)

    dp.set_capacity([
        entry(c1["id"], "gpt-4o-mini", "2026-11-21T10:00:00Z", 500, 200000),
        entry(c1["id"], "gpt-4o-mini", "2026-11-21T09:00:00Z", 1, 1),     # older, same answer
        entry(c1["id"], "gpt-4o", "2026-11-21T10:00:00.250Z", requests=10),
        entry(c2["id"], "claude-3-5-haiku-latest", "2026-11-21T11:00:00+01:00", tokens=40000),
        entry(str(uuid.uuid4()), "gpt-4o", "2026-11-21T10:00:00Z", 1, 1),  # no such connection
        entry("not-a-uuid", "gpt-4o", "2026-11-21T10:00:00Z", 1, 1),
        entry(c1["id"], "bad-limit", "2026-11-21T10:00:00Z", -1),
        entry(c1["id"], "no-limit", "2026-11-21T10:00:00Z"),
        entry(c1["id"], "bad-time", "yesterday", 1),
        {"connectionId": c1["id"]},
        "not an object",
    ])
    found = wait_discovered(api, env, c1["id"], lambda d: len(d.get("models", {})) == 2)
    assert found == {"models": {
        "gpt-4o-mini": {"capacity": [{"period": "minute", "requests": 500, "tokens": 200000,
                                      "enabled": True}],
                        "updatedAt": "2026-11-21T10:00:00.000Z"},
        "gpt-4o": {"capacity": [{"period": "minute", "requests": 10, "enabled": True}],
                   "updatedAt": "2026-11-21T10:00:00.250Z"}}}
    found2 = wait_discovered(api, env, c2["id"], lambda d: bool(d))
    assert found2 == {"models": {"claude-3-5-haiku-latest": {
        "capacity": [{"period": "minute", "tokens": 40000, "enabled": True}],
        "updatedAt": "2026-11-21T10:00:00.000Z"}}}

    # observed state, not config: no new version, no push; the same answer
    # again writes nothing
    xmin = row_version(cp_stack, c1["id"])
    pushed = len(dp.snapshots)
    dp.wait_capacity_gets(2)
    assert version(cp_stack) == before
    assert row_version(cp_stack, c1["id"]) == xmin
    assert len(dp.snapshots) == pushed

    # lists show it too; the snapshot does not carry it
    status, body, _ = api.request("GET", env_path(env, "/connections"))
    assert status == 200
    assert {c["id"]: c for c in body["data"]}[c1["id"]]["discoveredCapacity"] == found
    assert all("discoveredCapacity" not in c for c in dp.last()["connections"])

    # an older report changes nothing; a newer one replaces its model only
    dp.set_capacity([entry(c1["id"], "gpt-4o-mini", "2026-11-21T09:59:59Z", 1, 1)])
    dp.wait_capacity_gets(2)
    assert get_connection(api, env, c1["id"])["discoveredCapacity"] == found
    dp.set_capacity([entry(c1["id"], "gpt-4o-mini", "2026-11-21T10:05:00Z", 600, 250000)])
    newer = wait_discovered(api, env, c1["id"], lambda d: d["models"]["gpt-4o-mini"]
                            ["capacity"][0]["requests"] == 600)
    assert newer["models"]["gpt-4o"] == found["models"]["gpt-4o"]
    assert newer["models"]["gpt-4o-mini"] == {
        "capacity": [{"period": "minute", "requests": 600, "tokens": 250000, "enabled": True}],
        "updatedAt": "2026-11-21T10:05:00.000Z"}
    assert version(cp_stack) == before

    # read-only on the API: a client sending it is refused
    status, body, _ = api.request("PATCH", env_path(env, f"/connections/{c1['id']}"),
                                  {"discoveredCapacity": {"models": {}}, "description": "d"})
    assert status == 400 and body["error"]["details"]["field"] == "discoveredCapacity"
    assert get_connection(api, env, c1["id"])["discoveredCapacity"] == newer
    dp.set_capacity([])


def test_dataplane_without_capacity_endpoint(api, env, cp_stack):
    dp = cp_stack.dataplane
    c = openai_connection(api, env)
    dp.set_capacity([entry(c["id"], "gpt-4o-mini", "2026-11-21T10:00:00Z", 500, 200000)])
    found = wait_discovered(api, env, c["id"], lambda d: bool(d))
    try:
        dp.set_capacity(None)          # an older module: 404
        dp.wait_capacity_gets(2)
        assert get_connection(api, env, c["id"])["discoveredCapacity"] == found

        # the config channel goes on as before
        status, _, _ = api.request("PATCH", env_path(env, f"/connections/{c['id']}"),
                                   {"description": "after 404"})
        assert status == 200
        target = version(cp_stack)
        dp.wait_for(lambda s: s["version"] >= target)
        deadline = time.time() + 10
        while True:
            status, body, _ = api.request("GET", "/api/v1/dataplanes")
            live = {p["url"]: p for p in body["data"]}[dp.url]
            if live["status"] == "in-sync" or time.time() > deadline:
                break
            time.sleep(0.1)
        assert live["status"] == "in-sync" and live["lastError"] is None, live
        assert "GET /vmx/capacity: HTTP 404" in cp_stack.cp.log_text()
    finally:
        dp.set_capacity([])
