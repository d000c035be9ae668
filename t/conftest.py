"""Fixtures of the integration tests: the whole stack on loopback free ports.

Session fixtures (started lazily, only when a test needs them):
  pki, rogue_pki          test CA + server cert, and an untrusted one
  fake, fake2, fake_tls, fake_rogue   fake OpenAI providers
  fake_anthropic, fake_gemini, fake_bedrock, fake_bedrock_tls (by host name `localhost`)
                          fake native providers; the fake Bedrocks accept the credentials
                          the session's fake STS issues
  fake_sts                the fake STS of the session's control plane
  otlp                    the loopback OpenTelemetry collector the control plane exports to
  stack                   PostgreSQL, Redis, secrets, fake STS, control plane (AWS base
                          credentials, VMX_STS_ENDPOINT at the fake STS, VMX_OTLP_ENDPOINT at
                          the collector, with an authorization header), nginx + module
  api                     management API client logged in as admin
  gw                      helper: provision(...) objects and wait for the data plane
The build (./build.sh build) must have run: the stack fixture fails with a clear
message when build/nginx/ngx_http_vmx_module.so or build/vmx-control-plane is missing.
"""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

T = Path(__file__).resolve().parent
ROOT = T.parent
for _p in (T, T / "gateway"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from harness.certs import make_certs  # noqa: E402
from harness.fake_anthropic import FakeAnthropic  # noqa: E402
from harness.fake_bedrock import FakeBedrock  # noqa: E402
from harness.fake_gemini import FakeGemini  # noqa: E402
from harness.fake_openai import FakeOpenAI  # noqa: E402
from harness.nginx import MODULE, Nginx  # noqa: E402
from harness.otlp_collector import Collector  # noqa: E402
from harness.redis import Redis  # noqa: E402
from gwutil import READ_TIMEOUT, free_port, http_request  # noqa: E402,F401

CP_BIN = ROOT / "build" / "vmx-control-plane"
BEDROCK_REGION = "us-east-1"
SDK_DIR = T / "sdk"

# Directives added inside `location /v1/` of the session's nginx: short timeouts so
# that the stall/timeout fallback tests stay fast.
GATEWAY_DIRECTIVES = (f"vmx_connect_timeout 2s; vmx_first_byte_timeout {READ_TIMEOUT:g}s; "
                      f"vmx_idle_timeout {READ_TIMEOUT:g}s; vmx_send_timeout 2s;")


# ---------------------------------------------------------------------- certificates
@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("pki"), name="test")


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("rogue-pki"), name="rogue")


# ---------------------------------------------------------------------- fake providers
_FAKES = []


def _fake(**kw):
    f = FakeOpenAI(**kw).start()
    _FAKES.append(f)
    return f


@pytest.fixture(scope="session")
def fake():
    f = _fake(name="primary", api_key="sk-fake-primary")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def fake2():
    f = _fake(name="secondary", api_key="sk-fake-secondary")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def fake_tls(pki):
    ca, cert, key = pki
    f = _fake(name="tls", api_key="sk-fake-tls", tls=(cert, key))
    yield f
    f.stop()


@pytest.fixture(scope="session")
def fake_rogue(rogue_pki):
    ca, cert, key = rogue_pki
    f = _fake(name="rogue", api_key="sk-fake-rogue", tls=(cert, key))
    yield f
    f.stop()


def _native(cls, **kw):
    f = cls(**kw).start()
    _FAKES.append(f)
    return f


@pytest.fixture(scope="session")
def fake_anthropic():
    f = _native(FakeAnthropic, name="anthropic", api_key="sk-ant-fake-gateway")
    yield f
    f.stop()


@pytest.fixture(scope="session")
def fake_gemini():
    f = _native(FakeGemini, name="gemini", api_key="AIzaFakeGatewayKey0123456789abcdefghijk")
    yield f
    f.stop()


