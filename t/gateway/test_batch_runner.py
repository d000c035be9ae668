"""Issue 14 item 1, the batch runner (control-plane/batch_runner.c): batch items run through
the data plane under the batch's key, one audit record each naming the batch; the runner
paces them below a provider's advertised per-minute limit; a cancel stops the claims; a
control plane killed while items are at the provider resumes without sending any item again;
callbacks are signed, retried and delivered once each.

Batches are created and cancelled through the completion-batch API."""
import hashlib
import hmac
import json
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gwutil import connection_for, free_port, http_request

# the runner's settings, short for the tests
RUNNER_ENV = {
    "VMX_BATCH_RESUME_GRACE_SECONDS": "4",
    "VMX_BATCH_CALLBACK_BACKOFF_MS": "200",
    "VMX_BATCH_CAPACITY_SHARE": "0.9",
    "VMX_BATCH_PAUSED": "0",      # the session's stack pauses it (t/conftest.py)
}


@pytest.fixture(scope="module")
def runner(stack):
    """The session's control plane, restarted with RUNNER_ENV; restored after the module."""
    saved = dict(stack.cp.env)
    stack.cp.stop()
    stack.cp.env.update(RUNNER_ENV)
    stack.cp.start()
    yield stack
    stack.cp.stop()
    stack.cp.env = saved
    stack.cp.start()


@pytest.fixture(scope="module")
def env(runner, gw, fake):
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={"chat": {"model": ("a", "gpt-test")},
                   "slow": {"model": ("a", "slow-0.5")},
                   "slower": {"model": ("a", "slow-1.5")}},
        keys={"k": {"resources": ["chat", "slow", "slower"]}})


# ---------------------------------------------------------------------- helpers
def insert_batch(stack, env, resource, n, mode="ASYNC", text="item", callback=None, big=0):
    """A batch of n items created through the completion-batch API under the key "k", each
    asking resource to echo "<text> <index>"; its id.  callback: (url, secret) for CALLBACK.
    The first `big` items open with a system message larger than the audit keeps (256 KiB)."""
    system = [{"role": "system", "content": "a large item. " * 25000}]
    body = {"mode": mode, "items": [
        {"resource": resource, "customId": f"c-{i}",
         "request": {"messages": (system if i < big else [])
                     + [{"role": "user", "content": f"{text} {i}"}]}}
        for i in range(n)]}
    if callback:
        body["callback"] = {"url": callback[0], "secret": callback[1]}
    r = http_request(stack.cp.url, "POST", f"{env.prefix}/completion-batch", body,
                     {"Authorization": f"Bearer {env.keys['k']}"})
    assert r.status == 202, r
    return r.json()["id"]


def cancel_batch(stack, env, bid):
    r = http_request(stack.cp.url, "POST", f"{env.prefix}/completion-batch/{bid}/cancel", None,
                     {"Authorization": f"Bearer {env.keys['k']}"})
    assert r.status == 200, r
    return r.json()


def batch_row(stack, bid):
    return json.loads(stack.pg.psql(
        f"SELECT row_to_json(b) FROM (SELECT status, succeeded, failed, cancelled, error,"
        f" started_at, completed_at FROM batches WHERE id = '{bid}') b"))


def item_counts(stack, bid):
    out = stack.pg.psql(f"SELECT status, count(*) FROM batch_items WHERE batch_id = '{bid}'"
                        " GROUP BY status")
    return {s: int(n) for s, n in (line.split("|") for line in out.splitlines() if line)}


