#!/usr/bin/python3
"""The targets of the gateway's performance against a bare nginx proxy, in one run.

Starts on loopback free ports:
  - a fake provider: nginx answering a canned chat.completion (`return 200`),
  - the baseline: nginx `proxy_pass` to it (keepalive upstream), with the gateway's access
    log (conf/nginx.conf.in's format and buffering),
  - the gateway: PostgreSQL + control plane + nginx with the module, a connection whose
    baseUrl is the fake provider, resources with routing rules evaluated on each request
    (groups that do not match, then one to the same model), an API key whose capacity is
    admitted in the local zone and never reached, auditing on,
then measures with wrk (bench/post.lua) and ends with one table of the targets, each with
the measured value and PASS or MISS, and a closing note with the profile of each miss
(`perf record` of the gateway's workers, control plane and PostgreSQL; the strace table of
the system calls; the RSS samples):
  - the gateway's requests/s over the baseline's, JSON and streamed (>= 0.90); beside it,
    "dp alone": the gateway measured with the control plane paused (its records spooled and
    stored after the measure, as when ingestion runs on other machines), and a miss's note
    compares the gateway's worker with the baseline's, CPU per request by object and
    function, each pinned to the first core with wrk and the fake provider on the second;
  - Redis-backed admission (a second gateway with vmx_redis, configured and ingested by the
    same control plane) over local admission, in turns (>= 0.95);
  - the Anthropic, Gemini and Bedrock translations over the gateway's OpenAI pass-through
    (>= 0.85; BENCH_PROVIDERS);
  - the latency added at concurrency 1 over BENCH_LATENCY_DURATION (p50 <= 30 us,
    p99 <= 50 us);
  - system calls per request at concurrency 1 over BENCH_SYSCALL_DURATION, counted by
    `strace -c -f` on the workers (`perf stat` without strace; n/a and why without either),
    at most the baseline's + 1;
  - the gateway workers' RSS over a BENCH_SOAK run at a moderate load: end <= 1.1 x start.

With BENCH_PROVIDERS=1 (the default) the same fake nginx also answers the canned native
answers of Anthropic (Messages, JSON and SSE), Gemini (generateContent, streamGenerateContent)
and Bedrock (Converse JSON, ConverseStream binary event stream served from a file), and the
gateway, with a connection per translation path (Bedrock's credentials from a fake STS; the
bench provider does not check signatures), is measured on each path, streamed and not.

With BENCH_INGEST=1 (the default) the audit ingestion is measured against the gateway at
saturation: wrk runs BENCH_INGEST_DURATION (60s) on the OpenAI JSON path with auditing on,
payloads stored; the control plane's records and busy seconds are sampled meanwhile and until
every record of the load is stored, and the audit API is polled until it lists them all. It
prints the gateway's req/s, the records stored per second during the load and after it, the
time from the load's end until the last record is stored and until the API lists it, and the
ratio of ingestion capacity (records per second of the ingest thread's busy time, measured
while the load runs on the same cores) to the gateway's req/s: >= 1 keeps pace.

Environment: BENCH_DURATION (10s), BENCH_THREADS (2), BENCH_CONNECTIONS (32), BENCH_WORKERS
(nginx workers per server, 1), BENCH_WARMUP (2s), BENCH_STREAM (0: also measure a streamed
answer when 1; implied by BENCH_PROVIDERS), BENCH_PROVIDERS (1: also measure the translation
paths), BENCH_PROVIDER_DURATION (5s per path), BENCH_PROVIDER_WARMUP (1s), BENCH_LIMITS (1:
the Redis-backed admission), BENCH_LIMITS_DURATION (5s per measure), BENCH_LATENCY_DURATION
(20s), BENCH_SYSCALL_DURATION (3s), BENCH_SOAK (300 seconds, 0: none),
BENCH_SOAK_CONNECTIONS (4), BENCH_SOAK_DELAY_MS (2), BENCH_PROFILE_DURATION (3s per profile
of a miss), BENCH_AUDIT (1: also measure the gateway with auditing off, its nginx reloaded
without `vmx_audit_spool`, against auditing on twice each way: the data plane alone, the
control plane paused (SIGSTOP) so the records wait in the spool and are stored after the
measure (BENCH_AUDIT_ROUNDS turns of alone and off, 3, and alone once more), and with the
control plane ingesting meanwhile on the same cores, first and last; ratios of medians),
BENCH_AUDIT_DURATION (5s per measure), BENCH_AUDIT_PROFILE (1: `perf record` the worker during
each auditing measure, and print where auditing on spends the worker's CPU: microseconds per
request by function, on minus off), BENCH_KEEP (keep the work dir when 1).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "t"))

from harness.certs import make_certs  # noqa: E402
from harness.fake_bedrock import event_frame  # noqa: E402
from harness.nginx import MODULE, TEMPLATE, Nginx  # noqa: E402

CP_BIN = ROOT / "build" / "vmx-control-plane"
DURATION = os.environ.get("BENCH_DURATION", "10s")
THREADS = os.environ.get("BENCH_THREADS", "2")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
WARMUP = os.environ.get("BENCH_WARMUP", "2s")
PROVIDERS = os.environ.get("BENCH_PROVIDERS", "1") == "1"
STREAM = os.environ.get("BENCH_STREAM", "0") == "1" or PROVIDERS
PROVIDER_DURATION = os.environ.get("BENCH_PROVIDER_DURATION", "5s")
PROVIDER_WARMUP = os.environ.get("BENCH_PROVIDER_WARMUP", "1s")
AUDIT = os.environ.get("BENCH_AUDIT", "1") == "1"
AUDIT_DURATION = os.environ.get("BENCH_AUDIT_DURATION", "5s")
AUDIT_ROUNDS = int(os.environ.get("BENCH_AUDIT_ROUNDS", "3"))
AUDIT_PROFILE = os.environ.get("BENCH_AUDIT_PROFILE", "0") == "1"
LIMITS = os.environ.get("BENCH_LIMITS", "1") == "1"
INGEST = os.environ.get("BENCH_INGEST", "1") == "1"
INGEST_DURATION = os.environ.get("BENCH_INGEST_DURATION", "60s")
LIMITS_DURATION = os.environ.get("BENCH_LIMITS_DURATION", "5s")
LATENCY_DURATION = os.environ.get("BENCH_LATENCY_DURATION", "20s")
SYSCALL_DURATION = os.environ.get("BENCH_SYSCALL_DURATION", "3s")
SOAK = int(os.environ.get("BENCH_SOAK", "300"))
SOAK_CONNECTIONS = os.environ.get("BENCH_SOAK_CONNECTIONS", "4")
SOAK_DELAY_MS = int(os.environ.get("BENCH_SOAK_DELAY_MS", "2"))
PROFILE_DURATION = os.environ.get("BENCH_PROFILE_DURATION", "3s")

COMPLETION = {
    "id": "chatcmpl-bench0000000000000000000000", "object": "chat.completion",
    "created": 1721172741, "model": "gpt-bench",
    "choices": [{"index": 0, "message": {"role": "assistant",
                                         "content": "Hello! How can I help you today?",
                                         "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    "system_fingerprint": "fp_bench",
}


def sse_body():
    out = []
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1721172741,
            "model": "gpt-bench", "system_fingerprint": "fp_bench"}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in
                                                        ["Hello!", " How", " can", " I", " help?"]]
    for d in deltas:
        out.append(dict(base, choices=[{"index": 0, "delta": d, "logprobs": None,
                                        "finish_reason": None}], usage=None))
    out.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None,
                                    "finish_reason": "stop"}], usage=None))
    out.append(dict(base, choices=[], usage={"prompt_tokens": 9, "completion_tokens": 5,
                                             "total_tokens": 14}))
    return "".join("data: " + json.dumps(c, separators=(",", ":")) + "\n\n" for c in out) \
        + "data: [DONE]\n\n"


# ---------------------------------------------------------------- canned native answers
TEXT = ["Hello!", " How", " can", " I", " help?"]


def _compact(o):
    return json.dumps(o, separators=(",", ":"))


def anthropic_json():
    return _compact({
        "id": "msg_01bench", "type": "message", "role": "assistant", "model": "claude-bench",
        "content": [{"type": "text", "text": "".join(TEXT)}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 5}})


def anthropic_sse():
    def ev(name, data):
        return f"event: {name}\ndata: {_compact(data)}\n\n"
    out = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_01bench", "type": "message", "role": "assistant", "model": "claude-bench",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}),
        ev("ping", {"type": "ping"})]
    out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": w}})
            for w in TEXT]
    out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": 5}}),
            ev("message_stop", {"type": "message_stop"})]
    return "".join(out)


def _gemini(parts, finish, ct):
    c = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        c["finishReason"] = finish
    return {"candidates": [c], "usageMetadata": {"promptTokenCount": 9,
                                                 "candidatesTokenCount": ct,
                                                 "totalTokenCount": 9 + ct},
            "modelVersion": "gemini-bench", "responseId": "bench"}


def gemini_json():
    return _compact(_gemini([{"text": "".join(TEXT)}], "STOP", 5))


def gemini_sse():
    return "".join("data: " + _compact(_gemini([{"text": w}], "STOP" if i == len(TEXT) - 1
                                               else None, i + 1)) + "\r\n\r\n"
                   for i, w in enumerate(TEXT))


def bedrock_json():
    return _compact({"output": {"message": {"role": "assistant",
                                            "content": [{"text": "".join(TEXT)}]}},
                     "stopReason": "end_turn",
                     "usage": {"inputTokens": 9, "outputTokens": 5, "totalTokens": 14},
                     "metrics": {"latencyMs": 100}})


def bedrock_eventstream():
    """ConverseStream's binary frames (prelude, headers, JSON payload, CRC32s)."""
    fr = [event_frame("messageStart", {"role": "assistant", "p": "abcd"})]
    fr += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w},
                                             "p": "abcdefgh"}) for w in TEXT]
    fr += [event_frame("contentBlockStop", {"contentBlockIndex": 0, "p": "ab"}),
           event_frame("messageStop", {"stopReason": "end_turn", "p": "abc"}),
           event_frame("metadata", {"usage": {"inputTokens": 9, "outputTokens": 5,
                                              "totalTokens": 14},
                                    "metrics": {"latencyMs": 100}, "p": "a"})]
    return b"".join(fr)


