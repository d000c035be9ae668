#!/usr/bin/python3
"""Batches at scale (issue 14): one completion-batch of BENCH_BATCH_ITEMS items (10,000)
against a provider that advertises a per-minute request limit (BENCH_BATCH_LIMIT, 12,000) and
answers 429 past it, while interactive traffic (BENCH_BATCH_INTERACTIVE a second, 20) calls the
same connection through the same data plane under another key.

Starts on loopback free ports the fake OpenAI provider (limit mode), PostgreSQL, the control
plane (its batch runner at BENCH_BATCH_CONCURRENCY items at once, the shipped share of each
connection's capacity, 0.5) and nginx with the module. One interactive request first makes the
provider's limit known (discovered capacity). Then the interactive traffic alone for
BENCH_BATCH_BASELINE seconds (its latency without a batch), then the batch with the traffic
beside it until the batch ends.

Prints: the batch's size in bytes and the time its create took, its run time, items a second
and the floor the share sets (a request holds its place in the budget for 61 s), the provider's 429s (0 is the
promise), every item's end state and its audit records, and the interactive requests' statuses
and p50 / p99 latency without and with the batch (their ratio).

Environment: BENCH_BATCH_ITEMS, BENCH_BATCH_LIMIT, BENCH_BATCH_INTERACTIVE,
BENCH_BATCH_CONCURRENCY (16), BENCH_BATCH_BASELINE (20 seconds), BENCH_KEEP (1: keep the work
dir). Run ./build.sh build first.
"""
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "t"))
sys.path.insert(0, str(BENCH.parent / "t" / "gateway"))

import bench as b  # noqa: E402
from gwutil import http_request  # noqa: E402
from harness.api import Api  # noqa: E402
from harness.certs import make_certs  # noqa: E402
from harness.control_plane import ControlPlane, write_secret_files  # noqa: E402
from harness.fake_openai import FakeOpenAI  # noqa: E402
from harness.nginx import Nginx  # noqa: E402
from harness.postgres import Postgres  # noqa: E402

ITEMS = int(os.environ.get("BENCH_BATCH_ITEMS", "10000"))
LIMIT = int(os.environ.get("BENCH_BATCH_LIMIT", "12000"))
INTERACTIVE = float(os.environ.get("BENCH_BATCH_INTERACTIVE", "20"))
CONCURRENCY = os.environ.get("BENCH_BATCH_CONCURRENCY", "16")
BASELINE = float(os.environ.get("BENCH_BATCH_BASELINE", "20"))
SHARE = 0.5                     # the shipped VMX_BATCH_CAPACITY_SHARE


class Interactive:
    """Chat requests at a steady rate from a few threads: (status, seconds) of each."""

    def __init__(self, url, key, rate):
        self.url, self.key, self.rate = url, key, rate
        self.lock = threading.Lock()
        self.outcomes = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(4)]

    def _run(self, i):
        period = 4 / self.rate
        due = time.monotonic() + i * period / 4
        while not self.stopping.is_set():
            time.sleep(max(0.0, due - time.monotonic()))
            due += period
            started = time.monotonic()
            try:
                r = http_request(self.url, "POST", "/v1/chat/completions",
                                   {"model": "chat", "messages": [
                                       {"role": "user", "content": "interactive"}]},
                                   {"Authorization": f"Bearer {self.key}"}, timeout=30)
                status = r.status
            except OSError as e:
                status = repr(e)
            with self.lock:
                self.outcomes.append((status, time.monotonic() - started))

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def take(self):
        """the outcomes since the last take"""
        with self.lock:
            got, self.outcomes = self.outcomes, []
        return got

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(35)


def summary(outcomes):
    statuses = {}
    for status, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    ms = sorted(s * 1000 for _, s in outcomes)
    pct = (lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]) if ms else (lambda q: 0.0)
    return statuses, pct(0.5), pct(0.99)


