"""Fixtures of the control-plane tests: PostgreSQL, a fake data plane and the
daemon on loopback free ports, in one temporary directory per session.

  cp_stack   the running servers (pg, cp, dataplane, dead_dataplane_url, ...)
  api        a management API client logged in as admin
  env        a fresh workspace + environment: (ws_id, env_id)
  sts_stack  a second control plane, on its own database and fake data plane,
             with AWS base credentials and a fake STS (sts, cp, dataplane, api)
"""
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

T = Path(__file__).resolve().parent.parent
for path in (T, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from harness.api import Api  # noqa: E402
from harness.control_plane import ControlPlane, write_secret_files  # noqa: E402
from harness.fake_sts import FakeSts  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.postgres import Postgres  # noqa: E402
from cphelpers import unique  # noqa: E402


class FakeDataPlane:
    """Speaks the config channel: records PUT /vmx/config bodies, answers GET
    with the version it runs, and GET /vmx/capacity with `capacity` (a list
    of entries; None answers 404 as a module without the endpoint).
    Requires the shared token."""

    def __init__(self, token: str):
        self.token = token
        self.lock = threading.Lock()
        self.snapshots = []          # every accepted PUT body, parsed
        self.version = 0
        self.unauthorized = 0
        self.capacity = []
        self.capacity_gets = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self):
                if self.headers.get("Authorization") == f"Bearer {fake.token}":
                    return True
                with fake.lock:
                    fake.unauthorized += 1
                self._answer(401, {"error": {"message": "bad token"}})
                return False

            def do_GET(self):
                if self.path not in ("/vmx/config", "/vmx/capacity"):
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                if not self._authorized():
                    return
                with fake.lock:
                    if self.path == "/vmx/config":
                        self._answer(200, {"version": fake.version,
                                           "loadedAt": "2026-01-01T00:00:00Z"})
                        return
                    fake.capacity_gets += 1
                    if fake.capacity is None:
                        self._answer(404, {"error": {"message": "not found"}})
                    else:
                        self._answer(200, {"entries": fake.capacity})

            def do_PUT(self):
                if self.path != "/vmx/config" or not self._authorized():
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                snap = json.loads(body)
                with fake.lock:
                    fake.snapshots.append(snap)
                    fake.version = snap["version"]
                self._answer(200, {"version": snap["version"]})

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def last(self):
        with self.lock:
            return self.snapshots[-1] if self.snapshots else None

    def set_capacity(self, entries):
        """The entries GET /vmx/capacity answers from now on (None: 404)."""
        with self.lock:
            self.capacity = entries

    def wait_capacity_gets(self, count=2, timeout=10.0):
        """Waits until GET /vmx/capacity was answered count more times."""
        with self.lock:
            target = self.capacity_gets + count
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if self.capacity_gets >= target:
                    return
            time.sleep(0.05)
        raise AssertionError("GET /vmx/capacity not called")

    def forget(self):
        """As a restarted data plane without its disk copy: runs version 0."""
        with self.lock:
            self.version = 0
            self.snapshots.clear()

    def wait_for(self, predicate, timeout=10.0):
        """The first recorded snapshot for which predicate is true, polling."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for snap in reversed(self.snapshots):
                    if predicate(snap):
                        return snap
            time.sleep(0.05)
        raise AssertionError("no matching snapshot pushed; last: %r" % (self.last(),))


class CpStack:
    pass


@pytest.fixture(scope="session")
def cp_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("controlplane")
    s = CpStack()
    s.base = base
    s.pg = Postgres(base / "pg", free_port())
    s.pg.start()
    try:
        s.token_file, s.master_key_file = write_secret_files(base / "secrets")
        s.dataplane = FakeDataPlane(s.token_file.read_text().strip()).start()
        s.dead_dataplane_url = f"http://127.0.0.1:{free_port()}"
        s.cp = ControlPlane(base / "cp", free_port(), s.pg.dsn,
                            [s.dataplane.url, s.dead_dataplane_url], s.token_file,
                            s.master_key_file, reconcile_interval=1)
        s.cp.start()
        try:
            yield s
        finally:
            rc = s.cp.stop()
            s.dataplane.stop()
            assert rc == 0, f"control plane exited with {rc}"
    finally:
        s.pg.stop()


STS_REFRESH_MARGIN = 5        # seconds; the fake STS issues short lifetimes per role


@pytest.fixture(scope="session")
def sts_stack(cp_stack):
    s = CpStack()
    s.base = cp_stack.base / "sts"
    s.pg = cp_stack.pg
    s.pg.psql("CREATE DATABASE vmx_sts", dbname="postgres")
    s.base_credentials = {"AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
                          "AWS_SECRET_ACCESS_KEY": "base-secret-" + uuid.uuid4().hex,
                          "AWS_SESSION_TOKEN": "base-token-" + uuid.uuid4().hex}
    s.sts = FakeSts(s.base_credentials["AWS_ACCESS_KEY_ID"],
                    s.base_credentials["AWS_SECRET_ACCESS_KEY"],
                    s.base_credentials["AWS_SESSION_TOKEN"]).start()
    s.token_file, s.master_key_file = write_secret_files(s.base / "secrets")
    s.dataplane = FakeDataPlane(s.token_file.read_text().strip()).start()
    env = dict(s.base_credentials, VMX_STS_ENDPOINT=s.sts.url,
               VMX_STS_REFRESH_MARGIN=str(STS_REFRESH_MARGIN))
    s.cp = ControlPlane(s.base / "cp", free_port(), s.pg.dsn_of("vmx_sts"),
                        [s.dataplane.url], s.token_file, s.master_key_file,
                        reconcile_interval=1, env=env)
    s.cp.start()
    try:
        s.api = Api(s.cp.url)
        s.api.login()
        yield s
    finally:
        rc = s.cp.stop()
        s.dataplane.stop()
        s.sts.stop()
        assert rc == 0, f"control plane exited with {rc}"


@pytest.fixture(scope="session")
def api(cp_stack):
    a = Api(cp_stack.cp.url)
    a.login()
    return a


@pytest.fixture
def env(api):
    ws = api.create_workspace(unique("ws"))
    e = api.create_environment(ws["id"], "production")
    return ws["id"], e["id"]
