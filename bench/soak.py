#!/usr/bin/python3
"""The soak of a 3-node cluster (issue 13, item 7): leaks, not speed.

Starts on loopback free ports the bench's fake provider (bench.py: canned OpenAI, Anthropic,
Gemini and Bedrock answers, plus a flaky path answering 503 or 500 to 4 requests in 10),
a fake STS, PostgreSQL, Redis, one control plane and three data planes (own prefixes and
ports, BENCH_SOAK_WORKERS workers each) whose capacity counters are shared in Redis. Then
BENCH_SOAK_THREADS Python threads send, round-robin over the nodes, each pausing
BENCH_SOAK_PAUSE_MS between requests, for BENCH_SOAK_MINUTES:
  plain      OpenAI JSON;
  stream     OpenAI streamed;
  <native>   the Anthropic, Gemini and Bedrock translations, JSON and streamed;
  limited    a key whose capacity (BENCH_SOAK_LIMIT requests a minute, across the cluster)
             is hit: 429s expected;
  flaky      a resource on the flaky path with a fallback to the plain model.

After BENCH_SOAK_WARMUP seconds (60) of it, every BENCH_SOAK_EVERY seconds (60) it
samples, per node: the workers' RSS (sum and max of a worker; the sum of their private
part, RssAnon, apart from the pages of the shared zones they touched), their open files,
the shared memory in use (the module's /metrics: zone slots taken, bytes in the audit
ring), the audit bytes not yet ingested (/metrics) and the spool directory's size, the
requests sent and the errors (answers but 200, and the limited key's 429), the fallbacks
and the limits' denials (/metrics); and PostgreSQL's database size.
The samples go to soak.csv and soak.png (one panel per measure, a line per node) in
BENCH_SOAK_OUT (a new temporary directory by default, kept and printed; the servers' own
files under run/ only with BENCH_KEEP=1). The closing table gives each measure's first,
last and max value, its slope over the last half and FLAT, GROWS, BOUNDED or LINEAR (see
verdict()), then the answers by scenario and status.
"""
import csv
import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench as b  # noqa: E402
import pngplot  # noqa: E402
from harness.certs import make_certs  # noqa: E402
from harness.nginx import MODULE, Nginx  # noqa: E402

NODES = 3
MINUTES = float(os.environ.get("BENCH_SOAK_MINUTES", "30"))
EVERY = float(os.environ.get("BENCH_SOAK_EVERY", "60"))
WORKERS = int(os.environ.get("BENCH_SOAK_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_SOAK_THREADS", "6"))
PAUSE = float(os.environ.get("BENCH_SOAK_PAUSE_MS", "20")) / 1000
LIMIT = int(os.environ.get("BENCH_SOAK_LIMIT", "120"))
WARMUP = float(os.environ.get("BENCH_SOAK_WARMUP", "60"))

FLAKY = """        location = /flaky/v1/chat/completions {{
            default_type application/json;
            if ($msec ~ "[0-2]$") {{
                return 503 '{{"error":{{"message":"overloaded","type":"server_error"}}}}';
            }}
            if ($msec ~ "3$") {{
                return 500 '{{"error":{{"message":"internal","type":"server_error"}}}}';
            }}
            return 200 '{json}';
        }}
"""

# a spool file is closed at 16 MiB (NGX_HTTP_VMX_SPOOL_FILE_MAX) and deleted once ingested
# whole: a worker's open file and a finished one waiting for its deletion are on disk
SPOOL_FILE_MAX = 16 << 20
SPOOL_BOUND = 2 * SPOOL_FILE_MAX * WORKERS + (1 << 20)