# (name, connection fields but baseUrl/endpoint, base path, provider model) per path
NATIVE = [
    ("anthropic", "anthropic", "/anthropic-json", "claude-bench", False),
    ("anthropic", "anthropic", "/anthropic-stream", "claude-bench", True),
    ("gemini", "gemini", "/gemini/v1beta", "gemini-bench", False),
    ("gemini", "gemini", "/gemini/v1beta", "gemini-bench", True),
    ("bedrock", "aws-bedrock", "/bedrock", "bedrock-bench", False),
    ("bedrock", "aws-bedrock", "/bedrock", "bedrock-bench", True),
]

NATIVE_LOCATIONS = """        location = /anthropic-json/v1/messages {{
            default_type application/json;
            return 200 '{anthropic_json}';
        }}
        location = /anthropic-stream/v1/messages {{
            default_type text/event-stream;
            return 200 '{anthropic_sse}';
        }}
        location = /gemini/v1beta/models/gemini-bench:generateContent {{
            default_type application/json;
            return 200 '{gemini_json}';
        }}
        location = /gemini/v1beta/models/gemini-bench:streamGenerateContent {{
            default_type text/event-stream;
            return 200 '{gemini_sse}';
        }}
        location = /bedrock/model/bedrock-bench/converse {{
            default_type application/json;
            return 200 '{bedrock_json}';
        }}
        # a POST to a static file is 405: answered (as GET) by the file itself
        location = /bedrock/model/bedrock-bench/converse-stream {{
            root {files};
            error_page 405 =200 /converse-stream.bin;
        }}
        location = /converse-stream.bin {{
            internal;
            root {files};
            default_type application/vnd.amazon.eventstream;
        }}
"""


def nginx_escape(s):
    return s.replace("\\", "\\\\").replace("'", "\\'")


COMMON = """worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
daemon off;
{user}
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    keepalive_requests 1000000;
{body}
}}
"""

FAKE = """    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/chat/completions {{
            default_type application/json;
            return 200 '{json}';
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            return 200 '{sse}';
        }}
{native}
    }}
"""

BASELINE = """{access_log}
    upstream provider {{
        server 127.0.0.1:{fake_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1m;
        client_body_buffer_size 1m;
        location /v1/ {{
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer sk-bench";
            proxy_buffering off;
        }}
        location /stream/v1/ {{
            proxy_pass http://provider;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
"""

# what the gateway's log line holds for a bench request, the baseline's constants; the id
# is one of the same length, as $request_id would cost the baseline a getpid() per request
# (OpenSSL's fork check) that the gateway's UUIDv7 does not
BASELINE_LOG_VALUES = {"vmx_request_id": "01a2373b-5a6b-7b0e-b936-975d656f6554",
                       "vmx_resource": "bench-routed", "vmx_provider": "openai",
                       "vmx_model": "gpt-bench", "vmx_prompt_tokens": "9",
                       "vmx_completion_tokens": "9", "vmx_attempts": "1"}


def baseline_access_log(prefix):
    """The gateway's access log (log_format vmx and access_log of conf/nginx.conf.in, the
    same buffering) for the baseline, whose maps give the $vmx_* variables the values the
    module would."""
    text = TEMPLATE.read_text()
    fmt = re.search(r"^\s*log_format vmx .*?;$", text, re.M | re.S).group(0)
    log = re.search(r"^\s*access_log .*?;$", text, re.M).group(0)
    names = sorted(set(re.findall(r"\$(vmx_\w+)", fmt)))
    maps = "".join(f'    map "" ${n} {{ default "{BASELINE_LOG_VALUES.get(n, "-")}"; }}\n'
                   for n in names)
    return maps + fmt + "\n" + log.replace("@PREFIX@", str(prefix))


