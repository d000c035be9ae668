"""OIDC sign-on: a control plane of its own against a real OpenID provider
(t/oidc/provider.js, the oidc-provider package) on loopback, driven without
a browser: the redirects followed by hand, each server's cookies kept."""
import http.client
import json
import os
import pathlib
import secrets
import subprocess
import urllib.parse

import pytest

from harness.api import Api
from harness.control_plane import ControlPlane
from harness.ports import free_port
from cphelpers import unique

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
PROVIDER_DIR = ROOT / "t" / "oidc"
CLIENT_ID = "vmx-control-plane"
UI_URL = "http://127.0.0.1:1/ui/"
ROLE_MAP = "platform-admins=admin,devs=power-user"


class Browser:
    """Requests with the cookies each server (host:port) set, paths aside."""

    def __init__(self):
        self.jars = {}

    def request(self, method, url, form=None, cookies=None):
        u = urllib.parse.urlsplit(url)
        jar = self.jars.setdefault(u.netloc, {})
        sent = dict(jar, **(cookies or {}))
        headers = {}
        if sent:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in sent.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request(method, u.path + ("?" + u.query if u.query else ""), body, headers)
            resp = conn.getresponse()
            raw = resp.read()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    pair = value.split(";", 1)[0]
                    k, _, v = pair.partition("=")
                    if v == "" or "max-age=0" in value.lower():
                        jar.pop(k.strip(), None)
                    else:
                        jar[k.strip()] = v
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return resp.status, hdrs, parsed