# (measure, unit, the slack a growth needs beyond 5 % of the value to count)
MEASURES = [
    ("rss_sum", "KiB", 512),
    ("rss_max", "KiB", 512),
    ("rss_anon_sum", "KiB", 512),
    ("open_files", "fds", 4),
    ("zone_slots_used", "slots", 4),
    ("audit_ring_bytes", "bytes", 256 << 10),
    ("spool_pending_bytes", "bytes", 1 << 20),
    ("spool_bytes", "bytes", None),
    ("requests", "count", None),
    ("errors", "count", None),
    ("fallbacks", "count", None),
    ("limit_denials", "count", None),
    ("pg_bytes", "bytes", None),
]

# the module's metrics sampled, and their measures
SCRAPED = {"vmx_zone_slots_used": "zone_slots_used", "vmx_audit_ring_bytes": "audit_ring_bytes",
           "vmx_audit_spool_bytes": "spool_pending_bytes", "vmx_fallbacks_total": "fallbacks",
           "vmx_limit_denials_total": "limit_denials"}


class Traffic:
    """The mixed requests from THREADS threads, round-robin over the nodes; the answers
    counted by (scenario, status) and by node."""

    def __init__(self, nodes, scenarios):
        self.nodes = nodes
        self.scenarios = scenarios      # [(name, key, model, stream, statuses expected)]
        self.lock = threading.Lock()
        self.statuses = {}
        self.requests = [0] * len(nodes)
        self.errors = [0] * len(nodes)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(THREADS)]

    def _run(self, i):
        conns = [None] * len(self.nodes)
        n = i
        while not self.stopping.wait(PAUSE):
            node = n % len(self.nodes)
            name, key, model, stream, expected = self.scenarios[n % len(self.scenarios)]
            n += 1
            body = {"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
            try:
                if conns[node] is None:
                    conns[node] = http.client.HTTPConnection("127.0.0.1", self.nodes[node].port,
                                                             timeout=30)
                conns[node].request("POST", "/v1/chat/completions", json.dumps(body),
                                    {"Authorization": f"Bearer {key}",
                                     "Content-Type": "application/json"})
                resp = conns[node].getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as e:
                conns[node].close()
                conns[node] = None
                status = type(e).__name__
            with self.lock:
                self.statuses[name, status] = self.statuses.get((name, status), 0) + 1
                self.requests[node] += 1
                self.errors[node] += status not in expected
        for c in conns:
            if c:
                c.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)


def scrape(node):
    """The measures of the node's /metrics (SCRAPED), summed over their labels."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = dict.fromkeys(SCRAPED.values(), 0)
    for line in text.splitlines():
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        if name in SCRAPED:
            out[SCRAPED[name]] += int(float(line.rsplit(" ", 1)[1]))
    return out


def dir_bytes(path):
    """The size of the files under path."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass                    # ingested and removed meanwhile
    return total


def sample(nodes, pg, traffic):
    """One sample: {(measure, node): value}, node "all" for PostgreSQL."""
    out = {}
    with traffic.lock:
        requests, errors = list(traffic.requests), list(traffic.errors)
    for i, node in enumerate(nodes):
        workers = node.worker_pids()
        rss = [b.rss_kib([pid]) for pid in workers]
        out["rss_sum", i], out["rss_max", i] = sum(rss), max(rss, default=0)
        out["rss_anon_sum", i] = b.rss_kib(workers, "RssAnon")
        out["open_files", i] = sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in workers)
        for k, v in scrape(node).items():
            out[k, i] = v
        out["spool_bytes", i] = dir_bytes(node.base_dir / "spool")
        out["requests", i], out["errors", i] = requests[i], errors[i]
    out["pg_bytes", "all"] = int(pg.psql("SELECT pg_database_size(current_database())"))
    return out


def last_half(points):
    """The samples [(t, v)] of the last half of the time."""
    return [p for p in points if p[0] >= points[-1][0] / 2]


