"""A batch runner's signed headers instead of an API key (docs/ARCHITECTURE.md, "Batches"):
x-vmx-batch-{id,item,key,pool,time} signed with HMAC-SHA256 under the data-plane token
authenticate the request as the key whose hash they name; a bad or stale signature, or a
key that is not one of the path's environment, is 401 invalid_api_key. The headers never
reach the provider, a signed pool replaces the resource's pool for admission, and the
audit record names the batch and item (spool, GET .../audit?batchId=, GET .../audit/{id}).
A signed request's attempt outlives its client (the runner): its record holds the
provider's answer; an ordinary client's going away still ends its request 499, the
attempt cut. A batch item cannot stream."""
import hashlib
import hmac
import http.client
import json
import time
import urllib.parse
import uuid

import pytest

from gwutil import connection_for, http_request, record
from harness.spool import records_in

PROMPT = " ".join(["hello"] * 93)    # estimated at 100 tokens (test_prioritization.py)


@pytest.fixture(scope="module")
def env(gw, fake):
    env = gw.provision(
        connections={"shared": connection_for(
            fake, capacity=[{"period": "minute", "tokens": 1000}]),
                     "open": connection_for(fake)},
        resources={"r-a": {"model": ("shared", "big-1")},
                   "r-free": {"model": ("shared", "big-1")},
                   "r-slow": {"model": ("open", "slow-1.5")},
                   "r-stall": {"model": ("open", "stall"),
                               "fallback": [("open", "slow-0.5")]}},
        keys={"k": {"resources": ["r-a", "r-free", "r-slow", "r-stall"]}},
    )
    v0 = gw.nginx.config_version()
    status, body, _ = gw.api.request("PUT", f"{env.prefix}/pool-definition", {"pools": [
        {"name": "A", "rank": 0, "minReservation": 50, "maxReservation": 70,
         "resources": [env.res["r-a"]["id"]]},
        {"name": "bulk", "rank": 1, "minReservation": 10, "maxReservation": 30,
         "resources": []},
    ]})
    assert status == 200, body
    gw.wait_version_above(v0)
    return env


def key_hash(key):
    return hashlib.sha256(key.encode()).hexdigest()


def signed(token, batch_id, item, khash, pool=None, at=None):
    at = int(time.time()) if at is None else at
    message = f"{batch_id}\n{item}\n{khash}\n{pool or ''}\n{at}"
    h = {"x-vmx-batch-id": batch_id, "x-vmx-batch-item": str(item), "x-vmx-batch-key": khash,
         "x-vmx-batch-time": str(at),
         "x-vmx-batch-signature": hmac.new(token.encode(), message.encode(),
                                           hashlib.sha256).hexdigest()}
    if pool is not None:
        h["x-vmx-batch-pool"] = pool
    return h


def batch_chat(gw, env, headers, model="r-free", content="hello"):
    return http_request(gw.url, "POST",
                        f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions",
                        {"model": model, "messages": [{"role": "user", "content": content}]},
                        headers)


def assert_refused(r):
    assert r.status == 401, r
    assert r.json()["error"]["code"] == "invalid_api_key", r.json()


def test_signed_headers_authenticate_as_the_key(gw, env, fake):
    fake.clear()
    r = batch_chat(gw, env, signed(gw.nginx.token, str(uuid.uuid4()), 3,
                                   key_hash(env.key("k"))))
    assert r.status == 200, r
    sent = fake.last()
    assert not [n for n in sent.headers if n.startswith("x-vmx-")], sent.headers
    assert sent.headers.get("authorization") == f"Bearer {fake.api_key}"


