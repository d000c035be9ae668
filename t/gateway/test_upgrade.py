"""Upgrades without loss (issue 13, item 6): nginx reloaded several times, then upgraded
to a new binary (USR2, WINCH, QUIT), while client threads send plain and streamed
requests over fresh and kept-alive connections.  Every request gets a 2xx and every
answered request has exactly one audit record in PostgreSQL after ingestion.

A kept-alive connection that an exiting worker closes while idle may meet the next
request (HTTP/1.1's race: the worker had read no byte of it, so it left no record); the
client sends such a request again on a fresh connection, as a client must, and the
retries are counted.  Any other failure, a refused or reset fresh connection included, is
a failure of the test, and so is a record stored twice.

And a snapshot format change between releases (item 6's second half): the module reads
its format and the one before and refuses a newer one whole; the control plane pushes
each data plane the newest format it states it reads."""
import hashlib
import http.client
import http.server
import json
import re
import threading
import time
import uuid

from gwutil import connection_for, free_port, http_request

THREADS = 6
INGEST_TIMEOUT = 40


class Client(threading.Thread):
    """Requests in a loop until stopped: plain and streamed in turn, over one kept-alive
    connection when keepalive, else a fresh connection each."""

    def __init__(self, load, keepalive):
        super().__init__(daemon=True)
        self.load = load
        self.keepalive = keepalive
        self.conn = None

    def _connect(self):
        host, port = self.load.url.split("//", 1)[1].split(":")
        return http.client.HTTPConnection(host, int(port), timeout=30)

    def _send(self, body):
        reused = self.conn is not None
        if not reused:
            self.conn = self._connect()
        headers = {"Authorization": f"Bearer {self.load.key}",
                   "Content-Type": "application/json"}
        if not self.keepalive:
            headers["Connection"] = "close"
        try:
            self.conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
            r = self.conn.getresponse()
            data = r.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()
            self.conn = None
            if reused:
                return None         # closed idle by an exiting worker: not read, send again
            raise
        if not self.keepalive or r.will_close:
            self.conn.close()
            self.conn = None
        return r.status, data

    def run(self):
        while not self.load.stopping.is_set():
            i = self.load.take()
            body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}],
                    "vmx": {"correlationId": self.load.cid(i)}}
            stream = i % 2 == 1
            if stream:
                body["stream"] = True
            try:
                answer = self._send(body)
                if answer is None:
                    self.load.count_retry()
                    answer = self._send(body)
                status, data = answer
                if status == 200 and stream and b"data: [DONE]" not in data:
                    status = "stream without its end"
            except OSError as e:
                status = repr(e)
            self.load.done(i, status)


class Load:
    def __init__(self, url, key):
        self.url = url
        self.key = key
        self.prefix = "upgrade-" + uuid.uuid4().hex[:10]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next = 0
        self.retries = 0
        self.statuses = {}
        self.clients = [Client(self, keepalive=n % 2 == 0) for n in range(THREADS)]

    def cid(self, i):
        return f"{self.prefix}-{i}"

    def take(self):
        with self.lock:
            self.next += 1
            return self.next - 1

    def done(self, i, status):
        with self.lock:
            self.statuses[i] = status

    def count_retry(self):
        with self.lock:
            self.retries += 1

    def answered(self):
        with self.lock:
            return len(self.statuses)

    def run_while(self, action):
        for c in self.clients:
            c.start()
        try:
            action()
        finally:
            self.stopping.set()
            for c in self.clients:
                c.join(60)


def wait_answered(load, more, timeout=20):
    """Until `more` requests more are answered: each step runs under load."""
    want = load.answered() + more
    deadline = time.time() + timeout
    while load.answered() < want:
        assert time.time() < deadline, f"{load.answered()} requests answered, wanted {want}"
        time.sleep(0.05)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def change_while_both_run(s, env):
    """A key created and another disabled while the old and the new master's workers both
    serve: the control plane pushes the change to one of them (its kept-alive connection
    is to an old worker) and stops.  Within a second every worker of both runs it."""
    s.gw.provision(keys={"late": {"resources": ["chat"]}}, env=env, wait=False)
    s.gw.update(env, "api-keys", "spare", enabled=False)
    version = int(s.pg.psql("SELECT version FROM config_version"))
    deadline = time.time() + 10
    while s.nginx.config_version() != version:      # pushed (to either master)
        assert time.time() < deadline, f"version {version} not pushed"
        time.sleep(0.05)
    s.cp.stop()
    time.sleep(1.2)
    for _ in range(20):
        r = s.gw.request("GET", "/v1/models", headers=bearer(env.keys["late"]))
        assert r.status == 200, r
        r = s.gw.request("GET", "/v1/models", headers=bearer(env.keys["spare"]))
        assert r.status == 401, r
    return version


