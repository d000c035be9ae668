"""The completion-batch API: create (ASYNC, CALLBACK, SYNC), read, cancel.

No batch runner runs here: the tests play it with the SQL updates of
batch_items and batches the batch contract gives it (counters and
pg_notify in the same transaction)."""
import http.client
import json
import threading
import time
import uuid

import pytest

from harness.api import Api
from cphelpers import env_path, openai_connection, unique

READ_ONLY = "00000000-0000-4000-8000-000000000002"
PASSWORD = "a-long-test-password"
MESSAGES = [{"role": "user", "content": "hi"}]


class Env:
    """An environment with two resources, a key allowed the first only."""

    def __init__(self, api):
        self.ws = api.create_workspace(unique("bws"))["id"]
        self.env = api.create_environment(self.ws, "production")["id"]
        conn = openai_connection(api, (self.ws, self.env))
        self.res = [api.create_resource(self.ws, self.env, name=unique("chat"), model={
            "provider": "openai", "model": "m", "connectionId": conn["id"]}) for _ in range(2)]
        self.key = api.create_api_key(self.ws, self.env, name=unique("k"),
                                      resources=[self.res[0]["id"]])

    def path(self, tail=""):
        return env_path((self.ws, self.env), "/completion-batch" + tail)

    def items(self, n, **over):
        return [dict({"resourceId": self.res[0]["id"], "request": {"messages": MESSAGES},
                      "customId": f"c{i}"}, **over) for i in range(n)]


@pytest.fixture
def benv(api):
    return Env(api)


def create(api, e, mode="ASYNC", n=3, token=None, **over):
    body = {"mode": mode, "items": e.items(n)}
    if token is None:
        body["apiKeyId"] = e.key["id"]
        token = api.token
    body.update(over)
    return api.request("POST", e.path(), body, token=token)


def end_item(pg, batch_id, idx, status="SUCCEEDED"):
    """What the runner does when an item ends."""
    counter = {"SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELLED": "cancelled"}[status]
    response = """'{"choices": [{"message": {"content": "ok"}}]}'""" \
        if status == "SUCCEEDED" else "NULL"
    code = {"SUCCEEDED": 200, "FAILED": 400, "CANCELLED": "NULL"}[status]
    pg.psql(f"""BEGIN;
        UPDATE batch_items SET status = '{status}', status_code = {code},
               response = {response}, tries = tries + 1,
               started_at = coalesce(started_at, now()), finished_at = clock_timestamp()
         WHERE batch_id = '{batch_id}' AND idx = {idx};
        UPDATE batches SET {counter} = {counter} + 1, status = 'RUNNING',
               started_at = coalesce(started_at, now())
         WHERE id = '{batch_id}';
        SELECT pg_notify('vmx_batch', '{batch_id}');
        COMMIT;""")


def claim_item(pg, batch_id, idx):
    pg.psql(f"""UPDATE batch_items SET status = 'RUNNING', claimed_by = 'test',
                claimed_at = now(), started_at = now()
                WHERE batch_id = '{batch_id}' AND idx = {idx}""")


def complete(pg, batch_id):
    pg.psql(f"""UPDATE batches SET status = 'COMPLETED', completed_at = now()
                WHERE id = '{batch_id}'; SELECT pg_notify('vmx_batch', '{batch_id}')""")


@pytest.mark.parametrize("body, field", [
    ({"mode": "LATER"}, "mode"),
    ({"mode": "ASYNC", "items": []}, "items"),
    ({"mode": "ASYNC", "items": {}}, "items"),
    ({"mode": "ASYNC", "extra": 1}, "extra"),
    ({"mode": "ASYNC", "pool": "nope"}, "pool"),
    ({"mode": "ASYNC", "pool": 3}, "pool"),
    ({"mode": "ASYNC", "callback": {"url": "https://example.com/h"}}, "callback"),
    ({"mode": "CALLBACK"}, "callback"),
    ({"mode": "CALLBACK", "callback": {"url": "ftp://x"}}, "callback.url"),
    ({"mode": "CALLBACK", "callback": {"url": "http://169.254.169.254/"}}, "callback.url"),
    ({"mode": "CALLBACK", "callback": {"url": "https://example.com/h", "secret": "short"}},
     "callback.secret"),
    ({"mode": "ASYNC", "apiKeyId": "not-a-uuid"}, "apiKeyId"),
    ({"mode": "ASYNC", "apiKeyId": str(uuid.uuid4())}, "apiKeyId"),
])
def test_bad_batch_field(api, benv, body, field):
    full = {"items": benv.items(1), "apiKeyId": benv.key["id"]}
    full.update(body)
    status, answer, _ = api.request("POST", benv.path(), full)
    assert status == 400, answer
    assert answer["error"]["details"]["field"] == field, answer