def test_bad_stale_or_foreign_signatures_are_refused(gw, env, fake):
    token, bid, khash = gw.nginx.token, str(uuid.uuid4()), key_hash(env.key("k"))
    fake.clear()

    h = signed(token, bid, 0, khash)
    h["x-vmx-batch-item"] = "1"                         # not what was signed
    assert_refused(batch_chat(gw, env, h))
    assert_refused(batch_chat(gw, env, signed("not-the-token-" * 3, bid, 0, khash)))
    assert_refused(batch_chat(gw, env, signed(token, bid, 0, khash,
                                              at=int(time.time()) - 301)))
    assert_refused(batch_chat(gw, env, signed(token, bid, 0, khash,
                                              at=int(time.time()) + 301)))
    assert_refused(batch_chat(gw, env, signed(token, bid, 0, key_hash("vmx-unknown"))))
    h = signed(token, bid, 0, khash)
    del h["x-vmx-batch-id"]
    assert_refused(batch_chat(gw, env, h))

    # a client's key does not help a bad signature
    h = signed(token, bid, 0, khash)
    h["x-vmx-batch-signature"] = "0" * 64
    h["Authorization"] = f"Bearer {env.key('k')}"
    assert_refused(batch_chat(gw, env, h))

    # the key of another environment than the path's
    other = gw.provision(connections={"c": connection_for(fake)},
                         resources={"r-free": {"model": ("c", "big-1")}},
                         keys={"k": {"resources": ["r-free"]}})
    assert_refused(batch_chat(gw, env, signed(token, bid, 0, key_hash(other.key("k")))))
    assert fake.chat_requests() == []


def test_unknown_pool_is_named(gw, env, fake):
    fake.clear()
    r = batch_chat(gw, env, signed(gw.nginx.token, str(uuid.uuid4()), 0,
                                   key_hash(env.key("k")), pool="nightly"))
    assert r.status == 400, r
    e = r.json()["error"]
    assert e["type"] == "invalid_request_error", e
    assert e["message"] == 'The pool "nightly" is not defined in this environment', e
    assert fake.chat_requests() == []


def test_signed_pool_replaces_the_resources(gw, env):
    # r-free is in no pool: alone it is never gated; in the batch's pool "bulk"
    # (10 %..30 % of 1000 tokens) it is cut off at 300 tokens
    token, bid, khash = gw.nginx.token, str(uuid.uuid4()), key_hash(env.key("k"))
    admitted = 0
    for i in range(6):
        r = batch_chat(gw, env, signed(token, bid, i, khash, pool="bulk"), content=PROMPT)
        if r.status != 200:
            break
        admitted += 1
    assert 1 <= admitted <= 3, admitted
    assert r.status == 429, r
    e = r.json()["error"]
    assert e["code"] == "prioritization_gate_denied", e
    assert e["message"].startswith('Pool "bulk" is over its current share'), e

    assert env.chat("r-free", body={"messages": [{"role": "user", "content": PROMPT}]}) \
        .status == 200


def test_audit_names_the_batch_and_item(gw, env):
    bid = str(uuid.uuid4())
    r = batch_chat(gw, env, signed(gw.nginx.token, bid, 41, key_hash(env.key("k"))))
    assert r.status == 200, r
    rid = r.header("x-vmx-request-id")
    spooled = record(gw, r)
    assert spooled["batchId"] == bid and spooled["batchItem"] == 41, spooled
    assert spooled["apiKeyId"] == env.key_objs["k"]["id"], spooled

    plain = env.chat("r-free")
    assert plain.status == 200, plain
    assert record(gw, plain)["batchId"] is None
    assert record(gw, plain)["batchItem"] is None

    q = urllib.parse.urlencode({"batchId": bid})
    deadline = time.time() + 15
    while True:
        st, body, _ = gw.api.request("GET", f"{env.prefix}/audit?{q}")
        assert st == 200, body
        if body["total"] or time.time() > deadline:
            break
        time.sleep(0.2)
    assert body["total"] == 1, body
    doc = body["data"][0]
    assert doc["id"] == rid and doc["batchId"] == bid and doc["batchItem"] == 41, doc

    st, doc, _ = gw.api.request("GET", f"{env.prefix}/audit/{rid}")
    assert st == 200, doc
    assert doc["batchId"] == bid and doc["batchItem"] == 41, doc

    st, body, _ = gw.api.request("GET", f"{env.prefix}/audit?batchId=not-a-uuid")
    assert st == 400, body