class PlainNginx(Nginx):
    """An nginx without the module from a config text (fake provider, baseline)."""

    def __init__(self, base_dir, port, body):
        super().__init__(base_dir, port, "", "", workers=WORKERS)
        self.body = body

    def render(self):
        user = "user root root;" if os.geteuid() == 0 else ""
        return COMMON.format(workers=self.workers, prefix=self.base_dir, user=user, body=self.body)

    def start(self, timeout=15):
        self.module = Path("/dev/null")
        self.template = Path("/dev/null")
        return super().start(timeout)


def pin(pids, cpus):
    for pid in pids:
        try:
            os.sched_setaffinity(pid, cpus)
        except OSError:
            pass                        # gone meanwhile


def pin_apart(server, fake):
    """The server's workers on the first core, the fake provider's on the second (wrk goes
    there too, cpus={1}), so that the server's own cost sets its throughput."""
    pin(server.worker_pids(), {0})
    pin(fake.worker_pids(), {1})


def unpin(*servers):
    """The servers' workers back on every core."""
    for server in servers:
        pin(server.worker_pids(), set(range(os.cpu_count())))


def free_port():
    try:
        from harness.ports import free_port as fp
        return fp()
    except ImportError:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        return p


def wrk(url, path, key, stream, duration, model=None, cpus=None, threads=None,
        connections=None, delay_ms=None, every=None):
    """wrk's results; every: (seconds, function called each time they pass while it runs)."""
    env = dict(os.environ, BENCH_KEY=key or "",
               BENCH_MODEL=model or ("bench" if key else "gpt-bench"),
               BENCH_STREAM="1" if stream else "0", BENCH_PATH=path)
    if delay_ms:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    cmd = ["wrk", "-t", threads or THREADS, "-c", connections or CONNECTIONS, "-d", duration,
           "-s", str(BENCH / "post.lua"), url + path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
                            if cpus else None)
    try:
        while True:
            try:
                out = proc.communicate(timeout=every[0] if every else None)[0]
                break
            except subprocess.TimeoutExpired:
                every[1]()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    pct = re.search(r"^percentiles_us p50=(\d+) p99=(\d+)$", out, re.M)
    top = re.search(r"^latency_max_us (\d+)$", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(rps.group(1)) if rps else 0.0,
            "p50": int(pct.group(1)) / 1e3 if pct else float("nan"),
            "p99": int(pct.group(2)) / 1e3 if pct else float("nan"),
            "max": int(top.group(1)) / 1e3 if top else float("nan"),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(0) if errors else "",
            "requests": int(total.group(1)) if total else 0,
            "raw": out}


def check(url, path, key, stream, model=None):
    body = {"model": model or ("bench" if key else "gpt-bench"),
            "messages": [{"role": "user", "content": "Hello, how are you?"}]}
    if stream:
        body["stream"] = True
    req = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {key or 'sk-bench'}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}{path}: {r.status} {data[:300]!r}")
    if model and (b"Hello! How can I help" not in data
                and b'" help?"' not in data or b'"error"' in data):
        raise RuntimeError(f"{url}{path} ({model}): unexpected answer {data[:600]!r}")
    return data


def bench_environment(api, fake_port):
    """The bench's workspace, environment and connection to the fake provider."""
    ws = api.create_workspace("bench")
    env = api.create_environment(ws["id"], "bench")
    conn = api.create_connection(ws["id"], env["id"], name="fake", provider="openai",
                                 config={"apiKey": "sk-bench",
                                         "baseUrl": f"http://127.0.0.1:{fake_port}/v1"})
    return ws, env, conn


def routing_rules(model):
    """Routing rules of the "bench-routed" resource: groups tried in order that do not
    match (a UI condition on the prompt's tokens, an ADVANCED expression with errorRate),
    then one that sends every request to the same model."""
    def group(gid, **kw):
        g = {"type": "group", "id": gid, "description": gid, "enabled": True,
             "operator": "AND", "conditions": [], "mode": "UI", "expression": "",
             "action": "CALL_MODEL"}
        g.update(kw)
        return g
    return {"enabled": True, "conditions": [
        group("long", conditions=[{"type": "condition", "id": "c1", "label": "tokens",
                                   "expression": "tokens.input", "comparator": "GREATER_THAN",
                                   "value": {"type": "number", "expression": "100000"}}],
              then=dict(model)),
        group("shaky", mode="ADVANCED",
              expression='request.messagesCount > 50 || errorRate(5) > 90 '
                         '|| request.lastMessage.content matches "(?i)forbidden"',
              then=dict(model)),
        group("all", then=dict(model)),
    ]}


def fake_provider(work, port, native=True, locations=""):
    """The fake provider nginx, started: the canned OpenAI answers, with native=True the
    Anthropic, Gemini and Bedrock ones (their files under work), and locations of the
    caller's own."""
    if native:
        files = work / "files"
        (files / "bedrock" / "model" / "bedrock-bench").mkdir(parents=True)
        (files / "converse-stream.bin").write_bytes(bedrock_eventstream())
        (files / "bedrock" / "model" / "bedrock-bench" / "converse-stream").write_bytes(b"")
        locations = NATIVE_LOCATIONS.format(
            files=files, anthropic_json=nginx_escape(anthropic_json()),
            anthropic_sse=nginx_escape(anthropic_sse()), gemini_json=nginx_escape(gemini_json()),
            gemini_sse=nginx_escape(gemini_sse()),
            bedrock_json=nginx_escape(bedrock_json())) + locations
    fake = PlainNginx(work / "fake", port, FAKE.format(
        port=port, json=nginx_escape(json.dumps(COMPLETION, separators=(",", ":"))),
        sse=nginx_escape(sse_body()), native=locations))
    return fake.start()


def fake_sts():
    """A fake STS started, whose role the control plane assumes for Bedrock connections, and
    the control plane's environment for it."""
    from harness.fake_sts import FakeSts
    base_credentials = {"AWS_ACCESS_KEY_ID": "AKIABENCH0000000000",
                        "AWS_SECRET_ACCESS_KEY": "bench-base-secret",
                        "AWS_SESSION_TOKEN": "bench-base-token"}
    sts = FakeSts(*base_credentials.values()).start()
    return sts, dict(base_credentials, VMX_STS_ENDPOINT=sts.url)


def native_resources(api, ws, env, fake_port):
    """A connection to the fake's path and a resource (routing rules evaluated) per
    translation path: [(name, stream, resource name)]."""
    out = []
    for name, provider, base_path, pmodel, stream in NATIVE:
        url = f"http://127.0.0.1:{fake_port}{base_path}"
        config = ({"region": "us-east-1", "iamRoleArn":
                   "arn:aws:iam::123456789012:role/bench", "endpoint": url}
                  if provider == "aws-bedrock" else {"apiKey": "bench-key", "baseUrl": url})
        rname = f"bench-{name}-{'stream' if stream else 'json'}"
        c = api.create_connection(ws["id"], env["id"], name=rname, provider=provider,
                                  config=config)
        m = {"provider": provider, "model": pmodel, "connectionId": c["id"]}
        api.create_resource(ws["id"], env["id"], name=rname, model=m, fallbackModels=[],
                            useFallback=True, routing=routing_rules(m))
        out.append((name, stream, rname))
    return out