@pytest.mark.parametrize("change, field", [
    (lambda e, i: "a string", "items[3]"),
    (lambda e, i: {**i, "x": 1}, "items[3].x"),
    (lambda e, i: {k: v for k, v in i.items() if k != "resourceId"}, "items[3]"),
    (lambda e, i: {**i, "resource": e.res[0]["name"]}, "items[3]"),
    (lambda e, i: {**i, "resourceId": str(uuid.uuid4())}, "items[3].resourceId"),
    (lambda e, i: {**i, "resourceId": 7}, "items[3].resourceId"),
    # of the environment, but not the key's
    (lambda e, i: {**i, "resourceId": e.res[1]["id"]}, "items[3].resourceId"),
    (lambda e, i: {"resource": "nope", "request": i["request"]}, "items[3].resource"),
    (lambda e, i: {**i, "request": []}, "items[3].request"),
    (lambda e, i: {**i, "request": {}}, "items[3].request.messages"),
    (lambda e, i: {**i, "request": {"messages": []}}, "items[3].request.messages"),
    (lambda e, i: {**i, "request": {"messages": MESSAGES, "stream": True}},
     "items[3].request.stream"),
    (lambda e, i: {**i, "customId": 5}, "items[3].customId"),
    (lambda e, i: {**i, "customId": "x" * 513}, "items[3].customId"),
    (lambda e, i: {**i, "customId": "c1"}, "items[3].customId"),
])
def test_bad_item_field(api, benv, change, field):
    items = benv.items(5)
    items[3] = change(benv, items[3])
    status, answer, _ = api.request("POST", benv.path(), {
        "mode": "ASYNC", "items": items, "apiKeyId": benv.key["id"]})
    assert status == 400, answer
    assert answer["error"]["details"]["field"] == field, answer
    assert api.request("GET", benv.path())[1]["total"] == 0


def test_item_limit(api, benv, cp_stack):
    # 50,001 tiny items fit neither the contract nor (here) the body limit
    item = {"resource": benv.res[0]["name"], "request": {"messages": [{}]}}
    status, answer, _ = api.request("POST", benv.path(), {
        "mode": "ASYNC", "apiKeyId": benv.key["id"], "items": [item] * 50001})
    assert status in (400, 413), answer
    if status == 400:
        assert answer["error"]["details"]["field"] == "items"


def test_auth(api, benv, cp_stack):
    other = Env(api)
    # a key of another environment
    status, _, _ = create(api, benv, token=other.key["key"])
    assert status == 401
    # a session must name the key
    status, answer, _ = create(api, benv, apiKeyId=None)
    assert status == 400 and answer["error"]["details"]["field"] == "apiKeyId"
    # ... of this environment
    status, answer, _ = create(api, benv, apiKeyId=other.key["id"])
    assert status == 400 and answer["error"]["details"]["field"] == "apiKeyId"
    # a read-only role reads and does not create
    status, user, _ = api.request("POST", "/api/v1/users", {"username": unique("ro"),
                                                            "password": PASSWORD})
    assert api.request("POST", f"/api/v1/roles/{READ_ONLY}/assign",
                       {"userIds": [user["id"]]})[0] == 200
    assert api.request("POST", f"/api/v1/workspaces/{benv.ws}/members",
                       {"userId": user["id"], "role": "MEMBER"})[0] == 201
    ro = Api(cp_stack.cp.url)
    ro.login(user["username"], PASSWORD)
    status, answer, _ = create(ro, benv)
    assert status == 403, answer
    assert ro.request("GET", benv.path())[0] == 200

    # the key itself, which sees its own batches only
    status, mine, _ = create(api, benv, token=benv.key["key"])
    assert status == 202 and mine["apiKeyId"] == benv.key["id"]
    # the activity names the key that created it
    assert cp_stack.pg.psql("SELECT username FROM activity WHERE action ="
                            f" 'completion-batch:create' AND object_id = '{mine['id']}'") \
        == "api-key:" + benv.key["name"]
    second = api.create_api_key(benv.ws, benv.env, name=unique("k2"),
                                resources=[benv.res[0]["id"]])
    status, theirs, _ = create(api, benv, apiKeyId=second["id"])
    assert status == 202
    status, lst, _ = api.request("GET", benv.path(), token=benv.key["key"])
    assert [b["id"] for b in lst["data"]] == [mine["id"]]
    assert api.request("GET", benv.path(f"/{theirs['id']}"), token=benv.key["key"])[0] == 404
    assert api.request("GET", benv.path())[1]["total"] == 2
    # another key's id in the body of a key
    status, answer, _ = create(api, benv, token=benv.key["key"], apiKeyId=second["id"])
    assert status == 400 and answer["error"]["details"]["field"] == "apiKeyId"
    # a disabled key
    assert api.request("PATCH", env_path((benv.ws, benv.env), f"/api-keys/{second['id']}"),
                       {"enabled": False})[0] == 200
    assert api.request("GET", benv.path(), token=second["key"])[0] == 401
    status, answer, _ = create(api, benv, apiKeyId=second["id"])
    assert status == 400 and answer["error"]["details"]["field"] == "apiKeyId"


