"""Roles, policies and workspace membership (SPEC §8): the built-in roles,
policy validation with the field and position, deny-first evaluation over
anchored globs, assignment, members and their OWNERs."""
from harness.api import Api
from cphelpers import env_path, openai_connection, unique

PASSWORD = "a-long-test-password"
ADMIN, READ_ONLY, POWER_USER = ("00000000-0000-4000-8000-00000000000%d" % i
                                for i in (1, 2, 3))


def new_user(api, cp_stack, *roles):
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"username": unique("user"), "password": PASSWORD})
    assert status == 201, user
    for role in roles:
        status, body, _ = api.request("POST", f"/api/v1/roles/{role}/assign",
                                      {"userIds": [user["id"]]})
        assert status == 200, body
    a = Api(cp_stack.cp.url)
    a.login(user["username"], PASSWORD)
    return user, a


def new_role(api, statements, name=None):
    status, role, _ = api.request("POST", "/api/v1/roles",
                                  {"name": name or unique("role"),
                                   "policy": {"statements": statements}})
    assert status == 201, role
    return role


def add_member(api, ws_id, user_id, role="MEMBER"):
    status, body, _ = api.request("POST", f"/api/v1/workspaces/{ws_id}/members",
                                  {"userId": user_id, "role": role})
    assert status == 201, body


def error_of(resp):
    status, body, _ = resp
    return status, body["error"]["code"], body["error"].get("details", {}).get("field")


def test_builtin_roles(api):
    status, roles, _ = api.request("GET", "/api/v1/roles?pageSize=1000")
    assert status == 200
    by_name = {r["name"]: r for r in roles["data"]}
    assert {"admin", "read-only", "power-user"} <= set(by_name)
    assert by_name["admin"]["builtin"] is True and by_name["admin"]["userCount"] >= 1
    assert by_name["read-only"]["policy"] == {"statements": [
        {"effect": "allow", "actions": ["*:get", "*:list"], "resources": ["*"]}]}
    status, me, _ = api.request("GET", "/api/v1/auth/me")
    assert "admin" in me["roles"]
    for method, body in (("PATCH", {"description": "x"}), ("DELETE", None)):
        assert error_of(api.request(method, f"/api/v1/roles/{ADMIN}", body))[:2] == \
            (403, "forbidden")


def test_policy_validation_names_field_and_position(api):
    def refused(policy):
        return error_of(api.request("POST", "/api/v1/roles",
                                    {"name": unique("role"), "policy": policy}))

    ok = {"effect": "allow", "actions": ["*:get"], "resources": ["*"]}
    status, code, field = refused({"statements": [ok, {"effect": "allow",
                                   "actions": ["ai-connection:get", "ai-conection:create"],
                                   "resources": ["*"]}]})
    assert (status, code, field) == (400, "validation_error",
                                     "policy.statements[1].actions[1]")
    status, body, _ = api.request("POST", "/api/v1/roles", {"name": unique("role"), "policy": {
        "statements": [{"effect": "deny", "actions": ["*"],
                        "resources": ["workspace:acme:{a,b}"]}]}})
    assert status == 400
    assert body["error"]["details"]["field"] == "policy.statements[0].resources[0]"
    assert "character 16" in body["error"]["message"]
    assert refused({"statements": [dict(ok, effect="permit")]})[2] == \
        "policy.statements[0].effect"
    assert refused({"statements": [dict(ok, resources=[])]})[2] == \
        "policy.statements[0].resources"
    assert refused({"statements": [dict(ok, when="now")]})[2] == "policy.statements[0].when"
    assert refused({"statement": []})[2] == "policy.statement"
    assert error_of(api.request("POST", "/api/v1/roles", {"name": unique("role")}))[2] == \
        "policy"
    name = unique("role")
    new_role(api, [ok], name)
    assert error_of(api.request("POST", "/api/v1/roles",
                                {"name": name, "policy": {"statements": []}}))[0] == 409


