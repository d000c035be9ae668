#!/usr/bin/python3
"""Small requests' latency while 10 MB bodies are counted beside them.

Starts, as bench/bench.py does, a fake provider (nginx, canned chat.completion) and the
gateway (PostgreSQL + control plane + nginx with the module, one worker), then runs wrk
(bench/post.lua, a small chat request) three times:

  - alone;
  - beside a client that posts, one after the other, bodies of 10 MB of random lowercase
    letters (one word: seconds of merges each), counted in the tokenizer's thread pool;
  - the same with the gateway reloaded without vmx_tokenizer's thread_pool=, every count in
    the worker, as before.

and prints requests/s, p50, p99 and the socket errors (wrk's timeouts) of each, and how many
large bodies were answered meanwhile.

Environment: TOKENS_STALL_DURATION (10s per measure), TOKENS_STALL_INLINE (1: also measure
the inline counts), BENCH_THREADS and BENCH_CONNECTIONS (as for bench/bench.py),
BENCH_KEEP (keep the work dir when 1).
"""
import json
import os
import random
import re
import shutil
import string
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import (COMPLETION, FAKE, PlainNginx, bench_environment, check, free_port,
                   nginx_escape, wrk)
from harness.nginx import TEMPLATE, Nginx

DURATION = os.environ.get("TOKENS_STALL_DURATION", "10s")
INLINE = os.environ.get("TOKENS_STALL_INLINE", "1") == "1"
BIG = 10 * 1024 * 1024


class BigSender:
    """Posts 10 MB bodies one after the other until stopped; counts the answers."""

    def __init__(self, url, key):
        word = "".join(random.Random(1).choices(string.ascii_lowercase, k=BIG))
        self.body = json.dumps({"model": "bench",
                                "messages": [{"role": "user", "content": word}]}).encode()
        self.url = url + "/v1/chat/completions"
        self.key = key
        self.answered = 0
        self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.is_set():
            req = urllib.request.Request(self.url, self.body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    r.read()
                self.answered += 1
            except Exception:
                self.failed += 1

    def __enter__(self):
        self.thread.start()
        time.sleep(0.5)                 # the first body sent and being counted
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()


def measure(name, gw, key, big):
    res = wrk(gw.url, "/v1/chat/completions", key, False, DURATION)
    errors = re.sub(r"^Socket errors:\s*", "", res["errors"]) or "-"
    bodies = f"{big.answered} answered, {big.failed} failed" if big else "-"
    # no answer at all: the worker stalled the whole measure
    p50, p99 = (f"{res['p50']:9.2f}", f"{res['p99']:9.2f}") if res["requests"] else ("-", "-")
    print(f"{name:<28} {res['rps']:9.0f} {p50:>9} {p99:>9}  {errors:<40} {bodies}", flush=True)


def main():
    from harness.api import Api
    from harness.certs import make_certs
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.postgres import Postgres

    work = Path(tempfile.mkdtemp(prefix="vmx-tokens-stall-"))
    started = []
    try:
        fake_port = free_port()
        fake = PlainNginx(work / "fake", fake_port, FAKE.format(
            port=fake_port, json=nginx_escape(json.dumps(COMPLETION, separators=(",", ":"))),
            sse="", native=""))
        fake.start()
        started.append(fake)
        pg = Postgres(work / "pg", free_port())
        pg.start()
        started.append(pg)
        (work / "secrets").mkdir()
        token_file, master_key_file = write_secret_files(work / "secrets")
        gw_port, cp_port = free_port(), free_port()
        cp = ControlPlane(work / "cp", cp_port, pg.dsn, [f"http://127.0.0.1:{gw_port}"],
                          token_file, master_key_file, reconcile_interval=1)
        cp.start()
        started.append(cp)
        gw = Nginx(work / "gateway", gw_port, token_file, make_certs(work / "pki")[0],
                   workers=1, max_body="16m", log_level="warn",
                   cp_addr=f"127.0.0.1:{cp_port}")
        gw.start()
        started.append(gw)

        api = Api(cp.url)
        api.login()
        ws, env, conn = bench_environment(api, fake_port)
        res = api.create_resource(ws["id"], env["id"], name="bench",
                                  model={"provider": "openai", "model": "gpt-bench",
                                         "connectionId": conn["id"]},
                                  fallbackModels=[], useFallback=True,
                                  routing={"enabled": False, "conditions": []})
        key = api.create_api_key(ws["id"], env["id"], name="bench", resources=[res["id"]],
                                 enabled=True)["key"]
        deadline = time.time() + 20
        while True:
            try:
                check(gw.url, "/v1/chat/completions", key, False)
                break
            except Exception as e:
                if time.time() > deadline:
                    raise RuntimeError(f"gateway not serving the bench config: {e}")
                time.sleep(0.2)

        print(f"small chat requests, {DURATION} each, one nginx worker; beside: bodies of "
              f"{BIG // (1024 * 1024)} MB of letters posted one after the other")
        print(f"{'':<28} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}  {'socket errors':<40} "
              f"10 MB bodies")
        measure("alone", gw, key, None)
        with BigSender(gw.url, key) as big:
            measure("beside 10 MB, thread pool", gw, key, big)

        if INLINE:
            inline = work / "nginx-inline.conf.in"
            inline.write_text(re.sub(r" thread_pool=\S+;", ";", TEMPLATE.read_text()))
            gw.template = inline
            gw.reload()
            with BigSender(gw.url, key) as big:
                measure("beside 10 MB, inline", gw, key, big)

        gw.check_error_log(everything=True)
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except Exception as e:  # pragma: no cover
                print(f"bench: stopping {s}: {e}", file=sys.stderr)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
