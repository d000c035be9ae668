"""AI connections: CRUD, validation, and the secrets at rest."""
import uuid

from cphelpers import env_path, openai_connection, unique


def test_connection_crud(api, env):
    status, c, _ = api.request("POST", env_path(env, "/connections"), {
        "name": "openai-main", "description": "main account", "provider": "openai",
        "config": {"apiKey": "sk-crud-secret", "baseUrl": "https://proxy.example.test/v1"},
        "allowedModels": ["gpt-4o-mini"],
        "capacity": [{"period": "minute", "requests": 100, "tokens": 10000}]})
    assert status == 201
    uuid.UUID(c["id"])
    assert c["workspaceId"] == env[0] and c["environmentId"] == env[1]
    assert c["config"] == {"apiKey": "********", "baseUrl": "https://proxy.example.test/v1"}
    assert c["allowedModels"] == ["gpt-4o-mini"]
    assert c["capacity"] == [{"period": "minute", "requests": 100, "tokens": 10000,
                              "enabled": True}]
    assert c["discoveredCapacity"] == {}
    for f in ("createdAt", "updatedAt", "description", "provider", "name"):
        assert f in c

    path = env_path(env, f"/connections/{c['id']}")
    status, got, _ = api.request("GET", path)
    # one connection alone also says what the data planes make of it
    assert status == 200 and got.pop("dataplaneProblems") == [] and got == c

    status, lst, _ = api.request("GET", env_path(env, "/connections"))
    assert status == 200 and lst["total"] == 1 and lst["data"] == [c]

    status, upd, _ = api.request("PATCH", path, {"description": "renamed", "capacity": []})
    assert status == 200
    assert upd["description"] == "renamed" and upd["capacity"] == []
    assert upd["config"]["apiKey"] == "********"

    status, _, _ = api.request("DELETE", path)
    assert status == 204
    status, _, _ = api.request("GET", path)
    assert status == 404


def test_connection_validation(api, env):
    good = {"name": "c", "provider": "openai", "config": {"apiKey": "sk-x"}}
    cases = [
        ({"provider": "openai", "config": {"apiKey": "k"}}, "name"),
        (dict(good, provider="mistral"), "provider"),
        (dict(good, config={}), "config.apiKey"),
        (dict(good, config={"apiKey": ""}), "config.apiKey"),
        (dict(good, config={"apiKey": "k", "baseUrl": "ftp://x"}), "config.baseUrl"),
        (dict(good, config={"apiKey": "k", "baseUrl": "not a url"}), "config.baseUrl"),
        (dict(good, config={"apiKey": "k", "region": "x"}), "config.region"),
        (dict(good, config="sk"), "config"),
        (dict(good, allowedModels="gpt"), "allowedModels"),
        (dict(good, allowedModels=[1]), "allowedModels[0]"),
        (dict(good, capacity={}), "capacity"),
        (dict(good, capacity=[{"period": "fortnight"}]), "capacity[0].period"),
        (dict(good, capacity=[{"period": "day"}, {"requests": 5}]), "capacity[1].period"),
        (dict(good, capacity=[{"period": "day", "requests": 0}]), "capacity[0].requests"),
        (dict(good, capacity=[{"period": "day", "tokens": 1.5}]), "capacity[0].tokens"),
        (dict(good, capacity=[{"period": "day", "enabled": "no"}]), "capacity[0].enabled"),
        (dict(good, capacity=[{"period": "day", "dimension": "user"}]),
         "capacity[0].dimension"),
        (dict(good, capacity=[{"period": "day", "burst": 3}]), "capacity[0].burst"),
        (dict(good, extra=1), "extra"),
        ({"name": "b", "provider": "aws-bedrock", "config": {"region": "us-east-1"}},
         "config.iamRoleArn"),
    ]
    for body, field in cases:
        status, err, _ = api.request("POST", env_path(env, "/connections"), body)
        assert status == 400, (body, err)
        assert err["error"]["code"] == "validation_error"
        assert err["error"]["details"]["field"] == field, (body, err)


def test_connection_other_providers(api, env):
    bedrock = api.create_connection(env[0], env[1], name="bedrock", provider="aws-bedrock",
                                    config={"region": "us-east-1",
                                            "iamRoleArn": "arn:aws:iam::1:role/x"},
                                    capacity=[{"period": "lifetime", "tokens": 5,
                                               "dimension": "source-ip", "enabled": False}])
    assert bedrock["config"] == {"region": "us-east-1", "iamRoleArn": "arn:aws:iam::1:role/x"}
    assert bedrock["capacity"][0]["enabled"] is False
    for p in ("anthropic", "gemini", "groq"):
        c = api.create_connection(env[0], env[1], name=p, provider=p,
                                  config={"apiKey": "k-" + p})
        assert c["config"] == {"apiKey": "********"}


