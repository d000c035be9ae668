"""Management API semantics shared by every object (SPEC §8): the body's JSON
(duplicated keys, NUL), strings that reach headers and logs, merge-patch
updates and whole-object replacement, read-only fields."""
import pytest

from cphelpers import env_path, openai_connection, unique
from harness.api import Api
from harness.control_plane import ControlPlane
from harness.ports import free_port


def raw(api, method, path, text):
    return api.request(method, path, text, headers={"Content-Type": "application/json"})


def assert_invalid(answer, field):
    status, err, _ = answer
    assert status == 400, (status, err)
    assert err["error"]["code"] == "validation_error", err
    assert err["error"]["details"]["field"] == field, err
    return err["error"]["message"]


def test_duplicate_keys_refused_at_any_depth(api, env):
    conns = env_path(env, "/connections")
    top = '{"name": "a", "name": "b", "provider": "openai", "config": {"apiKey": "k"}}'
    message = assert_invalid(raw(api, "POST", conns, top), "name")
    assert '"name"' in message
    nested = ('{"name": "n", "provider": "openai",'
              ' "config": {"apiKey": "k", "apiKey": "k2"}}')
    assert_invalid(raw(api, "POST", conns, nested), "config.apiKey")

    c = openai_connection(api, env, allowedModels=["gpt-4o-mini"])
    other = openai_connection(api, env, allowedModels=["gpt-4o"])
    # the first connectionId would be validated, the last one stored
    entry = ('{"name": "r", "model": {"provider": "openai", "model": "gpt-4o-mini",'
             f' "connectionId": "{c["id"]}", "connectionId": "{other["id"]}"}}}}')
    assert_invalid(raw(api, "POST", env_path(env, "/resources"), entry),
                   "model.connectionId")
    in_array = ('{"name": "r", "model": {"provider": "openai", "model": "gpt-4o-mini",'
                f' "connectionId": "{c["id"]}"}}, "fallbackModels": [{{"model": "a",'
                ' "model": "b"}]}')
    assert_invalid(raw(api, "POST", env_path(env, "/resources"), in_array),
                   "fallbackModels[0].model")
    status, lst, _ = api.request("GET", env_path(env, "/resources"))
    assert lst["total"] == 0

    # updates too
    path = env_path(env, f"/connections/{c['id']}")
    assert_invalid(raw(api, "PATCH", path, '{"description": "a", "description": "b"}'),
                   "description")


def test_nul_refused_in_any_string(api, env):
    conns = env_path(env, "/connections")
    body = '{"name": "a\\u0000b", "provider": "openai", "config": {"apiKey": "k"}}'
    assert_invalid(raw(api, "POST", conns, body), "name")
    body = '{"name": "a", "provider": "openai", "config": {"apiKey": "k\\u0000x"}}'
    assert_invalid(raw(api, "POST", conns, body), "config.apiKey")
    body = ('{"name": "a", "provider": "openai", "config": {"apiKey": "k"},'
            ' "allowedModels": ["x", "gpt\\u0000"]}')
    assert_invalid(raw(api, "POST", conns, body), "allowedModels[1]")
    status, lst, _ = api.request("GET", conns)
    assert lst["total"] == 0
    body = '{"name": "w", "description": "\\u0000"}'
    assert_invalid(raw(api, "POST", "/api/v1/workspaces", body), "description")


def test_body_that_is_not_strict_json_refused(api, env):
    conns = env_path(env, "/connections")
    status, err, _ = raw(api, "POST", conns, b'{"name": "\xff", "provider": "openai"}')
    assert status == 400 and err["error"]["code"] == "validation_error", err
    status, err, _ = raw(api, "POST", conns, '{"name": "a",}')
    assert status == 400 and "not valid JSON" in err["error"]["message"], err