def test_async_create_get_items_results(api, benv, cp_stack):
    pg = cp_stack.pg
    items = benv.items(5)
    items[4] = {"resource": benv.res[0]["name"], "request": {"messages": MESSAGES}}
    status, b, _ = api.request("POST", benv.path(), {"mode": "ASYNC", "items": items,
                                                     "apiKeyId": benv.key["id"]})
    assert status == 202, b
    assert b["status"] == "QUEUED" and b["mode"] == "ASYNC" and b["pool"] is None
    assert b["counts"] == {"total": 5, "pending": 5, "running": 0, "succeeded": 0,
                           "failed": 0, "cancelled": 0}
    assert b["workspaceId"] == benv.ws and b["environmentId"] == benv.env
    assert b["createdAt"] and b["startedAt"] is None and b["callbackUrl"] is None
    rows = pg.psql(f"SELECT string_agg(idx || ':' || coalesce(custom_id, '-') || ':' || resource,"
                   f" ',' ORDER BY idx) FROM batch_items WHERE batch_id = '{b['id']}'")
    name = benv.res[0]["name"]
    assert rows == ",".join([f"{i}:c{i}:{name}" for i in range(4)] + [f"4:-:{name}"])

    claim_item(pg, b["id"], 1)
    end_item(pg, b["id"], 0)
    end_item(pg, b["id"], 2, "FAILED")
    status, got, _ = api.request("GET", benv.path(f"/{b['id']}"))
    assert status == 200
    assert got["counts"] == {"total": 5, "pending": 2, "running": 1, "succeeded": 1,
                             "failed": 1, "cancelled": 0}
    assert got["status"] == "RUNNING"

    status, page, _ = api.request("GET", benv.path(f"/{b['id']}/items?pageSize=2&pageIndex=1"))
    assert status == 200 and page["total"] == 5 and page["pageIndex"] == 1
    assert [i["index"] for i in page["data"]] == [2, 3]
    assert page["data"][0]["status"] == "FAILED" and page["data"][0]["statusCode"] == 400
    assert "response" not in page["data"][0]
    assert set(page["data"][0]) == {"index", "customId", "resource", "status", "statusCode",
                                    "error", "requestId", "tries", "startedAt",
                                    "finishedAt", "callback"}
    status, page, _ = api.request("GET", benv.path(f"/{b['id']}/results?status=SUCCEEDED"))
    assert page["total"] == 1 and page["data"][0]["index"] == 0
    assert page["data"][0]["response"]["choices"][0]["message"]["content"] == "ok"
    assert page["data"][0]["customId"] == "c0" and page["data"][0]["callback"] is None
    status, answer, _ = api.request("GET", benv.path(f"/{b['id']}/items?status=DONE"))
    assert status == 400 and answer["error"]["details"]["field"] == "status"
    assert api.request("GET", benv.path(f"/{uuid.uuid4()}/items"))[0] == 404

    status, lst, _ = api.request("GET", benv.path())
    assert lst["total"] == 1 and lst["data"][0]["id"] == b["id"]


def test_callback_secret(api, benv, cp_stack):
    status, b, _ = create(api, benv, "CALLBACK", callback={"url": "https://example.com/hook"})
    assert status == 202, b
    assert b["callbackUrl"] == "https://example.com/hook" and len(b["callbackSecret"]) >= 32
    secret = b["callbackSecret"]
    assert "callbackSecret" not in api.request("GET", benv.path(f"/{b['id']}"))[1]
    stored = cp_stack.pg.psql(
        f"SELECT convert_from(callback_secret, 'UTF8') FROM batches WHERE id = '{b['id']}'")
    assert stored.startswith("v1:") and secret not in stored
    assert secret not in cp_stack.cp.log_text()
    status, b, _ = create(api, benv, "CALLBACK",
                          callback={"url": "https://example.com/hook", "secret": "s" * 32})
    assert status == 202 and "callbackSecret" not in b


