"""Workspaces, members and environments."""
import re
import uuid

from cphelpers import unique

RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def test_workspace_crud(api):
    name = unique("ws")
    status, ws, _ = api.request("POST", "/api/v1/workspaces",
                                {"name": name, "description": "team a"})
    assert status == 201
    uuid.UUID(ws["id"])
    assert ws["name"] == name and ws["description"] == "team a"
    assert re.fullmatch(RFC3339, ws["createdAt"]) and re.fullmatch(RFC3339, ws["updatedAt"])

    status, got, _ = api.request("GET", f"/api/v1/workspaces/{ws['id']}")
    assert status == 200 and got == ws

    status, upd, _ = api.request("PATCH", f"/api/v1/workspaces/{ws['id']}",
                                 {"description": "team b"})
    assert status == 200
    assert upd["name"] == name and upd["description"] == "team b"

    status, body, _ = api.request("DELETE", f"/api/v1/workspaces/{ws['id']}")
    assert status == 204 and body is None
    status, _, _ = api.request("GET", f"/api/v1/workspaces/{ws['id']}")
    assert status == 404
    status, _, _ = api.request("DELETE", f"/api/v1/workspaces/{ws['id']}")
    assert status == 404


def test_workspace_validation(api):
    for body, field in (({}, "name"), ({"name": ""}, "name"), ({"name": "x" * 129}, "name"),
                        ({"name": 5}, "name"), ({"name": "ok", "color": "red"}, "color"),
                        ({"name": "ok", "description": 3}, "description")):
        status, err, _ = api.request("POST", "/api/v1/workspaces", body)
        assert status == 400, body
        assert err["error"]["code"] == "validation_error"
        assert err["error"]["details"]["field"] == field
    status, _, _ = api.request("POST", "/api/v1/workspaces", {"name": "x" * 128})
    assert status == 201


def test_workspace_name_taken_409(api):
    name = unique("dup")
    api.create_workspace(name)
    status, body, _ = api.request("POST", "/api/v1/workspaces", {"name": name})
    assert status == 409
    assert body["error"]["code"] == "conflict"
    other = api.create_workspace(unique("dup"))
    status, _, _ = api.request("PATCH", f"/api/v1/workspaces/{other['id']}", {"name": name})
    assert status == 409


def test_workspace_list_pagination(api):
    prefix = unique("page")
    for i in range(3):
        api.create_workspace(f"{prefix}-{i}")
    status, all_, _ = api.request("GET", "/api/v1/workspaces?pageSize=1000")
    assert status == 200
    total = all_["total"]
    assert total >= 3 and len(all_["data"]) == total
    assert all_["pageIndex"] == 0 and all_["pageSize"] == 1000

    seen = []
    for page in range(total):
        status, one, _ = api.request("GET", f"/api/v1/workspaces?pageIndex={page}&pageSize=1")
        assert status == 200
        assert one["total"] == total and one["pageIndex"] == page and one["pageSize"] == 1
        assert len(one["data"]) == 1
        seen.append(one["data"][0]["id"])
    assert seen == [w["id"] for w in all_["data"]]

    status, past, _ = api.request("GET", f"/api/v1/workspaces?pageIndex={total}&pageSize=1")
    assert status == 200 and past["data"] == [] and past["total"] == total

    status, default, _ = api.request("GET", "/api/v1/workspaces")
    assert default["pageSize"] == 100 and default["pageIndex"] == 0


def test_members(api, cp_stack):
    ws = api.create_workspace(unique("members"))
    status, members, _ = api.request("GET", f"/api/v1/workspaces/{ws['id']}/members")
    assert status == 200
    assert members["total"] == 1
    me = api.request("GET", "/api/v1/auth/me")[1]
    assert members["data"][0]["userId"] == me["id"]
    assert members["data"][0]["role"] == "OWNER"

    # a second user, made directly in the database (no users API yet)
    uid = str(uuid.uuid4())
    cp_stack.pg.psql(f"INSERT INTO users (id, username, password_hash) "
                     f"VALUES ('{uid}', '{unique('user')}', 'x')")
    status, m, _ = api.request("POST", f"/api/v1/workspaces/{ws['id']}/members",
                               {"userId": uid, "role": "MEMBER"})
    assert status == 201 and m["userId"] == uid and m["role"] == "MEMBER"
    status, _, _ = api.request("POST", f"/api/v1/workspaces/{ws['id']}/members",
                               {"userId": uid, "role": "MEMBER"})
    assert status == 409
    status, err, _ = api.request("POST", f"/api/v1/workspaces/{ws['id']}/members",
                                 {"userId": uid, "role": "BOSS"})
    assert status == 400 and err["error"]["details"]["field"] == "role"
    status, err, _ = api.request("POST", f"/api/v1/workspaces/{ws['id']}/members",
                                 {"userId": str(uuid.uuid4()), "role": "MEMBER"})
    assert status == 400 and err["error"]["details"]["field"] == "userId"
    status, _, _ = api.request("GET", f"/api/v1/workspaces/{uuid.uuid4()}/members")
    assert status == 404


def test_environment_crud(api):
    ws = api.create_workspace(unique("envs"))
    base = f"/api/v1/workspaces/{ws['id']}/environments"
    status, e, _ = api.request("POST", base, {"name": "production"})
    assert status == 201
    assert e["workspaceId"] == ws["id"] and e["storePayload"] is True
    assert e["auditRequired"] is False
    status, got, _ = api.request("GET", f"{base}/{e['id']}")
    assert status == 200 and got == e
    status, upd, _ = api.request("PATCH", f"{base}/{e['id']}", {"storePayload": False})
    assert status == 200 and upd["storePayload"] is False and upd["name"] == "production"
    status, lst, _ = api.request("GET", base)
    assert status == 200 and lst["total"] == 1 and lst["data"][0]["id"] == e["id"]

    status, _, _ = api.request("POST", base, {"name": "production"})
    assert status == 409
    other = api.create_workspace(unique("envs"))
    api.create_environment(other["id"], "production")     # same name elsewhere is fine

    status, err, _ = api.request("POST", base, {"name": "x", "storePayload": "yes"})
    assert status == 400 and err["error"]["details"]["field"] == "storePayload"
    status, err, _ = api.request("POST", base, {"name": "x", "auditRequired": 1})
    assert status == 400 and err["error"]["details"]["field"] == "auditRequired"
    status, upd, _ = api.request("PATCH", f"{base}/{e['id']}", {"auditRequired": True})
    assert status == 200 and upd["auditRequired"] is True and upd["storePayload"] is False

    # an environment is reached only through its own workspace
    status, _, _ = api.request("GET", f"/api/v1/workspaces/{other['id']}/environments/{e['id']}")
    assert status == 404
    status, _, _ = api.request("POST", f"/api/v1/workspaces/{uuid.uuid4()}/environments",
                               {"name": "x"})
    assert status == 404

    status, _, _ = api.request("DELETE", f"{base}/{e['id']}")
    assert status == 204
    status, _, _ = api.request("GET", f"{base}/{e['id']}")
    assert status == 404
