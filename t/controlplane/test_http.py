"""The router: unknown routes, methods, bodies, and the error format."""
import uuid


def assert_error(body, code):
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_unknown_route_404(api):
    status, body, _ = api.request("GET", "/api/v1/no-such-thing")
    assert status == 404
    assert_error(body, "not_found")
    status, _, _ = api.request("GET", "/nothing/here", token=None)
    assert status == 404


def test_wrong_method_405(api):
    status, body, _ = api.request("DELETE", "/api/v1/workspaces")
    assert status == 405
    assert_error(body, "method_not_allowed")


def test_malformed_json_400(api):
    status, body, _ = api.request("POST", "/api/v1/workspaces", '{"name": ',
                                  headers={"Content-Type": "application/json"})
    assert status == 400
    assert_error(body, "validation_error")


def test_body_must_be_object(api):
    status, body, _ = api.request("POST", "/api/v1/workspaces", [1, 2])
    assert status == 400
    assert_error(body, "validation_error")


def test_body_over_1mib_413(api):
    big = '{"name": "' + "x" * (1024 * 1024) + '"}'
    status, body, _ = api.request("POST", "/api/v1/workspaces", big,
                                  headers={"Content-Type": "application/json"})
    assert status == 413
    assert_error(body, "payload_too_large")
    # a body just under the limit is read (and then rejected for its name)
    fits = '{"name": "' + "x" * (1024 * 1024 - 20) + '"}'
    status, body, _ = api.request("POST", "/api/v1/workspaces", fits)
    assert status == 400 and body["error"]["details"]["field"] == "name"


def test_id_not_uuid_404(api):
    status, body, _ = api.request("GET", "/api/v1/workspaces/not-a-uuid")
    assert status == 404
    assert_error(body, "not_found")
    status, _, _ = api.request("GET", f"/api/v1/workspaces/{uuid.uuid4()}")
    assert status == 404


def test_json_content_type(api):
    status, _, headers = api.request("GET", "/api/v1/workspaces")
    assert status == 200
    assert headers["content-type"].startswith("application/json")


def test_pagination_bounds(api):
    for query, field in (("pageSize=1001", "pageSize"), ("pageSize=0", "pageSize"),
                         ("pageSize=abc", "pageSize"), ("pageIndex=-1", "pageIndex")):
        status, body, _ = api.request("GET", "/api/v1/workspaces?" + query)
        assert status == 400, query
        assert body["error"]["details"]["field"] == field
    status, body, _ = api.request("GET", "/api/v1/workspaces?pageSize=1000")
    assert status == 200 and body["pageSize"] == 1000


def test_survives_database_restart(api, cp_stack):
    """Pooled connections dropped by a PostgreSQL restart are reopened."""
    cp_stack.pg.restart()
    for _ in range(12):          # more requests than the pool has connections
        status, body, _ = api.request("GET", "/api/v1/workspaces")
        assert status == 200, body
    status, body, _ = api.request("GET", "/api/v1/health", token=None)
    assert status == 200 and body["database"] == "ok"