def test_role_crud_and_assignment(api, cp_stack):
    role = new_role(api, [{"effect": "allow", "actions": ["workspace:list"],
                           "resources": ["workspace:*"]}])
    user, a = new_user(api, cp_stack)
    assert a.request("GET", "/api/v1/workspaces")[0] == 403
    status, body, _ = api.request("POST", f"/api/v1/roles/{role['id']}/assign",
                                  {"userIds": [user["id"], "00000000-0000-4000-8000-0000000000ff"]})
    assert (status, body["error"]["details"]["field"]) == (400, "userIds[1]")
    status, body, _ = api.request("POST", f"/api/v1/roles/{role['id']}/assign",
                                  {"userIds": [user["id"]]})
    assert status == 200 and body["userCount"] == 1
    # assigning again is no error; the change applies to the next request
    assert api.request("POST", f"/api/v1/roles/{role['id']}/assign",
                       {"userIds": [user["id"]]})[0] == 200
    assert a.request("GET", "/api/v1/workspaces")[0] == 200
    assert a.request("GET", "/api/v1/users")[0] == 403
    status, got, _ = api.request("GET", f"/api/v1/users/{user['id']}")
    assert got["roles"] == [role["name"]]

    status, body, _ = api.request("PATCH", f"/api/v1/roles/{role['id']}", {"policy": {
        "statements": [{"effect": "allow", "actions": ["user:list"], "resources": ["*"]}]}})
    assert status == 200, body
    assert a.request("GET", "/api/v1/workspaces")[0] == 403
    assert a.request("GET", "/api/v1/users")[0] == 200

    assert api.request("POST", f"/api/v1/roles/{role['id']}/unassign",
                       {"userIds": [user["id"]]})[0] == 200
    assert a.request("GET", "/api/v1/users")[0] == 403
    assert api.request("DELETE", f"/api/v1/roles/{role['id']}")[0] == 204
    assert api.request("GET", f"/api/v1/roles/{role['id']}")[0] == 404


def test_last_admin_stays(api, cp_stack):
    status, admins, _ = api.request("GET", "/api/v1/users?pageSize=1000")
    holders = [u["id"] for u in admins["data"] if "admin" in u["roles"] and u["enabled"]]
    status, body, _ = api.request("POST", f"/api/v1/roles/{ADMIN}/unassign",
                                  {"userIds": holders})
    assert status == 409 and "admin" in body["error"]["message"]
    status, me, _ = api.request("GET", "/api/v1/auth/me")
    assert "admin" in me["roles"]


def test_deny_wins_and_power_user_limits(api, cp_stack, env):
    deny = new_role(api, [{"effect": "deny", "actions": ["ai-connection:delete"],
                           "resources": ["*"]}])
    user, a = new_user(api, cp_stack, POWER_USER, deny["id"])
    add_member(api, env[0], user["id"])
    conn = openai_connection(api, env)
    assert a.request("GET", env_path(env, f"/connections/{conn['id']}"))[0] == 200
    status, body, _ = a.request("DELETE", env_path(env, f"/connections/{conn['id']}"))
    assert status == 403 and "ai-connection:delete" in body["error"]["message"]
    # power-user changes no user and no role
    assert a.request("POST", "/api/v1/users",
                     {"username": unique("u"), "password": PASSWORD})[0] == 403
    assert a.request("POST", f"/api/v1/roles/{ADMIN}/assign",
                     {"userIds": [user["id"]]})[0] == 403
    assert a.request("GET", "/api/v1/users")[0] == 200


def test_custom_role_one_environment(api, cp_stack):
    ws = api.create_workspace(unique("ws"))
    prod = api.create_environment(ws["id"], "prod")
    dev = api.create_environment(ws["id"], "prod-eu")
    role = new_role(api, [
        {"effect": "allow", "actions": ["*"],
         "resources": [f"workspace:{ws['name']}:environment:prod",
                       f"workspace:{ws['name']}:environment:prod:*"]},
        {"effect": "allow", "actions": ["workspace:get"],
         "resources": [f"workspace:{ws['name']}"]}])
    user, a = new_user(api, cp_stack, role["id"])
    add_member(api, ws["id"], user["id"])
    p, d = (ws["id"], prod["id"]), (ws["id"], dev["id"])
    conn = openai_connection(a, p)
    assert a.request("GET", env_path(p, f"/connections/{conn['id']}"))[0] == 200
    assert a.request("GET", env_path(p, "/connections"))[0] == 200
    # the glob is anchored: prod's does not reach prod-eu
    status, body, _ = a.request("GET", env_path(d, "/connections"))
    assert status == 403
    assert f"workspace:{ws['name']}:environment:prod-eu:ai-connection:*" in \
        body["error"]["message"]
    assert a.request("POST", env_path(d, "/connections"),
                     {"name": "x", "provider": "openai", "config": {"apiKey": "k"}})[0] == 403
    assert a.request("GET", f"/api/v1/workspaces/{ws['id']}")[0] == 200
    assert a.request("DELETE", f"/api/v1/workspaces/{ws['id']}")[0] == 403