def wait_batch(stack, bid, statuses=("COMPLETED",), timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        row = batch_row(stack, bid)
        if row["status"] in statuses:
            return row
        time.sleep(0.2)
    raise AssertionError(f"batch {bid} still {batch_row(stack, bid)} {item_counts(stack, bid)};"
                         f" control plane log: {stack.cp.log_path}")


def succeeded_items(stack, bid, model, text):
    """The batch's items, each checked SUCCEEDED (200) with model's echo of "<text> <index>"."""
    items = json.loads(stack.pg.psql(
        "SELECT json_agg(json_build_object('idx', idx, 'status', status, 'code', status_code,"
        " 'response', response, 'request_id', request_id) ORDER BY idx)"
        f" FROM batch_items WHERE batch_id = '{bid}'"))
    for it in items:
        assert it["status"] == "SUCCEEDED" and it["code"] == 200, it
        assert it["response"]["choices"][0]["message"]["content"] == \
            f"Hello from {model}! You said: {text} {it['idx']}", it
    return items


def audit_counts(stack, bid, n, records=0, timeout=20):
    """{item: audit records} once n items have theirs, and at least records in all (the
    ingestion runs every second)."""
    deadline = time.time() + timeout
    while True:
        out = stack.pg.psql(f"SELECT batch_item, count(*) FROM audit_records"
                            f" WHERE batch_id = '{bid}' GROUP BY batch_item")
        counts = {int(i): int(c) for i, c in (line.split("|") for line in out.splitlines())}
        if (len(counts) >= n and sum(counts.values()) >= records) or time.time() > deadline:
            return counts
        time.sleep(0.3)


def provider_asks(fake, text):
    """How often the provider was asked each "<text> <index>"."""
    asks = {}
    for r in fake.chat_requests():
        content = r.body["messages"][-1]["content"] if isinstance(r.body, dict) else ""
        if content.startswith(text + " "):
            asks[content] = asks.get(content, 0) + 1
    return asks


# ---------------------------------------------------------------------- tests
def test_batch_runs_every_item_once_with_its_audit(runner, env, fake):
    bid = insert_batch(runner, env, "chat", 60, text="plain")
    row = wait_batch(runner, bid)
    assert row["succeeded"] == 60 and row["failed"] == 0, row
    assert row["started_at"] and row["completed_at"], row
    for it in succeeded_items(runner, bid, "gpt-test", "plain"):
        assert it["request_id"], it
    counts = audit_counts(runner, bid, 60)
    assert counts == {i: 1 for i in range(60)}, counts
    # the audit record is the item's: same request id, the batch's key
    rows = runner.pg.psql(
        "SELECT count(*) FROM audit_records a JOIN batch_items i"
        " ON i.batch_id = a.batch_id AND i.idx = a.batch_item AND i.request_id = a.request_id"
        f" WHERE a.batch_id = '{bid}' AND a.api_key_id = '{env.key_objs['k']['id']}'")
    assert int(rows) == 60
    assert provider_asks(fake, "plain") == {f"plain {i}": 1 for i in range(60)}


def test_batch_stays_under_the_advertised_limit(runner, gw, fake2):
    """The provider advertises 12 requests a minute and answers 429 beyond them: a batch of
    16 (with 0.9 of the capacity: 10 a minute) completes without a single 429."""
    fake2.limit_requests = 12
    fake2.limited = 0
    try:
        e = gw.provision(connections={"a": connection_for(fake2)},
                         resources={"chat": {"model": ("a", "gpt-limited")}},
                         keys={"k": {"resources": ["chat"]}})
        # one request makes the provider's limit known; the control plane collects it
        assert e.chat("chat").status == 200
        deadline = time.time() + 15
        while not runner.pg.psql(
                "SELECT discovered_capacity #>> '{models,gpt-limited,capacity,0,requests}'"
                f" FROM connections WHERE id = '{e.conns['a']['id']}'"):
            assert time.time() < deadline, "no discovered capacity"
            time.sleep(0.2)
        started = time.time()
        bid = insert_batch(runner, e, "chat", 16, text="limited")
        row = wait_batch(runner, bid, timeout=120)
        assert row["succeeded"] == 16, row
        assert fake2.limited == 0
        assert time.time() - started >= 55, "the batch went faster than its budget"
    finally:
        fake2.limit_requests = None


def test_cancel_mid_run(runner, env):
    bid = insert_batch(runner, env, "slow", 40, text="cancel")
    deadline = time.time() + 30
    while batch_row(runner, bid)["succeeded"] < 8:
        assert time.time() < deadline
        time.sleep(0.1)
    assert cancel_batch(runner, env, bid)["status"] in ("CANCELLING", "CANCELLED")
    row = wait_batch(runner, bid, ("CANCELLED",), timeout=30)
    counts = item_counts(runner, bid)
    assert set(counts) <= {"SUCCEEDED", "CANCELLED"}, counts
    assert row["succeeded"] == counts["SUCCEEDED"] and row["cancelled"] == counts["CANCELLED"]
    assert row["succeeded"] + row["cancelled"] == 40 and row["cancelled"] > 0, row


def test_kill_mid_batch_resumes_without_running_an_item_twice(runner, env, fake):
    """kill -9 while items are at the provider, then a restart: every item ends once,
    SUCCEEDED, with one audit record (200) each, and the provider was asked each item once.
    The data plane finishes the attempts whose runner went away and audits their answers;
    the resume takes those from the audit instead of sending them again, item 0's too,
    whose request was too large for the audit but whose answer was kept."""
    n = 12
    bid = insert_batch(runner, env, "slower", n, text="kill", big=1)
    deadline = time.time() + 30
    while len(provider_asks(fake, "kill")) < 4:
        assert time.time() < deadline
        time.sleep(0.02)
    in_flight = len(provider_asks(fake, "kill")) - batch_row(runner, bid)["succeeded"]
    runner.cp.proc.kill()
    runner.cp.proc.wait()
    runner.cp.proc = None
    assert in_flight >= 4, in_flight
    runner.cp.start()
    row = wait_batch(runner, bid, timeout=60)
    assert row["succeeded"] == n and row["failed"] == 0, row
    succeeded_items(runner, bid, "slow-1.5", "kill")
    assert audit_counts(runner, bid, n) == {i: 1 for i in range(n)}
    assert runner.pg.psql(f"SELECT DISTINCT status_code FROM audit_records"
                          f" WHERE batch_id = '{bid}'") == "200"
    assert runner.pg.psql(f"SELECT batch_item FROM audit_records"
                          f" WHERE batch_id = '{bid}' AND payload_truncated") == "0"
    assert provider_asks(fake, "kill") == {f"kill {i}": 1 for i in range(n)}


def test_an_answer_that_never_came_is_not_sent_again(runner, env, fake):
    """The runner stops waiting (VMX_BATCH_ITEM_TIMEOUT_SECONDS 1) for items the provider answers in
    1.5 s: the data plane still runs them, so the runner does not send them again; the resume
    ends them from their audit records once the grace has passed."""
    saved = dict(runner.cp.env)
    runner.cp.stop()
    runner.cp.env.update(VMX_BATCH_ITEM_TIMEOUT_SECONDS="1", VMX_BATCH_RESUME_GRACE_SECONDS="8")
    runner.cp.start()
    try:
        n = 4
        bid = insert_batch(runner, env, "slower", n, text="timeout")
        row = wait_batch(runner, bid, timeout=60)
        assert row["succeeded"] == n and row["failed"] == 0, row
        succeeded_items(runner, bid, "slow-1.5", "timeout")
        assert audit_counts(runner, bid, n) == {i: 1 for i in range(n)}
        assert provider_asks(fake, "timeout") == {f"timeout {i}": 1 for i in range(n)}
        assert "no answer (" in runner.cp.log_text()
    finally:
        runner.cp.stop()
        runner.cp.env = saved
        runner.cp.start()


class Receiver:
    """A callback receiver that fails the first `fail` deliveries and checks signatures."""

    def __init__(self, secret, fail=2):
        self.secret = secret.encode()
        self.fail = fail
        self.tries = []            # (delivery id, answered status)
        self.delivered = []        # bodies answered 2xx
        self.bad = []              # deliveries whose signature did not verify
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sig = dict(p.split("=", 1) for p in self.headers["x-vmx-signature"].split(","))
                want = hmac.new(outer.secret, sig["t"].encode() + b"." + body,
                                hashlib.sha256).hexdigest()
                with lock:
                    status = 500 if len(outer.tries) < outer.fail else 200
                    outer.tries.append((self.headers["x-vmx-delivery-id"], status))
                    if not hmac.compare_digest(want, sig["v1"]):
                        outer.bad.append(self.headers["x-vmx-delivery-id"])
                    elif status == 200:
                        outer.delivered.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_callbacks_signed_retried_and_delivered_once(runner, env):
    secret = "whsec-" + uuid.uuid4().hex
    rx = Receiver(secret)
    try:
        bid = insert_batch(runner, env, "chat", 10, mode="CALLBACK", text="callback",
                           callback=(rx.url, secret))
        wait_batch(runner, bid)
        deadline = time.time() + 30
        while not any(d["type"] == "batch.completed" for d in rx.delivered):
            assert time.time() < deadline, rx.tries
            time.sleep(0.1)
        assert rx.bad == []
        items = [d for d in rx.delivered if d["type"] == "batch.item"]
        assert sorted(d["item"]["index"] for d in items) == list(range(10))
        assert all(d["batchId"] == bid and d["item"]["status"] == "SUCCEEDED" for d in items)
        assert [d["batch"]["status"] for d in rx.delivered if d["type"] == "batch.completed"] \
            == ["COMPLETED"]
        # the deliveries that failed were retried under the same id, and then delivered
        failed = [i for i, st in rx.tries if st == 500]
        ok = [i for i, st in rx.tries if st == 200]
        assert len(failed) == 2 and set(failed) <= set(ok)
        assert len(ok) == len(set(ok)) == 11
        states = runner.pg.psql(f"SELECT DISTINCT callback_status FROM batch_items"
                                f" WHERE batch_id = '{bid}'")
        assert states == "DELIVERED"
        assert batch_row(runner, bid)["status"] == "COMPLETED"
        metrics = urllib.request.urlopen(runner.cp.url + "/metrics", timeout=5).read().decode()
        for series in ('vmx_cp_batch_callbacks_total{result="delivered"}',
                       'vmx_cp_batch_callbacks_total{result="retried"}',
                       'vmx_cp_batch_items_total{status="succeeded"}'):
            assert series in metrics, series
    finally:
        rx.stop()


def test_callback_retries_survive_a_restart(runner, env):
    """Deliveries refused before a restart go on after it from their state in PostgreSQL:
    each item delivered once, under the delivery id of its first try."""
    secret = "whsec-" + uuid.uuid4().hex
    rx = Receiver(secret, fail=10 ** 6)
    try:
        bid = insert_batch(runner, env, "chat", 5, mode="CALLBACK", text="restart",
                           callback=(rx.url, secret))
        deadline = time.time() + 20
        while runner.pg.psql(f"SELECT min(callback_tries) FROM batch_items"
                             f" WHERE batch_id = '{bid}'") in ("", "0", "1"):
            assert time.time() < deadline, rx.tries
            time.sleep(0.1)
        runner.cp.stop()
        rx.fail = 0
        runner.cp.start()
        deadline = time.time() + 40
        while not any(d["type"] == "batch.completed" for d in rx.delivered):
            assert time.time() < deadline, rx.tries
            time.sleep(0.2)
        items = [d["item"]["index"] for d in rx.delivered if d["type"] == "batch.item"]
        assert sorted(items) == list(range(5)) and rx.bad == []
        failed = {i for i, st in rx.tries if st == 500}
        ok = [i for i, st in rx.tries if st == 200]
        assert len(ok) == len(set(ok)) == 6 and failed <= set(ok)
        assert all(d["item"]["callback"]["tries"] >= 2 for d in rx.delivered
                   if d["type"] == "batch.item")
    finally:
        rx.stop()


def test_open_batches_take_turns(runner, env):
    """A small batch created after a big one is not queued behind it: the open batches' items
    are claimed in turn."""
    big = insert_batch(runner, env, "slow", 40, text="big")
    small = insert_batch(runner, env, "slow", 4, text="small")
    wait_batch(runner, small, timeout=30)
    assert batch_row(runner, big)["status"] == "RUNNING"
    row = wait_batch(runner, big, timeout=60)
    assert row["succeeded"] == 40


def test_batch_of_a_disabled_key_fails(runner, gw, fake):
    """A batch whose key is disabled mid-run: FAILED with api_key_unavailable, its PENDING
    items CANCELLED, its counters the items' states."""
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"slow": {"model": ("a", "slow-0.5")}},
                     keys={"k": {"resources": ["slow"]}})
    bid = insert_batch(runner, e, "slow", 40, text="disabled")
    deadline = time.time() + 30
    while batch_row(runner, bid)["succeeded"] < 4:
        assert time.time() < deadline
        time.sleep(0.05)
    runner.pg.psql(f"UPDATE api_keys SET enabled = false WHERE id = '{e.key_objs['k']['id']}'")
    row = wait_batch(runner, bid, ("FAILED",), timeout=10)
    assert row["error"]["code"] == "api_key_unavailable", row
    deadline = time.time() + 15
    while "RUNNING" in item_counts(runner, bid):
        assert time.time() < deadline
        time.sleep(0.1)
    counts = item_counts(runner, bid)
    row = batch_row(runner, bid)
    assert "PENDING" not in counts and counts["CANCELLED"] > 0, counts
    assert row["status"] == "FAILED"
    assert (row["succeeded"], row["failed"], row["cancelled"]) == (
        counts.get("SUCCEEDED", 0), counts.get("FAILED", 0), counts["CANCELLED"]), (row, counts)