def test_cancel(api, benv, cp_stack):
    pg = cp_stack.pg
    status, b, _ = create(api, benv, n=4)
    claim_item(pg, b["id"], 0)
    end_item(pg, b["id"], 1)
    status, got, _ = api.request("POST", benv.path(f"/{b['id']}/cancel"))
    assert status == 200, got
    # an item still runs: the runner ends the batch
    assert got["status"] == "CANCELLING" and got["cancelledAt"]
    assert got["counts"] == {"total": 4, "pending": 0, "running": 1, "succeeded": 1,
                             "failed": 0, "cancelled": 2}
    assert api.request("POST", benv.path(f"/{b['id']}/cancel"))[0] == 200

    status, b, _ = create(api, benv, n=2)
    status, got, _ = api.request("POST", benv.path(f"/{b['id']}/cancel"), token=benv.key["key"])
    assert status == 200
    assert got["status"] == "CANCELLED" and got["completedAt"]
    assert got["counts"]["cancelled"] == 2
    status, answer, _ = api.request("POST", benv.path(f"/{b['id']}/cancel"))
    assert status == 409 and answer["error"]["code"] == "batch_not_cancellable"
    assert api.request("POST", benv.path(f"/{uuid.uuid4()}/cancel"))[0] == 404

    # a CALLBACK batch's cancelled items are the runner's to deliver
    status, b, _ = create(api, benv, "CALLBACK", n=2,
                          callback={"url": "https://example.com/hook"})
    assert api.request("POST", benv.path(f"/{b['id']}/cancel"))[0] == 200
    assert pg.psql("SELECT string_agg(DISTINCT callback_status, ',') FROM batch_items"
                   f" WHERE batch_id = '{b['id']}'") == "PENDING"
    assert pg.psql(f"SELECT callback_status FROM batches WHERE id = '{b['id']}'") == "PENDING"