def test_escaped_names_cannot_widen_a_glob(api, cp_stack):
    base = unique("acme")
    mine = api.create_workspace(base)
    other = api.create_workspace(base + ":evil")
    role = new_role(api, [{"effect": "allow", "actions": ["*"],
                           "resources": [f"workspace:{base}", f"workspace:{base}:*"]}])
    user, a = new_user(api, cp_stack, role["id"])
    add_member(api, mine["id"], user["id"])
    add_member(api, other["id"], user["id"])
    assert a.request("GET", f"/api/v1/workspaces/{mine['id']}")[0] == 200
    status, body, _ = a.request("GET", f"/api/v1/workspaces/{other['id']}")
    assert status == 403 and f"workspace:{base}%3Aevil" in body["error"]["message"]


def test_members(api, cp_stack):
    owner, o = new_user(api, cp_stack, POWER_USER)
    member, m = new_user(api, cp_stack, POWER_USER)
    outsider, x = new_user(api, cp_stack, POWER_USER)
    status, ws, _ = o.request("POST", "/api/v1/workspaces", {"name": unique("ws")})
    assert status == 201
    members = f"/api/v1/workspaces/{ws['id']}/members"
    status, body, _ = o.request("GET", members)
    assert [(b["userId"], b["role"]) for b in body["data"]] == [(owner["id"], "OWNER")]
    assert o.request("POST", members, {"userId": member["id"], "role": "MEMBER"})[0] == 201

    # a MEMBER sees the workspace but does not manage its members
    assert m.request("GET", f"/api/v1/workspaces/{ws['id']}")[0] == 200
    assert m.request("POST", members, {"userId": outsider["id"], "role": "MEMBER"})[0] == 403
    assert m.request("DELETE", f"{members}/{owner['id']}")[0] == 403
    assert m.request("PATCH", f"/api/v1/workspaces/{ws['id']}", {"description": "x"})[0] == 403

    # an outsider does not see it at all: 404, and not in its list
    for path in (f"/api/v1/workspaces/{ws['id']}", members,
                 f"/api/v1/workspaces/{ws['id']}/environments"):
        assert x.request("GET", path)[0] == 404
    status, listed, _ = x.request("GET", "/api/v1/workspaces?pageSize=1000")
    assert status == 200 and ws["id"] not in {w["id"] for w in listed["data"]}
    status, listed, _ = m.request("GET", "/api/v1/workspaces?pageSize=1000")
    assert ws["id"] in {w["id"] for w in listed["data"]}

    # the last OWNER can neither leave nor step down; with a second one it can
    assert error_of(o.request("DELETE", f"{members}/{owner['id']}"))[:2] == (409, "conflict")
    assert o.request("PATCH", f"{members}/{owner['id']}", {"role": "MEMBER"})[0] == 409
    status, body, _ = o.request("PATCH", f"{members}/{member['id']}", {"role": "OWNER"})
    assert status == 200 and body["role"] == "OWNER"
    assert o.request("PATCH", f"{members}/{member['id']}", {"role": "ADMIN"})[0] == 400
    assert o.request("DELETE", f"{members}/{owner['id']}")[0] == 204
    assert o.request("GET", f"/api/v1/workspaces/{ws['id']}")[0] == 404
    # a member leaves on its own
    assert m.request("POST", members, {"userId": owner["id"], "role": "MEMBER"})[0] == 201
    assert o.request("DELETE", f"{members}/{owner['id']}")[0] == 204
    # an admin reaches every workspace without being a member
    assert api.request("GET", members)[0] == 200


def test_own_profile(api, cp_stack):
    user, a = new_user(api, cp_stack)
    status, me, _ = a.request("PATCH", "/api/v1/auth/me", {"name": "Grace", "email": "g@x.io"})
    assert status == 200 and (me["name"], me["email"]) == ("Grace", "g@x.io")
    for field, value in (("username", "root"), ("enabled", False), ("roles", ["admin"])):
        status, body, _ = a.request("PATCH", "/api/v1/auth/me", {field: value})
        assert status == 400 and body["error"]["details"]["field"] == field
    assert a.request("GET", "/api/v1/auth/me")[1]["name"] == "Grace"