def test_connection_name_unique_per_environment(api, env):
    openai_connection(api, env, name="same")
    status, err, _ = api.request("POST", env_path(env, "/connections"),
                                 {"name": "same", "provider": "groq",
                                  "config": {"apiKey": "k"}})
    assert status == 409 and err["error"]["code"] == "conflict"
    other = api.create_environment(env[0], "staging")["id"]
    openai_connection(api, (env[0], other), name="same")


def test_secret_masked_kept_and_replaced(api, env, cp_stack):
    secret = "sk-live-" + uuid.uuid4().hex
    c = openai_connection(api, env, config={"apiKey": secret})
    path = env_path(env, f"/connections/{c['id']}")

    def stored():
        return cp_stack.pg.psql(f"SELECT secrets::text || config::text FROM connections "
                                f"WHERE id = '{c['id']}'")

    blob = stored()
    assert secret not in blob
    assert '"v1:' in blob

    # "********" keeps the stored secret
    status, upd, _ = api.request("PATCH", path, {"config": {"apiKey": "********"},
                                                 "description": "kept"})
    assert status == 200 and upd["config"]["apiKey"] == "********"
    assert stored().split("}")[0] == blob.split("}")[0]

    # sending the masked doc back unchanged (without its read-only fields) keeps it too
    status, got, _ = api.request("GET", path)
    status, _, _ = api.request("PUT", path, {k: v for k, v in got.items() if k in (
        "name", "description", "provider", "config", "allowedModels", "capacity")})
    assert status == 200
    assert stored().split("}")[0] == blob.split("}")[0]

    # a new value replaces it
    newer = "sk-rotated-" + uuid.uuid4().hex
    status, _, _ = api.request("PATCH", path, {"config": {"apiKey": newer}})
    assert status == 200
    now = stored()
    assert newer not in now and now.split("}")[0] != blob.split("}")[0]

    # "********" on create has nothing to keep
    status, err, _ = api.request("POST", env_path(env, "/connections"),
                                 {"name": unique("m"), "provider": "openai",
                                  "config": {"apiKey": "********"}})
    assert status == 400 and err["error"]["details"]["field"] == "config.apiKey"

    log = cp_stack.cp.log_text()
    assert secret not in log and newer not in log
    dump = cp_stack.pg.psql("SELECT string_agg(t::text, ' ') FROM connections t")
    assert secret not in dump and newer not in dump


def test_delete_connection_in_use_409(api, env):
    c = openai_connection(api, env)
    r = api.create_resource(env[0], env[1], name="chat",
                            model={"provider": "openai", "model": "gpt-4o-mini",
                                   "connectionId": c["id"]})
    path = env_path(env, f"/connections/{c['id']}")
    status, err, _ = api.request("DELETE", path)
    assert status == 409 and err["error"]["code"] == "conflict"
    # nor can its provider change under the resource
    status, err, _ = api.request("PATCH", path, {"provider": "groq",
                                                 "config": {"apiKey": "gk"}})
    assert status == 409
    status, _, _ = api.request("DELETE", env_path(env, f"/resources/{r['id']}"))
    assert status == 204
    status, _, _ = api.request("DELETE", path)
    assert status == 204


def test_connection_in_unknown_environment_404(api, env):
    status, _, _ = api.request("POST", env_path((env[0], str(uuid.uuid4())), "/connections"),
                               {"name": "c", "provider": "openai", "config": {"apiKey": "k"}})
    assert status == 404
    status, _, _ = api.request("GET", env_path((env[0], str(uuid.uuid4())), "/connections"))
    assert status == 404


def test_connection_timeouts(api, env):
    """timeouts: optional, merged by PATCH member by member, bounded, 400 naming the member."""
    c = openai_connection(api, env)
    assert c["timeouts"] is None
    path = env_path(env, f"/connections/{c['id']}")

    status, upd, _ = api.request("PATCH", path, {"timeouts": {"firstByteMs": 300,
                                                              "idleMs": 2000}})
    assert status == 200 and upd["timeouts"] == {"firstByteMs": 300, "idleMs": 2000}, upd
    status, upd, _ = api.request("PATCH", path, {"timeouts": {"idleMs": None,
                                                              "connectMs": 60000}})
    assert status == 200 and upd["timeouts"] == {"firstByteMs": 300, "connectMs": 60000}, upd

    for body, field in [({"idleMs": -1}, "timeouts.idleMs"),
                        ({"connectMs": 60001}, "timeouts.connectMs"),
                        ({"totalMs": 3600001}, "timeouts.totalMs"),
                        ({"firstByteMs": 1.5}, "timeouts.firstByteMs"),
                        ({"firstByteMs": "5"}, "timeouts.firstByteMs"),
                        ({"readMs": 5}, "timeouts.readMs"),
                        ([], "timeouts")]:
        status, err, _ = api.request("PATCH", path, {"timeouts": body})
        assert status == 400 and err["error"]["details"]["field"] == field, (body, err)
        assert field in err["error"]["message"], err

    status, upd, _ = api.request("PATCH", path, {"timeouts": None})
    assert status == 200 and upd["timeouts"] is None
