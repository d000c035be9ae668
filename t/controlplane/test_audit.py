"""Audit and usage records: the control plane reads a data plane's spool
(GET /vmx/spool and its files' ranges), stores each batch with its cursor in
one transaction, deletes a finished file only after committing it whole, keeps
what is no record as dead letters, and answers GET .../audit and POST
.../usage; partitions ahead and retention; GET /metrics."""
import datetime as dt
import json
import math
import random
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from cphelpers import unique, wait_ingested, wait_until
from harness import spool

UTC = dt.timezone.utc
PROVIDERS = {"openai": ["gpt-4o", "gpt-4o-mini"], "anthropic": ["claude-3-5-haiku"]}
STATUSES = [200, 200, 200, 200, 429, 500, 400, None]
USAGE_FIELDS = ["promptTokens", "completionTokens", "totalTokens", "tokensPerSecond",
                "timeToFirstToken", "requestDuration", "providerDuration", "gateDuration",
                "routingDuration"]


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class Env:
    """A workspace and environment of the audit stack, and record ids."""

    def __init__(self, api):
        ws = api.create_workspace(unique("ws"))
        self.ws, self.env = ws["id"], api.create_environment(ws["id"], "production")["id"]
        self.resources = [str(uuid.uuid4()) for _ in range(2)]
        self.connections = [str(uuid.uuid4()) for _ in range(2)]
        self.api_keys = [str(uuid.uuid4()) for _ in range(2)]

    def path(self, tail):
        return f"/api/v1/workspaces/{self.ws}/environments/{self.env}{tail}"


def attempt(rng, env, started, status):
    provider = rng.choice(sorted(PROVIDERS))
    tokens = rng.random() < 0.8 and status == 200
    prompt, completion = rng.randint(1, 500), rng.randint(1, 800)
    return {"provider": provider, "model": rng.choice(PROVIDERS[provider]),
            "connectionId": rng.choice(env.connections), "statusCode": status,
            "failureReason": None if status == 200 else rng.choice(["rate_limited", "error"]),
            "startedAt": iso(started), "providerDuration": round(rng.uniform(5, 900), 3),
            "timeToFirstToken": round(rng.uniform(1, 300), 3) if tokens else None,
            "promptTokens": prompt if tokens else None,
            "completionTokens": completion if tokens else None,
            "totalTokens": prompt + completion if tokens else None,
            "tokensPerSecond": round(rng.uniform(10, 200), 3) if tokens else None}


def make_record(rng, env, when, marker=""):
    nattempts = rng.choice([0, 1, 1, 1, 2, 3])
    attempts = [attempt(rng, env, when, rng.choice(STATUSES) if i < nattempts - 1 else
                        rng.choice([200, 200, 429, 500]))
                for i in range(nattempts)]
    last = attempts[-1] if attempts else None
    status = last["statusCode"] if last else rng.choice([401, 429, 400])
    rid = str(uuid.uuid4())
    return {"v": 1, "id": rid, "timestamp": iso(when), "workspaceId": env.ws,
            "environmentId": env.env, "requestId": rid,
            "correlationId": rng.choice(["corr-a", "corr-b", None]),
            "resourceId": rng.choice(env.resources), "resource": "chat",
            "apiKeyId": rng.choice(env.api_keys), "sourceIp": "127.0.0.1", "method": "POST",
            "path": "/v1/chat/completions", "statusCode": status,
            "errorCode": None if status == 200 else "upstream_error",
            "errorMessage": None if status == 200 else "failed",
            "provider": last["provider"] if last else None,
            "model": last["model"] if last else None,
            "connectionId": last["connectionId"] if last else None,
            "stream": rng.random() < 0.5, "duration": round(rng.uniform(10, 2000), 3),
            "gateDuration": round(rng.uniform(0, 2), 3),
            "routingDuration": round(rng.uniform(0, 2), 3),
            "events": [{"type": "fallback", "timestamp": iso(when)}] if nattempts > 1 else [],
            "attempts": attempts,
            "request": {"model": "gpt-4o", "messages": [{"role": "user",
                                                         "content": "hi " + marker}]},
            "response": {"choices": [{"message": {"content": "hello " + marker}}]},
            "payloadTruncated": False}


def make_records(env, n, start, span_minutes, seed, marker=""):
    rng = random.Random(seed)
    return [make_record(rng, env, start + dt.timedelta(
        seconds=rng.uniform(0, span_minutes * 60)), marker) for _ in range(n)]