class Stream:
    """A SYNC create, its events read on a thread."""

    def __init__(self, cp_url, path, body, token):
        host, port = cp_url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.conn.request("POST", path, body=json.dumps(body), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        self.events = []            # (event, data) and ("comment", text)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        event = None
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.events.append(("comment", line[1:].strip()))
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                    self.events.append((event, data if data == "[DONE]" else json.loads(data)))
                    event = None
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass                    # the test closed the connection
        finally:
            self.done.set()

    def items(self):
        return [d for e, d in self.events if e == "item"]

    def wait(self, predicate, timeout=10):
        deadline = time.time() + timeout
        while not predicate():
            assert time.time() < deadline, self.events
            time.sleep(0.05)


def test_sync_stream(api, benv, cp_stack):
    pg = cp_stack.pg
    s = Stream(cp_stack.cp.url, benv.path(), {"mode": "SYNC", "items": benv.items(4),
                                             "apiKeyId": benv.key["id"]}, api.token)
    assert s.resp.status == 200
    assert s.resp.getheader("Content-Type") == "text/event-stream"
    s.wait(lambda: s.events)
    batch_id = s.events[0][1].split()[1]
    assert s.events[0] == ("comment", f"batch {batch_id}")

    end_item(pg, batch_id, 2)
    s.wait(lambda: len(s.items()) == 1)
    end_item(pg, batch_id, 0, "FAILED")
    end_item(pg, batch_id, 3)
    s.wait(lambda: len(s.items()) == 3)
    # in end order, each once
    assert [i["index"] for i in s.items()] == [2, 0, 3]
    assert s.items()[0]["response"]["choices"][0]["message"]["content"] == "ok"
    assert s.items()[1]["status"] == "FAILED" and s.items()[0]["customId"] == "c2"

    end_item(pg, batch_id, 1)
    complete(pg, batch_id)
    assert s.done.wait(10), s.events
    assert [i["index"] for i in s.items()] == [2, 0, 3, 1]
    batch = [d for e, d in s.events if e == "batch"]
    assert len(batch) == 1 and batch[0]["status"] == "COMPLETED"
    assert batch[0]["counts"]["succeeded"] == 3 and batch[0]["counts"]["failed"] == 1
    assert s.events[-1] == (None, "[DONE]")


def test_sync_stream_behind_the_cursor(api, benv, cp_stack):
    """An item whose end commits with an earlier finished_at than one
    already sent (transactions commit out of time order) is still sent."""
    pg = cp_stack.pg
    s = Stream(cp_stack.cp.url, benv.path(), {"mode": "SYNC", "items": benv.items(3)},
               benv.key["key"])
    s.wait(lambda: s.events)
    batch_id = s.events[0][1].split()[1]
    end_item(pg, batch_id, 1)
    s.wait(lambda: len(s.items()) == 1)
    end_item(pg, batch_id, 0)
    pg.psql(f"UPDATE batch_items SET finished_at = now() - interval '1 hour'"
            f" WHERE batch_id = '{batch_id}' AND idx = 0")
    s.wait(lambda: len(s.items()) == 2)
    # the client goes away: the batch goes on
    s.conn.close()
    status, got, _ = api.request("GET", benv.path(f"/{batch_id}"))
    assert status == 200 and got["status"] == "RUNNING" and got["mode"] == "SYNC"


def test_sync_stream_keep_alive(api, benv, cp_stack):
    s = Stream(cp_stack.cp.url, benv.path(), {"mode": "SYNC", "items": benv.items(1)},
               benv.key["key"])
    s.wait(lambda: ("comment", "keep-alive") in s.events, timeout=20)
    batch_id = s.events[0][1].split()[1]
    assert api.request("POST", benv.path(f"/{batch_id}/cancel"))[0] == 200
    assert s.done.wait(10), s.events
    assert [i["status"] for i in s.items()] == ["CANCELLED"]
    assert [d["status"] for e, d in s.events if e == "batch"] == ["CANCELLED"]


def test_sync_stream_pages_in_end_order(api, benv, cp_stack):
    """More ended items than a page, all at once: each sent once, in end
    order (finished_at, then index)."""
    pg = cp_stack.pg
    n = 300
    s = Stream(cp_stack.cp.url, benv.path(), {"mode": "SYNC", "items": benv.items(n)},
               benv.key["key"])
    s.wait(lambda: s.events)
    batch_id = s.events[0][1].split()[1]
    # the items end in reverse order, the first 100 in the same instant
    pg.psql(f"""BEGIN;
        UPDATE batch_items SET status = 'SUCCEEDED', status_code = 200, response = '{{}}',
               finished_at = CASE WHEN idx < 100 THEN '2030-01-01Z'::timestamptz
                             ELSE '2030-01-01Z'::timestamptz - (idx || ' ms')::interval END
         WHERE batch_id = '{batch_id}';
        UPDATE batches SET succeeded = {n}, status = 'COMPLETED', completed_at = now()
         WHERE id = '{batch_id}';
        SELECT pg_notify('vmx_batch', '{batch_id}');
        COMMIT;""")
    assert s.done.wait(20), len(s.events)
    assert [i["index"] for i in s.items()] == list(range(n - 1, 99, -1)) + list(range(100))
    assert s.events[-1] == (None, "[DONE]")


def test_sync_stream_outlives_the_connection_timeout(api, benv, cp_stack):
    """The server closes a connection idle for 60 s: the keep-alives keep a
    stream that waits longer open."""
    s = Stream(cp_stack.cp.url, benv.path(), {"mode": "SYNC", "items": benv.items(1)},
               benv.key["key"])
    s.wait(lambda: s.events)
    batch_id = s.events[0][1].split()[1]
    time.sleep(65)
    assert not s.done.is_set()
    end_item(cp_stack.pg, batch_id, 0)
    complete(cp_stack.pg, batch_id)
    assert s.done.wait(10), s.events
    assert [i["index"] for i in s.items()] == [0]
    assert sum(1 for e in s.events if e == ("comment", "keep-alive")) >= 4


def test_pool(api, benv):
    assert api.request("PUT", env_path((benv.ws, benv.env), "/pool-definition"), {"pools": [
        {"name": "bulk", "rank": 0, "minReservation": 0, "maxReservation": 50,
         "resources": [benv.res[0]["id"]]}]})[0] == 200
    status, b, _ = create(api, benv, pool="bulk")
    assert status == 202 and b["pool"] == "bulk"
    status, answer, _ = create(api, benv, pool="x" * 201)
    assert status == 400 and answer["error"]["details"]["field"] == "pool"


def test_large_batch(api, benv, cp_stack):
    """As many items as the 1 MiB body holds, inserted at once."""
    item = {"resource": benv.res[0]["name"], "request": {"messages": [{}]}}
    n = (1024 * 1024 - 200) // (len(json.dumps(item)) + 2)
    started = time.monotonic()
    status, b, _ = api.request("POST", benv.path(), {
        "mode": "ASYNC", "apiKeyId": benv.key["id"], "items": [item] * n})
    assert status == 202, b
    assert b["counts"]["total"] == n and b["counts"]["pending"] == n
    assert time.monotonic() - started < 10
    assert cp_stack.pg.psql(f"SELECT count(*), max(idx) FROM batch_items"
                            f" WHERE batch_id = '{b['id']}'") == f"{n}|{n - 1}"