def measure(what, url, key, stream, duration, model=None, path="/v1/chat/completions",
            warmup=PROVIDER_WARMUP, groups=None, **kw):
    """wrk after a warm-up, failing on an error answer; groups: name -> pids whose CPU
    microseconds per request are returned in "cpu"."""
    if warmup and warmup not in ("0", "0s"):
        wrk(url, path, key, stream, warmup, model, **kw)
    cpu0 = {k: cpu_seconds(pids) for k, pids in (groups or {}).items()}
    res = wrk(url, path, key, stream, duration, model, **kw)
    if res["non2xx"] or res["requests"] == 0:
        print(res["raw"], file=sys.stderr)
        raise RuntimeError(f"{what}: {res['non2xx']} non-2xx answers")
    res["cpu"] = {k: (cpu_seconds(pids) - cpu0[k]) * 1e6 / res["requests"]
                  for k, pids in (groups or {}).items()}
    return res


def bench_redis(gw, gwr, key, model):
    """Admission counted in the local zone (gw) and in Redis (gwr, vmx_redis), the same key
    and resource, twice in turns. The limit is never reached: what is measured is its cost."""
    rows = []
    for _ in range(2):
        for name, g in (("local", gw), ("redis", gwr)):
            rows.append((name, measure(f"admission {name}", g.url, key, False, LIMITS_DURATION,
                                       model)))
    gwr.check_error_log(everything=True)
    return rows


def traced(cmd, err, run, attached=0):
    """run() while the tracer cmd (strace, perf) watches, its complaints in err; then SIGINT
    has it write its summary. None when it quit before run(). attached: the pids strace
    must say it attached to first."""
    with open(err, "w") as f:
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f)
    try:
        deadline = time.time() + 5
        while (err.read_text().count(" attached") < attached and tracer.poll() is None
               and time.time() < deadline):
            time.sleep(0.05)
        time.sleep(0.3)
        return run() if tracer.poll() is None else None
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)


def syscalls(pids, url, path, key, stream, model, out):
    """System calls of pids per request served during BENCH_SYSCALL_DURATION at concurrency 1,
    counted by `strace -c -f` (`perf stat` when strace is missing): (calls per request, the
    strace table or None, why not when None)."""
    pids = sorted(pids)
    if shutil.which("strace"):
        cmd = ["strace", "-c", "-f", "-S", "calls", "-o", str(out)]
        cmd += [a for p in pids for a in ("-p", str(p))]
    elif shutil.which("perf"):
        cmd = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", str(out),
               "-p", ",".join(map(str, pids))]
    else:
        return None, None, "neither strace nor perf is installed"
    err = out.with_suffix(".err")
    res = traced(cmd, err, lambda: measure("syscalls", url, key, stream, SYSCALL_DURATION,
                                           model, path, warmup=None, threads="1",
                                           connections="1"),
                 attached=len(pids) if cmd[0] == "strace" else 0)
    if res is None:
        return None, None, f"{cmd[0]} failed: {err.read_text().strip()[-300:]}"
    text = out.read_text() if out.exists() else ""
    if cmd[0] == "strace":
        total = [line.split() for line in text.splitlines() if line.endswith(" total")]
        if not total:
            return None, None, f"no strace summary: {err.read_text().strip()[-300:]}"
        return int(total[-1][3]) / res["requests"], text, None
    counted = [line.split(",")[0] for line in text.splitlines() if "raw_syscalls" in line]
    if not counted or not counted[0].isdigit():
        return None, None, f"perf stat counted nothing: {text.strip()[-300:]}"
    return int(counted[0]) / res["requests"], None, None


def profile(pids, url, key, stream, model, out, connections=None):
    """`perf record` of pids while wrk runs BENCH_PROFILE_DURATION: the top of the report by
    process and object, then by function, or why there is none."""
    if not shutil.which("perf"):
        return "no profile: perf is not installed"
    err = out.with_suffix(".err")
    cmd = ["perf", "record", "-F", "999", "-o", str(out), "-p", ",".join(map(str, sorted(pids)))]
    if traced(cmd, err, lambda: wrk(url, "/v1/chat/completions", key, stream, PROFILE_DURATION,
                                    model, threads="1" if connections == "1" else None,
                                    connections=connections)) is None:
        return f"no profile: perf record failed: {err.read_text().strip()[-300:]}"
    text = []
    for sort, n in (("comm,dso", 12), ("comm,dso,sym", 20)):
        r = subprocess.run(["perf", "report", "--stdio", "-i", str(out), "--sort", sort,
                            "--percent-limit", "1"], capture_output=True, text=True)
        lines = [line.rstrip() for line in r.stdout.splitlines()
                 if line.strip() and not line.startswith("#")]
        if not lines:
            return f"no profile: perf report: {r.stderr.strip()[-300:]}"
        text += [f"perf record -F 999, share of the samples by {sort.replace(',', ', ')}:"]
        text += lines[:n]
    return "\n".join(text)


def samples_per_request(data, requests, frequency=999):
    """{(object, function): CPU microseconds per request} of a `perf record -F frequency`."""
    r = subprocess.run(["perf", "report", "--stdio", "-n", "-i", str(data), "--sort", "dso,sym"],
                       capture_output=True, text=True)
    out = {}
    for line in r.stdout.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(.+)$", line)
        if m:
            out[(m.group(2), m.group(3).strip())] = int(m.group(1)) * 1e6 / frequency / requests
    return out


def profile_diff(on, off, n=15):
    """Lines: the total CPU per request of two profiles (samples_per_request), by object,
    and the n functions that grow most from off to on."""
    objects = sorted({k[0] for k in set(on) | set(off)},
                     key=lambda o: -sum(v for k, v in on.items() if k[0] == o))
    lines = [f"  total {sum(on.values()):.1f} vs {sum(off.values()):.1f} us; by object: "
             + ", ".join(f"{o} {sum(v for k, v in on.items() if k[0] == o):.1f} vs "
                         f"{sum(v for k, v in off.items() if k[0] == o):.1f}"
                         for o in objects[:6])]
    rows = sorted(((on.get(k, 0) - off.get(k, 0), k) for k in set(on) | set(off)), reverse=True)
    lines += [f"  {d:+7.3f} us  {k[1]} ({k[0]})" for d, k in rows[:n]]
    return lines


def audit_profile_diff(profiles):
    """Where auditing on spends the worker's CPU: the functions whose microseconds per request
    grow most from off to alone (each mode's mean over its measures)."""
    def mean(mode):
        runs = [p for m, p in profiles if m == mode]
        keys = set().union(*runs) if runs else set()
        return {k: sum(p.get(k, 0) for p in runs) / len(runs) for k in keys}
    return "\n".join(["worker CPU per request, alone vs off (perf record -F 999), the largest "
                      "growths:"] + profile_diff(mean("alone"), mean("off")))


def worker_profile(server, url, path, key, stream, model, out, cpus):
    """samples_per_request of server's workers while wrk runs BENCH_PROFILE_DURATION, or None."""
    res = {}

    def run():
        res.update(wrk(url, path, key, stream, PROFILE_DURATION, model, cpus=cpus))
        return res

    if traced(["perf", "record", "-F", "999", "-o", str(out), "-p",
               ",".join(map(str, sorted(server.worker_pids())))],
              out.with_suffix(".err"), run) is None or not res.get("requests"):
        return None
    return samples_per_request(out, res["requests"])


