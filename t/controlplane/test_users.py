"""Users (/api/v1/users), the caller's password (/auth/password), the state
CHANGE_PASSWORD, argon2id rehash at login, and sessions (/auth/sessions)."""
import ctypes
import ctypes.util
import re

from harness.api import Api
from harness.control_plane import ControlPlane
from harness.ports import free_port
from cphelpers import unique

PASSWORD = "a-long-enough-password"
USER_KEYS = {"id", "username", "name", "email", "enabled", "state", "roles", "createdAt", "updatedAt"}


READ_ONLY = "00000000-0000-4000-8000-000000000002"


def create_user(api, **fields):
    body = {"username": unique("user"), "password": PASSWORD, **fields}
    status, user, _ = api.request("POST", "/api/v1/users", body)
    assert status == 201, user
    return user


def login_as(cp_stack, username, password=PASSWORD):
    a = Api(cp_stack.cp.url)
    a.login(username, password)
    return a


def no_secret(obj):
    text = str(obj).lower()
    return "password" not in text and "argon2" not in text and PASSWORD not in text


def test_users_crud(api, cp_stack):
    user = create_user(api, name="Ada Lovelace", email="ada@example.com")
    assert set(user) == USER_KEYS
    assert user["enabled"] is True and user["state"] == "ACTIVE"
    assert user["name"] == "Ada Lovelace" and no_secret(user)

    status, got, _ = api.request("GET", f"/api/v1/users/{user['id']}")
    assert status == 200 and got == user

    status, page, _ = api.request("GET", "/api/v1/users?pageSize=1000")
    assert status == 200 and page["pageIndex"] == 0
    names = [u["username"] for u in page["data"]]
    assert "admin" in names and user["username"] in names and page["total"] >= 2
    assert no_secret(page)

    # PATCH merges; the rest stays
    status, patched, _ = api.request("PATCH", f"/api/v1/users/{user['id']}",
                                     {"email": "ada@example.org"})
    assert status == 200, patched
    assert patched["email"] == "ada@example.org" and patched["name"] == "Ada Lovelace"

    # PUT replaces: an absent member takes its default, the password stays
    status, put, _ = api.request("PUT", f"/api/v1/users/{user['id']}",
                                 {"username": user["username"]})
    assert status == 200, put
    assert put["name"] == "" and put["email"] == "" and put["enabled"] is True
    login_as(cp_stack, user["username"])

    # read-only and unknown members are refused
    for body in ({"state": "ACTIVE"}, {"id": user["id"]}, {"passwordHash": "x"}):
        status, err, _ = api.request("PATCH", f"/api/v1/users/{user['id']}", body)
        assert status == 400, (body, err)
        assert err["error"]["details"]["field"] == next(iter(body))

    status, _, _ = api.request("DELETE", f"/api/v1/users/{user['id']}")
    assert status == 204
    status, _, _ = api.request("GET", f"/api/v1/users/{user['id']}")
    assert status == 404
    status, _, _ = api.request("DELETE", f"/api/v1/users/{user['id']}")
    assert status == 404


def test_user_stored_hashed_argon2id(api, cp_stack):
    user = create_user(api)
    stored = cp_stack.pg.psql(
        f"SELECT password_hash FROM users WHERE id = '{user['id']}'").strip()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_user_validation(api):
    cases = [
        ({"password": PASSWORD}, "username"),
        ({"username": unique("u")}, "password"),
        ({"username": unique("u"), "password": "short"}, "password"),
        ({"username": "u" * 129, "password": PASSWORD}, "username"),
        ({"username": "a\nb", "password": PASSWORD}, "username"),
        ({"username": unique("u"), "password": PASSWORD, "email": "nope"}, "email"),
        ({"username": unique("u"), "password": PASSWORD, "enabled": "yes"}, "enabled"),
        ({"username": unique("u"), "password": "x" * 1025}, "password"),
        ({"username": "same-as-password-12", "password": "same-as-password-12"}, "password"),
    ]
    for body, field in cases:
        status, err, _ = api.request("POST", "/api/v1/users", body)
        assert status == 400, (body, err)
        assert err["error"]["details"]["field"] == field, (body, err)
    status, err, _ = api.request("POST", "/api/v1/users", {"username": unique("u"),
                                                          "password": "short"})
    assert "12" in err["error"]["message"]


def test_username_taken(api):
    user = create_user(api)
    status, err, _ = api.request("POST", "/api/v1/users",
                                 {"username": user["username"], "password": PASSWORD})
    assert status == 409 and err["error"]["details"]["field"] == "username"
    other = create_user(api)
    status, err, _ = api.request("PATCH", f"/api/v1/users/{other['id']}",
                                 {"username": user["username"]})
    assert status == 409 and err["error"]["details"]["field"] == "username"
    status, _, _ = api.request("POST", "/api/v1/users",
                               {"username": "admin", "password": PASSWORD})
    assert status == 409


