"""Failed logins throttled per user name and per client address (429 with
Retry-After), and the API answering during a flood of failing logins
(docs/ARCHITECTURE.md, "Users and sessions")."""
import time

import pytest

from harness.api import Api
from harness.control_plane import ControlPlane
from harness.login_flood import during_flood
from harness.ports import free_port
from cphelpers import unique

PASSWORD = "a-good-password-1"
USER_FAILURES = 3
ADDRESS_FAILURES = 6


def _control_plane(cp_stack, name, env):
    cp_stack.pg.psql(f"CREATE DATABASE {name}", dbname="postgres")
    cp = ControlPlane(cp_stack.base / name, free_port(), cp_stack.pg.dsn_of(name), [],
                      cp_stack.token_file, cp_stack.master_key_file, env=env)
    cp.start()
    return cp


@pytest.fixture(scope="module")
def throttled(cp_stack):
    """A control plane of its own: 3 failures per name, 6 per address, a 2 s
    first wait, 8 s at most."""
    cp = _control_plane(cp_stack, "vmx_throttle", {
        "VMX_LOGIN_THROTTLE_USER_FAILURES": str(USER_FAILURES),
        "VMX_LOGIN_THROTTLE_ADDRESS_FAILURES": str(ADDRESS_FAILURES),
        "VMX_LOGIN_THROTTLE_SECONDS": "2", "VMX_LOGIN_THROTTLE_MAX_SECONDS": "8"})
    try:
        yield cp
    finally:
        assert cp.stop() == 0


def login(cp, username, password, address):
    """(status, body, headers) of a login from address (X-Forwarded-For, which
    the control plane takes from a loopback peer)."""
    return Api(cp.url).request("POST", "/api/v1/auth/login",
                               {"username": username, "password": password}, token=None,
                               headers={"X-Forwarded-For": address})


def new_user(cp):
    admin = Api(cp.url)
    admin.login()
    username = unique("u")
    status, body, _ = admin.request("POST", "/api/v1/users",
                                    {"username": username, "password": PASSWORD})
    assert status == 201, body
    return username


def assert_throttled(answer):
    status, body, headers = answer
    assert status == 429, body
    assert body["error"]["code"] == "too_many_requests" and "details" in body["error"]
    wait = int(headers["retry-after"])
    assert 1 <= wait <= 2
    return wait


def test_user_name_throttled_then_unlocked(throttled):
    username = new_user(throttled)
    for n in range(USER_FAILURES):
        # each from its own address: the name alone counts
        assert login(throttled, username, "wrong-password", f"198.51.100.{n + 1}")[0] == 401
    # the right password is refused too while the name waits
    wait = assert_throttled(login(throttled, username, PASSWORD, "198.51.100.50"))
    assert_throttled(login(throttled, username, "wrong-password", "198.51.100.51"))
    time.sleep(wait + 0.2)
    status, body, _ = login(throttled, username, PASSWORD, "198.51.100.52")
    assert status == 200, body
    # a success forgets the name's failures
    for n in range(USER_FAILURES - 1):
        assert login(throttled, username, "wrong-password", "198.51.100.53")[0] == 401
    assert login(throttled, username, PASSWORD, "198.51.100.54")[0] == 200


def test_unknown_user_name_throttled_alike(throttled):
    username = unique("nobody")
    for n in range(USER_FAILURES):
        assert login(throttled, username, "wrong-password", f"198.51.100.{60 + n}")[0] == 401
    assert_throttled(login(throttled, username, "wrong-password", "198.51.100.70"))


def test_address_throttled(throttled):
    address = "203.0.113.9"
    username = new_user(throttled)
    for n in range(ADDRESS_FAILURES):
        assert login(throttled, unique("nobody"), "wrong-password", address)[0] == 401
    # any name from there waits, even a right password
    wait = assert_throttled(login(throttled, username, PASSWORD, address))
    # another address does not
    assert login(throttled, username, PASSWORD, "203.0.113.10")[0] == 200
    time.sleep(wait + 0.2)
    assert login(throttled, username, PASSWORD, address)[0] == 200


def test_api_answers_during_a_login_flood(cp_stack):
    """64 loops failing logins for 10 s (every one running argon2id: no
    throttle here) while an admin reads GET /workspaces: every read answers
    200.  The latency is bench/login_flood.py's figure, not asserted here."""
    cp = _control_plane(cp_stack, "vmx_flood", {
        "VMX_LOGIN_THROTTLE_USER_FAILURES": "1000000",
        "VMX_LOGIN_THROTTLE_ADDRESS_FAILURES": "1000000"})
    try:
        admin = Api(cp.url)
        admin.login()
        reads, statuses = during_flood(cp.url, admin.token, 10)
        assert reads and all(status == 200 for status, _ in reads), reads
        assert statuses.get(401, 0) > 0, statuses
        assert set(statuses) <= {401, 503}, statuses
    finally:
        assert cp.stop() == 0
