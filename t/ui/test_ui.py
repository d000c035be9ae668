"""The web UI end to end: the real stack (PostgreSQL, Redis, control plane, nginx
serving ui/dist) with a fake OpenAI provider, driven by ui/e2e/run.mjs with
playwright-core and Debian's chromium (no Playwright browser download).

The script signs in, runs the getting-started wizard to a working key (checked
here with a chat completion through the gateway), visits every page in light
and dark themes at 1280 and 390 px, writing screenshots to ui/e2e/artifacts/,
checks each page with axe-core (no serious or critical violation), and signs in
as a read-only user who sees no edit buttons and is shown the API's 403 when it
tries anyway."""
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from gwutil import http_request

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "ui"
CHROMIUM = os.environ.get("VMX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def ui_ready():
    if not (UI / "dist" / "index.html").exists():
        pytest.fail("ui/dist is missing -- run ./build.sh build first", pytrace=False)
    if not (UI / "node_modules" / "playwright-core").exists():
        pytest.fail("ui/node_modules is missing -- run ./build.sh deps first", pytrace=False)
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (./build.sh deps installs it)", pytrace=False)


def _role_id(api, name):
    st, body, _ = api.request("GET", "/api/v1/roles?pageSize=1000")
    assert st == 200, body
    return next(r["id"] for r in body["data"] if r["name"] == name)


def test_ui_end_to_end(ui_ready, stack, gw, fake):
    api = stack.api
    tag = uuid.uuid4().hex[:8]
    # a read-only user, member of a workspace with one object of each kind
    env = gw.provision(connections={"shared-conn": {"provider": "openai",
                                                     "config": {"apiKey": fake.api_key,
                                                                "baseUrl": fake.url}}},
                       resources={"shared-chat": {"model": ("shared-conn", "gpt-4o-mini")}},
                       keys={"shared-key": {"resources": ["shared-chat"]}}, wait=False)
    viewer, viewer_pw = f"viewer-{tag}", "viewer-password-" + tag
    st, user, _ = api.request("POST", "/api/v1/users",
                              {"username": viewer, "password": viewer_pw, "name": "Viewer"})
    assert st == 201, user
    st, body, _ = api.request("POST", f"/api/v1/roles/{_role_id(api, 'read-only')}/assign",
                              {"userIds": [user["id"]]})
    assert st == 200, body
    st, body, _ = api.request("POST", f"/api/v1/workspaces/{env.ws_id}/members",
                              {"userId": user["id"], "role": "MEMBER"})
    assert st == 201, body
    # a user who must change the temporary password first
    newbie, newbie_pw = f"newbie-{tag}", "temporary-password-" + tag
    st, body, _ = api.request("POST", "/api/v1/users", {"username": newbie, "password": newbie_pw,
                                                         "temporaryPassword": True})
    assert st == 201, body

    artifacts = UI / "e2e" / "artifacts"
    out = artifacts / "result.json"
    if out.exists():
        out.unlink()
    e = dict(os.environ,
             VMX_UI_URL=stack.nginx.url, VMX_CHROMIUM=CHROMIUM,
             VMX_ADMIN_USER="admin", VMX_ADMIN_PASSWORD="admin-test-password",
             VMX_FAKE_URL=fake.url, VMX_FAKE_KEY=fake.api_key,
             VMX_WS_NAME=f"ui-{tag}", VMX_SHARED_WS=env.ws["name"],
             VMX_VIEWER=viewer, VMX_VIEWER_PASSWORD=viewer_pw,
             VMX_NEWBIE=newbie, VMX_NEWBIE_PASSWORD=newbie_pw,
             VMX_ARTIFACTS=str(artifacts))
    started = time.time()
    r = subprocess.run(["node", str(UI / "e2e" / "run.mjs")], cwd=UI, env=e,
                       capture_output=True, text=True, timeout=300)
    log = r.stdout + r.stderr
    (artifacts / "run.log").parent.mkdir(parents=True, exist_ok=True)
    (artifacts / "run.log").write_text(log)
    assert r.returncode == 0, f"ui/e2e/run.mjs exited {r.returncode} after " \
                              f"{time.time() - started:.0f} s:\n{log[-6000:]}"
    result = json.loads(out.read_text())

    # the key the wizard showed works through the gateway, with the model it showed
    key, model = result["key"], result["model"]
    assert key.startswith("vmx-"), result
    deadline = time.time() + 20
    while True:
        resp = http_request(stack.nginx.url, "POST", "/v1/chat/completions",
                            {"model": model, "messages": [{"role": "user", "content": "hi"}]},
                            {"Authorization": f"Bearer {key}"}, timeout=10)
        if resp.status == 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert resp.status == 200, resp
    assert result["snippetBaseUrl"] == stack.nginx.url + "/v1"


def test_ui_sso(ui_ready, built, tmp_path_factory, pki):
    """Sign in with SSO in the browser: a control plane of its own with OIDC on (the
    OpenID provider of t/oidc, as t/controlplane/test_oidc.py), behind nginx; the UI
    shows the SSO button, the provider signs the user in, the callback's token
    arrives in the URL fragment and the UI keeps it and clears the fragment."""
    import secrets as _secrets
    from harness.api import Api
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.nginx import Nginx
    from harness.postgres import Postgres
    from gwutil import free_port
    sys_path_oidc = ROOT / "t" / "controlplane"
    import sys
    if str(sys_path_oidc) not in sys.path:
        sys.path.insert(0, str(sys_path_oidc))
    from test_oidc import CLIENT_ID, Provider

    if not (ROOT / "t" / "oidc" / "node_modules").exists():
        pytest.fail("t/oidc/node_modules is missing -- run ./build.sh deps first", pytrace=False)
    base = tmp_path_factory.mktemp("ui-sso")
    parts = []
    try:
        pg = Postgres(base / "pg", free_port())
        pg.start()
        parts.append(pg)
        token_file, master_key_file = write_secret_files(base / "secrets")
        nginx_port, cp_port = free_port(), free_port()
        secret = _secrets.token_hex(16)
        secret_file = base / "client.secret"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        redirect_uri = f"http://127.0.0.1:{nginx_port}/api/v1/auth/oidc/callback"
        provider = Provider(secret, redirect_uri, base / "provider.log")
        parts.append(provider)
        cp = ControlPlane(base / "cp", cp_port, pg.dsn, [f"http://127.0.0.1:{nginx_port}"],
                          token_file, master_key_file, reconcile_interval=1, env={
                              "VMX_OIDC_ISSUER": provider.url,
                              "VMX_OIDC_CLIENT_ID": CLIENT_ID,
                              "VMX_OIDC_CLIENT_SECRET_FILE": str(secret_file),
                              "VMX_OIDC_REDIRECT_URI": redirect_uri,
                              "VMX_OIDC_DEFAULT_ROLE": "read-only",
                              "VMX_OIDC_UI_URL": "/",
                          })
        cp.start()
        parts.append(cp)
        nginx = Nginx(base / "nginx", nginx_port, token_file, pki[0],
                      cp_addr=f"127.0.0.1:{cp_port}")
        nginx.start()
        parts.append(nginx)
        Api(cp.url).login()       # the control plane is up
        artifacts = UI / "e2e" / "artifacts"
        sub = "sso-" + uuid.uuid4().hex[:8]
        e = dict(os.environ, VMX_UI_URL=nginx.url, VMX_CHROMIUM=CHROMIUM,
                 VMX_ARTIFACTS=str(artifacts), VMX_SSO_SUB=sub)
        r = subprocess.run(["node", str(UI / "e2e" / "sso.mjs")], cwd=UI, env=e,
                           capture_output=True, text=True, timeout=180)
        log = r.stdout + r.stderr
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "sso.log").write_text(log)
        assert r.returncode == 0, f"ui/e2e/sso.mjs exited {r.returncode}:\n{log[-4000:]}"
        assert f"signed in as {sub}" in log, log
        nginx.check_error_log()
    finally:
        for p in reversed(parts):
            try:
                p.stop()
            except Exception:
                pass