def _trust_sts(bedrock, sts):
    """Make a fake Bedrock accept every credential set the fake STS issued or will issue."""
    for call in list(sts.calls):
        if call.get("issued"):
            i = call["issued"]
            bedrock.accept(i["AccessKeyId"], i["SecretAccessKey"], i["SessionToken"])
    sts.listeners.append(
        lambda i: bedrock.accept(i["AccessKeyId"], i["SecretAccessKey"], i["SessionToken"]))


@pytest.fixture(scope="session")
def fake_bedrock(fake_sts):
    f = _native(FakeBedrock, name="bedrock", region=BEDROCK_REGION)
    _trust_sts(f, fake_sts)
    yield f
    f.stop()


@pytest.fixture(scope="session")
def fake_bedrock_tls(fake_sts, pki):
    ca, cert, key = pki
    f = _native(FakeBedrock, name="bedrock-tls", region=BEDROCK_REGION, tls=(cert, key))
    _trust_sts(f, fake_sts)
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _reset_fakes():
    for f in _FAKES:
        f.set_behavior(None)
        f.stream_delay = 0.3
        f.chunked_json = False
        f.compress = None
        f.split_writes = False
        f.split_at = None
        f.split_delay = 0.01
        f.clear()
    yield


# ---------------------------------------------------------------------- the stack
_NGINXES = []


@pytest.fixture(autouse=True)
def _check_error_logs():
    """After every test: no [alert]/[crit]/[emerg] nor crashed worker in any nginx log."""
    yield
    for n in list(_NGINXES):
        n.check_error_log()


@pytest.fixture(scope="session")
def built():
    missing = [str(p.relative_to(ROOT)) for p in (MODULE, CP_BIN) if not p.exists()]
    if missing:
        pytest.fail("not built: " + ", ".join(missing) + " -- run ./build.sh build first",
                    pytrace=False)
    return True


def pytest_collection_modifyitems(session, config, items):
    """The leak search (test_secrets.py) runs last, over what every other test left."""
    items.sort(key=lambda item: item.path.name == "test_secrets.py")


class Stack:
    pass


@pytest.fixture(scope="session")
def otlp():
    c = Collector().start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def stack(built, tmp_path_factory, pki, otlp):
    try:
        from harness.api import Api
        from harness.control_plane import ControlPlane, write_secret_files
        from harness.fake_sts import FakeSts
        from harness.postgres import Postgres
    except ImportError as e:
        pytest.fail(f"control-plane test harness missing: {e}", pytrace=False)
    base = tmp_path_factory.mktemp("stack")
    s = Stack()
    s.base = base
    s.ca_file = pki[0]
    started = []
    try:
        s.pg = Postgres(base / "pg", free_port())
        s.pg.start()
        started.append(s.pg)
        s.redis = Redis(base / "redis", free_port()).start()
        started.append(s.redis)
        (base / "secrets").mkdir()
        s.token_file, s.master_key_file = write_secret_files(base / "secrets")
        # aws-bedrock connections: the control plane assumes their roles at a fake STS
        tag = uuid.uuid4().hex
        s.base_credentials = {"AWS_ACCESS_KEY_ID": "AKIA" + tag[:16].upper(),
                              "AWS_SECRET_ACCESS_KEY": "base-secret-" + tag,
                              "AWS_SESSION_TOKEN": "base-token-" + tag}
        s.sts = FakeSts(s.base_credentials["AWS_ACCESS_KEY_ID"],
                        s.base_credentials["AWS_SECRET_ACCESS_KEY"],
                        s.base_credentials["AWS_SESSION_TOKEN"]).start()
        started.append(s.sts)
        s.nginx_port = free_port()
        s.cp_port = free_port()
        # spans and metrics to the loopback collector, with a bearer token to keep secret
        s.otlp = otlp
        s.otlp_token = "otlp-" + uuid.uuid4().hex
        s.cp = ControlPlane(base / "cp", s.cp_port, s.pg.dsn,
                            [f"http://127.0.0.1:{s.nginx_port}"], s.token_file,
                            s.master_key_file, reconcile_interval=1,
                            env=dict(s.base_credentials, VMX_STS_ENDPOINT=s.sts.url,
                                     VMX_OTLP_ENDPOINT=otlp.url, VMX_OTLP_METRICS_INTERVAL="1",
                                     VMX_OTLP_HEADERS=f"Authorization=Bearer%20{s.otlp_token}",
                                     # the batch tests on this stack play the runner with SQL
                                     # (test_openai_batches); a running one raced them for the
                                     # items. test_batch_runner restarts it running.
                                     VMX_BATCH_PAUSED="1"))
        s.cp.start()
        started.append(s.cp)
        s.nginx = Nginx(base / "nginx", s.nginx_port, s.token_file, s.ca_file,
                        cp_addr=f"127.0.0.1:{s.cp_port}", gateway_directives=GATEWAY_DIRECTIVES)
        s.nginx.start()
        started.append(s.nginx)
        _NGINXES.append(s.nginx)
        s.api = Api(s.cp.url)
        s.api.login()
    except BaseException:
        for p in reversed(started):
            try:
                p.stop()
            except Exception:
                pass
        raise
    yield s
    for p in reversed(started):
        try:
            p.stop()
        except Exception:
            pass
    if s.nginx in _NGINXES:
        _NGINXES.remove(s.nginx)
    s.nginx.check_error_log()       # what the shutdown logged


