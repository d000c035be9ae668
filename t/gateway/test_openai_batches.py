"""OpenAI's batch shape through the gateway's nginx: /v1/files and /v1/batches,
authenticated by a gateway API key, each key seeing its environment's only.

The runner that runs the items is not part of these tests: they play it with
SQL updates of batch_items and batches as the batch contract has them, then
read the output and error files OpenAI's way.  The official Node SDK runs a
whole batch in test_openai_node_sdk_batches (t/sdk/batches.test.mjs)."""
import json
import random
import threading
import time
import uuid
from pathlib import Path

import pytest

from gwutil import connection_for


@pytest.fixture(scope="module")
def env(gw, fake):
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={"batch-chat": {"model": ("a", "gpt-batch")},
                   "batch-other": {"model": ("a", "gpt-batch")}},
        keys={"batch": {"resources": ["batch-chat"]}},
        wait=False)


@pytest.fixture(scope="module")
def other(gw, fake):
    """Another environment, with a key of its own."""
    return gw.provision(
        connections={"a": connection_for(fake)},
        resources={"batch-chat": {"model": ("a", "gpt-batch")}},
        keys={"batch": {"resources": ["batch-chat"]}},
        wait=False)


def auth(e):
    return {"Authorization": f"Bearer {e.key()}"}