def sql(stack, text):
    return stack.pg.psql(text)


def count(stack, table, env):
    return int(sql(stack, f"SELECT count(*) FROM {table} WHERE environment_id = '{env.env}'"))


def usage_rows(records):
    """What the control plane stores in usage_records: one row per attempt,
    one for a request that reached no provider."""
    rows = []
    for r in records:
        for i, a in enumerate(r["attempts"] or [None]):
            src = a or r
            rows.append({
                "final": i + 1 == max(len(r["attempts"]), 1), "attempt": a is not None,
                "time": dt.datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=UTC),
                "provider": src["provider"], "model": src["model"],
                "resourceId": r["resourceId"], "connectionId": src["connectionId"],
                "apiKeyId": r["apiKeyId"], "statusCode": src["statusCode"],
                "failureReason": a["failureReason"] if a else None,
                "promptTokens": a and a["promptTokens"],
                "completionTokens": a and a["completionTokens"],
                "totalTokens": a and a["totalTokens"],
                "tokensPerSecond": a and a["tokensPerSecond"],
                "timeToFirstToken": a and a["timeToFirstToken"],
                "requestDuration": r["duration"],
                "providerDuration": a and a["providerDuration"],
                "gateDuration": r["gateDuration"], "routingDuration": r["routingDuration"]})
    return rows


def check_minutely_consistent(stack, env):
    """usage_minutely holds exactly the sums of usage_records (nothing counted twice)."""
    raw = sql(stack, "SELECT count(*) FILTER (WHERE final), count(*) FILTER (WHERE attempt),"
                     " coalesce(sum(prompt_tokens), 0),"
                     " round(coalesce(sum(provider_duration), 0)::numeric, 3)"
                     f" FROM usage_records WHERE environment_id = '{env.env}'")
    agg = sql(stack, "SELECT coalesce(sum(request_count), 0), coalesce(sum(attempt_count), 0),"
                     " coalesce(sum(prompt_tokens_sum), 0),"
                     " round(coalesce(sum(provider_duration_sum), 0)::numeric, 3)"
                     f" FROM usage_minutely WHERE environment_id = '{env.env}'")
    assert raw == agg, (raw, agg)


def check_stored(stack, env, records):
    assert count(stack, "audit_records", env) == len(records)
    ids = set(sql(stack, "SELECT id FROM audit_records WHERE environment_id = "
                         f"'{env.env}'").split())
    assert ids == {r["id"] for r in records}
    assert count(stack, "usage_records", env) == len(usage_rows(records))
    check_minutely_consistent(stack, env)


@pytest.fixture
def aenv(audit_stack):
    return Env(audit_stack.api)


@pytest.fixture(autouse=True)
def _dataplane_healthy(request):
    """Every test leaves the fake data plane answering normally."""
    yield
    if "audit_stack" in request.fixturenames:
        dp = request.getfixturevalue("audit_stack").dataplane
        dp.max_bytes = dp.records_status = dp.delete_status = dp.on_delete = None
        dp.finished = False


def now():
    return dt.datetime.now(UTC)


