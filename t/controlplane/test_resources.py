"""AI resources: model entries tied to connections of the environment."""
import uuid

from cphelpers import env_path, model, openai_connection


def test_resource_crud_and_defaults(api, env):
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini", "gpt-4o"])
    g = api.create_connection(env[0], env[1], name="groq", provider="groq",
                              config={"apiKey": "gk"})
    status, r, _ = api.request("POST", env_path(env, "/resources"),
                               {"name": "chat", "model": model(c)})
    assert status == 201
    uuid.UUID(r["id"])
    assert r["model"] == model(c)
    assert r["routing"] == {"enabled": False, "conditions": []}
    assert r["fallbackModels"] == [] and r["secondaryModels"] == []
    assert r["useFallback"] is True and r["enforceCapacity"] is False
    assert r["capacity"] == [] and r["description"] == ""
    assert r["workspaceId"] == env[0] and r["environmentId"] == env[1]

    path = env_path(env, f"/resources/{r['id']}")
    status, got, _ = api.request("GET", path)
    assert status == 200 and got == r

    routing = {"enabled": True, "conditions": [{"type": "group", "id": "g1",
                                                "operator": "AND", "conditions": []}]}
    status, upd, _ = api.request("PATCH", path, {
        "fallbackModels": [model(g, "llama-3.1-8b-instant", "groq")],
        "secondaryModels": [model(c, "gpt-4o")], "useFallback": False,
        "routing": routing, "enforceCapacity": True,
        "capacity": [{"period": "hour", "tokens": 1000}]})
    assert status == 200, upd
    assert upd["name"] == "chat" and upd["model"] == model(c)
    assert upd["fallbackModels"] == [model(g, "llama-3.1-8b-instant", "groq")]
    assert upd["routing"] == routing and upd["useFallback"] is False
    assert upd["capacity"] == [{"period": "hour", "tokens": 1000, "enabled": True}]

    status, lst, _ = api.request("GET", env_path(env, "/resources"))
    assert status == 200 and lst["total"] == 1 and lst["data"][0] == upd

    # the groq connection is now used by the fallback chain
    status, _, _ = api.request("DELETE", env_path(env, f"/connections/{g['id']}"))
    assert status == 409

    status, _, _ = api.request("DELETE", path)
    assert status == 204
    status, _, _ = api.request("GET", path)
    assert status == 404
    status, _, _ = api.request("DELETE", env_path(env, f"/connections/{g['id']}"))
    assert status == 204


def test_resource_validation(api, env):
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini"])
    other_env = api.create_environment(env[0], "staging")["id"]
    elsewhere = openai_connection(api, (env[0], other_env))
    good = {"name": "r", "model": model(c)}
    cases = [
        ({"model": model(c)}, "name"),
        ({"name": "r"}, "model"),
        (dict(good, model=dict(model(c), provider="groq")), "model.connectionId"),
        (dict(good, model=dict(model(c), provider="nope")), "model.provider"),
        (dict(good, model=model(c, "gpt-4o")), "model.model"),
        (dict(good, model=model(elsewhere)), "model.connectionId"),
        (dict(good, model=dict(model(c), connectionId=str(uuid.uuid4()))),
         "model.connectionId"),
        (dict(good, model=dict(model(c), connectionId="x")), "model.connectionId"),
        (dict(good, model=dict(model(c), temperature=1)), "model.temperature"),
        (dict(good, fallbackModels=[model(c), model(c, "o3")]), "fallbackModels[1].model"),
        (dict(good, fallbackModels=model(c)), "fallbackModels"),
        (dict(good, secondaryModels=["gpt"]), "secondaryModels[0]"),
        (dict(good, routing=[]), "routing"),
        (dict(good, routing={"enabled": "yes", "conditions": []}), "routing.enabled"),
        (dict(good, routing={"enabled": True}), "routing.conditions"),
        (dict(good, useFallback=1), "useFallback"),
        (dict(good, enforceCapacity=None), "enforceCapacity"),
        (dict(good, capacity=[{"period": "week", "requests": -1}]), "capacity[0].requests"),
        (dict(good, poolName="x"), "poolName"),
    ]
    for body, field in cases:
        status, err, _ = api.request("POST", env_path(env, "/resources"), body)
        assert status == 400, (body, err)
        assert err["error"]["details"]["field"] == field, (body, err)


def test_resource_name_taken_409(api, env):
    c = openai_connection(api, env)
    api.create_resource(env[0], env[1], name="chat", model=model(c))
    status, err, _ = api.request("POST", env_path(env, "/resources"),
                                 {"name": "chat", "model": model(c)})
    assert status == 409 and err["error"]["code"] == "conflict"


def test_pagination_of_resources(api, env):
    c = openai_connection(api, env)
    ids = [api.create_resource(env[0], env[1], name=f"r{i}", model=model(c))["id"]
           for i in range(5)]
    status, p1, _ = api.request("GET", env_path(env, "/resources?pageIndex=1&pageSize=2"))
    assert status == 200
    assert p1["total"] == 5 and p1["pageIndex"] == 1 and p1["pageSize"] == 2
    assert [r["id"] for r in p1["data"]] == ids[2:4]
    status, p2, _ = api.request("GET", env_path(env, "/resources?pageIndex=2&pageSize=2"))
    assert [r["id"] for r in p2["data"]] == ids[4:]


def test_resource_timeouts(api, env):
    """a resource's timeouts: stored, shown, validated like a connection's."""
    c = openai_connection(api, env)
    status, r, _ = api.request("POST", env_path(env, "/resources"),
                               {"name": "t", "model": model(c),
                                "timeouts": {"totalMs": 600000}})
    assert status == 201 and r["timeouts"] == {"totalMs": 600000}, r
    path = env_path(env, f"/resources/{r['id']}")
    status, err, _ = api.request("PATCH", path, {"timeouts": {"idleMs": -1}})
    assert status == 400 and err["error"]["details"]["field"] == "timeouts.idleMs", err
    status, upd, _ = api.request("PUT", path, {"name": "t", "model": model(c)})
    assert status == 200 and upd["timeouts"] is None, upd