def stored(s, env, load):
    """{correlation id: rows} of the load's audit records."""
    out = s.pg.psql(f"SELECT correlation_id, count(*) FROM audit_records"
                    f" WHERE environment_id = '{env.env_id}'"
                    f" AND correlation_id LIKE '{load.prefix}-%' GROUP BY correlation_id")
    return {cid: int(n) for cid, n in (line.split("|") for line in out.splitlines() if line)}


def test_reloads_and_binary_upgrade_lose_nothing(own_stack, fake):
    s = own_stack(daemon=True)
    env = s.gw.provision(connections={"a": connection_for(fake)},
                         resources={"chat": {"model": ("a", "gpt-upgrade")}},
                         keys={"k": {"resources": ["chat"]}})
    s.gw.provision(keys={"spare": {"resources": ["chat"]}}, env=env)
    load = Load(s.nginx.url, env.keys["k"])
    masters = [s.nginx.pid]

    def upgrades():
        wait_answered(load, 50)
        for _ in range(3):
            s.nginx.reload()
            wait_answered(load, 50)
        changed = []
        s.nginx.upgrade(between=lambda: changed.append(change_while_both_run(s, env)))
        masters.append(s.nginx.pid)
        # the control plane, stopped before the upgrade ended, pushed the change once, to
        # one master's worker: the survivor runs it all the same
        assert s.nginx.config_version() == changed[0]
        assert s.gw.request("GET", "/v1/models", headers=bearer(env.keys["late"])).status == 200
        assert s.gw.request("GET", "/v1/models", headers=bearer(env.keys["spare"])).status == 401
        s.cp.start()
        wait_answered(load, 50)
        s.nginx.reload()                # the new master reloads as the old one did
        wait_answered(load, 50)

    load.run_while(upgrades)

    assert masters[0] != masters[1] and s.nginx.running()
    bad = {i: st for i, st in load.statuses.items() if st != 200}
    assert not bad, f"{len(bad)} of {len(load.statuses)} requests failed, e.g. " \
                    f"{sorted(bad.items())[:5]}"
    n = len(load.statuses)
    assert n >= 300
    print(f"{n} requests, {load.retries} retried after an idle close")
    deadline = time.time() + INGEST_TIMEOUT
    while True:
        rows = stored(s, env, load)
        if len(rows) >= n:
            break
        assert time.time() < deadline, (
            f"{len(rows)} of {n} answered requests have a record after {INGEST_TIMEOUT} s "
            f"(retried after an idle close: {load.retries}), e.g. missing "
            f"{[i for i in sorted(load.statuses) if load.cid(i) not in rows][:5]}; "
            f"control plane log: {s.cp.log_path}")
        time.sleep(0.5)
    time.sleep(1.5)                     # one more ingestion round: nothing more may come
    rows = stored(s, env, load)
    assert set(rows) == {load.cid(i) for i in load.statuses}
    assert not [cid for cid, k in rows.items() if k != 1], "a record stored twice"
    log = s.nginx.error_log()
    assert "exited on signal" not in log


# ---------------------------------------------------------------------- snapshot formats
# the formats this module reads (lib/vmx_config.h): its own and the one before
FORMATS = [1, 2]


def snapshot(version, fake, key, format=None):
    """A snapshot of one environment whose key calls `chat` at the fake provider; format
    None states none (format 1)."""
    host, port = fake.url.split("//", 1)[1].split("/", 1)[0].split(":")
    s = {"version": version,
         "environments": [{"id": "e1", "workspaceId": "w1", "name": "prod"}],
         "connections": [{"id": "c1", "workspaceId": "w1", "environmentId": "e1",
                          "name": "fake", "provider": "openai", "baseUrl": fake.url,
                          "addresses": [f"{host}:{port}"],
                          "credentials": {"apiKey": fake.api_key}}],
         "resources": [{"id": "r1", "workspaceId": "w1", "environmentId": "e1",
                        "name": "chat", "model": {"provider": "openai", "model": "gpt-fmt",
                                                  "connectionId": "c1"}}],
         "apiKeys": [{"id": "k1", "workspaceId": "w1", "environmentId": "e1", "name": "k",
                      "keyHash": hashlib.sha256(key.encode()).hexdigest(), "enabled": True,
                      "resources": ["r1"]}],
         "poolDefinitions": []}
    if format is not None:
        s["format"] = format
    return s


