"""Fixtures of the control-plane tests: PostgreSQL, a fake data plane and the
daemon on loopback free ports, in one temporary directory per session.

  cp_stack   the running servers (pg, cp, dataplane, dead_dataplane_url, ...)
  api        a management API client logged in as admin
  env        a fresh workspace + environment: (ws_id, env_id)
  sts_stack  a second control plane, on its own database and fake data plane,
             with AWS base credentials and a fake STS (sts, cp, dataplane, api)
  audit_stack  a control plane on its own PostgreSQL server pulling audit
             records from a fake data plane's spool (pg, cp, dataplane, api)
"""
import json
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

T = Path(__file__).resolve().parent.parent
for path in (T, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from harness.api import Api  # noqa: E402
from harness.control_plane import ControlPlane, write_secret_files  # noqa: E402
from harness.fake_sts import FakeSts  # noqa: E402
from harness import spool  # noqa: E402
from harness.ports import LoopbackServer, free_port  # noqa: E402
from harness.postgres import Postgres  # noqa: E402
from cphelpers import unique  # noqa: E402


def spool_file_name(n):
    return f"records-0001700000000000-{n:010d}.vmx"


class FakeDataPlane(LoopbackServer):
    """Speaks the config channel: records PUT /vmx/config bodies, answers GET
    with the version it runs, and GET /vmx/capacity with `capacity` (a list
    of entries; None answers 404 as a module without the endpoint).
    Requires the shared token.

    It also serves an in-memory record spool as the module does
    (docs/ARCHITECTURE.md, "Audit and usage records"): add_records() appends
    framed records (harness/spool.py) to one spool file, add_raw() bytes as
    they are; GET /vmx/spool lists it (`finished` as set), GET
    /vmx/spool/<name> answers a Range of it (at most `max_bytes` when set, to
    force small reads), DELETE /vmx/spool/<name> records the deletion in
    `deletes` after calling `on_delete(name)` when set (the file then
    starts anew).  `records_status` / `delete_status`, when set, are
    answered instead."""

    def __init__(self, token: str):
        self.token = token
        self.lock = threading.Lock()
        self.snapshots = []          # every accepted PUT body, parsed
        self.version = 0             # what its workers run
        self.received = 0            # what it holds
        self.compiling = False       # True: a PUT is held, its workers never done
        self.put_delay = 0           # seconds a PUT takes (every worker's compile)
        self.unauthorized = 0
        self.capacity = []
        self.capacity_gets = 0
        self.spool = bytearray()     # the file's bytes
        self.file_no = 1             # a deleted file's name is not used again
        self.finished = False
        self.max_bytes = None
        self.records_gets = 0        # listings
        self.file_gets = 0           # reads of the file
        self.records_status = None
        self.delete_status = None
        self.deletes = []
        self.on_delete = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, obj):
                self._answer_raw(status, json.dumps(obj).encode())

            def _authorized(self):
                if self.headers.get("Authorization") == f"Bearer {fake.token}":
                    return True
                with fake.lock:
                    fake.unauthorized += 1
                self._answer(401, {"error": {"message": "bad token"}})
                return False

            def _answer_raw(self, status, data, ctype="application/json", extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _list(self):
                with fake.lock:
                    fake.records_gets += 1
                    if fake.records_status is not None:
                        self._answer(fake.records_status, {"error": {"message": "fault"}})
                        return
                    files = [{"name": fake.spool_file, "size": len(fake.spool),
                              "finished": fake.finished}] if fake.spool or fake.finished else []
                    self._answer(200, {"files": files, "bytes": len(fake.spool), "max": 0})

            def _file(self, name):
                rng = self.headers.get("Range", "")
                with fake.lock:
                    fake.file_gets += 1
                    data = bytes(fake.spool)
                if name != fake.spool_file:
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                first, last = 0, len(data) - 1
                if rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    first, last = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                if first >= len(data):
                    self._answer(416, {"error": {"message": "range"}})
                    return
                if fake.max_bytes is not None:
                    last = min(last, first + fake.max_bytes - 1)
                self._answer_raw(206, data[first:last + 1], "application/octet-stream",
                                 [("Content-Range", f"bytes {first}-{last}/{len(data)}")])

            def do_DELETE(self):
                path = self.path.partition("?")[0]
                if not path.startswith("/vmx/spool/") or not self._authorized():
                    if not path.startswith("/vmx/spool/"):
                        self._answer(404, {"error": {"message": "not found"}})
                    return
                name = path[len("/vmx/spool/"):]
                if fake.on_delete is not None:
                    fake.on_delete(name)
                with fake.lock:
                    if fake.delete_status is not None:
                        self._answer(fake.delete_status, {"error": {"message": "fault"}})
                        return
                    if not fake.finished:
                        self._answer(409, {"error": {"message": "active"}})
                        return
                    fake.deletes.append((name, len(fake.spool)))
                    fake.spool = bytearray()
                    fake.file_no += 1
                self._answer(200, {"deleted": True})

            def do_GET(self):
                path, _, qs = self.path.partition("?")
                if path == "/vmx/spool" or path.startswith("/vmx/spool/"):
                    if self._authorized():
                        if path == "/vmx/spool":
                            self._list()
                        else:
                            self._file(path[len("/vmx/spool/"):])
                    return
                if self.path not in ("/vmx/config", "/vmx/capacity"):
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                if not self._authorized():
                    return
                with fake.lock:
                    if self.path == "/vmx/config":
                        self._answer(200, {"version": fake.version, "received": fake.received,
                                           "loadedAt": "2026-01-01T00:00:00Z"})
                        return
                    fake.capacity_gets += 1
                    if fake.capacity is None:
                        self._answer(404, {"error": {"message": "not found"}})
                    else:
                        self._answer(200, {"entries": fake.capacity})

            def do_PUT(self):
                if self.path != "/vmx/config":
                    self._answer(404, {"error": {"message": "not found"}})
                    return
                if not self._authorized():
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                snap = json.loads(body)
                time.sleep(fake.put_delay)
                with fake.lock:
                    fake.snapshots.append(snap)
                    fake.received = snap["version"]
                    if not fake.compiling:
                        fake.version = snap["version"]
                    state = {"version": fake.version, "received": fake.received}
                self._answer(200, state)

        self.serve(Handler)

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

    def add_records(self, records):
        """Appends records (dicts, their "request"/"response" the payloads) to the spool."""
        with self.lock:
            for r in records:
                self.spool += spool.record(r)

    def add_raw(self, data):
        """Appends bytes as they are (a framed record, or garbage)."""
        with self.lock:
            self.spool += data

    def end_cursor(self):
        """The cursor after the last byte of the spool."""
        with self.lock:
            return f"{self.spool_file}:{len(self.spool)}" if self.spool else ""

    @property
    def spool_file(self):
        return spool_file_name(self.file_no)

    def forget(self):
        """As a restarted data plane without its disk copy: runs version 0."""
        with self.lock:
            self.version = 0
            self.received = 0
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
        # batches wait: the API's tests play the runner with the contract's SQL
        s.cp = ControlPlane(base / "cp", free_port(), s.pg.dsn,
                            [s.dataplane.url, s.dead_dataplane_url], s.token_file,
                            s.master_key_file, reconcile_interval=1,
                            env={"VMX_BATCH_PAUSED": "1"})
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


@pytest.fixture(scope="session")
def audit_stack(tmp_path_factory):
    """A control plane of its own (own PostgreSQL server, so a test may stop
    it) pulling records every 100 ms from a fake data plane and a dead one,
    with /metrics behind a token: (pg, cp, dataplane, dead_dataplane_url,
    api, metrics_token)."""
    base = tmp_path_factory.mktemp("audit")
    s = CpStack()
    s.base = base
    s.pg = Postgres(base / "pg", free_port())
    s.pg.start()
    try:
        s.token_file, s.master_key_file = write_secret_files(base / "secrets")
        s.metrics_token = "metrics-" + uuid.uuid4().hex
        metrics_token_file = base / "secrets" / "metrics.token"
        metrics_token_file.write_text(s.metrics_token + "\n")
        s.dataplane = FakeDataPlane(s.token_file.read_text().strip()).start()
        s.dead_dataplane_url = f"http://127.0.0.1:{free_port()}"
        s.cp = ControlPlane(base / "cp", free_port(), s.pg.dsn,
                            [s.dataplane.url, s.dead_dataplane_url], s.token_file,
                            s.master_key_file, reconcile_interval=1,
                            env={"VMX_INGEST_INTERVAL_MS": "100",
                                 "VMX_METRICS_TOKEN_FILE": str(metrics_token_file)})
        s.cp.start()
        try:
            s.api = Api(s.cp.url)
            s.api.login()
            yield s
        finally:
            rc = s.cp.stop()
            s.dataplane.stop()
            assert rc == 0, f"control plane exited with {rc}"
    finally:
        s.pg.stop()