def main():
    work = Path(tempfile.mkdtemp(prefix="vmx-bench-batch-"))
    started = []
    cleanup = b.stopper(work, started)
    try:
        fake = FakeOpenAI(name="limited", api_key="sk-bench-batch").start()
        started.append(fake)
        fake.limit_requests = LIMIT
        fake.limited = 0
        pg = Postgres(work / "pg", b.free_port())
        started.append(pg)
        pg.start()
        token_file, master_key = write_secret_files(work / "secrets")
        ca_file = make_certs(work / "pki")[0]
        gw_port, cp_port = b.free_port(), b.free_port()
        cp = ControlPlane(work / "cp", cp_port, pg.dsn, [f"http://127.0.0.1:{gw_port}"],
                          token_file, master_key,
                          env={"VMX_BATCH_CONCURRENCY": CONCURRENCY, "VMX_LOG_LEVEL": "info"})
        cp.start()
        started.append(cp)
        gw = Nginx(work / "nginx", gw_port, token_file, ca_file, max_body="10m",
                   cp_addr=f"127.0.0.1:{cp_port}", log_level="warn")
        gw.start()
        started.append(gw)

        api = Api(cp.url)
        api.login()
        ws = api.create_workspace(f"bench-batch-{time.time_ns()}")
        env = api.create_environment(ws["id"], "bench")
        conn = api.create_connection(ws["id"], env["id"], name="limited", provider="openai",
                                     config={"apiKey": fake.api_key, "baseUrl": fake.url})
        res = api.create_resource(ws["id"], env["id"], name="chat",
                                  model={"provider": "openai", "model": "gpt-batch",
                                         "connectionId": conn["id"]},
                                  fallbackModels=[], useFallback=False,
                                  routing={"enabled": False, "conditions": []})
        keys = {name: api.create_api_key(ws["id"], env["id"], name=name, enabled=True,
                                         resources=[res["id"]])
                for name in ("batch", "interactive")}
        want = int(pg.psql("SELECT version FROM config_version"))
        deadline = time.time() + 30
        while (gw.config_version() or 0) < want:
            if time.time() > deadline:
                raise RuntimeError("the data plane never ran the configuration")
            time.sleep(0.2)

        # one request makes the provider's limit known to the control plane
        traffic = Interactive(gw.url, keys["interactive"]["key"], INTERACTIVE)
        r = http_request(gw.url, "POST", "/v1/chat/completions",
                           {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                           {"Authorization": f"Bearer {keys['interactive']['key']}"})
        assert r.status == 200, r.status
        deadline = time.time() + 30
        while not pg.psql("SELECT discovered_capacity #>> "
                          "'{models,gpt-batch,capacity,0,requests}' FROM connections"
                          f" WHERE id = '{conn['id']}'"):
            if time.time() > deadline:
                raise RuntimeError("the provider's limit was never discovered")
            time.sleep(0.2)

        traffic.start()
        time.sleep(BASELINE)
        alone = traffic.take()

        body = json.dumps({"mode": "ASYNC", "items": [
            {"resource": "chat", "customId": f"item-{i}", "request": {
                "messages": [{"role": "user", "content": f"Summarise item {i} in a line."}],
                "max_tokens": 32}}
            for i in range(ITEMS)]}).encode()
        path = f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/completion-batch"
        t0 = time.monotonic()
        status, batch, _ = api.request("POST", path, body, token=keys["batch"]["key"])
        create_s = time.monotonic() - t0
        assert status == 202, batch
        while True:
            status, batch, _ = api.request("GET", f"{path}/{batch['id']}")
            if batch["status"] in ("COMPLETED", "CANCELLED", "FAILED"):
                break
            time.sleep(0.5)
        run_s = time.monotonic() - t0
        beside = traffic.take()
        traffic.stop()

        audit = pg.psql("SELECT count(*), count(DISTINCT batch_item) FROM audit_records"
                        f" WHERE batch_id = '{batch['id']}'")
        deadline = time.time() + 30
        while audit.split("|")[0] != str(ITEMS) and time.time() < deadline:
            time.sleep(0.5)
            audit = pg.psql("SELECT count(*), count(DISTINCT batch_item) FROM audit_records"
                            f" WHERE batch_id = '{batch['id']}'")
        # each request holds a place in the runner's budget for 61 s (batch_pace.c)
        budget = int(SHARE * LIMIT)
        floor_s = 61 * ((ITEMS - 1) // budget)

        print(f"batch: {ITEMS} items, {len(body)} bytes, created in {create_s:.2f} s")
        print(f"provider: advertises {LIMIT} requests a minute; the batch's share "
              f"{SHARE}: {budget} a minute, so at least {floor_s} s")
        print(f"run: {run_s:.1f} s, {ITEMS / run_s:.1f} items/s; status {batch['status']}, "
              f"counts {json.dumps(batch['counts'])}")
        records, distinct = audit.split("|")
        print(f"audit records of the batch: {records} ({distinct} distinct items)")
        print(f"provider 429s: {fake.limited}")
        rows = [("alone", summary(alone)), ("beside the batch", summary(beside))]
        print(f"interactive ({INTERACTIVE:g}/s)   requests  statuses              p50 ms   p99 ms")
        for name, (statuses, p50, p99) in rows:
            print(f"{name:22s} {sum(statuses.values()):8d}  {json.dumps(statuses):20s} "
                  f"{p50:7.1f}  {p99:7.1f}")
        print(f"ratio (beside / alone)                                    "
              f"{rows[1][1][1] / max(rows[0][1][1], 1e-9):7.2f}  "
              f"{rows[1][1][2] / max(rows[0][1][2], 1e-9):7.2f}")
        ok = (fake.limited == 0 and batch["counts"]["succeeded"] == ITEMS
              and records == str(ITEMS) and distinct == str(ITEMS)
              and set(rows[1][1][0]) == {200})
        print("result:", "PASS" if ok else "MISS")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
