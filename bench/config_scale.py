#!/usr/bin/python3
"""Configuration at scale: 100,000 API keys and 10,000 resources in 1,000 environments.

Starts on loopback free ports a fake provider, PostgreSQL, the control plane and two data
planes of BENCH_CONFIG_WORKERS workers each, both pushed the same snapshots:
  - "threaded": the shipped configuration, a snapshot compiled by a task of the
    `vmx_config` thread pool while the worker goes on serving with the one it has;
  - "inline": the same without `thread_pool=`, the snapshot compiled in the worker's event
    loop (on its timer), as every worker compiled it before (on its first request after a
    change): the reference measured in the same run.
Then:
  1. the small configuration of the bench's own environment: snapshot size, compile time
     and workers' RSS;
  2. the bulk rows written in PostgreSQL at once (BENCH_CONFIG_ENVS environments, each with a
     connection, BENCH_CONFIG_RESOURCES resources and BENCH_CONFIG_KEYS keys), and the time
     until both data planes run the snapshot: the control plane's build and push, each
     worker's compile (from the data planes' logs), the snapshot's size, the workers' RSS;
  3. one key changed through the API: the time until the API answered and until both data
     planes run it, the control plane's build and each PUT;
  4. the control plane stopped, the snapshot it pushed (kept by a recording data plane) PUT
     again to each data plane under a new version every BENCH_CONFIG_EVERY seconds while wrk
     sends requests to it at a moderate load (BENCH_CONFIG_CONNECTIONS connections), then
     the same without changes: the latency a change adds (p99 and max) on each data plane,
     and how long each PUT took (the transfer, the compile, every worker's compile);
  5. how long an install held a worker's event loop (the swap and the old snapshot's
     retirement, in CPU time: the compile runs beside it), the longest of the run, from the
     logs.
Ends with a table: each measure, threaded and inline, and their ratio.

Environment: BENCH_CONFIG_ENVS (1000), BENCH_CONFIG_RESOURCES (10 per environment),
BENCH_CONFIG_KEYS (100 per environment), BENCH_CONFIG_WORKERS (2), BENCH_CONFIG_DURATION
(30s per latency measure), BENCH_CONFIG_EVERY (2 seconds between changes),
BENCH_CONFIG_CONNECTIONS (2), BENCH_KEEP (keep the work dir when 1).
"""
import http.client
import http.server
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
sys.path.insert(0, str(BENCH.parent / "t"))

import bench as b  # noqa: E402
from harness.certs import make_certs  # noqa: E402
from harness.nginx import MODULE, Nginx  # noqa: E402

ENVS = int(os.environ.get("BENCH_CONFIG_ENVS", "1000"))
RESOURCES = int(os.environ.get("BENCH_CONFIG_RESOURCES", "10"))
KEYS = int(os.environ.get("BENCH_CONFIG_KEYS", "100"))
WORKERS = int(os.environ.get("BENCH_CONFIG_WORKERS", "2"))
DURATION = os.environ.get("BENCH_CONFIG_DURATION", "30s")
EVERY = float(os.environ.get("BENCH_CONFIG_EVERY", "2"))
CONNECTIONS = os.environ.get("BENCH_CONFIG_CONNECTIONS", "2")

COMPILED = re.compile(r"config version (\d+)[^\n]*compiled in (\d+) ms")
INSTALLED = re.compile(r"worker runs config version \d+ \(compiled in \d+ ms, installed in "
                       r"(\d+) us of CPU\)")
RECEIVED = re.compile(r"config version (\d+) received \((\d+) bytes")

# the bulk rows, in two steps: the environments; then (their connections made through the API,
# so that their secrets are encrypted for them) resources and keys
ENVS_SQL = """
INSERT INTO environments (id, workspace_id, name)
    SELECT gen_random_uuid(), '{ws}', 'scale-' || i FROM generate_series(1, {envs}) AS i;
"""

