"""The permission matrix, generated from the route table.

`vmx-control-plane --routes` prints every route with the action a policy
must allow, the resource template it is checked on and whether it needs an
OWNER or every workspace.  This test walks that table: no route may lack a
permission, and every route is called by seven callers (admin, read-only,
power-user, a custom role allowing one environment, a member of another
workspace only, no token, an expired session).  The status each must get is
computed here from SPEC §8's rules (a model of its own: anchored globs,
deny wins, no match is a deny, non-members see no workspace), and no answer
to a caller outside workspace A may name anything of A.
"""
import fnmatch
import re
import subprocess
import uuid

import pytest

from harness.api import Api
from harness.control_plane import BINARY
from cphelpers import unique

PASSWORD = "a-long-test-password"
READ_ONLY, POWER_USER = ("00000000-0000-4000-8000-00000000000%d" % i for i in (2, 3))

# routes anyone may call, and routes any logged-in user calls on their own
OPEN = {("GET", "/api/v1/health"), ("GET", "/metrics"), ("POST", "/api/v1/auth/login"),
        ("GET", "/api/v1/auth/oidc/login"), ("GET", "/api/v1/auth/oidc/callback"),
        ("POST", "/api/v1/dataplanes/announce")}
OWN = {"/api/v1/auth/logout", "/api/v1/auth/me", "/api/v1/auth/password",
       "/api/v1/auth/sessions", "/api/v1/auth/sessions/{id}"}
# a call that would end the caller's session is not part of the matrix
NOT_CALLED = {("POST", "/api/v1/auth/logout")}

# the callers' policies, filled from the built-in roles as the API shows them
POLICIES = {}