@pytest.fixture(scope="session")
def nginx(stack):
    return stack.nginx


@pytest.fixture(scope="session")
def api(stack):
    return stack.api


@pytest.fixture(scope="session")
def fake_sts(stack):
    return stack.sts


# ---------------------------------------------------------------------- provisioning
class Env:
    def __init__(self, gw, ws, env):
        self.gw = gw
        self.ws = ws
        self.env = env
        self.ws_id = ws["id"]
        self.env_id = env["id"]
        self.conns = {}
        self.res = {}
        self.keys = {}
        self.key_objs = {}

    def key(self, name=None):
        return self.keys[name] if name else next(iter(self.keys.values()))

    def chat(self, model, key=None, body=None, headers=None, path="/v1/chat/completions", **kw):
        b = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
        if body:
            b.update(body)
        h = {"Authorization": f"Bearer {key or self.key()}"}
        h.update(headers or {})
        return http_request(self.gw.url, "POST", path, b, h, **kw)

    @property
    def prefix(self):
        return f"/api/v1/workspaces/{self.ws_id}/environments/{self.env_id}"


class Gateway:
    def __init__(self, stack):
        self.stack = stack
        self.api = stack.api
        self.nginx = stack.nginx
        self.url = stack.nginx.url

    def request(self, method, path, body=None, headers=None, **kw):
        return http_request(self.url, method, path, body, headers, **kw)

    def _model_spec(self, env, spec):
        if isinstance(spec, dict):
            return spec
        conn, model = spec
        c = env.conns[conn]
        return {"provider": c.get("provider", "openai"), "model": model, "connectionId": c["id"]}

    def provision(self, connections=None, resources=None, keys=None, env=None, ws=None,
                  wait=True):
        """Create (in a new workspace/environment unless env is given) and wait for the data plane.

        connections: {name: fields}   e.g. {"a": connection_for(fake)}
        resources:   {name: {"model": (conn, model) | {...}, "fallback": [(conn, model)...],
                             "secondary": [(conn, model)...], other resource fields...}}
        keys:        {name: {"resources": [resource names], other key fields...}}
        ws:          an existing workspace object to create the new environment in
        """
        v0 = self.nginx.config_version() or 0
        if env is None:
            tag = uuid.uuid4().hex[:8]
            if ws is None:
                ws = self.api.create_workspace(f"ws-{tag}")
            e = self.api.create_environment(ws["id"], f"env-{tag}")
            env = Env(self, ws, e)
        for name, fields in (connections or {}).items():
            env.conns[name] = self.api.create_connection(env.ws_id, env.env_id, name=name, **fields)
        for name, fields in (resources or {}).items():
            f = dict(fields)
            f["model"] = self._model_spec(env, f["model"])
            f["fallbackModels"] = [self._model_spec(env, m) for m in f.pop("fallback", [])]
            if "secondary" in f:
                f["secondaryModels"] = [self._model_spec(env, m) for m in f.pop("secondary")]
            f.setdefault("useFallback", True)
            f.setdefault("routing", {"enabled": False, "conditions": []})
            env.res[name] = self.api.create_resource(env.ws_id, env.env_id, name=name, **f)
        for name, fields in (keys or {}).items():
            f = dict(fields)
            f["resources"] = [env.res[r]["id"] for r in f.get("resources", [])]
            f.setdefault("enabled", True)
            obj = self.api.create_api_key(env.ws_id, env.env_id, name=name, **f)
            env.key_objs[name] = obj
            env.keys[name] = obj["key"]
        if wait:
            self.wait_synced(env, v0)
        return env

    def desired_version(self):
        """The config version the control plane wants its data planes to run, or None."""
        try:
            st, body, _ = self.api.request("GET", "/api/v1/dataplanes")
            if st == 200 and isinstance(body, dict) and body.get("data"):
                vs = [d.get("desiredVersion") for d in body["data"]]
                vs = [v for v in vs if isinstance(v, int)]
                return max(vs) if vs else None
        except OSError:
            pass
        return None

    def wait_version_above(self, v0, timeout=15):
        """Wait until every nginx worker runs a version > v0 and >= the configuration's
        version in PostgreSQL (the control plane's desiredVersion may not have caught up
        with the last commit: a worker that has not compiled it yet would miss its objects)."""
        deadline = time.time() + timeout
        v = None
        committed = int(self.stack.pg.psql("SELECT version FROM config_version") or 0)
        want = max(v0 + 1, self.desired_version() or 0, committed)
        while time.time() < deadline:
            v = self.nginx.config_version()
            if v is not None and v >= want:
                return v
            time.sleep(0.05)
        raise AssertionError(f"data plane still runs config version {v} (wanted >= {want}); "
                             f"control plane log: {self.stack.cp.log_path}")

    def wait_synced(self, env, v0, timeout=15):
        """Wait until nginx runs a config newer than v0 that has every key and resource of env."""
        deadline = time.time() + timeout
        self.wait_version_above(v0, timeout)
        for name, obj in env.key_objs.items():
            if not obj.get("enabled", True):
                continue
            want = {r["name"] for r in env.res.values() if r["id"] in obj.get("resources", [])}
            last = None
            while True:
                last = self.request("GET", "/v1/models",
                                    headers={"Authorization": f"Bearer {env.keys[name]}"})
                if last.status == 200:
                    try:
                        ids = {m["id"] for m in last.json()["data"]}
                    except (ValueError, KeyError, TypeError):
                        ids = set()
                    if want <= ids:
                        break
                if time.time() > deadline:
                    raise AssertionError(f"key {name} not served by the data plane: {last!r}")
                time.sleep(0.1)

    def update(self, env, kind, name, **fields):
        """PUT the whole object with fields changed and wait for the data plane to run
        the new version."""
        coll = {"connections": env.conns, "resources": env.res, "api-keys": env.key_objs}[kind]
        obj = coll[name]
        v0 = self.nginx.config_version() or 0
        body = {k: v for k, v in obj.items()
                if k not in ("id", "key", "maskedKey", "createdAt", "updatedAt", "workspaceId",
                             "environmentId", "discoveredCapacity", "credentialsStatus",
                             "dataplaneProblems", "lastUsedAt", "previousKeyExpiresAt",
                             "createdBy", "updatedBy")}
        body.update(fields)
        st, data, _ = self.api.request("PUT", f"{env.prefix}/{kind}/{obj['id']}", body)
        assert st == 200, f"PUT {kind}/{name}: {st} {data}"
        if isinstance(data, dict):
            key = obj.get("key")
            coll[name] = data
            if key:
                data["key"] = key
        self.wait_version_above(v0)
        return data