ROWS_SQL = """
BEGIN;
CREATE TEMP TABLE bulk_res ON COMMIT DROP AS
    SELECT gen_random_uuid() AS id, c.environment_id AS env, c.id AS conn, j
      FROM connections c, generate_series(1, {resources}) AS j
     WHERE c.workspace_id = '{ws}' AND c.name = 'scale';
INSERT INTO resources (id, workspace_id, environment_id, name, model)
    SELECT id, '{ws}', env, 'resource-' || j,
           jsonb_build_object('provider', 'openai', 'model', 'gpt-bench',
                              'connectionId', conn)
      FROM bulk_res;
INSERT INTO resource_connections (resource_id, connection_id)
    SELECT id, conn FROM bulk_res;
CREATE TEMP TABLE bulk_lists ON COMMIT DROP AS
    SELECT env, jsonb_agg(id::text) AS resources FROM bulk_res GROUP BY env;
INSERT INTO api_keys (id, workspace_id, environment_id, name, key_hash, masked_key,
                      resources, enforce_capacity, capacity)
    SELECT gen_random_uuid(), '{ws}', l.env, 'key-' || k,
           encode(sha256(convert_to(l.env::text || '/' || k, 'UTF8')), 'hex'), 'vmx-...',
           l.resources, true,
           '[{{"period": "minute", "requests": 1000, "tokens": 1000000}}]'
      FROM bulk_lists l, generate_series(1, {keys}) AS k;
COMMIT;
"""


class ScaleNginx(Nginx):
    """The gateway's configuration with a config zone large enough, threaded or not."""

    def __init__(self, *args, threaded=True, **kw):
        super().__init__(*args, **kw)
        self.threaded = threaded

    def render(self):
        text = super().render()
        zone = "vmx_config_zone vmx_config:1024m" + (" thread_pool=vmx_config;" if self.threaded
                                                     else ";")
        text = re.sub(r"client_max_body_size 64m;\s*client_body_buffer_size 64m;",
                      "client_max_body_size 1024m; client_body_buffer_size 1024m;", text)
        return re.sub(r"vmx_config_zone [^;]*;", zone, text, count=1)