class Provider:
    def __init__(self, secret, redirect_uri, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "provider.js"), CLIENT_ID, secret, redirect_uri],
            cwd=PROVIDER_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self.log)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("listening "), f"the provider did not start: {line!r}"
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def knobs(self, **mode):
        """Sets the test-only mode (sign, publish, tamper); the state with jwksFetches."""
        b = Browser()
        if mode:
            u = urllib.parse.urlsplit(self.url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            conn.request("POST", "/__test/mode", json.dumps(mode),
                         {"Content-Type": "application/json"})
            out = json.loads(conn.getresponse().read())
            conn.close()
            return out
        return b.request("GET", self.url + "/__test/stats")[2]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.log.close()


class OidcStack:
    def login(self, sub, claims=None, browser=None, stop_at_callback=False):
        """Signs sub in at the provider with claims; the control plane's
        answer to the callback as (status, headers, body), or the callback
        URL and the browser when stop_at_callback."""
        b = browser or Browser()
        status, h, _ = b.request("GET", self.cp.url + "/api/v1/auth/oidc/login")
        assert status == 302, (status, h)
        assert "vmx_oidc" in h.get("set-cookie", "")
        url = h["location"]
        assert url.startswith(self.provider.url + "/auth?")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
        for _ in range(10):
            if url.startswith(self.cp.url):
                break
            if "/interaction/" in url:
                status, h, body = b.request("POST", url, form={
                    "login": sub, "claims": json.dumps(claims or {})})
            else:
                status, h, body = b.request("GET", url)
            assert status in (302, 303), (status, body)
            url = urllib.parse.urljoin(url, h["location"])
        assert url.startswith(self.cp.url + "/api/v1/auth/oidc/callback?"), url
        if stop_at_callback:
            return url, b
        return b.request("GET", url)

    def session(self, sub, claims=None):
        """Logs sub in; the token of the session and the user of /auth/me."""
        status, h, body = self.login(sub, claims)
        assert status == 303, (status, body)
        location = h["location"]
        assert location.startswith(UI_URL + "#token=")
        fragment = urllib.parse.parse_qs(urllib.parse.urlsplit(location).fragment)
        token = fragment["token"][0]
        assert fragment["expiresAt"][0]
        status, me, _ = Api(self.cp.url).request("GET", "/api/v1/auth/me", token=token)
        assert status == 200, me
        return token, me


@pytest.fixture(scope="module")
def oidc(cp_stack):
    s = OidcStack()
    s.base = cp_stack.base / "oidc"
    s.base.mkdir(parents=True, exist_ok=True)
    dbname = "vmx_oidc"
    cp_stack.pg.psql(f"CREATE DATABASE {dbname}", dbname="postgres")
    port = free_port()
    secret = secrets.token_hex(16)
    secret_file = s.base / "client.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    redirect_uri = f"http://127.0.0.1:{port}/api/v1/auth/oidc/callback"
    s.provider = Provider(secret, redirect_uri, s.base / "provider.log")
    try:
        env = {
            "VMX_OIDC_ISSUER": s.provider.url,
            "VMX_OIDC_CLIENT_ID": CLIENT_ID,
            "VMX_OIDC_CLIENT_SECRET_FILE": str(secret_file),
            "VMX_OIDC_REDIRECT_URI": redirect_uri,
            "VMX_OIDC_SCOPES": "openid profile email groups",
            "VMX_OIDC_DEFAULT_ROLE": "read-only",
            "VMX_OIDC_ROLE_MAP": ROLE_MAP,
            "VMX_OIDC_UI_URL": UI_URL,
        }
        s.cp = ControlPlane(s.base / "cp", port, cp_stack.pg.dsn_of(dbname), [],
                            cp_stack.token_file, cp_stack.master_key_file, env=env)
        s.cp.start()
        try:
            s.admin = Api(s.cp.url)
            s.admin.login()
            yield s
        finally:
            rc = s.cp.stop()
            assert rc == 0, f"control plane exited with {rc}"
    finally:
        s.provider.stop()


def claims_of(name, **more):
    return dict({"preferred_username": name, "email": f"{name}@example.org",
                 "name": name.title()}, **more)


def test_oidc_off_answers_404(cp_stack):
    api = Api(cp_stack.cp.url)
    for path in ("/api/v1/auth/oidc/login", "/api/v1/auth/oidc/callback?state=x&code=y"):
        status, err, _ = api.request("GET", path, token=None)
        assert status == 404, err
        assert err["error"]["code"] == "not_found"
        assert "OIDC" in err["error"]["message"]


def test_login_provisions_the_user_with_the_default_role(oidc):
    name = unique("alice")
    token, me = oidc.session(name + "-sub", claims_of(name))
    assert me["username"] == name
    assert me["email"] == f"{name}@example.org"
    assert me["roles"] == ["read-only"]
    assert me["enabled"] is True and me["state"] == "ACTIVE"
    # the same kind of session a password login opens
    status, sessions, _ = Api(oidc.cp.url).request("GET", "/api/v1/auth/sessions", token=token)
    assert status == 200 and sessions["total"] >= 1
    # an OIDC user has no password
    status, _, _ = Api(oidc.cp.url).request("POST", "/api/v1/auth/login",
                                            {"username": name, "password": "any-password-1"},
                                            token=None)
    assert status == 401
    assert token not in oidc.cp.log_text()


def test_group_claim_maps_to_roles(oidc):
    name = unique("bob")
    _, me = oidc.session(name, claims_of(name, groups=["devs", "not-mapped"]))
    assert me["roles"] == ["power-user", "read-only"]


def test_second_login_reuses_the_user_and_adds_mapped_roles(oidc):
    name = unique("carol")
    sub = name + "-sub"
    _, first = oidc.session(sub, claims_of(name))
    # renamed at the provider and now a platform admin: the same account
    _, second = oidc.session(sub, claims_of(name + "-renamed", groups="platform-admins"))
    assert second["id"] == first["id"]
    assert second["username"] == name
    assert second["roles"] == ["admin", "read-only"]
    # roles no longer in the claim are kept (documented)
    _, third = oidc.session(sub, claims_of(name, groups=[]))
    assert third["roles"] == ["admin", "read-only"]


def test_local_user_with_the_same_username_is_not_taken_over(oidc):
    name = unique("local")
    status, user, _ = oidc.admin.request("POST", "/api/v1/users",
                                         {"username": name, "password": "local-pass-123456"})
    assert status == 201, user
    status, _, err = oidc.login(name + "-idp-sub", claims_of(name))
    assert status == 409, err
    assert err["error"]["code"] == "conflict"
    assert "not bound" in err["error"]["message"]
    # the local account is untouched and still its owner's
    status, stored, _ = oidc.admin.request("GET", f"/api/v1/users/{user['id']}")
    assert status == 200 and stored["username"] == name
    Api(oidc.cp.url).login(name, "local-pass-123456")


def test_disabled_user_cannot_log_in(oidc):
    name = unique("dave")
    _, me = oidc.session(name, claims_of(name))
    status, _, _ = oidc.admin.request("PATCH", f"/api/v1/users/{me['id']}", {"enabled": False})
    assert status == 200
    status, _, err = oidc.login(name, claims_of(name))
    assert status == 401, err
    assert "disabled" in err["error"]["message"]


def test_unknown_and_replayed_state_refused(oidc):
    api = Api(oidc.cp.url)
    status, err, _ = api.request("GET", "/api/v1/auth/oidc/callback?code=abc&state="
                                 + secrets.token_urlsafe(32), token=None)
    assert status == 400, err
    assert err["error"]["details"] == {"field": "state"}

    name = unique("erin")
    callback, browser = oidc.login(name, claims_of(name), stop_at_callback=True)
    cookie = dict(browser.jars[urllib.parse.urlsplit(oidc.cp.url).netloc])
    status, _, body = browser.request("GET", callback)
    assert status == 303, body
    # the same answer again, with the cookie the browser had: the state is spent
    status, _, err = browser.request("GET", callback, cookies=cookie)
    assert status == 400, err
    assert "already used" in err["error"]["message"]


def test_state_of_another_browser_refused(oidc):
    name = unique("frank")
    callback, _ = oidc.login(name, claims_of(name), stop_at_callback=True)
    status, _, err = Browser().request("GET", callback)
    assert status == 400, err
    assert "another browser" in err["error"]["message"]


@pytest.mark.parametrize("tamper,message", [
    ("nonce", "nonce"),
    ("expired", "expired"),
    ("audience", "another audience"),
    ("none", "not RS256 or ES256"),
])
def test_tampered_id_token_refused(oidc, tamper, message):
    name = unique("mallory")
    oidc.provider.knobs(tamper=tamper)
    try:
        status, _, err = oidc.login(name, claims_of(name))
    finally:
        oidc.provider.knobs(tamper=None)
    assert status == 401, err
    assert err["error"]["code"] == "unauthorized"
    assert message in err["error"]["message"]
    # nobody was provisioned
    status, users, _ = oidc.admin.request("GET", "/api/v1/users?pageSize=1000")
    assert name not in [u["username"] for u in users["data"]]


def test_es256_id_token(oidc):
    before = oidc.provider.knobs()["mode"]["sign"]
    oidc.provider.knobs(sign="es")
    try:
        name = unique("grace")
        _, me = oidc.session(name, claims_of(name))
        assert me["username"] == name
    finally:
        oidc.provider.knobs(sign=before)


# last: the keys it rotates in stay for whatever runs after it
def test_rotated_signing_key(oidc):
    name = unique("heidi")
    oidc.session(name, claims_of(name))
    fetches = oidc.provider.knobs()["jwksFetches"]
    # the provider signs with a key of a new kid and publishes it instead of the old one
    oidc.provider.knobs(sign="rs-b", publish=["rs-b", "es"])
    _, me = oidc.session(name, claims_of(name))
    assert me["username"] == name
    assert oidc.provider.knobs()["jwksFetches"] == fetches + 1

    # a kid never published: refused, and no second fetch so soon (rate limit)
    oidc.provider.knobs(sign="rs-c")
    try:
        status, _, err = oidc.login(name, claims_of(name))
    finally:
        oidc.provider.knobs(sign="rs-b")
    assert status == 401, err
    assert "unknown key" in err["error"]["message"]
    assert oidc.provider.knobs()["jwksFetches"] == fetches + 1


@pytest.mark.parametrize("bad", [
    {"VMX_OIDC_ISSUER": "http://idp.example.org"},
    {"VMX_OIDC_CLIENT_ID": ""},
    {"VMX_OIDC_REDIRECT_URI": "http://vmx.example.org/api/v1/auth/oidc/callback"},
    {"VMX_OIDC_UI_URL": "https://vmx.example.org/#x"},
    {"VMX_OIDC_SCOPES": "profile email"},
    {"VMX_OIDC_ROLE_MAP": "devs"},
    {"VMX_OIDC_CLIENT_SECRET_FILE": "/nonexistent/oidc.secret"},
])
def test_bad_settings_stop_the_start(tmp_path, bad):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMX_")}
    env.update({
        "VMX_DATABASE_URL": "host=127.0.0.1 port=1 dbname=none",
        "VMX_MASTER_KEY_FILE": str(tmp_path / "none.key"),
        "VMX_OIDC_ISSUER": "https://idp.example.org",
        "VMX_OIDC_CLIENT_ID": CLIENT_ID,
        "VMX_OIDC_REDIRECT_URI": "https://vmx.example.org/api/v1/auth/oidc/callback",
    }, **bad)
    out = subprocess.run([str(ROOT / "build" / "vmx-control-plane")], env=env, cwd=ROOT,
                         capture_output=True, timeout=10)
    assert out.returncode != 0
    assert b"config VMX_OIDC_" in out.stderr, out.stderr