def test_module_reads_its_format_and_the_previous_one(tmp_path, pki, fake):
    """The previous format (none stated) and the current one are run; a newer one is
    refused whole with its own code, the running snapshot stays and serves, and the
    refusal is in the state and the metrics."""
    from harness.control_plane import write_secret_files
    from harness.nginx import Nginx
    token_file, _ = write_secret_files(tmp_path / "secrets")
    n = Nginx(tmp_path / "nginx", free_port(), token_file, pki[0]).start()
    auth = {"Authorization": f"Bearer {n.token}"}
    key = "sk-vmx-" + uuid.uuid4().hex
    try:
        st = http_request(n.url, "GET", "/vmx/config", headers=auth).json()
        assert st["formats"] == FORMATS and "refused" not in st, st
        for version, format in ((1, None), (2, 1), (3, FORMATS[-1])):
            r = http_request(n.url, "PUT", "/vmx/config", snapshot(version, fake, key, format),
                             auth)
            assert r.status == 200 and r.json()["version"] == version, r
            r = http_request(n.url, "POST", "/v1/chat/completions",
                             {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                             {"Authorization": f"Bearer {key}"})
            assert r.status == 200, r
        r = http_request(n.url, "PUT", "/vmx/config", snapshot(4, fake, key, FORMATS[-1] + 1),
                         auth)
        assert r.status == 400, r
        err = r.json()["error"]
        assert err["code"] == "snapshot_format_unsupported", err
        assert "snapshot format 3 is not read here (formats 1 to 2)" in err["message"], err
        st = http_request(n.url, "GET", "/vmx/config", headers=auth).json()
        assert st["version"] == 3 and st["refused"]["total"] == 1, st
        assert "snapshot format 3" in st["refused"]["error"] and st["refused"]["at"], st
        r = http_request(n.url, "POST", "/v1/chat/completions",
                         {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                         {"Authorization": f"Bearer {key}"})
        assert r.status == 200, r
        metrics = http_request(n.url, "GET", "/metrics").text
        assert re.search(r"^vmx_config_refused_total 1$", metrics, re.M), metrics
        assert "vmx: rejected config snapshot" in n.error_log()
        # a restart reads the disk copy of the last snapshot run
        n.restart()
        assert n.config_version() == 3
    finally:
        n.stop()


class FakeDataplane:
    """The config channel of a data plane that states the formats it reads (or none, as a
    release before them): records the snapshots pushed to it."""

    def __init__(self, token, formats):
        self.version = 0
        self.pushed = []
        plane = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _state(self):
                if self.headers.get("Authorization") != f"Bearer {token}":
                    return self._answer(401, {"error": {"code": "unauthorized"}})
                if self.path != "/vmx/config":
                    return self._answer(404, {"error": {"code": "not_found"}})
                state = {"version": plane.version}
                if formats:
                    state["formats"] = formats
                self._answer(200, state)

            def do_GET(self):
                self._state()

            def do_PUT(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/vmx/config":
                    plane.pushed.append(body)
                    plane.version = body["version"]
                self._state()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_control_plane_pushes_the_format_a_data_plane_reads(own_stack):
    """Three data planes announce themselves: one of a release before formats (states
    none), one of this release, one of a newer release (reads a format this control
    plane does not build): each gets the newest format both read."""
    s = own_stack()
    token = s.token_file.read_text().strip()
    planes = {None: FakeDataplane(token, None), 2: FakeDataplane(token, FORMATS),
              3: FakeDataplane(token, FORMATS[1:] + [3])}
    try:
        for p in planes.values():
            st, body, _ = s.api.request("POST", "/api/v1/dataplanes/announce", {"url": p.url},
                                        token=token)
            assert st == 204, body
        deadline = time.time() + 15
        while not all(p.pushed for p in planes.values()):
            assert time.time() < deadline, {f: len(p.pushed) for f, p in planes.items()}
            time.sleep(0.1)
        assert "format" not in planes[None].pushed[0], planes[None].pushed[0].keys()
        assert planes[2].pushed[0]["format"] == 2
        assert planes[3].pushed[0]["format"] == 2
        # the same content and version in both formats
        old, new = planes[None].pushed[-1], dict(planes[2].pushed[-1])
        new.pop("format")
        assert old["version"] == new["version"] and old.keys() == new.keys()
        # and the format each is pushed in the data planes' listing
        while True:
            st, body, _ = s.api.request("GET", "/api/v1/dataplanes")
            listed = {d["url"]: d.get("snapshotFormat") for d in body["data"]}
            if all(listed.get(p.url) for p in planes.values()) or time.time() > deadline:
                break
            time.sleep(0.1)
        assert [listed.get(p.url) for p in planes.values()] == [1, 2, 2], listed
    finally:
        for p in planes.values():
            p.stop()