class Recorder:
    """A data plane as the control plane sees one, which keeps the last snapshot PUT."""

    def __init__(self):
        recorder = self
        self.snapshot = b""
        self.version = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.answer()

            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.snapshot = body
                recorder.version = json.loads(body)["version"]
                self.answer()

            def answer(self):
                # the data plane's formats: the control plane builds one snapshot for all
                data = json.dumps({"version": recorder.version, "received": recorder.version,
                                   "formats": [1, 2]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def put_snapshot(gw, snapshot, version):
    """PUT the snapshot as version to the data plane; the seconds until it answered (every
    worker runs it)."""
    body = re.sub(rb'"version":\s*\d+', f'"version":{version}'.encode(), snapshot, count=1)
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=300)
    t = time.time()
    conn.request("PUT", "/vmx/config", body=body,
                 headers={"Authorization": f"Bearer {gw.token}",
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"PUT /vmx/config: {resp.status}")
    return time.time() - t


def compiles(gw, version):
    """(ms each worker took to compile version, snapshot bytes) from the data plane's log."""
    log = gw.error_log()
    took = [int(m.group(2)) for m in COMPILED.finditer(log) if int(m.group(1)) == version]
    size = [int(m.group(2)) for m in RECEIVED.finditer(log) if int(m.group(1)) == version]
    return took, (size[-1] if size else 0)


def pushes(cp, version):
    """(ms the control plane took to build version, [ms of each data plane's PUT])."""
    log = cp.log_text()
    built = re.findall(rf"pusher built version={version} format=\d+ in (\d+) ms", log)
    put = re.findall(rf"pushed version={version} bytes=\d+ in (\d+) ms", log)
    return (int(built[-1]) if built else 0), [int(t) for t in put]


def wait_running(gws, version, limit=300):
    """Seconds until every data plane reports version (all its workers run it)."""
    start = time.time()
    while any((g.config_version() or 0) < version for g in gws):
        if time.time() - start > limit:
            raise RuntimeError(f"the data planes did not reach version {version}")
        time.sleep(0.005)
    return time.time() - start


def main():
    for p in (MODULE, b.CP_BIN):
        if not p.exists():
            sys.exit(f"bench: {p} missing: run ./build.sh build first")
    from harness.api import Api
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.postgres import Postgres

    work = Path(tempfile.mkdtemp(prefix="vmx-config-scale-"))
    started = []
    cleanup = b.stopper(work, started)
    try:
        fake_port = b.free_port()
        started.append(b.fake_provider(work, fake_port, native=False))
        pg = Postgres(work / "pg", b.free_port())
        pg.start()
        started.append(pg)
        (work / "secrets").mkdir()
        token_file, master_key_file = write_secret_files(work / "secrets")
        ports = {"threaded": b.free_port(), "inline": b.free_port()}
        cp_port = b.free_port()
        recorder = Recorder()
        started.append(recorder)
        cp = ControlPlane(work / "cp", cp_port, pg.dsn,
                          [f"http://127.0.0.1:{p}" for p in ports.values()] + [recorder.url],
                          token_file, master_key_file, reconcile_interval=1)
        cp.start()
        started.append(cp)
        ca_file = make_certs(work / "pki")[0]
        gws = {}
        for mode, port in ports.items():
            gws[mode] = ScaleNginx(work / mode, port, token_file, ca_file, workers=WORKERS,
                                   log_level="info", cp_addr=f"127.0.0.1:{cp_port}",
                                   threaded=mode == "threaded")
            gws[mode].start()
            started.append(gws[mode])

        api = Api(cp.url)
        api.login()
        ws, env, conn = b.bench_environment(api, fake_port)
        model = {"provider": "openai", "model": "gpt-bench", "connectionId": conn["id"]}
        res = api.create_resource(ws["id"], env["id"], name="bench", model=model,
                                  fallbackModels=[], useFallback=True,
                                  routing={"enabled": False, "conditions": []})
        created = api.create_api_key(ws["id"], env["id"], name="bench", resources=[res["id"]],
                                     enabled=True)
        key, key_id = created["key"], created["id"]
        version = int(pg.psql("SELECT version FROM config_version").strip())
        wait_running(gws.values(), version)
        for g in gws.values():
            b.check(g.url, "/v1/chat/completions", key, False)

        rows = []
        small = {m: compiles(g, version) for m, g in gws.items()}
        rss_small = {m: b.rss_kib(g.worker_pids()) for m, g in gws.items()}

        print(f"bench: writing {ENVS} environments, {ENVS * RESOURCES} resources, "
              f"{ENVS * KEYS} API keys", flush=True)
        t0 = time.time()
        pg.psql(ENVS_SQL.format(ws=ws["id"], envs=ENVS))
        envs = pg.psql(f"SELECT id FROM environments WHERE workspace_id = '{ws['id']}' "
                       "AND name LIKE 'scale-%'").split()
        for e in envs:
            api.create_connection(ws["id"], e, name="scale", provider="openai",
                                  config={"apiKey": "sk-bench",
                                          "baseUrl": f"http://127.0.0.1:{fake_port}/v1"})
        pg.psql(ROWS_SQL.format(ws=ws["id"], resources=RESOURCES, keys=KEYS))
        written = time.time() - t0
        version = int(pg.psql("SELECT version FROM config_version").strip())
        t0 = time.time()
        wait_running(gws.values(), version)
        pushed = time.time() - t0
        big = {m: compiles(g, version) for m, g in gws.items()}
        built, puts = pushes(cp, version)
        rss_big = {m: b.rss_kib(g.worker_pids()) for m, g in gws.items()}
        for g in gws.values():
            b.check(g.url, "/v1/chat/completions", key, False)

        # one key changed through the API: the control plane's part of a change
        path = f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/api-keys/{key_id}"
        t0 = time.time()
        status = api.request("PATCH", path, {"description": "changed"})[0]
        if status != 200:
            raise RuntimeError(f"PATCH of the key: {status}")
        answered = time.time() - t0
        wait_running(gws.values(), version + 1)
        changed = time.time() - t0
        one_built, one_puts = pushes(cp, version + 1)
        snapshot, version = recorder.snapshot, recorder.version

        # the data planes' part: the snapshot PUT again under a new version every EVERY
        # seconds while wrk sends requests; the control plane stopped, so that it does not
        # push its own version back
        cp.stop()
        reput = {}
        latency = {}
        for mode, g in gws.items():
            for what in ("changes", "quiet"):
                stop = threading.Event()

                def change_loop():
                    nonlocal version
                    while not stop.wait(EVERY):
                        version += 1
                        reput.setdefault(mode, []).append(put_snapshot(g, snapshot, version))

                changer = threading.Thread(target=change_loop)
                if what == "changes":
                    changer.start()
                r = b.wrk(g.url, "/v1/chat/completions", key, False, DURATION, model="bench",
                          connections=CONNECTIONS, threads="1", delay_ms=1)
                stop.set()
                if what == "changes":
                    changer.join()
                # a request that waits more than wrk's 2 s is a timeout, not an error
                timeouts = re.search(r"timeout (\d+)", r["errors"])
                r["timeouts"] = int(timeouts.group(1)) if timeouts else 0
                if r["non2xx"] or re.search(r"(connect|read|write) [1-9]", r["errors"]):
                    raise RuntimeError(f"{mode} {what}: {r['raw']}")
                latency[mode, what] = r

        def ms(v):
            return f"{v:.1f}"

        rows.append(("snapshot bytes, small", small["threaded"][1], small["inline"][1]))
        rows.append(("snapshot bytes, at scale", big["threaded"][1], big["inline"][1]))
        for label, data in (("small", small), ("at scale", big)):
            rows.append((f"compile ms per worker, {label} (max)",
                         max(data["threaded"][0] or [0]), max(data["inline"][0] or [0])))
        for label, data in (("small", rss_small), ("at scale", rss_big)):
            rows.append((f"workers' RSS MiB, {label}", ms(data["threaded"] / 1024),
                         ms(data["inline"] / 1024)))
        rows.append(("PUT of the snapshot at scale, s (median)",
                     ms(sorted(reput["threaded"])[len(reput["threaded"]) // 2]),
                     ms(sorted(reput["inline"])[len(reput["inline"]) // 2])))
        # the event loop's part of a change: the swap and the old snapshot's retirement,
        # every install of the run (from the data planes' logs)
        held = {m: [int(t) for t in INSTALLED.findall(g.error_log())] for m, g in gws.items()}
        rows.append(("a worker's event loop held by an install, us of CPU (max)",
                     max(held["threaded"] or [0]), max(held["inline"] or [0])))
        for what in ("quiet", "changes"):
            for stat in ("p99", "max"):
                rows.append((f"request latency {stat} ms, {what}",
                             ms(latency["threaded", what][stat]),
                             ms(latency["inline", what][stat])))
            rows.append((f"requests waiting over 2 s, {what}",
                         latency["threaded", what]["timeouts"],
                         latency["inline", what]["timeouts"]))

        print()
        print(f"rows written in PostgreSQL in {written:.1f} s; the control plane built and "
              f"pushed them to both data planes, every worker compiled, in {pushed:.1f} s")
        print(f"the control plane built that snapshot in {built} ms; each data plane's PUT "
              f"(the transfer, the compile, the copy into the zone, every worker's compile) "
              f"took {', '.join(str(t) for t in puts)} ms, one data plane after the other")
        print(f"one key changed through the API: answered after {ms(1000 * answered)} ms "
              f"(the change validated against its environment), both data planes "
              f"ran it after {ms(1000 * changed)} ms (built in {one_built} ms, PUTs "
              f"{', '.join(str(t) for t in one_puts)} ms)")
        print()
        print("| measure | threaded | inline | threaded / inline |")
        print("|---|---|---|---|")
        for name, t, i in rows:
            try:
                ratio = f"{float(t) / float(i):.2f}" if float(i) else "n/a"
            except ValueError:
                ratio = "n/a"
            print(f"| {name} | {t} | {i} | {ratio} |")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