def test_control_characters_refused_in_header_reaching_strings(api, env):
    c = openai_connection(api, env)
    entry = {"provider": "openai", "model": "gpt-4o-mini", "connectionId": c["id"]}
    conns, resources, keys = (env_path(env, t) for t in ("/connections", "/resources",
                                                         "/api-keys"))
    conn = {"name": "c", "provider": "openai", "config": {"apiKey": "k"}}
    group = {"type": "group", "id": "g", "operator": "AND", "conditions": [],
             "action": "CALL_MODEL", "then": entry}
    cases = [
        ("POST", "/api/v1/workspaces", {"name": "a\r\nx-injected: 1"}, "name"),
        ("POST", f"/api/v1/workspaces/{env[0]}/environments",
         {"name": "e", "description": "tab\there"}, "description"),
        ("POST", conns, dict(conn, name="bell\x07"), "name"),
        ("POST", conns, dict(conn, config={"apiKey": "k\r\nx: y"}), "config.apiKey"),
        ("POST", conns, dict(conn, allowedModels=["gpt\n"]), "allowedModels[0]"),
        ("POST", resources, {"name": "r", "model": dict(entry, model="m\r\nx: y")},
         "model.model"),
        ("POST", resources, {"name": "r", "model": entry,
                             "fallbackModels": [dict(entry, model="del\x7f")]},
         "fallbackModels[0].model"),
        ("POST", resources, {"name": "r", "model": entry,
                             "routing": {"enabled": True,
                                         "conditions": [dict(group, id="g\r\n1")]}},
         "routing.conditions[0].id"),
        ("POST", keys, {"name": "k", "labels": {"team": "a\nb"}}, "labels.team"),
        ("POST", keys, {"name": "k", "labels": {"te\ram": "a"}}, "labels.te\ram"),
    ]
    for method, path, body, field in cases:
        assert_invalid(api.request(method, path, body), field)
    # a model name with a tab or newline never reaches a resource
    status, lst, _ = api.request("GET", resources)
    assert lst["total"] == 0


def test_google_is_an_alias_of_gemini(api, env):
    status, c, _ = api.request("POST", env_path(env, "/connections"),
                               {"name": "g", "provider": "google",
                                "config": {"apiKey": "k-google"},
                                "allowedModels": ["gemini-2.0-flash"]})
    assert status == 201, c
    assert c["provider"] == "gemini"
    entry = {"provider": "google", "model": "gemini-2.0-flash", "connectionId": c["id"]}
    group = {"type": "group", "id": "g1", "operator": "AND", "conditions": [],
             "action": "CALL_MODEL", "then": entry}
    status, r, _ = api.request("POST", env_path(env, "/resources"), {
        "name": "chat", "model": entry, "fallbackModels": [entry], "secondaryModels": [entry],
        "routing": {"enabled": True, "conditions": [group]}})
    assert status == 201, r
    gemini = dict(entry, provider="gemini")
    assert r["model"] == gemini and r["fallbackModels"] == [gemini]
    assert r["secondaryModels"] == [gemini]
    assert r["routing"]["conditions"][0]["then"] == gemini
    status, got, _ = api.request("GET", env_path(env, f"/connections/{c['id']}"))
    assert got["provider"] == "gemini"


READ_ONLY = ("id", "workspaceId", "environmentId", "createdAt", "updatedAt", "createdBy",
             "discoveredCapacity", "credentialsStatus", "dataplaneProblems", "maskedKey")


def writable(doc):
    return {k: v for k, v in doc.items() if k not in READ_ONLY}


def stored_secret(cp_stack, conn_id):
    return cp_stack.pg.psql(f"SELECT secrets->>'apiKey' FROM connections WHERE id = '{conn_id}'")