def compare_workers(work, base, gw, fake, cp, pair, stream):
    """Where the gateway worker's CPU per request goes beyond the baseline worker's: each
    worker on the first core, the fake provider and wrk on the second, the control plane
    paused (its ingestion is not the worker's)."""
    if not shutil.which("perf"):
        return "no worker profile: perf is not installed"
    pinned = os.cpu_count() >= 2 and WORKERS == 1
    got = {}
    os.kill(cp.proc.pid, signal.SIGSTOP)
    try:
        for target, server, k, m, path in pair:
            if pinned:
                pin_apart(server, fake)
            got[target] = worker_profile(server, server.url, path, k, stream, m,
                                         work / f"workers-{target}-{stream}.data",
                                         {1} if pinned else None)
    finally:
        os.kill(cp.proc.pid, signal.SIGCONT)
        if pinned:
            unpin(base, gw, fake)
    if not got.get("gateway") or not got.get("baseline"):
        return "no worker profile: perf record failed"
    return "\n".join(["worker CPU per request, gateway vs baseline (perf record -F 999, "
                      + ("each worker on core 0, wrk and the fake provider on core 1, "
                         if pinned else "")
                      + "the control plane paused):"]
                     + profile_diff(got["gateway"], got["baseline"], n=20))


def rss_kib(pids, field="VmRSS"):
    """Resident set of processes, KiB (VmRSS; RssAnon: their private part alone)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    return total


def soak(gw, key, model):
    """BENCH_SOAK seconds at a moderate load (BENCH_SOAK_CONNECTIONS connections, each pausing
    BENCH_SOAK_DELAY_MS before a request): the gateway workers' RSS every 5 s of it."""
    pids = gw.worker_pids()
    samples = []
    res = measure("soak", gw.url, key, False, f"{SOAK}s", model, warmup=None, threads="1",
                  connections=SOAK_CONNECTIONS, delay_ms=SOAK_DELAY_MS,
                  every=(5, lambda: samples.append(rss_kib(pids))))
    if gw.worker_pids() != pids or not samples:
        raise RuntimeError("soak: a gateway worker exited meanwhile, or no sample was taken")
    return res, samples


def targets(rows, latency, calls, native_rows, passthrough, redis_rows, gw, gwr, routed):
    """The issue's targets: (what, measured, target, True: PASS, False: MISS, None: n/a,
    the closing note of a miss: texts, and profiles to take as (server, stream, resource,
    connections))."""
    out = []
    by = {(name, target): mean([r for n, t, r in rows if (n, t) == (name, target)])
          for name, target, _ in rows}
    for name, stream in (("json", False), ("stream", True)):
        if (name, "gateway") not in by:
            continue
        b, g = by[(name, "baseline")], by[(name, "gateway")]
        ratio = g["rps"] / b["rps"]
        cpu = "CPU us/request, gateway vs baseline: " + ", ".join(
            f"{k} {v:.1f} vs {b['cpu'].get(k, 0):.1f}" for k, v in g["cpu"].items())
        note = [cpu]
        if (name, "dp alone") in by:
            a = by[(name, "dp alone")]
            note.append(f"the data plane alone (its records stored after the measure): "
                        f"{a['rps'] / b['rps']:.2f} of the baseline, nginx {a['cpu']['nginx']:.1f}"
                        f" us/request")
        out.append((f"gateway req/s / baseline's, {name}", f"{ratio:.2f}", ">= 0.90",
                    ratio >= 0.90, note + [(gw, stream, routed[stream], None),
                                           ("workers", stream)]))
    if redis_rows:
        ratio = (sum(r["rps"] for name, r in redis_rows if name == "redis")
                 / sum(r["rps"] for name, r in redis_rows if name == "local"))
        out.append(("Redis admission req/s / local admission's", f"{ratio:.2f}", ">= 0.95",
                    ratio >= 0.95, [(gwr, False, routed[False], None)]))
    for name, mode, r in native_rows:
        ratio = r["rps"] / passthrough[mode]["rps"]
        out.append((f"{name} {mode} req/s / OpenAI pass-through", f"{ratio:.2f}", ">= 0.85",
                    ratio >= 0.85, [(gw, mode == "stream", f"bench-{name}-{mode}", None)]))
    b, g = latency["baseline"], latency["gateway"]
    for pct, limit in (("p50", 30), ("p99", 50)):
        added = (g[pct] - b[pct]) * 1e3
        out.append((f"added latency {pct}, concurrency 1",
                    f"{added:.0f} us ({g[pct] * 1e3:.0f} - {b[pct] * 1e3:.0f})",
                    f"<= {limit} us", added <= limit, [(gw, False, routed[False], "1")]))
    (bc, btable, bwhy), (gc, gtable, gwhy) = calls["baseline"], calls["gateway"]
    if bc is None or gc is None:
        out.append(("system calls per request", "n/a: " + (bwhy or gwhy)[:60],
                    "<= baseline + 1", None, []))
    else:
        note = ("strace -c -f of the workers, by calls, gateway:\n" + strace_top(gtable)
                + "\nbaseline:\n" + strace_top(btable) if gtable
                else "perf stat counts no breakdown by system call")
        out.append(("system calls per request", f"{gc:.2f} (baseline {bc:.2f})",
                    f"<= {bc + 1:.2f}", gc <= bc + 1, [note]))
    return out


def mean(results):
    """The mean of measures: req/s, percentiles, CPU microseconds per request."""
    out = {k: sum(r[k] for r in results) / len(results) for k in ("rps", "p50", "p99")}
    out["cpu"] = {k: sum(r["cpu"][k] for r in results) / len(results) for k in results[0]["cpu"]}
    return out


def strace_top(table, n=12):
    """The header, the n most called and the total of a `strace -c` table."""
    lines = [line for line in table.splitlines() if line.strip()]
    return "\n".join(lines[:2 + n] + lines[-2:])


def soak_check(samples):
    start, end = samples[0], samples[-1]
    return [("gateway workers' RSS over the soak",
             f"{start} -> {end} KiB (max {max(samples)})", "end <= 1.1 x start",
             end <= start * 1.1, ["RSS KiB every 5 s: " + " ".join(map(str, samples))])]


def cp_counters(cp, dataplane):
    """The control plane's ingested records and busy seconds of a data plane."""
    with urllib.request.urlopen(cp.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"records": 0.0, "busy": 0.0}
    for line in text.splitlines():
        for key, name in (("records", "vmx_cp_ingest_records_total{"),
                          ("busy", "vmx_cp_ingest_busy_seconds_total{")):
            if line.startswith(name) and f'dataplane="{dataplane}"' in line:
                out[key] = float(line.rsplit(" ", 1)[1])
    return out


