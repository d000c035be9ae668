"""Who changed what: GET /api/v1/activity and /workspaces/{ws}/activity
(docs/ARCHITECTURE.md, "Activity")."""
import json
import uuid

from harness.api import Api
from cphelpers import env_path, openai_connection, unique


def activity(api, path="/api/v1/activity", **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    status, body, _ = api.request("GET", path + ("?" + q if q else ""))
    assert status == 200, body
    return body


def of_object(api, object_id, **query):
    return activity(api, objectId=object_id, **query)["data"]


def test_connection_changes_recorded_without_secrets(api, env):
    secret = "sk-secret-" + uuid.uuid4().hex
    conn = openai_connection(api, env, config={"apiKey": secret})
    path = env_path(env, f"/connections/{conn['id']}")
    new_secret = "sk-other-" + uuid.uuid4().hex
    status, _, _ = api.request("PATCH", path, {"description": "now described",
                                               "config": {"apiKey": new_secret}})
    assert status == 200
    assert api.request("DELETE", path)[0] == 204

    records = of_object(api, conn["id"])
    assert [r["action"] for r in records] == [
        "ai-connection:delete", "ai-connection:update", "ai-connection:create"]
    delete, update, create = records
    for r in records:
        assert r["username"] == "admin" and r["outcome"] == "success"
        assert r["workspaceId"] == env[0] and r["environmentId"] == env[1]
        assert r["object"] == {"kind": "ai-connection", "id": conn["id"],
                               "name": conn["name"]}
        assert r["fromAddress"] == "127.0.0.1"
    assert create["status"] == 201 and create["method"] == "POST"
    assert create["changes"]["name"] == {"after": conn["name"]}
    assert create["changes"]["config.apiKey"] == {"after": "********"}
    assert update["changes"]["description"] == {"before": "", "after": "now described"}
    assert update["changes"]["config.apiKey"] == {"before": "********", "after": "********"}
    assert "name" not in update["changes"]
    assert delete["status"] == 204 and delete["changes"] == {"name": {"before": conn["name"]}}
    text = json.dumps(activity(api))
    assert secret not in text and new_secret not in text


def test_api_key_and_user_secrets_never_recorded(api, env):
    key = api.create_api_key(*env, name=unique("key"))
    status, rotated, _ = api.request("POST", env_path(env, f"/api-keys/{key['id']}/rotate"))
    assert status in (200, 201), rotated
    password = "a-user-password-" + uuid.uuid4().hex[:8]
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"username": unique("u"), "password": password})
    assert status == 201
    actions = [r["action"] for r in of_object(api, key["id"])]
    assert actions == ["api-key:rotate", "api-key:create"]
    (created,) = of_object(api, user["id"])
    assert created["action"] == "user:create"
    assert created["changes"]["password"] == {"after": "********"}
    text = json.dumps(activity(api, pageSize=1000))
    for secret in (key["key"], rotated.get("key", "-"), password):
        assert secret not in text


def test_logins_recorded(api, cp_stack):
    a = Api(cp_stack.cp.url)
    name = unique("nobody")
    status, _, _ = a.request("POST", "/api/v1/auth/login",
                             {"username": name, "password": "wrong-password"}, token=None)
    assert status == 401
    a.login()
    failed = activity(api, action="auth:login", outcome="failure")["data"]
    assert any(r["username"] == name and r["status"] == 401 and r["userId"] is None
               for r in failed)
    ok = activity(api, action="auth:login", outcome="success", pageSize=1)["data"][0]
    assert ok["username"] == "admin" and ok["status"] == 200 and ok["userId"]
    assert "wrong-password" not in json.dumps(failed)


def test_workspace_scope(api, env):
    other = api.create_workspace(unique("ws"))
    conn = openai_connection(api, env)
    scoped = activity(api, f"/api/v1/workspaces/{env[0]}/activity", pageSize=1000)
    assert scoped["data"] and all(r["workspaceId"] == env[0] for r in scoped["data"])
    assert any(r["object"]["id"] == conn["id"] for r in scoped["data"])
    assert not any(r["object"]["id"] == other["id"] for r in scoped["data"])
    assert activity(api, f"/api/v1/workspaces/{other['id']}/activity")["total"] == 1
    status, _, _ = api.request("GET", f"/api/v1/workspaces/{uuid.uuid4()}/activity")
    assert status == 404


