"""SPEC §7 "no record is lost": the real data plane and control plane under faults.

A load of N requests (plain, streamed, with a fallback, failing) goes through the gateway
while PostgreSQL is stopped for 30 s, or while nginx is reloaded and the control plane
restarted; afterwards exactly N audit records (one per request, found by the load's
correlation ids in an environment of their own) and the right usage rows (one per attempt,
with the attempts' statuses) are stored, none twice.  Workers killed with SIGKILL under
load lose no record of a request that was answered: the record is in the zone's ring
before the answer's end is sent."""
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid

import pytest

from gwutil import connection_for

# kind: (resource, streamed, HTTP status the client gets, statuses of the attempts)
KINDS = [("plain", False, 200, "200"),
         ("plain", True, 200, "200"),
         ("fb", False, 200, "503,200"),
         ("bad", False, 400, "400")]
OUTAGE_SECONDS = 30
INGEST_TIMEOUT = 90


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    return provision(gw, fake, fake2)


class Load:
    """n requests from `threads` threads, started evenly over `duration` seconds; request
    i is of kind KINDS[i % 4] with correlation id <prefix>-<i>."""

    def __init__(self, env, n, duration, threads=8, resets=False):
        self.env = env
        self.resets = resets            # a connection cut (a killed worker) is no error
        self.n = n
        self.prefix = "fault-" + uuid.uuid4().hex[:10]
        self.duration = duration
        self.statuses = {}
        self.errors = []
        self.lock = threading.Condition()
        self.next = 0
        self.t0 = None
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def cid(self, i):
        return f"{self.prefix}-{i}"

    def _work(self):
        while True:
            with self.lock:
                i = self.next
                if i >= self.n:
                    return
                self.next += 1
            delay = self.t0 + i * self.duration / self.n - time.time()
            if delay > 0:
                time.sleep(delay)
            resource, stream, _, _ = KINDS[i % len(KINDS)]
            body = {"vmx": {"correlationId": self.cid(i)}}
            if stream:
                body["stream"] = True
            try:
                r = self.env.chat(resource, body=body, timeout=30)
                status = r.status
            except OSError as e:
                status = None
                if not self.resets:
                    self.errors.append((i, repr(e)))
            with self.lock:
                self.statuses[i] = status
                self.lock.notify_all()

    def start(self):
        self.t0 = time.time()
        for t in self.threads:
            t.start()
        return self

    def wait_done(self, fraction, timeout=120):
        deadline = time.time() + timeout
        with self.lock:
            while len(self.statuses) < fraction * self.n:
                assert time.time() < deadline, f"{len(self.statuses)} of {self.n} requests done"
                self.lock.wait(0.5)

    def join(self):
        for t in self.threads:
            t.join(120)
        assert not self.errors, self.errors[:5]
        want = {i: KINDS[i % len(KINDS)][2] for i in range(self.n)}
        assert self.statuses == want, {i: s for i, s in self.statuses.items() if want[i] != s}


def provision(gw, fake, fake2):
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2)},
        resources={"plain": {"model": ("a", "gpt-fault")},
                   "fb": {"model": ("a", "fail-503"), "fallback": [("b", "gpt-fault-fb")]},
                   "bad": {"model": ("a", "fail-400"), "fallback": [("b", "gpt-fault-fb")]}},
        keys={"k": {"resources": ["plain", "fb", "bad"]}})


def stored(stack, env, load):
    """{correlation id: (audit status, rows)} and {correlation id: attempt statuses}."""
    where = (f"environment_id = '{env.env_id}' AND correlation_id LIKE '{load.prefix}-%'")
    audit = stack.pg.psql(f"SELECT correlation_id, status_code, count(*) OVER"
                          f" (PARTITION BY correlation_id) FROM audit_records WHERE {where}")
    usage = stack.pg.psql(f"SELECT correlation_id, string_agg(coalesce(status_code::text, '-'),"
                          f" ',' ORDER BY attempt_index) FROM usage_records WHERE {where}"
                          f" GROUP BY correlation_id")
    a = [line.split("|") for line in audit.splitlines() if line]
    u = dict(line.split("|") for line in usage.splitlines() if line)
    return a, u