@pytest.fixture(scope="session")
def gw(stack):
    return Gateway(stack)


# ---------------------------------------------------------------------- node SDK tests
def _ensure_node_modules():
    if (SDK_DIR / "node_modules" / "openai" / "package.json").exists():
        return
    if not shutil.which("npm"):
        pytest.fail("npm is not installed", pytrace=False)
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"npm ci failed in t/sdk:\n{r.stdout}\n{r.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def run_node_tests():
    """Run `node --test` on t/sdk/*.test.mjs with the given environment; fail with its output."""
    if not shutil.which("node"):
        pytest.fail("node is not installed", pytrace=False)
    _ensure_node_modules()

    def run(env, files=None, timeout=180):
        files = files or sorted(str(p) for p in SDK_DIR.glob("*.test.mjs"))
        e = dict(os.environ)
        e.update({k: str(v) for k, v in env.items()})
        r = subprocess.run(["node", "--test", "--test-reporter=spec"] + files, cwd=SDK_DIR,
                           env=e, capture_output=True, text=True, timeout=timeout)
        out = r.stdout + r.stderr
        if r.returncode != 0:
            pytest.fail(f"node --test exited {r.returncode}:\n{out}", pytrace=False)
        return out

    return run


# ---------------------------------------------------------------------- a stack of its own
@pytest.fixture(scope="module")
def own_stack(built, tmp_path_factory, pki):
    """Factory: own_stack(check_log=True, **nginx_options) starts a PostgreSQL, a control
    plane and an nginx of their own, for a test that stops PostgreSQL or needs other nginx
    directives (http_directives, max_body, ...) without disturbing the session's stack.
    The result has .pg, .cp, .nginx, .api, .token_file, .ca_file and .gw (a Gateway that
    provisions on it, with the session's fake providers).  Stopped at the end of the
    module; its nginx error log is checked after every test unless check_log=False (then
    the test checks it itself)."""
    from harness.api import Api
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.postgres import Postgres
    made = []

    def make(check_log=True, **nginx_options):
        base = tmp_path_factory.mktemp("own-stack")
        s = Stack()
        s.base = base
        s.ca_file = pki[0]
        s.parts = []
        made.append(s)
        s.pg = Postgres(base / "pg", free_port())
        s.pg.start()
        s.parts.append(s.pg)
        s.token_file, s.master_key_file = write_secret_files(base / "secrets")
        nginx_port, cp_port = free_port(), free_port()
        s.cp = ControlPlane(base / "cp", cp_port, s.pg.dsn, [f"http://127.0.0.1:{nginx_port}"],
                            s.token_file, s.master_key_file, reconcile_interval=1)
        s.cp.start()
        s.parts.append(s.cp)
        nginx_options.setdefault("gateway_directives", GATEWAY_DIRECTIVES)
        s.nginx = Nginx(base / "nginx", nginx_port, s.token_file, s.ca_file,
                        cp_addr=f"127.0.0.1:{cp_port}", **nginx_options)
        s.nginx.start()
        s.parts.append(s.nginx)
        if check_log:
            _NGINXES.append(s.nginx)
        s.api = Api(s.cp.url)
        s.api.login()
        s.gw = Gateway(s)
        return s

    yield make
    for s in made:
        for p in reversed(s.parts):
            try:
                p.stop()
            except Exception:
                pass
        n = getattr(s, "nginx", None)
        if n is not None and n in _NGINXES:
            _NGINXES.remove(n)
            n.check_error_log()