def cpu_seconds(pids):
    """User and system CPU seconds of processes (those gone count 0)."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def postgres_pids(pg):
    """The postmaster of pg's cluster and its children (backends, writers)."""
    with open(pg.data_dir / "postmaster.pid") as f:
        master = int(f.readline())
    out = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def wait_ingested(cp, dataplane, pg, limit=120):
    """Until the control plane's count of stored records stops moving and PostgreSQL is
    idle (autovacuum of the rows just stored would take CPU from the next measure)."""
    deadline = time.time() + limit
    last = cp_counters(cp, dataplane)["records"]
    busy = cpu_seconds(postgres_pids(pg))
    while time.time() < deadline:
        time.sleep(1.5)
        now = cp_counters(cp, dataplane)["records"]
        pg_busy = cpu_seconds(postgres_pids(pg))
        if now == last and pg_busy - busy < 0.05:
            return
        last, busy = now, pg_busy


def bench_ingest(api, ws, env, gw, key, cp, pg):
    """Saturation with auditing on, and the ingestion that follows it (see the docstring)."""
    import threading
    dataplane = f"http://127.0.0.1:{gw.port}"
    if not gw.audit:
        gw.audit = True
        gw.reload()
    check(gw.url, "/v1/chat/completions", key, False)
    wait_ingested(cp, dataplane, pg)      # earlier phases ingested first
    base = cp_counters(cp, dataplane)
    groups = {"gateway nginx": gw.worker_pids(), "control plane": [cp.proc.pid],
              "PostgreSQL": postgres_pids(pg)}
    cpu0 = {k: cpu_seconds(v) for k, v in groups.items()}
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), cp_counters(cp, dataplane)))
            stop.wait(0.25)

    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    sampler = threading.Thread(target=sample, daemon=True)
    t_start = time.time()
    sampler.start()
    res = wrk(gw.url, "/v1/chat/completions", key, False, INGEST_DURATION)
    t_end = time.time()
    if res["non2xx"] or res["requests"] == 0:
        print(res["raw"], file=sys.stderr)
        raise RuntimeError(f"ingest: {res['non2xx']} non-2xx answers")
    n = res["requests"]
    at_end = cp_counters(cp, dataplane)
    deadline = t_end + 300
    while cp_counters(cp, dataplane)["records"] - base["records"] < n:
        if time.time() > deadline:
            raise RuntimeError("ingest: the load's records not stored within 300 s")
        time.sleep(0.05)
    t_done = time.time()
    cpu = {k: (cpu_seconds(v) - cpu0[k]) * 1e6 / n for k, v in groups.items()}
    stop.set()
    sampler.join()
    path = f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/audit"
    while True:
        # the records were visible when the query that lists them all began (it reads a
        # snapshot of then): its own time, a count over the load, is not their delay
        asked = time.time()
        listed = api.request("GET", f"{path}?pageSize=1&startDate={since}")[1]["total"]
        # wrk counts the answers it read: a request cut at the end may have a record too
        if listed >= n or time.time() > t_done + 60:
            break
        time.sleep(0.05)
    t_listed, count_seconds = asked, time.time() - asked
    during = at_end["records"] - base["records"]
    busy = at_end["busy"] - base["busy"]
    return {"gateway": res, "requests": n, "seconds": t_end - t_start,
            "during": during / (t_end - t_start),
            "after": (n - during) / (t_done - t_end) if n > during else float("nan"),
            "lag": t_done - t_end, "listed": t_listed - t_end, "all_listed": listed >= n,
            "count_seconds": count_seconds,
            "capacity": during / busy if busy > 0 else float("nan"),
            "busy_share": busy / (t_end - t_start), "cpu": cpu}


def stopper(work, started):
    """cleanup(): stops what started holds, last started first, and removes work unless
    BENCH_KEEP=1; run on SIGTERM, SIGINT and SIGHUP too (then exits)."""
    def cleanup():
        for s in reversed(started):
            try:
                s.stop()
            except Exception as e:  # pragma: no cover
                print(f"bench: stopping {s}: {e}", file=sys.stderr)
        started.clear()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)

    def on_signal(signum, frame):
        cleanup()
        sys.exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    return cleanup


