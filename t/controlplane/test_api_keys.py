"""API keys: shown once, stored as a hash, scoped to resources."""
import hashlib
import re
import uuid

from cphelpers import env_path, openai_connection


def make_resource(api, env, name="chat"):
    c = openai_connection(api, env)
    return api.create_resource(env[0], env[1], name=name,
                               model={"provider": "openai", "model": "m",
                                      "connectionId": c["id"]})


def test_key_shown_once_and_stored_hashed(api, env, cp_stack):
    r = make_resource(api, env)
    status, k, _ = api.request("POST", env_path(env, "/api-keys"),
                               {"name": "ci", "resources": [r["id"]],
                                "labels": {"team": "x"}})
    assert status == 201
    key = k["key"]
    assert re.fullmatch(r"vmx-[A-Za-z0-9_-]{43}", key)
    assert k["maskedKey"] == key[:8] + "..." + key[-4:]
    assert k["enabled"] is True and k["resources"] == [r["id"]]
    assert k["labels"] == {"team": "x"} and k["enforceCapacity"] is False
    assert k["capacity"] == []

    path = env_path(env, f"/api-keys/{k['id']}")
    status, got, _ = api.request("GET", path)
    assert status == 200 and "key" not in got and got["maskedKey"] == k["maskedKey"]
    status, lst, _ = api.request("GET", env_path(env, "/api-keys"))
    assert lst["total"] == 1 and "key" not in lst["data"][0]
    assert key not in str(lst)

    row = cp_stack.pg.psql(f"SELECT key_hash FROM api_keys WHERE id = '{k['id']}'")
    assert row == hashlib.sha256(key.encode()).hexdigest()
    dump = cp_stack.pg.psql("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert key not in dump
    assert key not in cp_stack.cp.log_text()


def test_key_update_and_delete(api, env):
    r = make_resource(api, env)
    k = api.create_api_key(env[0], env[1], name="ci")
    path = env_path(env, f"/api-keys/{k['id']}")
    status, upd, _ = api.request("PATCH", path, {
        "enabled": False, "resources": [r["id"]], "enforceCapacity": True,
        "capacity": [{"period": "month", "requests": 10}]})
    assert status == 200
    assert upd["enabled"] is False and upd["resources"] == [r["id"]]
    assert upd["maskedKey"] == k["maskedKey"] and upd["name"] == "ci"
    # deleting the resource removes it from the key
    status, _, _ = api.request("DELETE", env_path(env, f"/resources/{r['id']}"))
    assert status == 204
    assert api.request("GET", path)[1]["resources"] == []
    status, _, _ = api.request("DELETE", path)
    assert status == 204
    status, _, _ = api.request("GET", path)
    assert status == 404


def test_key_validation(api, env):
    r = make_resource(api, env)
    other = api.create_environment(env[0], "other")["id"]
    foreign = make_resource(api, (env[0], other))
    cases = [
        ({}, "name"),
        ({"name": "k", "resources": [r["id"], str(uuid.uuid4())]}, "resources[1]"),
        ({"name": "k", "resources": [foreign["id"]]}, "resources[0]"),
        ({"name": "k", "resources": ["nope"]}, "resources[0]"),
        ({"name": "k", "resources": "all"}, "resources"),
        ({"name": "k", "labels": {"team": 1}}, "labels.team"),
        ({"name": "k", "labels": []}, "labels"),
        ({"name": "k", "enabled": "true"}, "enabled"),
        ({"name": "k", "capacity": [{"period": "day", "requests": "5"}]},
         "capacity[0].requests"),
        ({"name": "k", "keyHash": "abc"}, "keyHash"),
        ({"name": "k", "expiresAt": "tomorrow"}, "expiresAt"),
        ({"name": "k", "expiresAt": "2026-13-01T00:00:00Z"}, "expiresAt"),
        ({"name": "k", "expiresAt": 1795255200}, "expiresAt"),
    ]
    for body, field in cases:
        status, err, _ = api.request("POST", env_path(env, "/api-keys"), body)
        assert status == 400, (body, err)
        assert err["error"]["details"]["field"] == field, (body, err)
    api.create_api_key(env[0], env[1], name="dup")
    status, _, _ = api.request("POST", env_path(env, "/api-keys"), {"name": "dup"})
    assert status == 409


def test_key_expiry_stored_shown_and_sent(api, env, cp_stack):
    k = api.create_api_key(env[0], env[1], name="temp", expiresAt="2026-11-21T11:00:00.25+01:00")
    assert k["expiresAt"] == "2026-11-21T10:00:00.250Z"
    path = env_path(env, f"/api-keys/{k['id']}")
    assert api.request("GET", path)[1]["expiresAt"] == "2026-11-21T10:00:00.250Z"
    assert cp_stack.pg.psql(
        f"SELECT expires_at = '2026-11-21T10:00:00.25Z' FROM api_keys WHERE id = '{k['id']}'") == "t"
    snap = cp_stack.dataplane.wait_for(
        lambda s: any(x["id"] == k["id"] for x in s["apiKeys"]))
    assert [x["expiresAt"] for x in snap["apiKeys"] if x["id"] == k["id"]] \
        == ["2026-11-21T10:00:00.250Z"]
    # null: never; absent on create: never
    status, upd, _ = api.request("PATCH", path, {"expiresAt": None})
    assert status == 200 and upd["expiresAt"] is None
    assert api.create_api_key(env[0], env[1], name="forever")["expiresAt"] is None


def test_key_rotation(api, env, cp_stack):
    r = make_resource(api, env)
    k = api.create_api_key(env[0], env[1], name="rot", resources=[r["id"]],
                           capacity=[{"period": "day", "requests": 5}], enforceCapacity=True)
    rotate = env_path(env, f"/api-keys/{k['id']}/rotate")
    status, rot, _ = api.request("POST", rotate, {"gracePeriodSeconds": 60})
    assert status == 200, rot
    assert rot["id"] == k["id"] and rot["key"] != k["key"]
    assert re.fullmatch(r"vmx-[A-Za-z0-9_-]{43}", rot["key"])
    assert rot["maskedKey"] == rot["key"][:8] + "..." + rot["key"][-4:]
    assert rot["resources"] == [r["id"]] and rot["capacity"] == k["capacity"]
    assert rot["previousKeyExpiresAt"] is not None
    got = api.request("GET", env_path(env, f"/api-keys/{k['id']}"))[1]
    assert "key" not in got and got["maskedKey"] == rot["maskedKey"]
    old_hash = hashlib.sha256(k["key"].encode()).hexdigest()
    new_hash = hashlib.sha256(rot["key"].encode()).hexdigest()
    snap = cp_stack.dataplane.wait_for(lambda s: any(
        x["id"] == k["id"] and x["keyHash"] == new_hash for x in s["apiKeys"]))
    sent = [x for x in snap["apiKeys"] if x["id"] == k["id"]][0]
    assert sent["previousKeyHash"] == old_hash
    assert sent["previousKeyExpiresAt"] == rot["previousKeyExpiresAt"]
    assert cp_stack.pg.psql(
        f"SELECT previous_expires_at - now() BETWEEN interval '59 s' AND interval '61 s'"
        f" FROM api_keys WHERE id = '{k['id']}'") == "t"

    # a second rotation replaces the previous key; 0 keeps none
    status, rot2, _ = api.request("POST", rotate, {})
    assert status == 200 and rot2["previousKeyExpiresAt"] is None
    assert rot2["key"] not in (k["key"], rot["key"])
    assert cp_stack.pg.psql(
        f"SELECT previous_key_hash IS NULL FROM api_keys WHERE id = '{k['id']}'") == "t"

    for body, field in [({"gracePeriodSeconds": -1}, "gracePeriodSeconds"),
                        ({"gracePeriodSeconds": 30 * 86400 + 1}, "gracePeriodSeconds"),
                        ({"gracePeriodSeconds": 1.5}, "gracePeriodSeconds"),
                        ({"gracePeriodSeconds": "60"}, "gracePeriodSeconds"),
                        ({"grace": 60}, "grace")]:
        status, err, _ = api.request("POST", rotate, body)
        assert status == 400, (body, err)
        assert err["error"]["details"]["field"] == field, (body, err)
    status, _, _ = api.request("POST", env_path(env, f"/api-keys/{uuid.uuid4()}/rotate"), {})
    assert status == 404
    # the object's read-only members stay read-only
    status, err, _ = api.request("PATCH", env_path(env, f"/api-keys/{k['id']}"),
                                 {"previousKeyExpiresAt": None})
    assert status == 400 and err["error"]["details"]["field"] == "previousKeyExpiresAt"