def test_patch_is_a_json_merge_patch(api, env, cp_stack):
    c = openai_connection(api, env, description="d",
                          config={"apiKey": "sk-old", "baseUrl": "http://127.0.0.1:9/v1"})
    path = env_path(env, f"/connections/{c['id']}")
    blob = stored_secret(cp_stack, c["id"])
    # a key rotation keeps baseUrl
    status, upd, _ = api.request("PATCH", path, {"config": {"apiKey": "sk-new"}})
    assert status == 200, upd
    assert upd["config"] == {"apiKey": "********", "baseUrl": "http://127.0.0.1:9/v1"}
    assert upd["description"] == "d" and upd["name"] == c["name"]
    assert stored_secret(cp_stack, c["id"]) != blob
    # null deletes a member (and a top-level one falls back to its default)
    status, upd, _ = api.request("PATCH", path, {"description": None,
                                                 "config": {"baseUrl": None,
                                                            "apiKey": "sk-newer"}})
    assert status == 200, upd
    assert upd["config"] == {"apiKey": "********"} and upd["description"] == ""

    c2 = openai_connection(api, env, allowedModels=["gpt-4o-mini", "gpt-4o"])
    status, r, _ = api.request("POST", env_path(env, "/resources"), {
        "name": "chat", "description": "x",
        "model": {"provider": "openai", "model": "gpt-4o-mini", "connectionId": c2["id"]}})
    assert status == 201, r
    rpath = env_path(env, f"/resources/{r['id']}")
    status, upd, _ = api.request("PATCH", rpath, {"model": {"model": "gpt-4o"},
                                                  "routing": {"enabled": True},
                                                  "useFallback": None})
    assert status == 200, upd
    assert upd["model"] == {"provider": "openai", "model": "gpt-4o", "connectionId": c2["id"]}
    assert upd["routing"] == {"enabled": True, "conditions": []}
    assert upd["useFallback"] is True and upd["description"] == "x"

    k = api.create_api_key(env[0], env[1], name="k", labels={"a": "1", "b": "2"})
    kpath = env_path(env, f"/api-keys/{k['id']}")
    status, upd, _ = api.request("PATCH", kpath, {"labels": {"a": None, "c": "3"}})
    assert status == 200, upd
    assert upd["labels"] == {"b": "2", "c": "3"} and upd["name"] == "k"


def test_put_replaces_the_whole_object(api, env):
    c = openai_connection(api, env, description="d", allowedModels=["gpt-4o-mini"],
                          config={"apiKey": "sk-1", "baseUrl": "http://127.0.0.1:9/v1"})
    path = env_path(env, f"/connections/{c['id']}")
    # required fields missing
    assert_invalid(api.request("PUT", path, {"description": "only this"}), "name")
    assert_invalid(api.request("PUT", path, {"name": "n", "provider": "openai"}),
                   "config.apiKey")
    # a whole object: what is not sent takes its default
    status, upd, _ = api.request("PUT", path, {
        "name": "n", "provider": "openai",
        "config": {"apiKey": "********", "baseUrl": "http://127.0.0.1:9/v1"}})
    assert status == 200, upd
    assert upd["description"] == "" and upd["allowedModels"] == [] and upd["name"] == "n"

    r = api.create_resource(env[0], env[1], name="r", description="x",
                            model={"provider": "openai", "model": "gpt-4o-mini",
                                   "connectionId": c["id"]}, useFallback=False)
    rpath = env_path(env, f"/resources/{r['id']}")
    assert_invalid(api.request("PUT", rpath, {"name": "r"}), "model")
    status, upd, _ = api.request("PUT", rpath, {"name": "r2", "model": r["model"]})
    assert status == 200, upd
    assert upd["useFallback"] is True and upd["description"] == ""

    for tail in ("/api/v1/workspaces/" + env[0], env_path(env, "")):
        assert_invalid(api.request("PUT", tail, {"description": "no name"}), "name")


def test_read_only_fields_refused(api, env):
    c = openai_connection(api, env)
    k = api.create_api_key(env[0], env[1], name="k")
    ws = "/api/v1/workspaces/" + env[0]
    conn = env_path(env, f"/connections/{c['id']}")
    key = env_path(env, f"/api-keys/{k['id']}")
    cases = [
        ("PATCH", conn, {"id": c["id"]}, "id"),
        ("PATCH", conn, {"createdAt": c["createdAt"]}, "createdAt"),
        ("PATCH", conn, {"discoveredCapacity": {}}, "discoveredCapacity"),
        ("PATCH", conn, {"credentialsStatus": None}, "credentialsStatus"),
        ("PUT", conn, dict(writable(c), workspaceId=env[0]), "workspaceId"),
        ("PATCH", key, {"maskedKey": "x"}, "maskedKey"),
        ("PATCH", key, {"environmentId": env[1]}, "environmentId"),
        ("PATCH", ws, {"createdBy": "x"}, "createdBy"),
        ("PATCH", env_path(env, ""), {"updatedAt": "2026-01-01T00:00:00Z"}, "updatedAt"),
    ]
    for method, path, body, field in cases:
        message = assert_invalid(api.request(method, path, body), field)
        assert "read-only" in message
    # the whole object as read, without its read-only fields, goes back as it is
    status, got, _ = api.request("GET", conn)
    got.pop("dataplaneProblems")        # a GET of one connection only
    status, upd, _ = api.request("PUT", conn, writable(got))
    assert status == 200 and upd == dict(got, updatedAt=upd["updatedAt"]), upd


