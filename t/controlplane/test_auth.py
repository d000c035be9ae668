"""Login, tokens, logout, health, and the first administrator."""
import re

from harness.api import Api
from harness.control_plane import ControlPlane
from harness.ports import free_port


def test_health_needs_no_token(api):
    status, body, _ = api.request("GET", "/api/v1/health", token=None)
    assert status == 200
    # "leader": whether this replica runs the background jobs (several control planes)
    assert body == {"status": "ok", "database": "ok", "leader": True}


def test_login_ok(cp_stack):
    a = Api(cp_stack.cp.url)
    status, body, _ = a.request("POST", "/api/v1/auth/login",
                                {"username": "admin", "password": "admin-test-password"},
                                token=None)
    assert status == 200
    assert len(body["token"]) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", body["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["expiresAt"])
    assert body["user"]["username"] == "admin"
    assert "password" not in str(body["user"]).lower()


def test_login_bad_password(cp_stack):
    a = Api(cp_stack.cp.url)
    status, body, _ = a.request("POST", "/api/v1/auth/login",
                                {"username": "admin", "password": "wrong"}, token=None)
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    status, _, _ = a.request("POST", "/api/v1/auth/login",
                             {"username": "nobody-here", "password": "x"}, token=None)
    assert status == 401


def test_login_validation(cp_stack):
    a = Api(cp_stack.cp.url)
    status, body, _ = a.request("POST", "/api/v1/auth/login", {"password": "x"}, token=None)
    assert status == 400
    assert body["error"]["details"]["field"] == "username"


def test_missing_and_bad_token(api):
    for token in (None, "not-a-token", ""):
        status, body, _ = api.request("GET", "/api/v1/workspaces", token=token)
        assert status == 401, token
        assert body["error"]["code"] == "unauthorized"
    status, _, _ = api.request("GET", "/api/v1/workspaces",
                               headers={"Authorization": "Basic YWRtaW46eA=="}, token=None)
    assert status == 401


def test_me_and_logout(cp_stack):
    a = Api(cp_stack.cp.url)
    token = a.login()
    status, me, _ = a.request("GET", "/api/v1/auth/me")
    assert status == 200 and me["username"] == "admin"
    status, _, _ = a.request("POST", "/api/v1/auth/logout")
    assert status == 204
    status, _, _ = a.request("GET", "/api/v1/auth/me", token=token)
    assert status == 401


def test_token_stored_hashed(cp_stack):
    a = Api(cp_stack.cp.url)
    token = a.login()
    hashes = cp_stack.pg.psql("SELECT token_hash FROM sessions")
    assert token not in hashes
    import hashlib
    assert hashlib.sha256(token.encode()).hexdigest() in hashes.split()


def test_random_admin_password_printed_once(cp_stack):
    """A fresh database without VMX_ADMIN_PASSWORD: the daemon makes one up,
    prints it once, and not again on the next start."""
    cp_stack.pg.psql("CREATE DATABASE vmx_first_start", dbname="postgres")
    dsn = cp_stack.pg.dsn.replace("dbname=vmx", "dbname=vmx_first_start")
    base = cp_stack.base / "cp-first-start"
    cp = ControlPlane(base, free_port(), dsn, [], cp_stack.token_file,
                      cp_stack.master_key_file, admin_password=None)
    cp.start()
    try:
        found = re.findall(r"admin password: (\S+)", cp.log_text())
        assert len(found) == 1
        Api(cp.url).login("admin", found[0])
    finally:
        assert cp.stop() == 0
    cp.start()
    try:
        assert len(re.findall(r"admin password: ", cp.log_text())) == 1
        # migrations are recorded and not applied twice
        assert cp.log_text().count("migrate: applied 0001_init.sql") == 1
        rows = cp_stack.pg.psql("SELECT name FROM schema_migrations",
                                dbname="vmx_first_start")
        assert "0001_init.sql" in rows.split()
    finally:
        assert cp.stop() == 0