def main():
    for p, what in ((MODULE, "the module"), (CP_BIN, "the control plane")):
        if not p.exists():
            sys.exit(f"bench: {p.relative_to(ROOT)} missing ({what}): run ./build.sh build first")
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is not installed")
    from harness.api import Api
    from harness.control_plane import ControlPlane, write_secret_files
    from harness.postgres import Postgres
    from harness.redis import Redis

    work = Path(tempfile.mkdtemp(prefix="vmx-bench-"))
    started = []
    cleanup = stopper(work, started)
    try:
        fake_port, base_port = free_port(), free_port()
        fake = fake_provider(work, fake_port, PROVIDERS)
        started.append(fake)
        base = PlainNginx(work / "baseline", base_port, BASELINE.format(
            port=base_port, fake_port=fake_port,
            access_log=baseline_access_log(work / "baseline")))
        base.start()
        started.append(base)

        pg = Postgres(work / "pg", free_port())
        pg.start()
        started.append(pg)
        (work / "secrets").mkdir()
        token_file, master_key_file = write_secret_files(work / "secrets")
        gw_port, gwr_port, cp_port = free_port(), free_port(), free_port()
        dataplanes = [f"http://127.0.0.1:{p}" for p in ((gw_port, gwr_port) if LIMITS
                                                         else (gw_port,))]
        # Bedrock connections: the control plane assumes their role at a fake STS
        sts, sts_env = fake_sts()
        started.append(sts)
        cp = ControlPlane(work / "cp", cp_port, pg.dsn, dataplanes, token_file,
                          master_key_file, reconcile_interval=1, env=sts_env)
        cp.start()
        started.append(cp)
        ca_file = make_certs(work / "pki")[0]
        gw = Nginx(work / "gateway", gw_port, token_file, ca_file,
                   workers=WORKERS, log_level="warn", cp_addr=f"127.0.0.1:{cp_port}")
        gw.start()
        started.append(gw)
        gwr = None
        if LIMITS:
            # the same gateway with its capacity counters in Redis, configured and its audit
            # records ingested by the same control plane
            redis = Redis(work / "redis", free_port()).start()
            started.append(redis)
            gwr = Nginx(work / "gateway-redis", gwr_port, token_file, ca_file, workers=WORKERS,
                        log_level="warn", cp_addr=f"127.0.0.1:{cp_port}",
                        http_directives=f"vmx_redis {redis.addr} nodes=1;")
            gwr.start()
            started.append(gwr)

        # Every measure of the gateway but auditing's and ingestion's has all the issue
        # names: key auth, routing rules evaluated on each request (groups that do not match,
        # then one to the same model), admission in the local zone (a capacity never
        # reached), auditing on.
        api = Api(cp.url)
        api.login()
        ws, env, conn = bench_environment(api, fake_port)
        sconn = api.create_connection(ws["id"], env["id"], name="fake-stream", provider="openai",
                                      config={"apiKey": "sk-bench",
                                              "baseUrl": f"http://127.0.0.1:{fake_port}/stream/v1"})
        model = {"provider": "openai", "model": "gpt-bench", "connectionId": conn["id"]}
        smodel = dict(model, connectionId=sconn["id"])
        api.create_resource(ws["id"], env["id"], name="bench", model=model, fallbackModels=[],
                            useFallback=True, routing={"enabled": False, "conditions": []})
        routed = {False: "bench-routed", True: "bench-stream-routed"}
        for stream, m in ((False, model), (True, smodel)):
            api.create_resource(ws["id"], env["id"], name=routed[stream], model=m,
                                fallbackModels=[], useFallback=True, routing=routing_rules(m))
        native_models = native_resources(api, ws, env, fake_port) if PROVIDERS else []
        res = api.request("GET", f"/api/v1/workspaces/{ws['id']}/environments/{env['id']}/resources")[1]
        ids = [r["id"] for r in res["data"]]
        key = api.create_api_key(ws["id"], env["id"], name="bench", resources=ids, enabled=True)["key"]
        capacity = [{"period": "hour", "requests": 10**9, "tokens": 10**12}]
        limited = api.create_api_key(ws["id"], env["id"], name="bench-limited", resources=ids,
                                     enabled=True, enforceCapacity=True,
                                     capacity=capacity)["key"]
        deadline = time.time() + 20
        while True:
            try:
                check(gw.url, "/v1/chat/completions", key, False)
                for g in (gw, gwr) if gwr else (gw,):
                    for stream, rname in routed.items():
                        check(g.url, "/v1/chat/completions", limited, stream, rname)
                for _, stream, rname in native_models:   # Bedrock: once credentials came
                    check(gw.url, "/v1/chat/completions", limited, stream, rname)
                break
            except Exception as e:
                if time.time() > deadline:
                    raise RuntimeError(f"gateway not serving the bench config: {e}")
                time.sleep(0.2)

        def groups(server):
            if server is base:
                return {"nginx": base.worker_pids(), "fake provider": fake.worker_pids()}
            return {"nginx": server.worker_pids(), "control plane": [cp.proc.pid],
                    "PostgreSQL": postgres_pids(pg), "fake provider": fake.worker_pids()}

        scenarios = [("json", False)] + ([("stream", True)] if STREAM else [])

        def pair(stream):
            """The baseline and the gateway: (target, server, key, model, path)."""
            return (("baseline", base, None, None,
                     "/stream/v1/chat/completions" if stream else "/v1/chat/completions"),
                    ("gateway", gw, limited, routed[stream], "/v1/chat/completions"))

        # baseline, gateway, gateway, baseline: the machine's other load drifting meanwhile
        # weighs on both alike.  Between them, "dp alone": the gateway with the control plane
        # paused, so that the records it spools are stored after the measure (on a machine of
        # its own, ingestion does not share the data plane's cores); each followed by their
        # storing, which the next measure would otherwise share its cores with.
        rows = []
        dataplane = f"http://127.0.0.1:{gw.port}"
        for name, stream in scenarios:
            b, g = pair(stream)
            for label, (_, server, k, m, path), alone in (
                    ("baseline", b, False), ("gateway", g, False), ("dp alone", g, True),
                    ("dp alone", g, True), ("gateway", g, False), ("baseline", b, False)):
                if alone:
                    os.kill(cp.proc.pid, signal.SIGSTOP)
                try:
                    res = measure(f"{name} {label}", server.url, k, stream, DURATION, m, path,
                                  warmup=WARMUP, groups=groups(server))
                finally:
                    if alone:
                        os.kill(cp.proc.pid, signal.SIGCONT)
                rows.append((name, label, res))
                if alone:
                    wait_ingested(cp, dataplane, pg)
            gw.check_error_log(everything=True)

        latency = {target: measure(f"latency {target}", server.url, k, False, LATENCY_DURATION,
                                   m, path, threads="1", connections="1")
                   for target, server, k, m, path in pair(False)}
        calls = {target: syscalls(server.worker_pids(), server.url, path, k, False, m,
                                  work / f"syscalls-{target}.txt")
                 for target, server, k, m, path in pair(False)}

        # each mode's translations between two measures of the OpenAI pass-through, whose
        # mean is their reference: the machine's other load drifts less between neighbours
        native_rows, passthrough = [], {}
        for mode, stream in scenarios:
            paths = [(name, rname) for name, s, rname in native_models if s == stream]
            if not paths:
                continue
            ref = [measure(f"{mode} pass-through", gw.url, limited, stream, PROVIDER_DURATION,
                           routed[stream])]
            for name, rname in paths:
                native_rows.append((name, mode, measure(rname, gw.url, limited, stream,
                                                        PROVIDER_DURATION, rname)))
            ref.append(measure(f"{mode} pass-through", gw.url, limited, stream,
                               PROVIDER_DURATION, routed[stream]))
            passthrough[mode] = mean(ref)
        gw.check_error_log(everything=True)

        redis_rows = bench_redis(gw, gwr, limited, routed[False]) if gwr else []

        # the OpenAI JSON path with auditing on while the control plane ingests, then on with
        # the control plane paused (the data plane alone: records spooled, stored after the
        # measure) and off (nginx reloaded without the spool) in turns, and ingesting again
        audit_rows = []
        audit_profiles = []
        # With two cores or more, the gateway's worker has the first core and wrk and the fake
        # provider the second, so that the worker's own cost sets its throughput.
        modes = ("ingest",) + ("alone", "off") * AUDIT_ROUNDS + ("alone", "ingest")
        pinned = AUDIT and os.cpu_count() >= 2 and WORKERS == 1
        client_cpus = {1} if pinned else None
        for mode in (modes if AUDIT else ()):
            if gw.audit != (mode != "off"):
                gw.audit = mode != "off"
                gw.reload()
            if pinned:
                pin_apart(gw, fake)
            check(gw.url, "/v1/chat/completions", key, False)
            wait_ingested(cp, dataplane, pg)
            if PROVIDER_WARMUP and PROVIDER_WARMUP not in ("0", "0s"):
                wrk(gw.url, "/v1/chat/completions", key, False, PROVIDER_WARMUP,
                    cpus=client_cpus)
            if mode == "alone":
                os.kill(cp.proc.pid, signal.SIGSTOP)
            cpu0 = cpu_seconds(gw.worker_pids())
            try:
                run = lambda: wrk(gw.url, "/v1/chat/completions", key, False, AUDIT_DURATION,
                                  cpus=client_cpus)
                data = work / f"audit-{len(audit_rows)}-{mode}.data"
                if AUDIT_PROFILE and mode != "ingest" and shutil.which("perf"):
                    res = traced(["perf", "record", "-F", "999", "-o", str(data), "-p",
                                  ",".join(map(str, gw.worker_pids()))],
                                 data.with_suffix(".err"), run) or run()
                else:
                    res = run()
                res["worker_us"] = (cpu_seconds(gw.worker_pids()) - cpu0) * 1e6 / max(
                    res["requests"], 1)
            finally:
                if mode == "alone":
                    os.kill(cp.proc.pid, signal.SIGCONT)
            if res["non2xx"] or res["requests"] == 0:
                print(res["raw"], file=sys.stderr)
                raise RuntimeError(f"audit {mode}: {res['non2xx']} non-2xx answers")
            if data.exists():
                audit_profiles.append((mode, samples_per_request(data, max(res["requests"], 1))))
            audit_rows.append((mode, res))
        if pinned:
            unpin(gw, fake)
        gw.check_error_log(everything=True)

        ingest = bench_ingest(api, ws, env, gw, key, cp, pg) if INGEST else None
        gw.check_error_log(everything=True)

        # the misses' profiles, while everything still runs as it was measured
        checks = targets(rows, latency, calls, native_rows, passthrough, redis_rows, gw,
                         gwr, routed)
        profiles = {}
        for why in (w for *_, ok, note in checks if ok is False for w in note):
            if isinstance(why, tuple) and why not in profiles and why[0] == "workers":
                profiles[why] = compare_workers(work, base, gw, fake, cp, pair(why[1]), why[1])
            elif isinstance(why, tuple) and why not in profiles:
                server, stream, rname, c = why
                pids = server.worker_pids() | {cp.proc.pid} | set(postgres_pids(pg))
                profiles[why] = profile(pids, server.url, limited, stream, rname,
                                        work / f"perf-{len(profiles)}.data", c)

        soak_res = soak(gw, limited, routed[False]) if SOAK > 0 else None
        gw.check_error_log(everything=True)

        print()
        print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}, nginx workers per server: {WORKERS}, "
              f"cpus: {os.cpu_count()}; the gateway: key auth, routing rules, local admission, "
              "auditing on")
        cpu_names = ("nginx", "control plane", "PostgreSQL", "fake provider")
        print(f"{'scenario':<8} {'target':<9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}   "
              "CPU us/request: " + ", ".join(cpu_names))
        for name, target, r in rows:
            print(f"{name:<8} {target:<9} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}   "
                  + " ".join(f"{r['cpu'][k]:>6.1f}" if k in r["cpu"] else f"{'-':>6}"
                             for k in cpu_names)
                  + (f"   {r['errors']}" if r["errors"] else ""))
        print()
        print(f"concurrency 1 (wrk -t1 -c1 -d{LATENCY_DURATION}), JSON")
        for target, r in latency.items():
            print(f"{target:<9} {r['rps']:>10.0f} req/s   p50 {r['p50'] * 1e3:.0f} us   "
                  f"p99 {r['p99'] * 1e3:.0f} us")
        print(f"system calls per request (concurrency 1, {SYSCALL_DURATION}): "
              + ", ".join(f"{t} {c:.2f}" if c is not None else f"{t} n/a ({why})"
                          for t, (c, _, why) in calls.items()))
        if native_rows:
            print()
            print(f"translation paths through the gateway (wrk -d{PROVIDER_DURATION}), ratio to "
                  "the gateway's OpenAI pass-through of the same mode (mean of a measure before "
                  "and one after)")
            print(f"{'path':<10} {'mode':<7} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'req/s ratio':>12} {'p50 ratio':>10}")
            for mode, r in passthrough.items():
                print(f"{'openai':<10} {mode:<7} {r['rps']:>10.0f} {r['p50']:>8.2f} "
                      f"{r['p99']:>8.2f}")
            for name, mode, r in native_rows:
                o = passthrough[mode]
                print(f"{name:<10} {mode:<7} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                      f"{r['rps'] / o['rps']:>12.2f} {r['p50'] / o['p50']:>10.2f}"
                      + (f"   {r['errors']}" if r["errors"] else ""))
        if redis_rows:
            print()
            print(f"capacity admission (wrk -d{LIMITS_DURATION}, OpenAI JSON path, in turns): "
                  "counters in the local zone, in Redis (vmx_redis)")
            print(f"{'counters':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
            for name, r in redis_rows:
                print(f"{name:<10} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}"
                      + (f"   {r['errors']}" if r["errors"] else ""))
        if audit_rows:
            print()
            print(f"auditing (wrk -d{AUDIT_DURATION}, OpenAI JSON path; ingest: records spooled and "
                  "stored by the control plane meanwhile, on the same cores; alone: the control "
                  "plane paused, records stored after the measure; off: no spool)")
            print(f"{'audit':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'worker us/req':>14}")
            for name, r in audit_rows:
                print(f"{name:<10} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                      f"{r['worker_us']:>14.1f}" + (f"   {r['errors']}" if r["errors"] else ""))
            def median(mode, k):
                v = sorted(r[k] for n, r in audit_rows if n == mode)
                return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2
            for mode, what in (("alone", "the data plane's own cost"),
                               ("ingest", "with ingestion on the same cores")):
                print(f"{'ratio ' + mode:<12} "
                      + " ".join(f"{median(mode, k) / median('off', k):>8.2f}"
                                 for k in ("rps", "p50", "p99"))
                      + f" {median('off', 'worker_us') / median(mode, 'worker_us'):>14.2f}"
                      + f"   (on / off, medians: {what})")
            if audit_profiles:
                print(audit_profile_diff(audit_profiles))
        if ingest:
            g = ingest["gateway"]
            print()
            print(f"audit ingestion (wrk -d{INGEST_DURATION} at saturation, OpenAI JSON path, "
                  "payloads stored; the control plane and PostgreSQL on the same cores)")
            print(f"gateway            {g['rps']:>10.0f} req/s   {ingest['requests']} requests, "
                  f"p50 {g['p50']:.2f} ms, p99 {g['p99']:.2f} ms")
            print(f"stored during load {ingest['during']:>10.0f} records/s   ingest thread busy "
                  f"{100 * ingest['busy_share']:.0f}% of the time")
            print(f"stored after load  {ingest['after']:>10.0f} records/s   last record stored "
                  f"{ingest['lag']:.2f} s after the load, listed by the audit API after "
                  f"{ingest['listed']:.2f} s (the listing query itself took "
                  f"{ingest['count_seconds']:.2f} s)"
                  + ("" if ingest["all_listed"] else " (NOT ALL)"))
            print(f"ingestion capacity {ingest['capacity']:>10.0f} records/s of busy time")
            print(f"{'ratio':<18} {ingest['capacity'] / g['rps']:>10.2f}   "
                  "(ingestion capacity / gateway req/s; >= 1 keeps pace)")
            print("CPU per request (us, user + system, through the drain): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in ingest["cpu"].items()))
        if soak_res:
            r, samples = soak_res
            print()
            print(f"soak: {SOAK} s, {SOAK_CONNECTIONS} connections pausing {SOAK_DELAY_MS} ms "
                  f"before each request ({r['rps']:.0f} req/s); gateway workers' RSS KiB every "
                  "5 s: " + " ".join(map(str, samples)))
            checks += soak_check(samples)

        print()
        print(f"{'target':<46} {'measured':<34} {'target':<18} result")
        for what, measured, target, ok, _ in checks:
            print(f"{what:<46} {measured:<34} {target:<18} "
                  + {True: "PASS", False: "MISS", None: "n/a"}[ok])
        misses = [(what, note) for what, _, _, ok, note in checks if ok is False and note]
        if misses:
            print()
            print("Closing note: what the misses' profiles say.")
        shown = {}
        for what, note in misses:
            print()
            print(f"{what}:")
            for w in note:
                if isinstance(w, tuple) and w in shown:
                    print(f"(the profile of {shown[w]})")
                elif isinstance(w, tuple):
                    print(profiles[w])
                    shown[w] = what
                else:
                    print(w)
        return 0
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
