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