def upload(gw, e, content, purpose="batch", filename="input.jsonl"):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"{purpose}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\";"
            f" filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n"
            ).encode() + content.encode() + f"\r\n--{boundary}--\r\n".encode()
    headers = dict(auth(e), **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return gw.request("POST", "/v1/files", body, headers)


def line(custom_id, model="batch-chat", content="hello", **extra):
    d = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": model, "messages": [{"role": "user", "content": content}]}}
    d.update(extra)
    return json.dumps(d)


def create(gw, e, file_id, **extra):
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h"}
    body.update(extra)
    return gw.request("POST", "/v1/batches", body, auth(e))


def uuid_of(openai_id):
    return str(uuid.UUID(openai_id.split("_")[-1].split("-")[-1]))


def play_runner(gw, batch_id, fail_custom_id=None):
    """The runner's work, as the contract writes it: every PENDING item
    SUCCEEDED with a chat completion (the one named FAILED with the gateway's
    400), then the batch COMPLETED."""
    bid = uuid_of(batch_id)
    gw.stack.pg.psql(f"""
        UPDATE batch_items SET status = CASE WHEN custom_id = '{fail_custom_id}'
                                             THEN 'FAILED' ELSE 'SUCCEEDED' END,
          status_code = CASE WHEN custom_id = '{fail_custom_id}' THEN 400 ELSE 200 END,
          response = CASE WHEN custom_id = '{fail_custom_id}' THEN NULL ELSE
            jsonb_build_object('id', 'chatcmpl-' || idx, 'object', 'chat.completion',
              'model', 'gpt-batch', 'choices', jsonb_build_array(jsonb_build_object(
                'index', 0, 'finish_reason', 'stop', 'message', jsonb_build_object(
                  'role', 'assistant', 'content', 'answer to ' || custom_id)))) END,
          error = CASE WHEN custom_id = '{fail_custom_id}' THEN jsonb_build_object(
            'code', 'invalid_request', 'message', 'bad request',
            'type', 'invalid_request_error') END,
          request_id = gen_random_uuid(), tries = 1, started_at = now(), finished_at = now()
        WHERE batch_id = '{bid}' AND status = 'PENDING';
        UPDATE batches b SET status = 'COMPLETED', started_at = now(), completed_at = now(),
          succeeded = (SELECT count(*) FROM batch_items WHERE batch_id = b.id
                       AND status = 'SUCCEEDED'),
          failed = (SELECT count(*) FROM batch_items WHERE batch_id = b.id
                    AND status = 'FAILED')
        WHERE id = '{bid}';""")


def test_files(gw, env, other):
    content = line("a") + "\n" + line("b") + "\n"
    r = upload(gw, env, content)
    assert r.status == 200, r
    f = r.json()
    assert f["id"].startswith("file-") and len(f["id"]) == 37
    assert {k: f[k] for k in ("object", "bytes", "filename", "purpose", "status")} == {
        "object": "file", "bytes": len(content), "filename": "input.jsonl",
        "purpose": "batch", "status": "processed"}
    assert abs(f["created_at"] - time.time()) < 60
    assert r.body.startswith(b'{"id":"file-'), r.body

    r = gw.request("GET", f"/v1/files/{f['id']}", headers=auth(env))
    assert r.status == 200 and r.json() == f
    r = gw.request("GET", f"/v1/files/{f['id']}/content", headers=auth(env))
    assert r.status == 200 and r.text == content

    second = upload(gw, env, line("c")).json()
    r = gw.request("GET", "/v1/files?limit=1", headers=auth(env))
    page = r.json()
    assert r.status == 200 and page["object"] == "list" and page["has_more"] is True
    assert [d["id"] for d in page["data"]] == [second["id"]] == [page["first_id"]]
    r = gw.request("GET", f"/v1/files?limit=1&after={second['id']}", headers=auth(env))
    assert [d["id"] for d in r.json()["data"]] == [f["id"]]
    r = gw.request("GET", "/v1/files?order=asc", headers=auth(env))
    assert [d["id"] for d in r.json()["data"]] == [f["id"], second["id"]]

    # another environment's key sees none of them
    assert gw.request("GET", f"/v1/files/{f['id']}", headers=auth(other)).status == 404
    assert gw.request("GET", "/v1/files", headers=auth(other)).json()["data"] == []
    assert gw.request("DELETE", f"/v1/files/{f['id']}", headers=auth(other)).status == 404

    r = gw.request("DELETE", f"/v1/files/{f['id']}", headers=auth(env))
    assert r.status == 200 and r.json() == {"id": f["id"], "object": "file", "deleted": True}
    assert gw.request("GET", f"/v1/files/{f['id']}", headers=auth(env)).status == 404


def test_files_refused(gw, env):
    for headers in ({}, {"Authorization": "Bearer vmx-not-a-key"}):
        r = gw.request("GET", "/v1/files", headers=headers)
        assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key", r
    r = upload(gw, env, line("a"), purpose="fine-tune")
    assert r.status == 400 and r.json()["error"]["param"] == "purpose"
    r = upload(gw, env, "")
    assert r.status == 400 and r.json()["error"]["param"] == "file"
    r = upload(gw, env, line("a"), filename="x" * 256)
    assert r.status == 400
    r = gw.request("POST", "/v1/files", {"purpose": "batch"}, auth(env))
    assert r.status == 400
    assert gw.request("GET", "/v1/files/file-nothex", headers=auth(env)).status == 404
    r = gw.request("GET", "/v1/files?limit=0", headers=auth(env))
    assert r.status == 400 and r.json()["error"]["param"] == "limit"


@pytest.mark.parametrize("lines, line_no, words", [
    (["{not json"], 1, "not a JSON object"),
    ([line("a"), "", line("b", method="GET")], 3, "method POST"),
    ([line("a", url="/v1/embeddings")], 1, "url /v1/chat/completions"),
    ([line("a"), json.dumps({"custom_id": "b", "method": "POST",
                             "url": "/v1/chat/completions", "body": {}})], 2, "model"),
    ([line("a"), line("b", model="no-such-resource")], 2, "body.model is no resource"),
    ([line("a", model="batch-other")], 1, "may not call resource batch-other"),
    ([line("a"), line("a")], 2, "custom_id repeats"),
])
def test_bad_lines(gw, env, lines, line_no, words):
    f = upload(gw, env, "\n".join(lines) + "\n").json()
    r = create(gw, env, f["id"])
    assert r.status == 400, r
    error = r.json()["error"]
    assert error["param"] == "input_file_id" and error["type"] == "invalid_request_error"
    assert f"line {line_no} " in error["message"] and words in error["message"], error


def test_create_refused(gw, env, other):
    f = upload(gw, env, line("a")).json()
    for endpoint in ("/v1/embeddings", "/v1/responses"):
        r = create(gw, env, f["id"], endpoint=endpoint)
        assert r.status == 400 and r.json()["error"]["param"] == "endpoint", r
    r = create(gw, env, f["id"], completion_window="48h")
    assert r.status == 400 and r.json()["error"]["param"] == "completion_window"
    r = create(gw, env, f["id"], metadata={"k": 1})
    assert r.status == 400 and r.json()["error"]["param"] == "metadata"
    r = create(gw, env, "file-" + uuid.uuid4().hex)
    assert r.status == 400 and r.json()["error"]["param"] == "input_file_id"
    # another environment's file is none
    r = create(gw, other, f["id"])
    assert r.status == 400 and r.json()["error"]["param"] == "input_file_id"


def test_batch_runs_to_its_output_files(gw, env, other):
    f = upload(gw, env, "\n".join([line("one"), line("two"), line("three")])).json()
    r = create(gw, env, f["id"], metadata={"job": "nightly"})
    assert r.status == 200, r
    b = r.json()
    assert b["id"].startswith("batch_") and len(b["id"]) == 38
    assert {k: b[k] for k in ("object", "endpoint", "input_file_id", "completion_window",
                              "status", "output_file_id", "error_file_id", "metadata",
                              "request_counts")} == {
        "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": f["id"],
        "completion_window": "24h", "status": "validating", "output_file_id": None,
        "error_file_id": None, "metadata": {"job": "nightly"},
        "request_counts": {"total": 3, "completed": 0, "failed": 0}}
    assert b["expires_at"] == b["created_at"] + 86400

    # an ASYNC batch of the key, its items the lines in order
    bid = uuid_of(b["id"])
    row = gw.stack.pg.psql(f"SELECT mode, api_key_id, total FROM batches WHERE id = '{bid}'")
    assert row == f"ASYNC|{env.key_objs['batch']['id']}|3"
    items = gw.stack.pg.psql(f"SELECT idx, custom_id, resource, request->>'model' FROM"
                             f" batch_items WHERE batch_id = '{bid}' ORDER BY idx")
    assert items.splitlines() == ["0|one|batch-chat|batch-chat", "1|two|batch-chat|batch-chat",
                                  "2|three|batch-chat|batch-chat"]

    assert gw.request("GET", f"/v1/batches/{b['id']}", headers=auth(other)).status == 404
    play_runner(gw, b["id"], fail_custom_id="two")
    done = gw.request("GET", f"/v1/batches/{b['id']}", headers=auth(env)).json()
    assert done["status"] == "completed" and done["completed_at"] >= done["created_at"]
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert done["output_file_id"].startswith("file-")
    assert done["error_file_id"].startswith("file-")

    out = gw.request("GET", f"/v1/files/{done['output_file_id']}/content", headers=auth(env))
    lines = [json.loads(x) for x in out.text.splitlines()]
    assert [list(x) for x in lines] == [["id", "custom_id", "response", "error"]] * 2
    # OpenAI's spacing and member order, to the byte
    assert out.text.splitlines()[0] == (
        f'{{"id": "{lines[0]["id"]}", "custom_id": "one", "response": {{"status_code": 200,'
        f' "request_id": "{lines[0]["response"]["request_id"]}", "body": '
        f'{json.dumps(lines[0]["response"]["body"])}}}, "error": null}}')
    assert [x["custom_id"] for x in lines] == ["one", "three"]
    first = lines[0]
    assert first["id"].startswith("batch_req_") and first["error"] is None
    assert first["response"]["status_code"] == 200
    uuid.UUID(first["response"]["request_id"])
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "answer to one"
    err = gw.request("GET", f"/v1/files/{done['error_file_id']}/content", headers=auth(env))
    (failed,) = [json.loads(x) for x in err.text.splitlines()]
    assert failed["custom_id"] == "two" and failed["error"] is None
    assert failed["response"]["status_code"] == 400
    assert failed["response"]["body"]["error"]["message"] == "bad request"
    meta = gw.request("GET", f"/v1/files/{done['output_file_id']}", headers=auth(env)).json()
    assert meta["purpose"] == "batch_output"
    assert meta["filename"] == f"{b['id']}_output.jsonl" and meta["bytes"] == len(out.body)

    # rendered once: a second read finds the same files
    again = gw.request("GET", f"/v1/batches/{b['id']}", headers=auth(env)).json()
    assert again == done
    n = gw.stack.pg.psql(f"SELECT count(*) FROM files WHERE filename LIKE '{b['id']}%'")
    assert n == "2"

    listed = gw.request("GET", "/v1/batches", headers=auth(env)).json()
    assert listed["object"] == "list" and listed["data"][0] == done
    assert gw.request("GET", "/v1/batches", headers=auth(other)).json()["data"] == []
    r = gw.request("POST", f"/v1/batches/{b['id']}/cancel", headers=auth(env))
    assert r.status == 409, r


def test_cancel(gw, env):
    f = upload(gw, env, "\n".join([line("a"), line("b"), line("c")])).json()
    b = create(gw, env, f["id"]).json()
    bid = uuid_of(b["id"])
    # the runner has claimed item 0: the batch waits for it
    gw.stack.pg.psql(f"UPDATE batch_items SET status = 'RUNNING', claimed_at = now()"
                     f" WHERE batch_id = '{bid}' AND idx = 0;"
                     f" UPDATE batches SET status = 'RUNNING', started_at = now()"
                     f" WHERE id = '{bid}'")
    r = gw.request("POST", f"/v1/batches/{b['id']}/cancel", headers=auth(env))
    assert r.status == 200, r
    c = r.json()
    assert c["status"] == "cancelling" and c["cancelling_at"] >= c["created_at"]
    assert c["cancelled_at"] is None and c["in_progress_at"] is not None
    assert gw.stack.pg.psql(f"SELECT string_agg(i.status, ',' ORDER BY idx), max(b.cancelled)"
                            f" FROM batch_items i JOIN batches b ON b.id = i.batch_id"
                            f" WHERE batch_id = '{bid}'") == "RUNNING,CANCELLED,CANCELLED|2"
    # cancelling again answers the batch as it is
    assert gw.request("POST", f"/v1/batches/{b['id']}/cancel",
                      headers=auth(env)).json()["status"] == "cancelling"

    # the runner ends the item, then the batch
    gw.stack.pg.psql(f"UPDATE batch_items SET status = 'SUCCEEDED', status_code = 200,"
                     f" response = '{{\"object\": \"chat.completion\"}}', finished_at = now()"
                     f" WHERE batch_id = '{bid}' AND idx = 0;"
                     f" UPDATE batches SET status = 'CANCELLED', succeeded = 1,"
                     f" cancelled_at = now(), completed_at = now() WHERE id = '{bid}'")
    done = gw.request("GET", f"/v1/batches/{b['id']}", headers=auth(env)).json()
    assert done["status"] == "cancelled" and done["cancelled_at"] is not None
    assert done["request_counts"] == {"total": 3, "completed": 1, "failed": 0}
    err = gw.request("GET", f"/v1/files/{done['error_file_id']}/content", headers=auth(env))
    lines = [json.loads(x) for x in err.text.splitlines()]
    assert [(x["custom_id"], x["response"], x["error"]["code"]) for x in lines] == [
        ("b", None, "batch_cancelled"), ("c", None, "batch_cancelled")]
    assert err.text.splitlines()[0].endswith(
        '"custom_id": "b", "response": null, "error": {"code": "batch_cancelled",'
        ' "message": "the batch was cancelled before this request ran"}}')


def test_list_renders_the_files_of_ended_batches(gw, env):
    f = upload(gw, env, line("a")).json()
    b = create(gw, env, f["id"]).json()
    play_runner(gw, b["id"])
    (listed,) = [d for d in gw.request("GET", "/v1/batches", headers=auth(env)).json()["data"]
                 if d["id"] == b["id"]]
    assert listed["status"] == "completed" and listed["output_file_id"].startswith("file-")
    assert listed["error_file_id"] is None
    assert gw.request("GET", f"/v1/batches/{b['id']}", headers=auth(env)).json() == listed


def test_cancel_of_a_queued_batch_ends_it(gw, env):
    f = upload(gw, env, line("a")).json()
    b = create(gw, env, f["id"]).json()
    c = gw.request("POST", f"/v1/batches/{b['id']}/cancel", headers=auth(env)).json()
    assert c["status"] == "cancelled" and c["cancelled_at"] is not None
    assert gw.request("GET", f"/v1/batches/{b['id']}",
                      headers=auth(env)).json()["output_file_id"] is None


def test_openai_node_sdk_batches(gw, env, run_node_tests):
    """The official SDK runs a batch: a thread plays the runner for the batches
    whose metadata asks for it."""
    stop = threading.Event()

    def runner():
        while not stop.is_set():
            ids = gw.stack.pg.psql(
                "SELECT 'batch_' || replace(id::text, '-', '') FROM batches"
                f" WHERE environment_id = '{env.env_id}' AND status = 'QUEUED'"
                " AND openai->'metadata'->>'run' = 'yes'")
            for batch_id in ids.split():
                play_runner(gw, batch_id)
            stop.wait(0.2)

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    try:
        out = run_node_tests({
            "VMX_BASE_URL": gw.url + "/v1",
            "VMX_API_KEY": env.key(),
            "VMX_BATCH_MODEL": "batch-chat",
        }, files=[str(Path(__file__).resolve().parents[1] / "sdk" / "batches.test.mjs")])
    finally:
        stop.set()
        t.join()
    print(out)
    assert "ℹ fail 0" in out, out
    assert "ℹ pass 3" in out, out


def test_hostile_uploads_and_lines(gw, env):
    """Malformed multipart bodies and input files: 4xx, never a 5xx."""
    rnd = random.Random(20261202)
    boundary = "b" * 20
    pieces = [f"--{boundary}\r\n", "Content-Disposition: form-data; name=\"file\";"
              " filename=\"x.jsonl\"\r\n", "Content-Disposition: form-data; name=\"purpose\"\r\n",
              "\r\n", "batch", line("a"), "\x00", "\xff", "{", "\n" * 50, f"--{boundary}--\r\n",
              "name=\"" + "n" * 5000 + "\"", "=" * 300]
    for _ in range(150):
        body = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 12)))
        ctype = rnd.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                            "application/json", f"multipart/form-data; boundary=\"{boundary}\""])
        r = gw.request("POST", "/v1/files", body.encode("utf-8", "surrogateescape"),
                       dict(auth(env), **{"Content-Type": ctype}))
        assert r.status in (200, 400), (r, body)
    ok = [line("a"), line("b"), "{}", "[]", "null", "\"s\"", "{\"custom_id\": 1}",
          json.dumps({"custom_id": "x" * 600, "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "batch-chat", "messages": []}}),
          json.dumps({"custom_id": "m", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "batch-chat", "messages": "no", "stream": True}}),
          "\t \r", "{" * 2000]
    for _ in range(60):
        content = "\n".join(rnd.choice(ok) for _ in range(rnd.randint(1, 6)))
        f = upload(gw, env, content)
        assert f.status == 200, f
        r = create(gw, env, f.json()["id"])
        assert r.status in (200, 400), (r, content)
        if r.status == 400:
            assert r.json()["error"]["message"], r
    for body in (b"", b"[]", b"{\"input_file_id\": 5}", b"{" * 5000, b"\xff"):
        r = gw.request("POST", "/v1/batches", body,
                       dict(auth(env), **{"Content-Type": "application/json"}))
        assert r.status == 400, (r, body)
