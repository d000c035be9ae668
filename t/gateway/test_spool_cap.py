"""The audit spool's cap (vmx_audit_spool_max, vmx_audit_spool_warn) on a data plane of its
own (own PostgreSQL, control plane and nginx, see the `own_stack` fixture), with
ingestion stalled by stopping that PostgreSQL: the control plane runs on but cannot
commit, so the cursor stays and the bytes not yet ingested grow.

Past the cap a record is not written (vmx_audit_records_dropped_total) and requests go
on being served, except in an environment with `auditRequired: true`, which answers 503
`audit_unavailable` (vmx_audit_refused_total) while the spool is full.  Once PostgreSQL is
back, the pending bytes fall, both environments serve and audit again, and every record
that was spooled is stored exactly once."""
import re
import time
import uuid

import pytest

from gwutil import connection_for, http_request

CAP = 96 * 1024
WARN_PERCENT = 50
# an environment that requires its audit is refused this much before the cap
REFUSE_MARGIN = min(65536, CAP // 16)

# the drop is logged (a warning: a configured bound) once until a record is written again
DROP_ALERT = re.compile(r"\[warn\].*vmx: .*audit record.* not written: the spool is full "
                        r"\(vmx_audit_spool_max\)")
WARN_LINE = re.compile(r"\[warn\].*vmx: the audit spool holds \d+ bytes, 50% of "
                       r"vmx_audit_spool_max 98304")
NOTICE_LINE = re.compile(r"\[notice\].*vmx: the audit spool is back under 50% of "
                         r"vmx_audit_spool_max")


def dp_metrics(nginx):
    """The data plane's unlabelled metrics: {name: value}."""
    r = http_request(nginx.url, "GET", "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def wait_metric(nginx, name, predicate, timeout=20, what=""):
    deadline = time.time() + timeout
    while True:
        v = dp_metrics(nginx).get(name)
        if v is not None and predicate(v):
            return v
        assert time.time() < deadline, f"{name} = {v} after {timeout} s {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def capped(own_stack, fake):
    s = own_stack(check_log=False,
                  http_directives=f"vmx_audit_spool_max 96k; "
                                  f"vmx_audit_spool_warn {WARN_PERCENT};")
    normal = s.gw.provision(connections={"a": connection_for(fake)},
                            resources={"chat": {"model": ("a", "gpt-capped")}},
                            keys={"k": {"resources": ["chat"]}})
    st, e, _ = s.api.request("POST", f"/api/v1/workspaces/{normal.ws_id}/environments",
                             {"name": "required-" + uuid.uuid4().hex[:8],
                              "auditRequired": True})
    assert st == 201 and e["auditRequired"] is True, (st, e)
    required = s.gw.provision(env=type(normal)(s.gw, normal.ws, e),
                              connections={"a": connection_for(fake)},
                              resources={"chat": {"model": ("a", "gpt-required")}},
                              keys={"k": {"resources": ["chat"]}})
    yield s, normal, required
    # the whole log: nothing worse than the drop's own alert
    bad = [line for line in s.nginx.error_log().splitlines()
           if re.search(r"\[(alert|crit|emerg)\]|exited on signal", line)
           and not DROP_ALERT.search(line)]
    assert not bad, "\n".join(bad[:20])


def test_full_spool_drops_or_refuses_then_recovers(capped):
    s, normal, required = capped
    nginx = s.nginx
    sent = {}                       # request id -> (environment, status)

    def call(env, what):
        r = env.chat("chat", body={"messages": [{"role": "user", "content": what}]})
        rid = r.header("x-vmx-request-id")
        assert rid and rid not in sent, r
        sent[rid] = (env.env_id, r.status)
        return r

    m = dp_metrics(nginx)
    assert m["vmx_audit_spool_max_bytes"] == CAP, m
    # the provisioning's records are ingested: nothing pending
    wait_metric(nginx, "vmx_audit_spool_bytes", lambda v: v == 0, what="before the test")
    assert call(required, "before").status == 200
    assert call(normal, "before").status == 200
    log_start = len(nginx.error_log())
    m0 = dp_metrics(nginx)

    s.pg.stop()
    try:
        # fill past the warning (50 %) and into the refusal margin: served, written
        while dp_metrics(nginx)["vmx_audit_spool_bytes"] < max(CAP * WARN_PERCENT / 100,
                                                               CAP - REFUSE_MARGIN):
            assert call(normal, "filling").status == 200
            assert len(sent) < 400, "the pending bytes do not grow"
        m = dp_metrics(nginx)
        assert m["vmx_audit_records_dropped_total"] == m0["vmx_audit_records_dropped_total"]
        assert m["vmx_audit_spool_bytes"] + REFUSE_MARGIN >= CAP
        # the warning comes with the write that crosses it: the ring is written at flush=
        # (the gauge counts it before), by a thread of the pool
        deadline = time.time() + 5
        while not WARN_LINE.search(nginx.error_log()[log_start:]) and time.time() < deadline:
            time.sleep(0.05)
        log = nginx.error_log()[log_start:]
        assert len(WARN_LINE.findall(log)) == 1, log[-3000:]

        # the environment that requires its audit refuses (its 503 is still spooled)
        r = call(required, "refused while there is room")
        assert r.status == 503, r
        err = r.json()["error"]
        assert err["code"] == "audit_unavailable" and err["message"], err
        assert dp_metrics(nginx)["vmx_audit_refused_total"] == \
            m0["vmx_audit_refused_total"] + 1

        # past the cap: still served, the records dropped and counted
        while dp_metrics(nginx)["vmx_audit_records_dropped_total"] < \
                m0["vmx_audit_records_dropped_total"] + 3:
            assert call(normal, "past the cap").status == 200
            assert len(sent) < 500, "no record dropped"
        for _ in range(3):
            assert call(normal, "past the cap").status == 200
        # refusals when full: their records are not owed, and cannot pass the cap
        for _ in range(5):
            r = call(required, "refused when full")
            assert r.status == 503 and r.json()["error"]["code"] == "audit_unavailable", r
        m = dp_metrics(nginx)
        assert m["vmx_audit_spool_bytes"] <= CAP, m
        assert m["vmx_audit_refused_total"] == m0["vmx_audit_refused_total"] + 6
        log = nginx.error_log()[log_start:]
        assert len(WARN_LINE.findall(log)) == 1, log[-3000:]
        assert not NOTICE_LINE.search(log), log[-3000:]
        assert DROP_ALERT.search(log), log[-3000:]
    finally:
        s.pg.start()

    # ingestion resumes: the pending bytes fall, and the warning ends with a notice
    wait_metric(nginx, "vmx_audit_spool_bytes", lambda v: v < CAP * WARN_PERCENT / 100,
                timeout=30, what="after PostgreSQL came back")
    deadline = time.time() + 10
    while not NOTICE_LINE.search(nginx.error_log()[log_start:]):
        assert time.time() < deadline, nginx.error_log()[log_start:][-3000:]
        time.sleep(0.1)

    # both environments serve and audit again
    after = [call(required, "after"), call(normal, "after")]
    assert [r.status for r in after] == [200, 200], after
    dropped = int(dp_metrics(nginx)["vmx_audit_records_dropped_total"]
                  - m0["vmx_audit_records_dropped_total"])
    assert dropped >= 4

    # every record spooled is stored once: all requests but the dropped ones
    want = len(sent) - dropped
    where = f"workspace_id = '{normal.ws_id}' AND request_id = ANY('{{{','.join(sent)}}}')"
    deadline = time.time() + 20
    while True:
        rows = s.pg.psql(f"SELECT id, count(*) FROM audit_records WHERE {where} GROUP BY id")
        stored = dict(line.split("|") for line in rows.splitlines() if line)
        if len(stored) >= want and all(r.header("x-vmx-request-id") in stored for r in after):
            break
        assert time.time() < deadline, f"{len(stored)} of {want} records stored"
        time.sleep(0.3)
    time.sleep(1.5)                 # one more ingestion round: nothing more may come
    rows = s.pg.psql(f"SELECT id, count(*) FROM audit_records WHERE {where} GROUP BY id")
    stored = dict(line.split("|") for line in rows.splitlines() if line)
    assert len(stored) == want, (len(stored), want, len(sent), dropped)
    assert set(stored.values()) == {"1"}, {k: v for k, v in stored.items() if v != "1"}
    # each stored record says what its client got
    rows = s.pg.psql(f"SELECT id, environment_id, status_code, coalesce(error_code, '')"
                     f" FROM audit_records WHERE {where}")
    for line in rows.splitlines():
        rid, env_id, status, code = line.split("|")
        assert (env_id, int(status)) == sent[rid], (line, sent[rid])
        assert (code == "audit_unavailable") == (int(status) == 503), line
    # the refusal that was spooled (there was room) is among them
    refused = [rid for rid, (e, st) in sent.items() if st == 503]
    assert refused[0] in stored
    st, body, _ = s.api.request(
        "GET", f"{required.prefix}/audit?statusCode=503&pageSize=10")
    assert st == 200 and refused[0] in [d["id"] for d in body["data"]], body
    # the management API lists each record once
    st, body, _ = s.api.request("GET", f"/api/v1/audit?workspaceId={normal.ws_id}"
                                       f"&pageSize=1000")
    ids = [d["id"] for d in body["data"] if d["id"] in sent]
    assert len(ids) == len(set(ids)) == want


def test_required_environment_never_serves_an_unaudited_request(capped):
    """An environment that requires its audit: a request is refused (503) or its record
    is stored, never served and dropped.  Here a body of 100 KiB (below
    vmx_audit_payload_max) with an empty spool: admitted, its record larger than the cap."""
    s, normal, required = capped
    nginx = s.nginx
    wait_metric(nginx, "vmx_audit_spool_bytes", lambda v: v == 0, what="before the test")
    m0 = dp_metrics(nginx)
    body = {"messages": [{"role": "system", "content": "R" * (100 * 1024)},
                         {"role": "user", "content": "short"}]}
    r = required.chat("chat", body=body)
    assert r.status in (200, 503), r
    rid = r.header("x-vmx-request-id")
    if r.status == 503:
        assert r.json()["error"]["code"] == "audit_unavailable", r
        return
    deadline = time.time() + 10
    while not s.pg.psql(f"SELECT count(*) FROM audit_records WHERE id = '{rid}'") == "1":
        dropped = dp_metrics(nginx)["vmx_audit_records_dropped_total"]
        assert dropped == m0["vmx_audit_records_dropped_total"], \
            "served with a 200 and its audit record dropped"
        assert time.time() < deadline, "the record is not stored"
        time.sleep(0.2)
