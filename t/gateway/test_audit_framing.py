"""Audit records end to end through the length-framed spool (lib/vmx_spool.h): the data
plane frames each record as `VMX2 <meta> <request> <response> <crc>` + its bytes, the
control plane reads the spool as HTTP ranges and stores each record once, payloads as the
bytes they were (format json, text or base64), and keeps what is no record as a dead letter
(`audit_dead_letters`, GET /api/v1/audit/dead-letters, vmx_cp_ingest_dead_letters_total).

Also: answers stored as the client got them (pretty-printed JSON, streams as the array of
their events), hostile client bodies, garbage written into a live spool file, 401 records
of the scoped path, the audit API across workspaces, usage counting requests and attempts
apart, refusals naming the primary model, no ingestion errors while idle, and no payload
in the OpenTelemetry export."""
import base64
import http.client
import json
import os
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from gwutil import Resp, connection_for, cp_metric, sse_events
from harness import spool

MARKER = "payload-marker-" + uuid.uuid4().hex
KEEP_UP = 10            # seconds a record may take to be listed


def cond(expression, comparator, value):
    return {"type": "condition", "id": f"c-{expression}", "label": expression,
            "expression": expression, "comparator": comparator,
            "value": {"type": "string", "expression": value}}


BLOCK = {"enabled": True, "conditions": [
    {"type": "group", "id": "no-secrets", "description": "no secrets", "enabled": True,
     "operator": "AND", "mode": "UI", "expression": "", "action": "BLOCK",
     "conditions": [cond("request.lastMessage.content", "CONTAINS", "forbidden")]}]}
PER_DAY_1 = [{"period": "day", "requests": 1}]


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2),
                     "unused": connection_for(fake2)},
        resources={"chat": {"model": ("a", "gpt-framing")},
                   "fb": {"model": ("a", "fail-503"), "fallback": [("b", "gpt-framing-fb")]},
                   "nofb": {"model": ("a", "fail-503"), "fallback": [("b", "gpt-framing-fb")],
                            "useFallback": False},
                   "gated": {"model": ("a", "gpt-gated"), "fallback": [("b", "gpt-gated-fb")],
                             "enforceCapacity": True, "capacity": PER_DAY_1},
                   "keyed": {"model": ("b", "gpt-keyed"), "fallback": [("a", "gpt-keyed-fb")]},
                   "blocky": {"model": ("a", "gpt-blocky"), "fallback": [("b", "gpt-b-fb")],
                              "routing": BLOCK}},
        keys={"k": {"resources": ["chat", "fb", "nofb", "gated", "keyed", "blocky"]},
              "capped": {"resources": ["keyed"], "enforceCapacity": True,
                         "capacity": PER_DAY_1}})


@pytest.fixture(scope="module")
def other(gw, fake):
    """Another workspace whose environment has traffic only from tests that say so."""
    return gw.provision(connections={"a": connection_for(fake)},
                        resources={"chat": {"model": ("a", "gpt-other")}},
                        keys={"k": {"resources": ["chat"]}})


@pytest.fixture(scope="module")
def victim(api):
    """A workspace and environment that no request may ever be recorded in."""
    tag = uuid.uuid4().hex[:8]
    ws = api.create_workspace(f"victim-{tag}")
    e = api.create_environment(ws["id"], f"victim-{tag}")
    return ws["id"], e["id"]


@pytest.fixture(autouse=True)
def _away_from_a_day_boundary():
    """The capacity windows of `gated` and `capped` are per UTC day."""
    left = 86400 - time.time() % 86400
    if left < 10:
        time.sleep(left + 0.5)