def test_secret_required_again_when_the_destination_changes(api, env, cp_stack):
    c = openai_connection(api, env, config={"apiKey": "sk-1",
                                            "baseUrl": "http://127.0.0.1:9/v1"})
    path = env_path(env, f"/connections/{c['id']}")
    blob = stored_secret(cp_stack, c["id"])
    moves = [
        ("PATCH", {"config": {"baseUrl": "http://attacker.example.test/v1"}}),
        ("PATCH", {"config": {"baseUrl": "http://attacker.example.test/v1",
                              "apiKey": "********"}}),
        ("PATCH", {"config": {"baseUrl": None}}),
        ("PATCH", {"provider": "groq"}),
        ("PUT", {"name": c["name"], "provider": "openai",
                 "config": {"apiKey": "********", "baseUrl": "http://other.test/v1"}}),
    ]
    for method, body in moves:
        message = assert_invalid(api.request(method, path, body), "config.apiKey")
        assert "sent again" in message
    assert stored_secret(cp_stack, c["id"]) == blob
    # the same destination keeps it; a new one with the secret is fine
    status, _, _ = api.request("PATCH", path, {"description": "x",
                                               "config": {"apiKey": "********"}})
    assert status == 200 and stored_secret(cp_stack, c["id"]) == blob
    status, upd, _ = api.request("PATCH", path, {"config": {
        "baseUrl": "http://other.test/v1", "apiKey": "sk-2"}})
    assert status == 200 and upd["config"]["baseUrl"] == "http://other.test/v1"

    # aws-bedrock has no secret: its region and endpoint move freely
    b = api.create_connection(env[0], env[1], name="b", provider="aws-bedrock",
                              config={"region": "us-east-1",
                                      "iamRoleArn": "arn:aws:iam::1:role/x"})
    status, upd, _ = api.request("PATCH", env_path(env, f"/connections/{b['id']}"),
                                 {"config": {"region": "eu-west-1"}})
    assert status == 200, upd


LINK_LOCAL = ["http://169.254.169.254/latest/meta-data", "http://169.254.1.2:8080/v1",
              "http://[fe80::1]/v1", "http://[fe80::1%25eth0]/v1", "http://[fd00:ec2::254]/",
              "http://[::ffff:169.254.169.254]/", "http://0xa9fea9fe/",
              "http://2852039166/", "http://169.254.169.254./"]


def link_local_bodies():
    for url in LINK_LOCAL:
        yield url, {"name": unique("ll"), "provider": "openai",
                    "config": {"apiKey": "k", "baseUrl": url}}
    yield LINK_LOCAL[0], {"name": unique("ll"), "provider": "aws-bedrock",
                          "config": {"region": "us-east-1", "endpoint": LINK_LOCAL[0],
                                     "iamRoleArn": "arn:aws:iam::1:role/x"}}


def test_link_local_destinations_refused(api, env):
    for url, body in link_local_bodies():
        field = "config.endpoint" if "endpoint" in body["config"] else "config.baseUrl"
        message = assert_invalid(api.request("POST", env_path(env, "/connections"), body),
                                 field)
        assert "VMX_ALLOW_LINK_LOCAL" in message, url
    c = openai_connection(api, env)
    assert_invalid(api.request("PATCH", env_path(env, f"/connections/{c['id']}"), {
        "config": {"apiKey": "k2", "baseUrl": LINK_LOCAL[0]}}), "config.baseUrl")
    for url in ("http://169.253.169.254/", "http://[fec0::1]/", "http://metadata.test/"):
        openai_connection(api, env, config={"apiKey": "k", "baseUrl": url})