def test_cannot_delete_or_disable_self(cp_stack):
    me = Api(cp_stack.cp.url)
    me.login()
    status, who, _ = me.request("GET", "/api/v1/auth/me")
    status, err, _ = me.request("DELETE", f"/api/v1/users/{who['id']}")
    assert status == 409, err
    status, err, _ = me.request("PATCH", f"/api/v1/users/{who['id']}", {"enabled": False})
    assert status == 400 and err["error"]["details"]["field"] == "enabled"
    status, _, _ = me.request("GET", "/api/v1/auth/me")
    assert status == 200


def test_disable_ends_sessions_and_refuses_login(api, cp_stack):
    user = create_user(api)
    a = login_as(cp_stack, user["username"])
    status, _, _ = api.request("PATCH", f"/api/v1/users/{user['id']}", {"enabled": False})
    assert status == 200
    status, _, _ = a.request("GET", "/api/v1/auth/me")
    assert status == 401
    status, _, _ = Api(cp_stack.cp.url).request(
        "POST", "/api/v1/auth/login", {"username": user["username"], "password": PASSWORD},
        token=None)
    assert status == 401
    status, _, _ = api.request("PATCH", f"/api/v1/users/{user['id']}", {"enabled": True})
    assert status == 200
    login_as(cp_stack, user["username"])


def test_change_password(api, cp_stack):
    user = create_user(api)
    a = login_as(cp_stack, user["username"])
    other = login_as(cp_stack, user["username"])
    new = "another-long-password"

    def change(old, new_password):
        return a.request("POST", "/api/v1/auth/password",
                         {"oldPassword": old, "newPassword": new_password})

    status, err, _ = change("wrong-old-password", new)
    assert status == 400 and err["error"]["details"]["field"] == "oldPassword"
    for bad, rule in (("short", "12"), (user["username"], "username"), (PASSWORD, "old")):
        status, err, _ = change(PASSWORD, bad)
        assert status == 400, bad
        assert err["error"]["details"]["field"] == "newPassword"
        assert rule in err["error"]["message"], err
    status, err, _ = a.request("POST", "/api/v1/auth/password", {"newPassword": new})
    assert status == 400 and err["error"]["details"]["field"] == "oldPassword"

    status, me, _ = change(PASSWORD, new)
    assert status == 200, me
    assert me["state"] == "ACTIVE" and no_secret(me)
    # this session goes on, the user's other one is over
    assert a.request("GET", "/api/v1/auth/me")[0] == 200
    assert other.request("GET", "/api/v1/auth/me")[0] == 401
    login_as(cp_stack, user["username"], new)
    status, _, _ = Api(cp_stack.cp.url).request(
        "POST", "/api/v1/auth/login", {"username": user["username"], "password": PASSWORD},
        token=None)
    assert status == 401


def test_temporary_password_requires_change(api, cp_stack):
    user = create_user(api, temporaryPassword=True)
    assert user["state"] == "CHANGE_PASSWORD" and "temporaryPassword" not in user
    a = Api(cp_stack.cp.url)
    status, body, _ = a.request("POST", "/api/v1/auth/login",
                                {"username": user["username"], "password": PASSWORD},
                                token=None)
    assert status == 200 and body["user"]["state"] == "CHANGE_PASSWORD"
    a.token = body["token"]

    for method, path in (("GET", "/api/v1/workspaces"), ("GET", "/api/v1/users"),
                         ("GET", "/api/v1/auth/sessions"), ("POST", "/api/v1/workspaces")):
        status, err, _ = a.request(method, path, {"name": unique("ws")}
                                   if method == "POST" else None)
        assert status == 403, (path, err)
        assert err["error"]["code"] == "password_change_required"
    status, me, _ = a.request("GET", "/api/v1/auth/me")
    assert status == 200 and me["state"] == "CHANGE_PASSWORD"

    status, me, _ = a.request("POST", "/api/v1/auth/password",
                              {"oldPassword": PASSWORD, "newPassword": "my-own-password-1"})
    assert status == 200 and me["state"] == "ACTIVE"
    # a new user holds no role: it may use its own things only, until given one
    assert a.request("GET", "/api/v1/workspaces")[0] == 403
    assert api.request("POST", f"/api/v1/roles/{READ_ONLY}/assign",
                       {"userIds": [user["id"]]})[0] == 200
    assert a.request("GET", "/api/v1/workspaces")[0] == 200

    # an admin's reset with temporaryPassword puts the user back in it
    status, reset, _ = api.request("PATCH", f"/api/v1/users/{user['id']}",
                                   {"password": PASSWORD, "temporaryPassword": True})
    assert status == 200 and reset["state"] == "CHANGE_PASSWORD"
    assert a.request("GET", "/api/v1/auth/me")[0] == 401     # sessions ended
    status, err, _ = api.request("PATCH", f"/api/v1/users/{user['id']}",
                                 {"temporaryPassword": True})
    assert status == 400 and err["error"]["details"]["field"] == "temporaryPassword"

    # logout is open in the state
    b = login_as(cp_stack, user["username"])
    assert b.request("POST", "/api/v1/auth/logout")[0] == 204


