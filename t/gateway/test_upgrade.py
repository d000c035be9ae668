"""Upgrades without loss (issue 13, item 6): nginx reloaded several times, then upgraded
to a new binary (USR2, WINCH, QUIT), while client threads send plain and streamed
requests over fresh and kept-alive connections.  Every request gets a 2xx and every
answered request has exactly one audit record in PostgreSQL after ingestion.

A kept-alive connection that an exiting worker closes while idle may meet the next
request (HTTP/1.1's race: the worker had read no byte of it, so it left no record); the
client sends such a request again on a fresh connection, as a client must, and the
retries are counted.  Any other failure, a refused or reset fresh connection included, is
a failure of the test, and so is a record stored twice."""
import http.client
import json
import threading
import time
import uuid

import pytest

from gwutil import connection_for

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
    version = s.nginx.config_version()
    load = Load(s.nginx.url, env.key())
    masters = [s.nginx.pid]

    def upgrades():
        wait_answered(load, 50)
        for _ in range(3):
            s.nginx.reload()
            wait_answered(load, 50)
        s.nginx.upgrade()
        masters.append(s.nginx.pid)
        # the new master's workers serve the snapshot they loaded from the disk copy
        assert s.nginx.config_version() == version
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