def first_content(request):
    """the first message's content of a spooled request, or None: the spool is the
    session's, and other tests' requests may be anything (invalid UTF-8, no messages)"""
    try:
        return json.loads(request)["messages"][0]["content"]
    except (ValueError, TypeError, KeyError, IndexError):
        return None


def abandoned(gw, env, headers, content, model="r-slow"):
    """A chat request to model (r-slow: 1.5 s at the provider) whose client goes away after
    0.3 s; its audit record from the spool, found by its content, as (meta, response)."""
    host, port = gw.url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=0.3)
    c.request("POST", f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions",
              json.dumps({"model": model,
                          "messages": [{"role": "user", "content": content}]}).encode(),
              dict(headers, **{"Content-Type": "application/json"}))
    with pytest.raises(TimeoutError):
        c.getresponse()
    c.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        for meta, request, response in records_in(gw.stack.nginx.base_dir / "spool"):
            if first_content(request) == content:
                return meta, json.loads(response) if response else None
        time.sleep(0.1)
    raise AssertionError(f"no audit record of {content!r}")


def test_signed_attempt_outlives_its_client(gw, env, fake):
    """The runner goes away mid-attempt: the provider's answer is still read whole and
    audited as the answer it was (200, the chat completion), so that the runner's resume
    takes it from there instead of sending the item again."""
    content = f"outlive {uuid.uuid4()}"
    meta, response = abandoned(gw, env, signed(gw.nginx.token, str(uuid.uuid4()), 5,
                                               key_hash(env.key("k"))), content)
    assert meta["statusCode"] == 200 and meta["errorCode"] is None, meta
    assert meta["duration"] >= 1500, meta
    assert [a["statusCode"] for a in meta["attempts"]] == [200], meta
    assert meta["attempts"][0]["completionTokens"], meta
    assert response["choices"][0]["message"]["content"] == \
        f"Hello from slow-1.5! You said: {content}", response
    asks = [r for r in fake.chat_requests()
            if isinstance(r.body, dict) and r.body["messages"][-1]["content"] == content]
    assert len(asks) == 1


def test_signed_attempt_falls_back_without_its_client(gw, env):
    """The runner went away during an attempt that then fails: the fallback still runs."""
    content = f"fall back {uuid.uuid4()}"
    meta, response = abandoned(gw, env, signed(gw.nginx.token, str(uuid.uuid4()), 6,
                                               key_hash(env.key("k"))), content, "r-stall")
    assert meta["statusCode"] == 200, meta
    assert [a["model"] for a in meta["attempts"]] == ["stall", "slow-0.5"], meta
    assert meta["attempts"][1]["statusCode"] == 200, meta
    assert response["choices"][0]["message"]["content"] == \
        f"Hello from slow-0.5! You said: {content}", response


def test_ordinary_client_gone_cuts_the_attempt(gw, env):
    """A client with an API key that goes away mid-attempt: 499, the attempt cut."""
    content = f"cut {uuid.uuid4()}"
    meta, response = abandoned(gw, env, {"Authorization": f"Bearer {env.key('k')}"}, content)
    assert meta["statusCode"] == 499 and response is None, meta
    assert meta["duration"] < 1500, meta
    assert meta["attempts"][0]["providerDuration"] < 1500, meta


def test_batch_item_cannot_stream(gw, env, fake):
    """A stream is cut with its client, a batch item's answer must not be: refused."""
    fake.clear()
    r = http_request(gw.url, "POST", f"/v1/completion/{env.ws_id}/{env.env_id}/chat/completions",
                     {"model": "r-free", "stream": True,
                      "messages": [{"role": "user", "content": "hello"}]},
                     signed(gw.nginx.token, str(uuid.uuid4()), 0, key_hash(env.key("k"))))
    assert r.status == 400, r
    assert r.json()["error"]["code"] == "invalid_request", r.json()
    assert not fake.chat_requests()