def test_generated_admin_password_requires_change(cp_stack):
    """The first admin whose password was made up starts in CHANGE_PASSWORD;
    with VMX_ADMIN_PASSWORD set (the cp_stack's) it does not."""
    status, me, _ = login_as(cp_stack, "admin", "admin-test-password").request(
        "GET", "/api/v1/auth/me")
    assert me["state"] == "ACTIVE"

    cp_stack.pg.psql("CREATE DATABASE vmx_generated_admin", dbname="postgres")
    dsn = cp_stack.pg.dsn.replace("dbname=vmx", "dbname=vmx_generated_admin")
    cp = ControlPlane(cp_stack.base / "cp-generated-admin", free_port(), dsn, [],
                      cp_stack.token_file, cp_stack.master_key_file, admin_password=None)
    cp.start()
    try:
        generated = re.findall(r"admin password: (\S+)", cp.log_text())[0]
        a = Api(cp.url)
        status, body, _ = a.request("POST", "/api/v1/auth/login",
                                    {"username": "admin", "password": generated}, token=None)
        assert status == 200 and body["user"]["state"] == "CHANGE_PASSWORD"
        a.token = body["token"]
        status, err, _ = a.request("GET", "/api/v1/workspaces")
        assert status == 403 and err["error"]["code"] == "password_change_required"
        status, _, _ = a.request("POST", "/api/v1/auth/password",
                                 {"oldPassword": generated, "newPassword": PASSWORD})
        assert status == 200
        assert a.request("GET", "/api/v1/workspaces")[0] == 200
    finally:
        assert cp.stop() == 0


def weak_argon2id(password):
    """An argon2id hash with libsodium's smallest parameters."""
    sodium = ctypes.CDLL(ctypes.util.find_library("sodium"))
    assert sodium.sodium_init() >= 0
    out = ctypes.create_string_buffer(128)
    pw = password.encode()
    rc = sodium.crypto_pwhash_str_alg(out, pw, ctypes.c_ulonglong(len(pw)),
                                      ctypes.c_ulonglong(1), ctypes.c_size_t(8192),
                                      ctypes.c_int(2))    # crypto_pwhash_ALG_ARGON2ID13
    assert rc == 0
    return out.value.decode()


def test_rehash_on_login(api, cp_stack):
    user = create_user(api)
    weak = weak_argon2id(PASSWORD)
    cp_stack.pg.psql(f"UPDATE users SET password_hash = '{weak}' WHERE id = '{user['id']}'")
    login_as(cp_stack, user["username"])
    stored = cp_stack.pg.psql(
        f"SELECT password_hash FROM users WHERE id = '{user['id']}'").strip()
    assert stored != weak and stored.startswith("$argon2id$")
    assert "m=8,t=1" not in stored
    login_as(cp_stack, user["username"])       # the new hash verifies


def test_sessions_list_and_end(api, cp_stack):
    user = create_user(api)
    a = login_as(cp_stack, user["username"])
    b = login_as(cp_stack, user["username"])
    status, page, _ = a.request("GET", "/api/v1/auth/sessions")
    assert status == 200 and page["total"] == 2
    for s in page["data"]:
        assert set(s) >= {"id", "createdAt", "lastSeenAt", "expiresAt", "fromAddress",
                          "current"}
        assert s["fromAddress"] == "127.0.0.1"
        assert a.token not in str(s) and b.token not in str(s)
    assert sorted(s["current"] for s in page["data"]) == [False, True]
    other = next(s for s in page["data"] if not s["current"])

    # an unknown id is 404; the caller's other session ends
    status, _, _ = a.request("DELETE", "/api/v1/auth/sessions/"
                             "00000000-0000-4000-8000-000000000000")
    assert status == 404
    status, _, _ = a.request("DELETE", f"/api/v1/auth/sessions/{other['id']}")
    assert status == 204
    assert b.request("GET", "/api/v1/auth/me")[0] == 401
    assert a.request("GET", "/api/v1/auth/me")[0] == 200

    # an administrator ends anyone's
    c = login_as(cp_stack, user["username"])
    status, page, _ = c.request("GET", "/api/v1/auth/sessions")
    mine = next(s for s in page["data"] if s["current"])
    status, _, _ = api.request("DELETE", f"/api/v1/auth/sessions/{mine['id']}")
    assert status == 204
    assert c.request("GET", "/api/v1/auth/me")[0] == 401
    # the admin's own list does not show the user's sessions
    status, page, _ = api.request("GET", "/api/v1/auth/sessions?pageSize=1000")
    assert all(s["userId"] != user["id"] for s in page["data"])


def test_users_need_a_token(cp_stack):
    a = Api(cp_stack.cp.url)
    for method, path in (("GET", "/api/v1/users"), ("POST", "/api/v1/users"),
                         ("POST", "/api/v1/auth/password"),
                         ("GET", "/api/v1/auth/sessions")):
        status, _, _ = a.request(method, path, {} if method == "POST" else None, token=None)
        assert status == 401, path