def test_pagination_and_filters(api, env):
    conns = [openai_connection(api, env) for _ in range(3)]
    path = f"/api/v1/workspaces/{env[0]}/activity"
    page = activity(api, path, action="ai-connection:create", pageSize=2)
    assert page["total"] == 3 and page["pageIndex"] == 0 and page["pageSize"] == 2
    second = activity(api, path, action="ai-connection:create", pageSize=2, pageIndex=1)
    ids = [r["object"]["id"] for r in page["data"] + second["data"]]
    assert ids == [c["id"] for c in reversed(conns)]           # newest first
    at = activity(api, path, pageSize=1)["data"][0]["at"]
    assert activity(api, path, **{"from": "2999-01-01T00:00:00Z"})["total"] == 0
    assert activity(api, path, to=at)["total"] >= 3
    user_id = page["data"][0]["userId"]
    assert activity(api, path, userId=user_id)["total"] >= 4
    assert activity(api, path, userId=str(uuid.uuid4()))["total"] == 0
    for bad in ({"userId": "x"}, {"from": "yesterday"}, {"outcome": "maybe"},
                {"pageSize": "0"}):
        q = "&".join(f"{k}={v}" for k, v in bad.items())
        status, err, _ = api.request("GET", f"{path}?{q}")
        assert status == 400 and err["error"]["details"]["field"] == list(bad)[0], (bad, err)


def test_failed_change_not_recorded(api, env):
    conn = openai_connection(api, env)
    path = env_path(env, f"/connections/{conn['id']}")
    status, _, _ = api.request("PATCH", path, {"provider": "no-such-provider"})
    assert status == 400
    taken = openai_connection(api, env)
    status, _, _ = api.request("PATCH", path, {"name": taken["name"]})
    assert status == 409
    assert [r["action"] for r in of_object(api, conn["id"])] == ["ai-connection:create"]


def test_recorded_in_the_change_transaction(api, env, cp_stack):
    """A change whose record cannot be written is refused and not made."""
    name = unique("conn")
    cp_stack.pg.psql("ALTER TABLE activity ADD CONSTRAINT test_no_record"
                     f" CHECK (object_name <> '{name}')")
    try:
        status, err, _ = api.request(
            "POST", env_path(env, "/connections"),
            {"name": name, "provider": "openai", "config": {"apiKey": "sk-" + "x" * 20}})
        assert status == 500, err
    finally:
        cp_stack.pg.psql("ALTER TABLE activity DROP CONSTRAINT test_no_record")
    status, body, _ = api.request("GET", env_path(env, "/connections"))
    assert not [c for c in body["data"] if c["name"] == name]


def test_password_change_logout_and_reads(api, env, cp_stack):
    """A password change records only that the password was set; a usage
    query (a POST that reads) is not recorded; logout is."""
    old = "first-password-" + uuid.uuid4().hex[:6]
    new = "second-password-" + uuid.uuid4().hex[:6]
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"username": unique("u"), "password": old})
    assert status == 201
    a = Api(cp_stack.cp.url)
    a.login(user["username"], old)
    status, _, _ = a.request("POST", "/api/v1/auth/password",
                             {"oldPassword": old, "newPassword": new})
    assert status == 200
    assert a.request("POST", "/api/v1/auth/logout")[0] == 204
    mine = activity(api, userId=user["id"])["data"]
    assert [r["action"] for r in mine] == ["auth:logout", "auth:password", "auth:login"]
    assert mine[1]["changes"] == {"newPassword": {"after": "********"}}
    assert mine[1]["object"]["id"] == user["id"]
    text = json.dumps(mine)
    assert old not in text and new not in text

    status, body, _ = api.request("POST", env_path(env, "/usage"), {
        "granularity": "hour", "metrics": {"requestCount": "sum"},
        "filter": {"dateRange": {"start": "2026-01-01T00:00:00Z",
                                 "end": "2026-01-02T00:00:00Z"}}})
    assert status == 200, body
    assert activity(api, action="usage:get")["total"] == 0