@pytest.fixture(scope="module")
def link_local_api(cp_stack):
    """A control plane with VMX_ALLOW_LINK_LOCAL=1 on a database of its own."""
    cp_stack.pg.psql("CREATE DATABASE vmx_link_local", dbname="postgres")
    cp = ControlPlane(cp_stack.base / "link-local", free_port(),
                      cp_stack.pg.dsn_of("vmx_link_local"), [], cp_stack.token_file,
                      cp_stack.master_key_file, env={"VMX_ALLOW_LINK_LOCAL": "1"})
    cp.start()
    try:
        a = Api(cp.url)
        a.login()
        yield a
    finally:
        assert cp.stop() == 0


def test_link_local_destinations_allowed_by_the_operator(link_local_api):
    api = link_local_api
    ws = api.create_workspace(unique("ws"))
    env = (ws["id"], api.create_environment(ws["id"], "production")["id"])
    for url, body in link_local_bodies():
        status, c, _ = api.request("POST", env_path(env, "/connections"), body)
        assert status == 201, (url, c)


def assert_conflict_names(answer, resources, field=None):
    status, err, _ = answer
    assert status == 409, (status, err)
    assert err["error"]["code"] == "conflict"
    details = err["error"]["details"]
    assert details.get("field") == field, err
    assert sorted((r["id"], r["name"]) for r in details["resources"]) == sorted(
        (r["id"], r["name"]) for r in resources), err
    for r in resources:
        assert r["id"] in err["error"]["message"] and r["name"] in err["error"]["message"]


def test_connection_in_use_names_its_resources(api, env):
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini", "gpt-4o", "o3-mini",
                                                   "gpt-4.1"])
    other = openai_connection(api, env)
    path = env_path(env, f"/connections/{c['id']}")

    def entry(model, conn=c):
        return {"provider": "openai", "model": model, "connectionId": conn["id"]}

    group = {"type": "group", "id": "g", "operator": "AND", "conditions": [],
             "action": "CALL_MODEL", "then": entry("gpt-4.1")}
    primary = api.create_resource(env[0], env[1], name="primary", model=entry("gpt-4o-mini"))
    fallback = api.create_resource(env[0], env[1], name="fallback",
                                   model=entry("x", other), fallbackModels=[entry("gpt-4o")])
    secondary = api.create_resource(env[0], env[1], name="secondary", model=entry("x", other),
                                    secondaryModels=[entry("o3-mini")])
    routed = api.create_resource(env[0], env[1], name="routed", model=entry("x", other),
                                 routing={"enabled": True, "conditions": [group]})
    everyone = [primary, fallback, secondary, routed]

    assert_conflict_names(api.request("DELETE", path), everyone)
    assert_conflict_names(api.request("PATCH", path, {"provider": "groq",
                                                      "config": {"apiKey": "gk"}}),
                          everyone, "provider")
    # narrowing allowedModels below what a resource uses
    assert_conflict_names(api.request("PATCH", path, {"allowedModels": ["gpt-4o-mini"]}),
                          [fallback, secondary, routed], "allowedModels")
    assert_conflict_names(api.request("PATCH", path, {"allowedModels": ["gpt-4o", "o3-mini",
                                                                        "gpt-4.1"]}),
                          [primary], "allowedModels")
    # adding a model, or allowing every one (empty), is fine
    for allowed in (["gpt-4o-mini", "gpt-4o", "o3-mini", "gpt-4.1", "gpt-5"], []):
        status, upd, _ = api.request("PATCH", path, {"allowedModels": allowed})
        assert status == 200 and upd["allowedModels"] == allowed, upd
    for r in everyone:
        assert api.request("DELETE", env_path(env, f"/resources/{r['id']}"))[0] == 204
    assert api.request("DELETE", path)[0] == 204