def route_table():
    out = subprocess.run([str(BINARY), "--routes"], check=True, capture_output=True,
                         text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def test_every_route_declares_its_permission():
    routes = route_table()
    assert len(routes) > 60
    for method, pattern, action, resource, flags in routes:
        if (method, pattern) in OPEN:
            assert action == "-", pattern
            continue
        assert re.fullmatch(r"[a-z-]+:[a-z-]+", action), (method, pattern, action)
        if resource == "-":
            assert pattern in OWN, f"{method} {pattern} has no resource"
            continue
        params = set(re.findall(r"\{(\w+)\}", pattern))
        for name in re.findall(r"\{(\w+)\}", resource):
            # a path parameter, or the new object's name in the body of a POST
            assert name in params or (method == "POST" and name in ("name", "username")), \
                (pattern, resource)
        assert flags in ("-", "owner", "owner-or-self", "all-workspaces", "api-key")
        # an API key authenticates only where it is one of the environment's
        assert flags != "api-key" or "{env}" in pattern, pattern
        if "{ws}" in pattern:
            assert resource.startswith("workspace:{ws}"), pattern


def escape(name):
    return "".join(c if c.isascii() and c.isprintable() and c not in " :*?%"
                   else "".join("%%%02X" % b for b in c.encode()) for c in name)


def allows(policies, action, resource):
    allowed = False
    for policy in policies:
        for st in policy["statements"]:
            if any(fnmatch.fnmatchcase(action, a) for a in st["actions"]) and \
               any(fnmatch.fnmatchcase(resource, r) for r in st["resources"]):
                if st["effect"] == "deny":
                    return False
                allowed = True
    return allowed


class World:
    """Workspace A (environments prod and dev, with a connection, a resource
    and an API key in prod), workspace B, and the callers."""

    def __init__(self, api, cp_stack):
        self.api = api
        self.cp_stack = cp_stack
        self.a = api.create_workspace(unique("mxa"))
        self.b = api.create_workspace(unique("mxb"))
        self.prod = api.create_environment(self.a["id"], "prod")
        self.dev = api.create_environment(self.a["id"], "dev")
        ws, env = self.a["id"], self.prod["id"]
        self.conn = api.create_connection(ws, env, name=unique("conn"), provider="openai",
                                          config={"apiKey": "sk-" + uuid.uuid4().hex})
        self.resource = api.create_resource(ws, env, name=unique("res"), model={
            "provider": "openai", "model": "gpt-4o", "connectionId": self.conn["id"]})
        self.key = api.create_api_key(ws, env, name=unique("key"),
                                      resources=[self.resource["id"]])
        status, self.role, _ = api.request("POST", "/api/v1/roles", {
            "name": unique("target-role"), "policy": {"statements": []}})
        assert status == 201
        self.target = self.user()
        status, roles, _ = api.request("GET", "/api/v1/roles?pageSize=1000")
        for role in roles["data"]:
            if role["builtin"]:
                POLICIES[role["name"]] = [role["policy"]]
        assert {"admin", "read-only", "power-user"} <= set(POLICIES)
        POLICIES["custom"] = [{"statements": [{"effect": "allow", "actions": ["*"],
            "resources": [f"workspace:{escape(self.a['name'])}:environment:prod",
                          f"workspace:{escape(self.a['name'])}:environment:prod:*"]}]}]
        status, custom, _ = api.request("POST", "/api/v1/roles", {
            "name": unique("one-env"), "policy": POLICIES["custom"][0]})
        assert status == 201

        self.callers = {"admin": (api, None, "admin")}
        for name, role, member_of in (("read-only", READ_ONLY, self.a),
                                      ("power-user", POWER_USER, self.a),
                                      ("custom", custom["id"], self.a),
                                      ("other", POWER_USER, self.b)):
            user = self.user(role)
            self.add_member(member_of["id"], user["id"], "MEMBER")
            a = Api(cp_stack.cp.url)
            a.login(user["username"], PASSWORD)
            self.callers[name] = (a, user, "power-user" if name == "other" else name)
        self.members = {"read-only": {self.a["id"]}, "power-user": {self.a["id"]},
                        "custom": {self.a["id"]}, "other": {self.b["id"]}}

        self.anonymous = Api(cp_stack.cp.url)
        expired_user = self.user(POWER_USER)
        self.expired = Api(cp_stack.cp.url)
        self.expired.login(expired_user["username"], PASSWORD)
        cp_stack.pg.psql("UPDATE sessions SET expires_at = now() - interval '1 second'"
                         f" WHERE user_id = '{expired_user['id']}'")

    def user(self, role=None):
        status, user, _ = self.api.request("POST", "/api/v1/users", {
            "username": unique("mx"), "password": PASSWORD})
        assert status == 201
        if role:
            assert self.api.request("POST", f"/api/v1/roles/{role}/assign",
                                    {"userIds": [user["id"]]})[0] == 200
        return user

    def add_member(self, ws_id, user_id, role):
        assert self.api.request("POST", f"/api/v1/workspaces/{ws_id}/members",
                                {"userId": user_id, "role": role})[0] == 201


@pytest.fixture(scope="module")
def world(api, cp_stack):
    return World(api, cp_stack)


def target_of(world, method, pattern, caller):
    """The path to call and the names its resource template resolves to.
    Deletes target a throwaway workspace or environment, or an id that
    does not exist, so that the matrix destroys nothing it needs."""
    ws, env = world.a, world.prod
    if method == "DELETE" and pattern.endswith("/{ws}"):
        ws = world.api.create_workspace(unique("mxdel"))
        if caller in world.members and world.a["id"] in world.members[caller]:
            world.add_member(ws["id"], world.callers[caller][1]["id"], "MEMBER")
            world.members[caller].add(ws["id"])
    if method == "DELETE" and pattern.endswith("/{env}"):
        env = world.api.create_environment(ws["id"], unique("mxdel"))
    kind_ids = {"users": (world.target["id"], world.target["username"]),
                "roles": (world.role["id"], world.role["name"]),
                "members": (world.callers["read-only"][1]["id"],
                            world.callers["read-only"][1]["username"]),
                "connections": (world.conn["id"], world.conn["name"]),
                "resources": (world.resource["id"], world.resource["name"]),
                "api-keys": (world.key["id"], world.key["name"])}
    m = re.search(r"/([a-z-]+)/\{id\}", pattern)
    obj_id, obj_name = (None, None)
    if m:
        obj_id, obj_name = kind_ids.get(m.group(1), (None, None))
        if obj_id is None or method == "DELETE":
            obj_id = str(uuid.uuid4())
            obj_name = obj_id
    path = (pattern.replace("{ws}", ws["id"]).replace("{env}", env["id"])
            .replace("{id}", obj_id or ""))
    return path, ws, env, obj_id, obj_name


def expected(world, caller, route, ws, env, obj_id, obj_name):
    """The status the model gives, or "allowed" for the handler's own."""
    method, pattern, action, template, flags = route
    if caller in ("anonymous", "expired"):
        return 401
    if template == "-":
        return "allowed"
    policies = POLICIES[world.callers[caller][2]]
    all_ws = allows(policies, "workspace:access-all", "workspace:*")
    if flags == "all-workspaces" and not all_ws:
        return 403
    resource = template
    if "{ws}" in template:
        member = ws["id"] in world.members.get(caller, set())
        ws_name = "workspace:" + escape(ws["name"])
        if not member and not allows(policies, "workspace:access-all", ws_name):
            return 404
        if flags in ("owner", "owner-or-self") and \
                not allows(policies, "workspace:access-all", ws_name):
            return 403      # every caller here is a MEMBER, none an OWNER
        resource = resource.replace("{ws}", escape(ws["name"]))
    resource = resource.replace("{env}", escape(env["name"]))
    resource = resource.replace("{id}", escape(obj_name or ""))
    resource = re.sub(r"\{(name|username)\}", "*", resource)
    return "allowed" if allows(policies, action, resource) else 403


def allowed_statuses(method, pattern, obj_id, obj_name):
    """What the handler answers an allowed caller: every write sends a body
    with an unknown field (400); an {id} of no object is a 404."""
    missing = obj_id is not None and obj_id == obj_name
    if method == "DELETE":
        return {204, 404}
    if method == "GET":
        return {404} if missing else {200}
    return {400, 404} if missing else {400}


CALLERS = ("admin", "read-only", "power-user", "custom", "other", "anonymous", "expired")


def test_matrix(world):
    routes = [r for r in route_table() if (r[0], r[1]) not in OPEN | NOT_CALLED]
    failures = []
    a_marks = {world.a["id"], world.a["name"], world.prod["id"], world.conn["id"],
               world.conn["name"], world.key["id"]}
    for route in routes:
        method, pattern = route[0], route[1]
        for caller in CALLERS:
            path, ws, env, obj_id, obj_name = target_of(world, method, pattern, caller)
            client = {"anonymous": world.anonymous, "expired": world.expired}.get(caller)
            if client is None:
                client = world.callers[caller][0]
            token = None if caller == "anonymous" else client.token
            body = None if method in ("GET", "DELETE") else {"__matrix": 1}
            status, answer, _ = client.request(method, path, body, token=token)
            want = expected(world, caller, route, ws, env, obj_id, obj_name)
            wanted = allowed_statuses(method, pattern, obj_id, obj_name) if want == "allowed" else {want}
            if status not in wanted:
                failures.append(f"{caller:10} {method:6} {pattern}: {status} not {wanted}"
                                f" ({answer})")
            # roles are global: a policy names the workspaces it is about
            leaks = not pattern.startswith("/api/v1/roles")
            if caller == "other" and leaks and any(m in str(answer) for m in a_marks):
                failures.append(f"{caller} {method} {pattern}: the answer names workspace A")
    assert not failures, "\n".join(failures)


def test_lists_hide_other_workspaces(world):
    def listed(caller):
        status, body, _ = world.callers[caller][0].request("GET",
                                                           "/api/v1/workspaces?pageSize=1000")
        assert status == 200
        return {w["id"] for w in body["data"]}

    assert world.b["id"] in listed("other") and world.a["id"] not in listed("other")
    assert world.a["id"] in listed("read-only") and world.b["id"] not in listed("read-only")
    assert {world.a["id"], world.b["id"]} <= listed("admin")


def test_api_key_matrix(world):
    """An API key of environment prod is a caller of the routes flagged
    api-key in prod, with no policy (the handler's answer), and of no
    other route; in environment dev it is no caller at all."""
    routes = [r for r in route_table() if (r[0], r[1]) not in OPEN | NOT_CALLED]
    key = world.key["key"]
    failures = []
    for method, pattern, action, template, flags in routes:
        path, ws, env, obj_id, obj_name = target_of(world, method, pattern, "key")
        body = None if method in ("GET", "DELETE") else {"__matrix": 1}
        wanted = allowed_statuses(method, pattern, obj_id, obj_name) \
            if flags == "api-key" else {401}
        status, answer, _ = world.api.request(method, path, body, token=key)
        if status not in wanted:
            failures.append(f"key {method:6} {pattern}: {status} not {wanted} ({answer})")
        if flags == "api-key":
            other = path.replace(world.prod["id"], world.dev["id"])
            status, answer, _ = world.api.request(method, other, body, token=key)
            if status != 401:
                failures.append(f"key in dev {method:6} {pattern}: {status} ({answer})")
    assert not failures, "\n".join(failures)
