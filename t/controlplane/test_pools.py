"""Pool definitions (SPEC §6, §8): GET, PUT (validated, replaced), DELETE, the
config version and the snapshot's poolDefinitions."""
import pytest

from cphelpers import env_path, openai_connection

DEFAULT_STRATEGY = {"name": "adaptive", "windowSeconds": 30, "cooldownSeconds": 5,
                    "scaleUpPercent": 50}


def resources(api, env, n):
    c = openai_connection(api, env)
    return [api.create_resource(env[0], env[1], name=f"r{i}",
                                model={"provider": "openai", "model": "m",
                                       "connectionId": c["id"]})["id"]
            for i in range(n)]


def pool(name, rank, lo, hi, res):
    return {"name": name, "rank": rank, "minReservation": lo, "maxReservation": hi,
            "resources": res}


def version(cp_stack):
    return int(cp_stack.pg.psql("SELECT version FROM config_version"))


def test_empty_definition(api, env):
    status, got, _ = api.request("GET", env_path(env, "/pool-definition"))
    assert status == 200
    assert got["pools"] == [] and got["strategy"] == DEFAULT_STRATEGY
    assert got["environmentId"] == env[1] and got["workspaceId"] == env[0]


def test_put_get_replace_delete(api, env, cp_stack):
    r = resources(api, env, 3)
    path = env_path(env, "/pool-definition")
    v0 = version(cp_stack)
    body = {"pools": [pool("high", 0, 50, 100, [r[0], r[1]]), pool("low", 1, 20.5, 50, [r[2]])]}
    status, got, _ = api.request("PUT", path, body)
    assert status == 200, got
    assert got["pools"] == body["pools"] and got["strategy"] == DEFAULT_STRATEGY
    assert version(cp_stack) > v0
    assert api.request("GET", path)[1] == got

    # replaced as a whole, with strategy parameters of its own
    v1 = version(cp_stack)
    body = {"pools": [pool("only", 3, 10, 90, [r[2]])],
            "strategy": {"windowSeconds": 10, "scaleUpPercent": 80}}
    status, got, _ = api.request("PUT", path, body)
    assert status == 200, got
    assert got["pools"] == body["pools"]
    assert got["strategy"] == {"name": "adaptive", "windowSeconds": 10, "cooldownSeconds": 5,
                               "scaleUpPercent": 80}
    assert version(cp_stack) > v1

    # a deleted resource leaves its pool
    assert api.request("DELETE", env_path(env, f"/resources/{r[2]}"))[0] == 204
    assert api.request("GET", path)[1]["pools"][0]["resources"] == []

    v2 = version(cp_stack)
    assert api.request("DELETE", path)[0] == 204
    assert version(cp_stack) > v2
    status, got, _ = api.request("GET", path)
    assert status == 200 and got["pools"] == []
    assert api.request("DELETE", path)[0] == 204


@pytest.mark.parametrize("make, field", [
    (lambda r: {}, "pools"),
    (lambda r: {"pools": {}}, "pools"),
    (lambda r: {"pools": [], "extra": 1}, "extra"),
    (lambda r: {"pools": [7]}, "pools[0]"),
    (lambda r: {"pools": [dict(pool("a", 0, 0, 1, []), color="red")]}, "pools[0].color"),
    (lambda r: {"pools": [pool("", 0, 0, 1, [])]}, "pools[0].name"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, []), pool("a", 1, 0, 1, [])]}, "pools[1].name"),
    (lambda r: {"pools": [pool("a", 1.5, 0, 1, [])]}, "pools[0].rank"),
    (lambda r: {"pools": [pool("a", "1", 0, 1, [])]}, "pools[0].rank"),
    (lambda r: {"pools": [pool("a", 0, -1, 1, [])]}, "pools[0].minReservation"),
    (lambda r: {"pools": [pool("a", 0, 60, 50, [])]}, "pools[0].maxReservation"),
    (lambda r: {"pools": [pool("a", 0, 10, 101, [])]}, "pools[0].maxReservation"),
    (lambda r: {"pools": [pool("a", 0, 60, 100, []), pool("b", 1, 41, 100, [])]},
     "pools[1].minReservation"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, "x")]}, "pools[0].resources"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, [r[0], "nope"])]}, "pools[0].resources[1]"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, ["00000000-0000-4000-8000-000000000000"])]},
     "pools[0].resources[0]"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, [r[0]]), pool("b", 1, 0, 1, [r[1], r[0]])]},
     "pools[1].resources[1]"),
    (lambda r: {"pools": [pool("a", 0, 0, 1, [r[0], r[0]])]}, "pools[0].resources[1]"),
    (lambda r: {"pools": [], "strategy": []}, "strategy"),
    (lambda r: {"pools": [], "strategy": {"name": "fixed"}}, "strategy.name"),
    (lambda r: {"pools": [], "strategy": {"windowSeconds": 61}}, "strategy.windowSeconds"),
    (lambda r: {"pools": [], "strategy": {"cooldownSeconds": -1}}, "strategy.cooldownSeconds"),
    (lambda r: {"pools": [], "strategy": {"scaleUpPercent": 0}}, "strategy.scaleUpPercent"),
    (lambda r: {"pools": [], "strategy": {"burst": 1}}, "strategy.burst"),
])
def test_invalid_definitions(api, env, cp_stack, make, field):
    r = resources(api, env, 2)
    path = env_path(env, "/pool-definition")
    v0 = version(cp_stack)
    status, got, _ = api.request("PUT", path, make(r))
    assert status == 400, got
    assert got["error"]["code"] == "validation_error"
    assert got["error"]["details"]["field"] == field, got
    assert version(cp_stack) == v0
    assert api.request("GET", path)[1]["pools"] == []


def test_resource_of_another_environment(api, env):
    other = (env[0], api.request("POST", f"/api/v1/workspaces/{env[0]}/environments",
                                 {"name": "other"})[1]["id"])
    r = resources(api, other, 1)
    status, got, _ = api.request("PUT", env_path(env, "/pool-definition"),
                                 {"pools": [pool("a", 0, 0, 100, r)]})
    assert status == 400 and got["error"]["details"]["field"] == "pools[0].resources[0]"


def test_unknown_environment(api, env):
    path = f"/api/v1/workspaces/{env[0]}/environments/00000000-0000-4000-8000-000000000000"
    for method, body in (("GET", None), ("PUT", {"pools": []}), ("DELETE", None)):
        assert api.request(method, path + "/pool-definition", body)[0] == 404


def test_snapshot_carries_the_definition(api, env, cp_stack):
    r = resources(api, env, 2)
    body = {"pools": [pool("a", 0, 50, 100, [r[0]]), pool("b", 1, 50, 100, [r[1]])],
            "strategy": {"cooldownSeconds": 2}}
    assert api.request("PUT", env_path(env, "/pool-definition"), body)[0] == 200

    def mine(s):
        return next((d for d in s.get("poolDefinitions", []) if d["environmentId"] == env[1]),
                    None)

    snap = cp_stack.dataplane.wait_for(lambda s: mine(s) is not None)
    assert mine(snap) == {"environmentId": env[1], "pools": body["pools"],
                          "strategy": dict(DEFAULT_STRATEGY, cooldownSeconds=2)}

    assert api.request("DELETE", env_path(env, "/pool-definition"))[0] == 204
    cp_stack.dataplane.wait_for(lambda s: s["version"] > snap["version"] and mine(s) is None)