def slope(points):
    """Least-squares slope of [(t, v)], per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def verdict(measure, slack, points, requests):
    """FLAT when the growth over the last half (its slope times its length) is at most 5 %
    of the value plus the measure's slack. The counts (requests, errors...) grow by nature
    and are not judged (their slack None). The spool on disk goes up and down by whole
    files: BOUNDED while its last half stays under SPOOL_BOUND. PostgreSQL grows with the
    records it stores (kept for VMX_RETENTION_DAYS): LINEAR when its bytes per request over
    the last half are at most 1.5 times those over the first half."""
    half = last_half(points)
    if measure == "spool_bytes":
        return "BOUNDED" if max(v for _, v in half) <= SPOOL_BOUND else "GROWS"
    if measure == "pg_bytes":
        (t0, v0), (tm, vm), (t1, v1) = points[0], half[0], points[-1]
        r0, rm, r1 = requests(t0), requests(tm), requests(t1)
        first = (vm - v0) / max(rm - r0, 1)
        last = (v1 - vm) / max(r1 - rm, 1)
        return "LINEAR" if last <= 1.5 * max(first, 1) else "GROWS"
    if slack is None:
        return "-"
    growth = slope(half) * (half[-1][0] - half[0][0]) / 60
    return "FLAT" if growth <= 0.05 * max(v for _, v in half) + slack else "GROWS"


def report(rows, traffic, out):
    """The CSV, the PNG and the closing table."""
    with open(out / "soak.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "measure", "node", "value"])
        for t, s in rows:
            for (measure, node), v in sorted(s.items(), key=str):
                w.writerow([f"{t:.0f}", measure, node, v])
    def nodes(measure):
        return sorted({n for _, s in rows for m, n in s if m == measure}, key=str)

    pngplot.write(out / "soak.png", [
        (f"{measure} ({unit})", {f"node {n}" if n != "all" else "postgresql":
                                 [(t / 60, s[measure, n]) for t, s in rows]
                                 for n in nodes(measure)})
        for measure, unit, _ in MEASURES], xlabel="minutes")

    by_time = dict(rows)

    def requests(t):
        return sum(v for (m, _), v in by_time[t].items() if m == "requests")

    print(f"{'measure':<20} {'node':>4} {'first':>12} {'last':>12} {'max':>12} "
          f"{'slope/min, last half':>21}  verdict")
    for measure, _, slack in MEASURES:
        for node in nodes(measure):
            points = [(t, s[measure, node]) for t, s in rows]
            values = [v for _, v in points]
            print(f"{measure:<20} {node:>4} {values[0]:>12} {values[-1]:>12} {max(values):>12} "
                  f"{slope(last_half(points)):>21.1f}  "
                  f"{verdict(measure, slack, points, requests)}")
    print()
    print("answers by scenario and status:")
    for (name, status), n in sorted(traffic.statuses.items(), key=str):
        print(f"  {name:<24} {status!s:<22} {n:>9}")
    print(f"  {'total':<24} {'':<22} {sum(traffic.statuses.values()):>9}")


def main():
    for p in (MODULE, b.CP_BIN):
        if not p.exists():
            sys.exit(f"soak: {p} missing: run ./build.sh build first")
    from harness.api import Api
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.postgres import Postgres
    from harness.redis import Redis

    out = Path(os.environ.get("BENCH_SOAK_OUT") or tempfile.mkdtemp(prefix="vmx-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "run"
    print(f"soak: {WARMUP:g} s of warm-up, then {MINUTES:g} minutes sampled every {EVERY:g} s, "
          f"into {out}", flush=True)
    started = []
    cleanup = b.stopper(work, started)
    try:
        work.mkdir()
        fake_port = b.free_port()
        flaky = FLAKY.format(json=b.nginx_escape(json.dumps(b.COMPLETION,
                                                            separators=(",", ":"))))
        started.append(b.fake_provider(work, fake_port, locations=flaky))
        pg = Postgres(work / "pg", b.free_port())
        started.append(pg)
        pg.start()
        redis = Redis(work / "redis", b.free_port())
        started.append(redis)
        redis.start()
        sts, sts_env = b.fake_sts()
        started.append(sts)
        token_file, master_key_file = write_secret_files(work / "secrets")
        ports = [b.free_port() for _ in range(NODES)]
        cp_port = b.free_port()
        cp = ControlPlane(work / "cp", cp_port, pg.dsn,
                          [f"http://127.0.0.1:{p}" for p in ports], token_file,
                          master_key_file, env=dict(sts_env, VMX_LOG_LEVEL="info"))
        started.append(cp)
        cp.start()
        ca_file = make_certs(work / "pki")[0]
        nodes = []
        for i, port in enumerate(ports):
            node = Nginx(work / f"dp{i}", port, token_file, ca_file, workers=WORKERS,
                         log_level="warn", cp_addr=f"127.0.0.1:{cp_port}",
                         http_directives=f"vmx_redis {redis.addr} nodes={NODES} timeout=1s;")
            started.append(node)
            nodes.append(node.start())

        api = Api(cp.url)
        api.login()
        ws, env, conn = b.bench_environment(api, fake_port)
        model = {"provider": "openai", "model": "gpt-bench", "connectionId": conn["id"]}
        sconn, fconn = (api.create_connection(
            ws["id"], env["id"], name=name, provider="openai",
            config={"apiKey": "sk-bench", "baseUrl": f"http://127.0.0.1:{fake_port}{path}"})
            for name, path in (("fake-stream", "/stream/v1"), ("flaky", "/flaky/v1")))
        for name, m, fallback in (
                ("plain", model, []),
                ("stream", dict(model, connectionId=sconn["id"]), []),
                ("flaky", dict(model, connectionId=fconn["id"]), [model])):
            api.create_resource(ws["id"], env["id"], name=name, model=m,
                                fallbackModels=fallback, useFallback=True,
                                routing={"enabled": False, "conditions": []})
        native = b.native_resources(api, ws, env, fake_port)
        path = f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/resources"
        ids = [r["id"] for r in api.request("GET", path)[1]["data"]]
        key = api.create_api_key(ws["id"], env["id"], name="soak", resources=ids,
                                 enabled=True)["key"]
        limited = api.create_api_key(
            ws["id"], env["id"], name="soak-limited", resources=ids, enabled=True,
            enforceCapacity=True,
            capacity=[{"period": "minute", "requests": LIMIT, "tokens": 10**12}])["key"]
        scenarios = ([("plain", key, "plain", False, {200}),
                      ("stream", key, "stream", True, {200}),
                      ("flaky", key, "flaky", False, {200}),
                      ("limited", limited, "plain", False, {200, 429})]
                     + [(rname, key, rname, stream, {200}) for _, stream, rname in native])
        deadline = time.time() + 30
        while True:                     # every node serves every scenario (Bedrock: once
            try:                        # the control plane assumed its role)
                for node in nodes:
                    for name, k, m, stream, _ in scenarios:
                        if name != "limited":
                            b.check(node.url, "/v1/chat/completions", k, stream, m)
                break
            except Exception as e:
                if time.time() > deadline:
                    raise RuntimeError(f"the cluster does not serve the soak config: {e}")
                time.sleep(0.5)

        traffic = Traffic(nodes, scenarios).start()
        time.sleep(WARMUP)              # the workers' pools and caches filled first
        t0 = time.time()
        rows = [(0.0, sample(nodes, pg, traffic))]
        end = t0 + MINUTES * 60
        while time.time() < end:
            time.sleep(max(0.0, min(t0 + len(rows) * EVERY, end) - time.time()))
            rows.append((time.time() - t0, sample(nodes, pg, traffic)))
            print(f"soak: {rows[-1][0] / 60:.1f} min, "
                  f"{sum(traffic.requests)} requests, {sum(traffic.errors)} errors",
                  flush=True)
            for node in nodes:
                node.check_error_log()
        traffic.stop()
        print()
        report(rows, traffic, out)
        print()
        print(f"soak: {out / 'soak.csv'}, {out / 'soak.png'}")
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