def item_rows(stack, bid):
    return json.loads(stack.pg.psql(
        "SELECT json_agg(json_build_object('idx', idx, 'status', status, 'code', status_code,"
        " 'tries', tries, 'error', error) ORDER BY idx)"
        f" FROM batch_items WHERE batch_id = '{bid}'"))


def test_final_4xx_fails_at_once_and_5xx_after_three_tries(runner, gw, fake):
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"bad": {"model": ("a", "fail-400")},
                                "down": {"model": ("a", "fail-503")}},
                     keys={"k": {"resources": ["bad", "down"]}})
    bad = insert_batch(runner, e, "bad", 1, text="bad")
    down = insert_batch(runner, e, "down", 1, text="down")
    assert wait_batch(runner, bad, timeout=20)["failed"] == 1
    [it] = item_rows(runner, bad)
    assert (it["status"], it["code"], it["tries"]) == ("FAILED", 400, 1), it
    assert it["error"]["message"] and "code" in it["error"] and "type" in it["error"], it
    assert wait_batch(runner, down, timeout=30)["failed"] == 1
    [it] = item_rows(runner, down)
    assert it["status"] == "FAILED" and it["code"] >= 500 and it["tries"] == 3, it


def test_gateway_429_puts_the_item_back(runner, gw, fake):
    """A 429 is no failure: the item waits for Retry-After and is sent again, counted in
    vmx_cp_batch_capacity_waits_total, until the batch is cancelled."""
    e = gw.provision(connections={"a": connection_for(fake)},
                     resources={"full": {"model": ("a", "fail-429")}},
                     keys={"k": {"resources": ["full"]}})
    bid = insert_batch(runner, e, "full", 1, text="full")
    deadline = time.time() + 20
    while item_rows(runner, bid)[0]["tries"] < 2:
        assert time.time() < deadline, item_rows(runner, bid)
        time.sleep(0.2)
    it = item_rows(runner, bid)[0]
    assert it["status"] in ("PENDING", "RUNNING") and it["code"] == 429, it
    metrics = urllib.request.urlopen(runner.cp.url + "/metrics", timeout=5).read().decode()
    assert "vmx_cp_batch_capacity_waits_total{} " in metrics
    cancel_batch(runner, e, bid)
    row = wait_batch(runner, bid, ("CANCELLED",), timeout=20)
    assert row["cancelled"] == 1, row