def check_stored(stack, env, load, timeout=INGEST_TIMEOUT):
    """Waits (bounded) for the load's records, then checks them exactly."""
    deadline = time.time() + timeout
    want_usage = sum(len(KINDS[i % len(KINDS)][3].split(",")) for i in range(load.n))
    while True:
        try:
            audit, usage = stored(stack, env, load)
        except subprocess.CalledProcessError:     # PostgreSQL still starting
            audit, usage = [], {}
        rows = sum(len(v.split(",")) for v in usage.values())
        if len(audit) >= load.n and rows >= want_usage:
            break
        assert time.time() < deadline, (
            f"{len(audit)} audit records and {rows} usage rows of {load.n} / {want_usage} "
            f"after {timeout} s; control plane log: {stack.cp.log_path}")
        time.sleep(0.5)
    time.sleep(1.5)                     # one more ingestion round: nothing more may come
    audit, usage = stored(stack, env, load)
    assert len(audit) == load.n, f"{len(audit)} audit records for {load.n} requests"
    dups = [a for a in audit if a[2] != "1"]
    assert not dups, f"stored twice: {dups[:5]}"
    for i in range(load.n):
        _, _, status, attempts = KINDS[i % len(KINDS)]
        assert usage.get(load.cid(i)) == attempts, (i, usage.get(load.cid(i)), attempts)
    statuses = {cid: int(s) for cid, s, _ in audit}
    assert statuses == {load.cid(i): KINDS[i % len(KINDS)][2] for i in range(load.n)}
    total = sum(len(v.split(",")) for v in usage.values())
    assert total == want_usage
    # the management API finds a request by its correlation id
    q = urllib.parse.urlencode({"correlationId": load.cid(2)})
    st, body, _ = stack.api.request("GET", f"{env.prefix}/audit?{q}")
    assert st == 200 and body["total"] == 1, body
    rec = body["data"][0]
    assert rec["statusCode"] == 200 and [a["statusCode"] for a in rec["attempts"]] == [503, 200]


def test_postgres_outage_loses_no_record(env, stack):
    """PostgreSQL stopped for 30 s while 300 requests pass; then started: all stored once."""
    load = Load(env, 300, duration=OUTAGE_SECONDS * 0.7).start()
    try:
        load.wait_done(0.1)
        stack.pg.stop()
        try:
            stopped = time.time()
            load.wait_done(0.9)         # the gateway serves on without its database
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.time() - stopped)))
        finally:
            stack.pg.start()
    finally:
        load.join()
    check_stored(stack, env, load)


def test_reload_and_control_plane_restart_lose_no_record(env, stack):
    """nginx reloaded, then the control plane restarted, while 300 requests pass."""
    load = Load(env, 300, duration=10).start()
    try:
        load.wait_done(0.25)
        stack.nginx.reload()
        load.wait_done(0.5)
        stack.cp.stop()
        time.sleep(1)
        stack.cp.start()
        load.wait_done(0.75)
        stack.nginx.reload()
    finally:
        load.join()
    check_stored(stack, env, load)


@pytest.mark.parametrize("thread", [True, False], ids=["thread", "worker"])
def test_killed_workers_lose_no_answered_record(own_stack, fake, fake2, thread):
    """Two workers SIGKILLed in turn while 400 requests pass: every request the client got
    an answer for has its record, once, with the answered status; a request whose
    connection was cut may have one or none.  The ring is written by a thread of the pool
    (shipped), or by the worker itself (vmx_audit_spool without thread_pool=)."""
    s = own_stack(check_log=False, audit_thread=thread)
    conf = s.nginx.conf_path.read_text()
    assert ("thread_pool=vmx_audit;" in conf) == thread
    env = provision(s.gw, fake, fake2)
    load = Load(env, 400, duration=10, resets=True).start()
    killed = []
    try:
        for fraction in (0.3, 0.6):
            load.wait_done(fraction)
            pid = sorted(s.nginx.worker_pids())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    finally:
        for t in load.threads:
            t.join(120)
    answered = {i: st for i, st in load.statuses.items() if st is not None}
    assert len(answered) >= load.n * 0.8, f"{len(answered)} of {load.n} answered"
    for i, st in answered.items():
        assert st == KINDS[i % len(KINDS)][2], (i, st)
    deadline = time.time() + INGEST_TIMEOUT
    while True:
        audit, _ = stored(s, env, load)
        found = {cid for cid, _, _ in audit}
        missing = [i for i in answered if load.cid(i) not in found]
        if not missing:
            break
        assert time.time() < deadline, (
            f"{len(missing)} answered requests have no record, e.g. {missing[:5]}")
        time.sleep(0.5)
    time.sleep(1.5)                     # one more ingestion round: nothing more may come
    audit, _ = stored(s, env, load)
    assert not [a for a in audit if a[2] != "1"], "a record stored twice"
    statuses = {cid: int(st) for cid, st, _ in audit}
    assert all(statuses[load.cid(i)] == st for i, st in answered.items())
    # the log: the kills, and nothing worse
    log = s.nginx.error_log()
    for pid in killed:
        assert re.search(rf"worker process {pid} exited on signal 9", log), pid
    bad = [line for line in log.splitlines()
           if re.search(r"\[(alert|crit|emerg)\]", line)
           and not re.search(r"exited on signal 9|shared memory zone .* was locked by", line)]
    assert not bad, "\n".join(bad[:20])