# ---------------------------------------------------------------- ingestion
def test_ingested_once_cursor_stored_delete_after_commit(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    seen = []

    def on_delete(name):
        # the file deleted is committed whole in PostgreSQL already
        seen.append((dp.end_cursor(), sql(s, "SELECT cursor FROM record_cursors"
                                             f" WHERE dataplane = '{dp.url}'")))

    dp.on_delete = on_delete
    dp.max_bytes = 8192                 # many reads: the puller loops while they come
    records = make_records(aenv, 300, now() - dt.timedelta(minutes=30), 30, seed=1)
    gets = dp.file_gets
    dp.add_records(records)
    wait_ingested(s)
    check_stored(s, aenv, records)
    assert dp.file_gets - gets >= 300 * 1000 // 8192
    assert not seen                     # a file still written is never deleted
    end = dp.end_cursor()
    dp.finished = True
    wait_until(lambda: dp.deletes, what="the finished file deleted")
    assert seen and seen[0] == (end, end), seen

    # the stored row is the record: every field, payloads included
    r = records[0]
    status, body, _ = s.api.request("GET", aenv.path(f"/audit/{r['id']}"))
    assert status == 200, body
    for key in ("id", "timestamp", "workspaceId", "environmentId", "requestId",
                "correlationId", "resourceId", "resource", "apiKeyId", "connectionId",
                "provider", "model", "sourceIp", "method", "path", "stream", "statusCode",
                "duration", "gateDuration", "routingDuration", "errorCode", "errorMessage",
                "events", "attempts", "request", "response", "payloadTruncated"):
        assert body[key] == r[key], key
    assert body["requestFormat"] == body["responseFormat"] == "json"


def test_redelivered_records_ignored(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    records = make_records(aenv, 50, now() - dt.timedelta(minutes=5), 5, seed=2)
    dp.add_records(records)
    wait_ingested(s)
    before = sql(s, "SELECT sum(request_count), sum(total_tokens_sum) FROM usage_minutely"
                    f" WHERE environment_id = '{aenv.env}'")
    dp.add_records(records[10:30])      # a data plane sending some again
    wait_ingested(s)
    check_stored(s, aenv, records)
    assert sql(s, "SELECT sum(request_count), sum(total_tokens_sum) FROM usage_minutely"
                  f" WHERE environment_id = '{aenv.env}'") == before


def test_api_key_last_used(audit_stack, aenv):
    """lastUsedAt: the newest record of the key, written per batch, never moved back; observed
    state, so no new config version."""
    s, dp = audit_stack, audit_stack.dataplane
    key = s.api.create_api_key(aenv.ws, aenv.env, name="used")
    assert key["lastUsedAt"] is None
    aenv.api_keys = [key["id"]]
    version = sql(s, "SELECT version FROM config_version")
    records = make_records(aenv, 20, now() - dt.timedelta(minutes=10), 5, seed=7)
    dp.add_records(records)
    wait_ingested(s)
    path = aenv.path(f"/api-keys/{key['id']}")
    assert s.api.request("GET", path)[1]["lastUsedAt"] == max(r["timestamp"] for r in records)
    dp.add_records(make_records(aenv, 3, now() - dt.timedelta(minutes=40), 5, seed=8))
    wait_ingested(s)
    assert s.api.request("GET", path)[1]["lastUsedAt"] == max(r["timestamp"] for r in records)
    assert sql(s, "SELECT version FROM config_version") == version
    status, err, _ = s.api.request("PATCH", path, {"lastUsedAt": None})
    assert status == 400 and err["error"]["details"]["field"] == "lastUsedAt"

def dead_letters(stack, dataplane):
    return sql(stack, "SELECT position || ' ' || reason FROM audit_dead_letters"
                      f" WHERE dataplane = '{dataplane}' ORDER BY id").splitlines()


def test_malformed_records_become_dead_letters(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    rng = random.Random(3)
    good = [make_record(rng, aenv, now()) for _ in range(5)]
    bad_utf8 = make_record(rng, aenv, now())
    bad_utf8["errorMessage"] = "MARK"
    line = json.dumps(bad_utf8).encode().replace(b"MARK", b"bad \xff\xfe byte")
    odd = make_record(rng, aenv, now())
    odd.update(statusCode=1e12, duration="slow", workspaceId="nope", stream="yes",
               attempts=[{"promptTokens": -4, "totalTokens": 1.5, "statusCode": "200"}])
    before = len(dead_letters(s, dp.url))
    start = len(dp.spool)
    garbage = b'{"id": "forged"}\n\x00\xffVMX2 9 9 9 00000000\n' + b"z" * 70000
    dp.add_records([good[0]])
    dp.add_raw(garbage)                                      # between valid records
    dp.add_records([{"id": "not-a-uuid", "timestamp": iso(now())},
                    {"id": str(uuid.uuid4()), "timestamp": "2026-02-31T00:00:00Z"},
                    {"id": str(uuid.uuid4())}, good[1]])
    dp.add_raw(spool.frame(line))
    dp.add_raw(spool.frame(b"[17]") + spool.frame(b"{not json") + spool.frame(b"\"a string\""))
    dp.add_records([odd, good[2]])
    torn = spool.record(good[3])
    dp.add_raw(torn[:-1] + b"X")                             # its end byte is not "\n"
    dp.add_records([good[4]])
    wait_ingested(s)
    stored = set(sql(s, "SELECT id FROM audit_records"
                        f" WHERE environment_id = '{aenv.env}'").split())
    assert stored == {r["id"] for r in good[:3] + [good[4], bad_utf8, odd]}
    status, body, _ = s.api.request("GET", aenv.path(f"/audit/{bad_utf8['id']}"))
    assert status == 200 and body["errorMessage"] == "bad ?? byte"
    # the odd record's invalid values are nulls; the record is kept
    oid = odd["id"]
    assert sql(s, f"SELECT status_code IS NULL AND duration IS NULL AND stream IS NULL"
                  f" FROM audit_records WHERE id = '{oid}'") == "t"
    assert sql(s, "SELECT prompt_tokens IS NULL AND total_tokens IS NULL AND status_code IS NULL"
                  f" FROM usage_records WHERE request_id = '{oid}'") == "t"
    # every piece of garbage is a dead letter, with where it was and why
    dead = dead_letters(s, dp.url)[before:]
    assert len(dead) == 9, dead
    at = start + len(spool.record(good[0]))
    assert dead[0] == f"{dp.spool_file}:{at} not a record"
    # a false start inside the garbage is found out, and skipped to the next record
    assert dead[1].startswith(f"{dp.spool_file}:{at + garbage.index(b'VMX2')} ")
    assert "no valid id or timestamp" in dead[2] and "no valid id" in dead[4]
    assert all("not a JSON object" in d for d in dead[5:8]), dead
    assert "record without its end" in dead[8], dead
    raw = sql(s, "SELECT length || ' ' || octet_length(raw) FROM audit_dead_letters"
                 f" WHERE dataplane = '{dp.url}' ORDER BY id LIMIT 1 OFFSET {before + 1}")
    assert raw == f"{len(garbage) - garbage.index(b'VMX2')} 65536"   # its size, a capped copy
    wait_until(lambda: metric_value(s, "vmx_cp_ingest_dead_letters_total",
                                    f'dataplane="{dp.url}"') >= 9, what="dead letter count")
    status, body, _ = s.api.request("GET", "/api/v1/audit/dead-letters?pageSize=1000")
    assert status == 200 and body["total"] >= 9
    assert any(d["reason"] == "not a record" for d in body["data"])


def test_postgres_outage_loses_nothing(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    dp.max_bytes = 16384
    records = make_records(aenv, 400, now() - dt.timedelta(minutes=10), 10, seed=4)
    stop = threading.Event()

    def feed():
        for i in range(0, len(records), 10):
            dp.add_records(records[i:i + 10])
            time.sleep(0.05)
        stop.set()

    feeder = threading.Thread(target=feed)
    feeder.start()
    time.sleep(0.5)
    s.pg.stop()
    try:
        time.sleep(1.5)
        status, body, _ = s.api.request("GET", "/api/v1/health", token=None)
        assert status == 503, body          # the API answers on
        time.sleep(1.5)
    finally:
        s.pg.start()
    feeder.join()
    wait_ingested(s, timeout=60)
    check_stored(s, aenv, records)
    assert "ingest dataplane=" + dp.url + " database" in s.cp.log_text()


def test_control_plane_restart_mid_way(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    dp.max_bytes = 4096
    dp.delete_status = 500              # committed but never deleted
    records = make_records(aenv, 300, now() - dt.timedelta(minutes=10), 10, seed=5)
    dp.add_records(records[:150])
    wait_until(lambda: count(s, "audit_records", aenv) > 20, what="first batches")
    s.cp.proc.kill()                    # no clean stop
    s.cp.proc.wait()
    s.cp.proc = None
    dp.add_records(records[150:])
    s.cp.start()
    wait_until(lambda: count(s, "audit_records", aenv) > 200, what="more batches")
    assert s.cp.stop() == 0             # a clean stop in the middle too
    s.cp.start()
    dp.finished = True
    wait_ingested(s, timeout=60)
    check_stored(s, aenv, records)
    dp.delete_status = None
    wait_until(lambda: dp.deletes, what="the file deleted")


def test_dataplane_down_or_failing_is_skipped(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    assert f"ingest dataplane={s.dead_dataplane_url} fetch:" in s.cp.log_text()
    dp.records_status = 503
    records = make_records(aenv, 20, now(), 1, seed=6)
    dp.add_records(records)
    gets = dp.records_gets
    wait_until(lambda: dp.records_gets > gets + 3, what="retries")
    assert count(s, "audit_records", aenv) == 0
    assert f"ingest dataplane={dp.url} fetch: GET /vmx/spool: HTTP 503" in s.cp.log_text()
    dp.records_status = None
    wait_ingested(s)
    check_stored(s, aenv, records)


def test_secrets_and_payloads_never_logged(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    marker = "payload-" + uuid.uuid4().hex
    dp.add_records(make_records(aenv, 5, now(), 1, seed=7, marker=marker))
    wait_ingested(s)
    s.api.request("GET", "/metrics", token=s.metrics_token)
    log = s.cp.log_text()
    assert marker not in log
    assert dp.token not in log
    assert s.metrics_token not in log


# ---------------------------------------------------------------- partitions
def partitions(stack):
    return set(sql(stack, "SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                          " ON c.oid = i.inhrelid").split())


def day_name(table, day):
    return f"{table}_p{day.strftime('%Y%m%d')}"


def test_partitions_ahead_on_demand_and_retention(audit_stack, aenv):
    s, dp = audit_stack, audit_stack.dataplane
    today = now().date()
    parts = partitions(s)
    for table in ("audit_records", "usage_records", "usage_minutely"):
        for ahead in range(4):
            assert day_name(table, today + dt.timedelta(days=ahead)) in parts

    # records of days without a partition create it in their transaction
    old = make_records(aenv, 3, now() - dt.timedelta(days=40), 5, seed=8)
    recent = make_records(aenv, 3, now() - dt.timedelta(days=10), 5, seed=9)
    dp.add_records(old + recent)
    wait_ingested(s)
    check_stored(s, aenv, old + recent)
    parts = partitions(s)
    old_day = (now() - dt.timedelta(days=40)).date()
    recent_day = (now() - dt.timedelta(days=10)).date()
    assert day_name("audit_records", old_day) in parts
    assert day_name("usage_minutely", recent_day) in parts

    # the retention (30 days) drops the old day at the next maintenance
    s.cp.stop()
    s.cp.start()
    wait_until(lambda: day_name("audit_records", old_day) not in partitions(s),
               what="the old partition dropped")
    parts = partitions(s)
    assert not any(day_name(t, old_day) in parts
                   for t in ("audit_records", "usage_records", "usage_minutely"))
    assert day_name("usage_records", recent_day) in parts
    assert set(sql(s, "SELECT id FROM audit_records WHERE environment_id = "
                      f"'{aenv.env}'").split()) == {r["id"] for r in recent}


# ---------------------------------------------------------------- GET /audit
@pytest.fixture(scope="module")
def audit_data(audit_stack):
    env = Env(audit_stack.api)
    records = make_records(env, 120, now() - dt.timedelta(hours=3), 180, seed=10)
    audit_stack.dataplane.add_records(records)
    wait_ingested(audit_stack)
    return env, records


def audit_list(stack, env, **query):
    qs = urllib.parse.urlencode(query)
    status, body, _ = stack.api.request("GET", env.path(f"/audit?{qs}"))
    assert status == 200, body
    return body


def newest_first(records):
    return sorted(records, key=lambda r: (r["timestamp"], r["id"]), reverse=True)


def test_audit_list_filters_and_pagination(audit_stack, audit_data):
    s = audit_stack
    env, records = audit_data
    body = audit_list(s, env, pageSize=1000)
    assert body["total"] == len(records) and body["pageIndex"] == 0
    assert body["pageSize"] == 1000
    assert [a["id"] for a in body["data"]] == [r["id"] for r in newest_first(records)]
    assert all("request" not in a and "response" not in a for a in body["data"])

    pages = [audit_list(s, env, pageIndex=i, pageSize=25) for i in range(5)]
    assert [len(p["data"]) for p in pages] == [25, 25, 25, 25, 20]
    assert [a["id"] for p in pages for a in p["data"]] == [a["id"] for a in body["data"]]
    assert all(p["total"] == len(records) for p in pages)

    mid = sorted(r["timestamp"] for r in records)[60]
    late = sorted(r["timestamp"] for r in records)[100]
    checks = [
        ({"startDate": mid}, lambda r: r["timestamp"] >= mid),
        ({"endDate": mid}, lambda r: r["timestamp"] <= mid),
        ({"startDate": mid, "endDate": late}, lambda r: mid <= r["timestamp"] <= late),
        ({"resourceId": env.resources[0]}, lambda r: r["resourceId"] == env.resources[0]),
        ({"connectionId": env.connections[1]},            # any attempt's
         lambda r: env.connections[1] in [r["connectionId"]]
         + [a["connectionId"] for a in r["attempts"]]),
        ({"model": "gpt-4o"}, lambda r: r["model"] == "gpt-4o"),
        ({"statusCode": 429}, lambda r: r["statusCode"] == 429),
        ({"apiKeyId": env.api_keys[0]}, lambda r: r["apiKeyId"] == env.api_keys[0]),
        ({"correlationId": "corr-a"}, lambda r: r["correlationId"] == "corr-a"),
        ({"model": "gpt-4o-mini", "statusCode": 200, "apiKeyId": env.api_keys[1]},
         lambda r: r["model"] == "gpt-4o-mini" and r["statusCode"] == 200
         and r["apiKeyId"] == env.api_keys[1]),
    ]
    for query, keep in checks:
        want = [r["id"] for r in newest_first(filter(keep, records))]
        got = audit_list(s, env, pageSize=1000, **query)
        assert [a["id"] for a in got["data"]] == want, query
        assert got["total"] == len(want), query
        assert want or query.get("statusCode"), query


def test_audit_scoped_and_validated(audit_stack, audit_data):
    s = audit_stack
    env, records = audit_data
    other = Env(s.api)
    assert audit_list(s, other)["total"] == 0
    status, _, _ = s.api.request("GET", other.path(f"/audit/{records[0]['id']}"))
    assert status == 404
    status, _, _ = s.api.request("GET", env.path(f"/audit/{uuid.uuid4()}"))
    assert status == 404
    status, _, _ = s.api.request("GET", f"/api/v1/workspaces/{env.ws}/environments/"
                                        f"{uuid.uuid4()}/audit")
    assert status == 404
    for query, field in [("startDate=yesterday", "startDate"),
                         ("endDate=2026-02-31", "endDate"),
                         ("resourceId=x", "resourceId"), ("connectionId=1", "connectionId"),
                         ("apiKeyId=", "apiKeyId"), ("statusCode=abc", "statusCode"),
                         ("statusCode=1000", "statusCode"), ("model=", "model"),
                         ("correlationId=" + "x" * 600, "correlationId"),
                         ("pageSize=0", "pageSize"), ("pageSize=1001", "pageSize"),
                         ("pageIndex=-1", "pageIndex")]:
        status, body, _ = s.api.request("GET", env.path(f"/audit?{query}"))
        assert status == 400, (query, body)
        assert body["error"]["details"]["field"] == field, query
    status, _, _ = s.api.request("GET", env.path("/audit"), token=None)
    assert status == 401


# ---------------------------------------------------------------- POST /usage
def bucket(t, granularity):
    if granularity == "minute":
        return t.replace(second=0, microsecond=0)
    if granularity == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def percentile(values, p):
    values = sorted(values)
    pos = p * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def aggregate(rows, name, how):
    if name == "requestCount":
        return float(sum(1 for r in rows if r["final"]))
    if name == "attemptCount":
        return float(sum(1 for r in rows if r["attempt"]))
    if name == "errorCount":
        return float(sum(1 for r in rows if r["statusCode"] is None or r["statusCode"] >= 400))
    values = [r[name] for r in rows if r[name] is not None]
    if how == "sum":
        return float(sum(values))
    if not values:
        return None
    if how == "avg":
        return sum(values) / len(values)
    if how in ("min", "max"):
        return float(min(values) if how == "min" else max(values))
    return percentile(values, int(how[1:]) / 100)


def floor_minute(text):
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return t.replace(second=0, microsecond=0)


def expected_usage(records, query):
    rows = usage_rows(records)
    flt = query.get("filter", {})
    rng = flt.get("dateRange", {})
    if "start" in rng:
        rows = [r for r in rows if r["time"] >= floor_minute(rng["start"])]
    if "end" in rng:
        rows = [r for r in rows if r["time"] < floor_minute(rng["end"])]
    for dim, value in flt.get("fields", {}).items():
        allowed = value if isinstance(value, list) else [value]
        rows = [r for r in rows if r[dim] in allowed]
    dims = query.get("dimensions", [])
    groups = {}
    for r in rows:
        key = (bucket(r["time"], query["granularity"]),) + tuple(r[d] for d in dims)
        groups.setdefault(key, []).append(r)
    out = {}
    for key, members in groups.items():
        out[(key[0].strftime("%Y-%m-%dT%H:%M:%S.000Z"),) + key[1:]] = {
            name: aggregate(members, name, how) for name, how in query["metrics"].items()}
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


@pytest.fixture(scope="module")
def usage_data(audit_stack):
    env = Env(audit_stack.api)
    # three days back to now: every granularity has several buckets
    records = make_records(env, 400, now() - dt.timedelta(days=3), 3 * 24 * 60, seed=11)
    records += make_records(env, 100, now() - dt.timedelta(minutes=20), 10, seed=12)
    audit_stack.dataplane.add_records(records)
    wait_ingested(audit_stack)
    return env, records


def run_usage(stack, env, records, query):
    status, body, _ = stack.api.request("POST", env.path("/usage"), query)
    assert status == 200, (query, body)
    assert body["granularity"] == query["granularity"]
    dims = query.get("dimensions", [])
    got = {(d["time"],) + tuple(d[k] for k in dims): d for d in body["data"]}
    assert len(got) == len(body["data"])
    want = expected_usage(records, query)
    assert set(got) == set(want), query
    for key, metrics in want.items():
        for name, value in metrics.items():
            assert close(got[key][name], value), (query, key, name, got[key][name], value)
    times = [d["time"] for d in body["data"]]
    assert times == sorted(times)
    return body


@pytest.mark.parametrize("granularity", ["minute", "hour", "day", "week", "month"])
def test_usage_granularities(audit_stack, usage_data, granularity):
    env, records = usage_data
    run_usage(audit_stack, env, records, {
        "granularity": granularity,
        "metrics": {"requestCount": "sum", "attemptCount": "sum", "errorCount": "sum",
                    "totalTokens": "sum",
                    "requestDuration": "avg", "providerDuration": "max",
                    "timeToFirstToken": "min"}})


@pytest.mark.parametrize("how", ["sum", "avg", "min", "max", "p50", "p90", "p95", "p99"])
def test_usage_aggregations(audit_stack, usage_data, how):
    env, records = usage_data
    run_usage(audit_stack, env, records, {
        "granularity": "day", "metrics": {name: how for name in USAGE_FIELDS},
        "dimensions": ["provider"]})
    run_usage(audit_stack, env, records, {
        "granularity": "hour", "metrics": {"requestCount": "sum", "promptTokens": how}})


@pytest.mark.parametrize("dimension", ["provider", "model", "resourceId", "connectionId",
                                       "apiKeyId", "statusCode", "failureReason"])
def test_usage_dimensions(audit_stack, usage_data, dimension):
    env, records = usage_data
    run_usage(audit_stack, env, records, {
        "granularity": "day", "dimensions": [dimension],
        "metrics": {"requestCount": "sum", "completionTokens": "avg",
                    "tokensPerSecond": "p90"}})
    run_usage(audit_stack, env, records, {
        "granularity": "week", "dimensions": [dimension, "provider"] if dimension != "provider"
        else ["provider", "model"], "metrics": {"errorCount": "sum", "gateDuration": "sum"}})


def test_usage_filters(audit_stack, usage_data):
    env, records = usage_data
    times = sorted(r["timestamp"] for r in records)
    base = {"granularity": "hour", "metrics": {"requestCount": "sum", "totalTokens": "sum",
                                               "routingDuration": "p50"},
            "dimensions": ["model"]}
    for flt in [{"dateRange": {"start": times[100]}},
                {"dateRange": {"end": times[300]}},
                {"dateRange": {"start": times[50], "end": times[450]}},
                {"fields": {"provider": "openai"}},
                {"fields": {"model": ["gpt-4o", "claude-3-5-haiku"]}},
                {"fields": {"resourceId": env.resources[1], "statusCode": [200, 429]}},
                {"fields": {"connectionId": [env.connections[0]],
                            "apiKeyId": env.api_keys[0]}},
                {"fields": {"failureReason": "rate_limited"}},
                {"dateRange": {"start": times[10], "end": times[200]},
                 "fields": {"provider": ["anthropic"]}}]:
        run_usage(audit_stack, env, records, dict(base, filter=flt))
        minutely = dict(base, metrics={"requestCount": "sum", "totalTokens": "avg"},
                        filter=flt)
        run_usage(audit_stack, env, records, minutely)


def test_usage_scoped_and_validated(audit_stack, usage_data):
    s = audit_stack
    env, records = usage_data
    other = Env(s.api)
    status, body, _ = s.api.request("POST", other.path("/usage"), {
        "granularity": "day", "metrics": {"requestCount": "sum"}})
    assert status == 200 and body["data"] == []
    ok = {"granularity": "day", "metrics": {"requestCount": "sum"}}
    for change, field in [
            ({"granularity": "year"}, "granularity"), ({"granularity": None}, "granularity"),
            ({"metrics": {}}, "metrics"), ({"metrics": []}, "metrics"),
            ({"metrics": {"tokens": "sum"}}, "metrics.tokens"),
            ({"metrics": {"totalTokens": "median"}}, "metrics.totalTokens"),
            ({"metrics": {"requestCount": "avg"}}, "metrics.requestCount"),
            ({"dimensions": "provider"}, "dimensions"),
            ({"dimensions": ["provider", "region"]}, "dimensions[1]"),
            ({"dimensions": ["model", "model"]}, "dimensions[1]"),
            ({"filter": []}, "filter"), ({"filter": {"where": 1}}, "filter.where"),
            ({"filter": {"dateRange": {"start": "today"}}}, "filter.dateRange.start"),
            ({"filter": {"dateRange": {"start": "2026-01-02T00:00:00Z",
                                       "end": "2026-01-01T00:00:00Z"}}},
             "filter.dateRange.end"),
            ({"filter": {"fields": {"region": "x"}}}, "filter.fields.region"),
            ({"filter": {"fields": {"resourceId": "x"}}}, "filter.fields.resourceId"),
            ({"filter": {"fields": {"statusCode": "200"}}}, "filter.fields.statusCode"),
            ({"filter": {"fields": {"model": []}}}, "filter.fields.model"),
            ({"filter": {"fields": {"model": [1]}}}, "filter.fields.model"),
            ({"extra": 1}, "extra")]:
        status, body, _ = s.api.request("POST", env.path("/usage"), dict(ok, **change))
        assert status == 400, (change, body)
        assert body["error"]["details"]["field"] == field, (change, body)
    status, body, _ = s.api.request("POST", env.path("/usage"), dict(
        ok, granularity="minute", dimensions=["apiKeyId", "resourceId", "connectionId",
                                              "model", "statusCode", "failureReason"],
        filter={"dateRange": {"start": "2000-01-01T00:00:00Z"}}))
    assert status == 200           # 500 rows: below the cap
    status, _, _ = s.api.request("POST", env.path("/usage"), ok, token=None)
    assert status == 401


# ---------------------------------------------------------------- /metrics
def metrics_text(stack):
    status, body, headers = stack.api.request("GET", "/metrics", token=stack.metrics_token)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return body


def metric_value(stack, name, labels=""):
    total = 0.0
    for line in metrics_text(stack).splitlines():
        if line.startswith(name + "{") and labels in line or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics(audit_stack, aenv, cp_stack):
    s, dp = audit_stack, audit_stack.dataplane
    status, _, _ = s.api.request("GET", "/metrics", token=None)
    assert status == 401
    status, _, _ = s.api.request("GET", "/metrics", token="wrong")
    assert status == 401
    before = metric_value(s, "vmx_cp_ingest_records_total", f'dataplane="{dp.url}"')
    dp.add_records(make_records(aenv, 7, now(), 1, seed=13))
    wait_ingested(s)
    wait_until(lambda: metric_value(s, "vmx_cp_ingest_records_total",
                                    f'dataplane="{dp.url}"') == before + 7, what="records")
    text = metrics_text(s)
    for name in ("vmx_cp_http_requests_total{", "vmx_cp_http_request_duration_seconds_sum{",
                 "vmx_cp_ingest_batches_total{", "vmx_cp_ingest_usage_rows_total{",
                 "vmx_cp_ingest_lag_seconds{", "vmx_cp_ingest_last_success_timestamp_seconds{",
                 "vmx_cp_config_pushes_total{", "vmx_cp_db_pool_size ",
                 'vmx_cp_db_pool_connections{state="busy"}', "vmx_cp_db_pool_waits_total "):
        assert name in text, name
    assert (f'vmx_cp_ingest_errors_total{{dataplane="{s.dead_dataplane_url}",stage="fetch"}}'
            in text)
    assert 'vmx_cp_http_requests_total{method="GET",route="/metrics",status="401"} 2' in text
    assert f'vmx_cp_config_pushes_total{{dataplane="{dp.url}",result="ok"}}' in text

    # the session's control plane serves it without a token
    with urllib.request.urlopen(cp_stack.cp.url + "/metrics", timeout=5) as r:
        assert r.status == 200 and b"vmx_cp_http_requests_total" in r.read()

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