# ---------------------------------------------------------------------- helpers
def api_raw(api, path):
    """(status, bytes) of a GET on the management API: the JSON text as served."""
    c = http.client.HTTPConnection(api.host, api.port, timeout=30)
    try:
        c.request("GET", path, headers={"Authorization": f"Bearer {api.token}"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def listed(api, path, **query):
    """The data of a list answer (every page)."""
    out, page = [], 0
    while True:
        q = urllib.parse.urlencode(dict(query, pageSize=1000, pageIndex=page))
        st, body, _ = api.request("GET", f"{path}?{q}")
        assert st == 200, (path, st, body)
        out += body["data"]
        if len(out) >= body["total"] or not body["data"]:
            return out
        page += 1


def listed_ids(api, path, **query):
    return [d["id"] for d in listed(api, path, **query)]


def wait_listed(api, env, ids, timeout=KEEP_UP):
    """Waits until every id is in the environment's audit list; its records by id."""
    ids = set(ids)
    deadline = time.time() + timeout
    while True:
        got = {d["id"]: d for d in listed(api, f"{env.prefix}/audit")}
        if ids <= set(got):
            return got
        assert time.time() < deadline, \
            f"{len(ids - set(got))} of {len(ids)} records not listed after {timeout} s"
        time.sleep(0.2)


def wait_record(api, rid, timeout=KEEP_UP):
    """The record of request rid across workspaces (GET /api/v1/audit/{id}), once stored."""
    deadline = time.time() + timeout
    while True:
        st, body, _ = api.request("GET", f"/api/v1/audit/{rid}")
        if st == 200:
            return body
        assert st == 404 and time.time() < deadline, (st, body)
        time.sleep(0.2)


def full_record(api, env, rid):
    """(parsed, raw bytes) of GET .../audit/{id}."""
    st, raw = api_raw(api, f"{env.prefix}/audit/{rid}")
    assert st == 200, (st, raw[:500])
    return json.loads(raw), raw


def dead_letters(api, dataplane):
    return [d for d in listed(api, "/api/v1/audit/dead-letters") if d["dataplane"] == dataplane]


def rid_of(r):
    rid = r.header("x-vmx-request-id")
    assert rid and len(rid) == 36, r
    return rid


def post_raw(gw, body, key, path="/v1/chat/completions", chunked=False):
    """A chat request with exactly these body bytes (chunked: without Content-Length)."""
    host, port = gw.url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    try:
        if chunked:
            c.request("POST", path, body=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                      headers=h, encode_chunked=True)
        else:
            c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        return Resp(r.status, r.headers, r.read(), r.reason)
    finally:
        c.close()


def chat_body(content, model="chat", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return json.dumps(b).encode()


def big_body(size, model="chat"):
    """A chat body of exactly size bytes: a long system message, then a short question
    (the fake echoes the last user message: the answer stays small)."""
    def body(n):
        return json.dumps({"model": model, "messages": [
            {"role": "system", "content": "S" * n},
            {"role": "user", "content": "short"}]}).encode()
    b = body(size - len(body(0)))
    assert len(b) == size
    return b


def now_iso(delta=0):
    t = datetime.now(timezone.utc) + timedelta(seconds=delta)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def sentinel(env, tag):
    """A whole, valid framed record of our own in env (the reader must find it)."""
    rid = str(uuid.uuid4())
    meta = {"v": 2, "id": rid, "timestamp": now_iso(), "workspaceId": env.ws_id,
            "environmentId": env.env_id, "authenticated": True, "requestId": rid,
            "correlationId": f"sentinel-{tag}", "method": "POST",
            "path": "/v1/chat/completions", "statusCode": 200, "stream": False,
            "events": [], "attempts": [], "payloadTruncated": False}
    return rid, spool.frame(meta, b'{"sentinel":true}', b'{"ok":true}')


def append_to_spool(nginx, data):
    """Appends data in one write to the newest spool file of a running worker:
    (file name, offset of the data)."""
    workers = nginx.worker_pids()
    files = sorted(p for p in (nginx.base_dir / "spool").glob("records-*.vmx")
                   if int(p.name[25:35]) in workers)
    assert files, list((nginx.base_dir / "spool").iterdir())
    fd = os.open(files[-1], os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, data) == len(data)
        end = os.lseek(fd, 0, os.SEEK_CUR)
    finally:
        os.close(fd)
    return files[-1].name, end - len(data)


# ---------------------------------------------------------------------- 1. answers as received
def test_pretty_json_and_streams_stored_as_the_client_got_them(env, api, fake):
    fake.stream_delay = 0
    sent = []

    def one(i):
        stream = i % 2 == 1
        body = chat_body(f"framing {i}", stream=stream)
        r = post_raw(env.gw, body, env.key("k"))
        assert r.status == 200, r
        return rid_of(r), stream, body, r.body

    with ThreadPoolExecutor(4) as ex:
        sent = list(ex.map(one, range(40)))
    t0 = time.time()
    wait_listed(api, env, [s[0] for s in sent])
    assert time.time() - t0 < KEEP_UP

    for rid, stream, body, answer in sent:
        rec, raw = full_record(api, env, rid)
        assert rec["requestFormat"] == "json" and rec["request"] == json.loads(body), rec
        assert raw.count(b'"request":' + body) == 1
        assert rec["responseFormat"] == "json", rec
        if not stream:
            assert b'\n  "' in answer, answer[:200]        # the fake's indented JSON
            assert rec["response"] == json.loads(answer)
            # the bytes the client got, indentation and final newline included
            assert raw.count(b'"response":' + answer + b',"responseFormat":"json"') == 1
        else:
            events = [e for e in sse_events(answer) if e != "[DONE]"]
            assert len(events) >= 3
            assert rec["response"] == [json.loads(e) for e in events]
            joined = ("[" + ",".join(events) + "]").encode()
            assert raw.count(b'"response":' + joined + b',"responseFormat":"json"') == 1
        assert rec["stream"] is stream and rec["statusCode"] == 200
        assert rec["payloadTruncated"] is False


# ---------------------------------------------------------------------- 2. hostile bodies
def test_hostile_bodies_are_one_record_each(env, victim, api, stack, gw):
    """Each body one record holding it as sent (JSON byte for byte, text, or base64 of
    bytes that are no UTF-8 text), whatever it contains; no dead letter; nothing stuck."""
    before = set(listed_ids(api, f"{env.prefix}/audit"))
    dead_before = len(dead_letters(api, stack.nginx.url))
    forged_id = str(uuid.uuid4())
    forged = spool.frame({"v": 2, "id": forged_id, "timestamp": now_iso(),
                          "workspaceId": victim[0], "environmentId": victim[1],
                          "authenticated": True, "statusCode": 200, "events": [],
                          "attempts": []},
                         b'{"model":"chat"}', b'{"forged":true}')
    cases = {
        # name: (body bytes, status the client gets, requestFormat; None: not stored)
        "whitespace": (b'{\n\t"model" :\t"chat" ,\r\n\t"messages"\n:\n[ {"role":\t"user",'
                       b'\n"content":"tabs\\tand\\nnewlines"}\t]\n\t}', 200, "json"),
        "surrounding-whitespace": (b'\r\n  {"model":"chat","messages":[{"role":"user",'
                                   b'"content":"hi"}]}\n\n', 200, "json"),
        "forged": (chat_body('x"},{"id":"forged"}\n' + forged.decode() + '\n"}]}'), 200,
                   "json"),
        "duplicate-keys": (b'{"model":"chat","messages":[{"role":"user","content":"first"}],'
                           b'"messages":[{"role":"user","content":"second"}],"model":"chat"}',
                           400, "json"),
        "escapes": (b'{"model":"chat","messages":[{"role":"user","content":'
                    b'"\\u0000 \\" \\\\ \xe2\x80\xa8 \xf0\x9f\x98\x80 \x7f '
                    b'\\ud83d\\ude00"}]}', 200, "json"),
        "invalid-utf8": (b'{"model":"chat","messages":[{"role":"user",'
                         b'"content":"a\xff\xfe\xc3("}]}', 400, "base64"),
        "nul-byte": (b'{"model":"chat","messages":[{"role":"user","content":"a\x00b"}]}',
                     400, "base64"),
        "not-json": (b'model=chat&messages=hello \xc3\xa9\n', 400, "text"),
        "frame-body": (forged, 400, "text"),
        "truncated-frame": (forged[:-20], 400, "text"),
        "over-payload-max": (big_body(300 * 1024), 200, None),
        # the largest body the session's nginx accepts (client_max_body_size 1m), and one
        # byte more without a Content-Length: refused by the module's body reading
        "largest": (big_body(1024 * 1024), 200, None),
        "413-chunked": (big_body(1024 * 1024 + 1), 413, None),
        "after": (chat_body("after the hostile ones"), 200, "json"),
    }

    rids, statuses = {}, {}
    for name, (body, status, _) in cases.items():
        r = post_raw(gw, body, env.key("k"), chunked=name.endswith("chunked"))
        assert r.status == status, (name, r)
        if r.status >= 400:
            err = r.json()["error"]
            assert err["code"] == {400: "invalid_request", 413: "request_too_large"}[r.status]
        rids[name], statuses[name] = rid_of(r), r.status

    got = wait_listed(api, env, rids.values())
    new = [i for i in listed_ids(api, f"{env.prefix}/audit") if i not in before]
    assert sorted(new) == sorted(rids.values()), "one record per request, no other"
    for name, rid in rids.items():
        body, _, fmt = cases[name]
        status = statuses[name]
        rec, raw = full_record(api, env, rid)
        assert rec["statusCode"] == status and got[rid]["statusCode"] == status, (name, rec)
        assert rec["workspaceId"] == env.ws_id and rec["authenticated"] is True, (name, rec)
        assert rec["apiKeyId"] == env.key_objs["k"]["id"], (name, rec)
        assert rec["requestFormat"] == fmt, (name, rec)
        if fmt == "json":
            # the client's bytes, as they were
            assert raw.count(b'"request":' + body + b',"requestFormat":"json"') == 1, name
        elif fmt == "text":
            assert rec["request"] == body.decode(), (name, rec)
        elif fmt == "base64":
            assert base64.b64decode(rec["request"]) == body, (name, rec)
        else:
            assert rec["request"] is None, (name, rec)
        assert rec["payloadTruncated"] is (name in ("over-payload-max", "largest")), name
        if name in ("over-payload-max", "largest"):
            assert rec["responseFormat"] == "json", rec
            assert rec["response"]["choices"][0]["message"]["content"].endswith("short")
    assert got[rids["413-chunked"]]["errorCode"] == "request_too_large"
    assert got[rids["forged"]]["model"] == "gpt-framing"
    assert json.loads(cases["forged"][0])["messages"][0]["content"].count("VMX2 ") == 1

    # nothing forged: no record in the victim's workspace, none with the forged id
    st, body, _ = api.request("GET", f"/api/v1/audit/{forged_id}")
    assert st == 404, body
    st, body, _ = api.request("GET", f"/api/v1/audit?workspaceId={victim[0]}")
    assert st == 200 and body["total"] == 0, body
    time.sleep(1.5)                 # one more ingestion round
    assert len(dead_letters(api, stack.nginx.url)) == dead_before


def test_ten_megabyte_body(own_stack, fake):
    """~10 MB through a data plane of its own that accepts it: answered, recorded without
    its payload (payloadTruncated), and the spool keeps going."""
    s = own_stack(max_body="16m")
    e = s.gw.provision(connections={"a": connection_for(fake)},
                       resources={"chat": {"model": ("a", "gpt-big")}},
                       keys={"k": {"resources": ["chat"]}})
    big = big_body(10 * 1024 * 1024)
    r = post_raw(s.gw, big, e.key())
    assert r.status == 200, r
    after = post_raw(s.gw, chat_body("after the big one"), e.key())
    assert after.status == 200, after
    got = wait_listed(s.api, e, [rid_of(r), rid_of(after)])
    assert got[rid_of(r)]["payloadTruncated"] is True
    rec, _ = full_record(s.api, e, rid_of(r))
    assert rec["request"] is None and rec["response"]["choices"][0]["message"]["content"] \
        .endswith("short"), rec
    rec, _ = full_record(s.api, e, rid_of(after))
    assert rec["request"] == json.loads(chat_body("after the big one"))
    assert dead_letters(s.api, s.nginx.url) == []


def test_413_on_content_length_is_recorded_with_its_own_id(env, api, gw):
    body = chat_body("C" * (1024 * 1024))
    rids = []
    for _ in range(2):
        r = post_raw(gw, body, env.key("k"))
        assert r.status == 413 and r.json()["error"]["code"] == "request_too_large", r
        rids.append(rid_of(r))
    assert rids[0] != rids[1] and "00000000-0000-0000-0000-000000000000" not in rids
    for rid in rids:
        rec = wait_record(api, rid)
        assert rec["statusCode"] == 413 and rec["errorCode"] == "request_too_large", rec
        assert 0 <= rec["duration"] < 10000, rec


@pytest.mark.parametrize("body", [
    b'{"model":"blocky","messages":[{"role":"user","content":"hello"}],'
    b'"messages":[{"role":"user","content":"a forbidden word"}]}',
    b'{"model":"blocky","messages":[{"role":"user","content":"hello",'
    b'"content":"a forbidden word"}]}'], ids=["top-level", "in-a-message"])
def test_duplicated_key_is_refused_and_recorded(env, api, gw, fake, body):
    """SPEC §2: a duplicated key is a 400.  The gateway reads the first of two equal keys,
    a provider may act on the last: served, it would bypass the BLOCK rule on "forbidden"."""
    fake.clear()
    r = post_raw(gw, body, env.key("k"))
    assert r.status == 400 and r.json()["error"]["code"] == "invalid_request", r
    assert "duplicate" in r.json()["error"]["message"], r
    assert fake.requests == [], "the provider got the request"
    wait_listed(api, env, [rid_of(r)])
    rec, raw = full_record(api, env, rid_of(r))
    assert rec["statusCode"] == 400 and rec["errorCode"] == "invalid_request", rec
    assert raw.count(b'"request":' + body + b',"requestFormat":"json"') == 1


# ---------------------------------------------------------------------- 3. garbage in the spool
def test_garbage_in_a_live_spool_file_becomes_dead_letters(env, api, stack, gw):
    dataplane = stack.nginx.url
    good = spool.frame({"v": 2, "id": str(uuid.uuid4()), "timestamp": now_iso()},
                       b'{"a":1}', b"{}")
    head, rest = good.split(b"\n", 1)
    crc = int(head.rsplit(b" ", 1)[1], 16)
    bad_crc = head.rsplit(b" ", 1)[0] + b" %08x\n" % (crc ^ 0x10) + rest
    pieces = [
        (b"garbage between records \x00\xff\xfe {\"id\":\"x\"}\n", "not a record"),
        (bad_crc, "a record whose checksum fails"),
        (spool.frame(b"[1,2,3]", b'{"q":1}', b'{"r":2}'),
         "the record's metadata is not a JSON object"),
        (spool.frame({"v": 2, "id": "not-a-uuid", "timestamp": now_iso()}, b'{"q":1}'),
         "the record has no valid id or timestamp"),
        (b"VMX2 12 x 0 00000000\n{}", "a malformed record header"),
    ]
    reasons = sorted({why for _, why in pieces})
    metric0 = {why: cp_metric(stack, "vmx_cp_ingest_dead_letters_total", dataplane=dataplane,
                              reason=why) for why in reasons}
    dead0 = {d["id"] for d in dead_letters(api, dataplane)}

    rids, sentinels, where = [], [], []
    with ThreadPoolExecutor(2) as ex:
        def load(n):
            out = []
            for i in range(n):
                r = post_raw(gw, chat_body(f"flowing {i}"), env.key("k"))
                assert r.status == 200, r
                out.append(rid_of(r))
            return out
        flowing = [ex.submit(load, 15) for _ in range(2)]
        for piece, why in pieces:
            time.sleep(0.1)
            sid, frame = sentinel(env, len(sentinels))
            name, offset = append_to_spool(stack.nginx, piece + frame)
            where.append((f"{name}:{offset}", piece, why))
            sentinels.append(sid)
        for f in flowing:
            rids += f.result()

    # every valid record stored, the real ones and ours right after each piece
    got = wait_listed(api, env, rids + sentinels)
    for sid in sentinels:
        assert got[sid]["correlationId"].startswith("sentinel-"), got[sid]
    # each piece a dead letter: where, why, how long, its bytes
    deadline = time.time() + KEEP_UP
    while True:
        new = [d for d in dead_letters(api, dataplane) if d["id"] not in dead0]
        if len(new) >= len(pieces) or time.time() > deadline:
            break
        time.sleep(0.2)
    by_position = {d["position"]: d for d in new}
    assert len(new) == len(pieces), new
    for position, piece, why in where:
        d = by_position.get(position)
        assert d is not None, (position, why, [x["position"] for x in new])
        assert d["reason"] == why, d
        raw = base64.b64decode(d["raw"])
        assert d["length"] == len(raw), d
        if why.startswith("the record"):
            # a whole frame whose metadata is unusable: its metadata kept, or the frame
            head, rest = piece.split(b"\n", 1)
            assert raw in (rest[:int(head.split()[1])], piece), d
        else:
            assert raw == piece, d
    for why in reasons:
        n = sum(1 for _, _, w in where if w == why)
        assert cp_metric(stack, "vmx_cp_ingest_dead_letters_total", dataplane=dataplane,
                         reason=why) == metric0[why] + n, why


# ---------------------------------------------------------------------- 4. 401 and the API
def test_unauthenticated_records_and_the_audit_api(env, other, api, gw):
    scoped = f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions"
    bad_key = post_raw(gw, chat_body("no key of mine"), "vmx-not-a-key", path=scoped)
    # a key of `other` on env's path: refused, and recorded where the path says
    wrong_env = post_raw(gw, chat_body("wrong place"), other.key(), path=scoped)
    not_uuids = post_raw(gw, chat_body("x"), "vmx-not-a-key",
                         path="/v1/completion/not-a-uuid/nor-this/chat/completions")
    ok = post_raw(gw, chat_body("authenticated", model="chat"), env.key("k"), path=scoped)
    for r in (bad_key, wrong_env, not_uuids):
        assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", r
    assert ok.status == 200, ok
    refused = [rid_of(bad_key), rid_of(wrong_env)]

    got = wait_listed(api, env, refused + [rid_of(ok)])
    for rid in refused:
        rec = got[rid]
        assert rec["authenticated"] is False and rec["statusCode"] == 401, rec
        assert (rec["workspaceId"], rec["environmentId"]) == (env.ws_id, env.env_id), rec
        assert rec["apiKeyId"] is None and rec["path"] == scoped, rec
    assert got[rid_of(ok)]["authenticated"] is True
    assert rid_of(wrong_env) not in listed_ids(api, f"{other.prefix}/audit")

    # path ids that are no UUIDs: recorded, in no workspace
    rec = wait_record(api, rid_of(not_uuids))
    assert rec["authenticated"] is False and rec["workspaceId"] is None, rec
    assert rec["environmentId"] is None and rec["path"].startswith("/v1/completion/not-a-uuid")

    # across workspaces: filters by workspace, environment, authenticated
    mine = listed(api, "/api/v1/audit", workspaceId=env.ws_id)
    assert {d["workspaceId"] for d in mine} == {env.ws_id}
    assert sorted(d["id"] for d in mine) == sorted(listed_ids(api, f"{env.prefix}/audit"))
    assert sorted(listed_ids(api, "/api/v1/audit", environmentId=env.env_id)) == \
        sorted(d["id"] for d in mine)
    unauth = listed_ids(api, "/api/v1/audit", authenticated="false", workspaceId=env.ws_id)
    assert sorted(unauth) == sorted(refused)
    assert set(refused) <= set(listed_ids(api, "/api/v1/audit", authenticated="false"))
    assert rid_of(not_uuids) in listed_ids(api, "/api/v1/audit", authenticated="false")
    auth = listed_ids(api, "/api/v1/audit", authenticated="true", workspaceId=env.ws_id)
    assert rid_of(ok) in auth and not set(refused) & set(auth)
    st, body, _ = api.request("GET", f"/api/v1/audit?workspaceId={env.ws_id}"
                                     f"&statusCode=401&pageSize=1")
    assert st == 200 and body["total"] == 2 and len(body["data"]) == 1, body
    for bad in ("workspaceId=nope", "authenticated=maybe", "environmentId=1"):
        st, body, _ = api.request("GET", f"/api/v1/audit?{bad}")
        assert st == 400, (bad, body)

    # one record by id, with its payloads, the same as the environment's
    for rid in refused + [rid_of(ok)]:
        st, anywhere, _ = api.request("GET", f"/api/v1/audit/{rid}")
        assert st == 200, anywhere
        assert anywhere == full_record(api, env, rid)[0]
    assert anywhere["request"] == json.loads(chat_body("authenticated"))
    st, _, _ = api.request("GET", f"/api/v1/audit/{uuid.uuid4()}")
    assert st == 404
    st, _, _ = api.request("GET", f"{other.prefix}/audit/{rid_of(ok)}")
    assert st == 404


# ---------------------------------------------------------------------- 5. fallback usage
def test_fallback_counts_one_request_two_attempts(env, api, gw):
    start = now_iso(-60)
    r = post_raw(gw, chat_body("fall back", model="fb"), env.key("k"))
    assert r.status == 200 and r.header("x-vmx-event-count") == "1", r
    rid = rid_of(r)
    wait_listed(api, env, [rid])
    query = {"granularity": "day",
             "metrics": {"requestCount": "sum", "attemptCount": "sum", "errorCount": "sum"},
             "filter": {"dateRange": {"start": start, "end": now_iso(60)},
                        "fields": {"resourceId": env.res["fb"]["id"]}}}
    st, body, _ = api.request("POST", f"{env.prefix}/usage", query)
    assert st == 200, body
    totals = {m: sum(d[m] for d in body["data"])
              for m in ("requestCount", "attemptCount", "errorCount")}
    assert totals == {"requestCount": 1, "attemptCount": 2, "errorCount": 1}, body

    failed, served = env.conns["a"]["id"], env.conns["b"]["id"]
    for conn in (failed, served):
        ids = listed_ids(api, f"{env.prefix}/audit", connectionId=conn,
                         resourceId=env.res["fb"]["id"])
        assert ids == [rid], (conn, ids)
    assert rid not in listed_ids(api, f"{env.prefix}/audit",
                                 connectionId=env.conns["unused"]["id"])
    assert rid in listed_ids(api, "/api/v1/audit", connectionId=failed, workspaceId=env.ws_id)
    rec = full_record(api, env, rid)[0]
    assert rec["connectionId"] == served
    assert [a["connectionId"] for a in rec["attempts"]] == [failed, served]
    assert [a["statusCode"] for a in rec["attempts"]] == [503, 200]


# ---------------------------------------------------------------------- 6. refusals
def test_refusals_name_the_primary_model(env, api, gw):
    a, b = env.conns["a"]["id"], env.conns["b"]["id"]
    k, capped = env.key("k"), env.key("capped")
    gated = [post_raw(gw, chat_body(f"gated {i}", model="gated"), k) for i in range(2)]
    assert [r.status for r in gated] == [200, 429], gated
    keyed = [post_raw(gw, chat_body(f"keyed {i}", model="keyed"), capped) for i in range(2)]
    assert [r.status for r in keyed] == [200, 429], keyed
    blocked = post_raw(gw, chat_body("a forbidden word", model="blocky"), k)
    assert blocked.status == 400, blocked
    assert blocked.json()["error"]["code"] == "blocked_by_routing_condition"
    nofb = post_raw(gw, chat_body("no fallback", model="nofb"), k)
    assert nofb.status == 503 and nofb.header("x-vmx-event-count") == "0", nofb

    want = {rid_of(gated[1]): ("gpt-gated", a, "resource_exhausted"),
            rid_of(keyed[1]): ("gpt-keyed", b, "resource_exhausted"),
            rid_of(blocked): ("gpt-blocky", a, "blocked_by_routing_condition")}
    got = wait_listed(api, env, list(want) + [rid_of(nofb)])
    for rid, (model, conn, code) in want.items():
        rec = got[rid]
        assert (rec["provider"], rec["model"], rec["connectionId"], rec["errorCode"]) == \
            ("openai", model, conn, code), rec
        assert rec["attempts"] == [] and rec["events"] == [], rec
        assert rid in listed_ids(api, f"{env.prefix}/audit", connectionId=conn,
                                 model=model, statusCode=rec["statusCode"])
    rec = got[rid_of(nofb)]
    assert (rec["model"], rec["connectionId"], rec["statusCode"]) == ("fail-503", a, 503), rec
    assert not [e for e in rec["events"] if e["type"] == "fallback"], rec
    assert [x["statusCode"] for x in rec["attempts"]] == [503], rec


# ---------------------------------------------------------------------- 7. idle
def test_no_ingestion_error_while_idle(env, api, stack, gw):
    r = post_raw(gw, chat_body("before idling"), env.key("k"))
    wait_listed(api, env, [rid_of(r)])
    time.sleep(1.5)
    before = cp_metric(stack, "vmx_cp_ingest_errors_total", dataplane=stack.nginx.url)
    time.sleep(5)
    after = cp_metric(stack, "vmx_cp_ingest_errors_total", dataplane=stack.nginx.url)
    assert after == before, (before, after)


# ---------------------------------------------------------------------- 8. OpenTelemetry
def test_otlp_export_has_no_payload(env, api, gw, otlp, fake):
    fake.stream_delay = 0
    plain = post_raw(gw, chat_body(f"say {MARKER}"), env.key("k"))
    streamed = post_raw(gw, chat_body(f"say {MARKER}", stream=True), env.key("k"))
    assert plain.status == streamed.status == 200
    assert MARKER.encode() in plain.body and MARKER in fake.last().body["messages"][0]["content"]
    rids = {rid_of(plain), rid_of(streamed)}
    wait_listed(api, env, rids)
    otlp.wait_spans(lambda spans: rids <= {s["attrs"].get("vmx.request.id") for s in spans},
                    what="the spans of both requests")
    time.sleep(1.5)                 # a metrics export after them too
    with otlp.lock:
        exported = json.dumps([otlp.traces, otlp.metrics])
    assert MARKER not in exported
    assert "You said" not in exported
