"""Prices and cost (docs/ARCHITECTURE.md, "Cost"): the price table's API and
its validation, the seed, and the cost the ingestion gives every usage row
and audit record at the request's time (null for a model of no price),
aggregated by POST .../usage and counted in /metrics; records from a fake
data plane's spool, and one request through the real gateway."""
import datetime as dt
import time
import uuid
from decimal import Decimal

import pytest

from harness.api import Api
from cphelpers import unique, wait_ingested, wait_until

UTC = dt.timezone.utc
PASSWORD = "a-long-test-password"
READ_ONLY = "00000000-0000-4000-8000-000000000002"


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def model_name():
    return "test-" + uuid.uuid4().hex[:12]


def create_price(api, **fields):
    body = dict({"provider": "openai", "input": 2.5, "output": 10}, **fields)
    status, price, _ = api.request("POST", "/api/v1/prices", body)
    assert status == 201, price
    return price


def sql(stack, text):
    return stack.pg.psql(text)


def settle_prices():
    """A change reaches the ingestion at its next round (100 ms here)."""
    time.sleep(0.5)


class Env:
    def __init__(self, api):
        ws = api.create_workspace(unique("ws"))
        self.ws, self.env = ws["id"], api.create_environment(ws["id"], "production")["id"]

    def path(self, tail):
        return f"/api/v1/workspaces/{self.ws}/environments/{self.env}{tail}"


def record(env, when, attempts):
    rid = str(uuid.uuid4())
    last = attempts[-1] if attempts else {}
    return {"v": 2, "id": rid, "timestamp": iso(when), "workspaceId": env.ws,
            "environmentId": env.env, "requestId": rid, "resourceId": str(uuid.uuid4()),
            "resource": "chat", "apiKeyId": None, "sourceIp": "127.0.0.1", "method": "POST",
            "path": "/v1/chat/completions", "statusCode": last.get("statusCode", 429),
            "provider": last.get("provider"), "model": last.get("model"),
            "duration": 12.5, "gateDuration": 0.1, "routingDuration": 0.1, "events": [],
            "attempts": attempts, "payloadTruncated": False}


def attempt(model, prompt=1000, completion=500, provider="openai", status=200, **extra):
    return dict({"provider": provider, "model": model, "connectionId": str(uuid.uuid4()),
                 "statusCode": status, "failureReason": None, "providerDuration": 10.0,
                 "promptTokens": prompt, "completionTokens": completion,
                 "totalTokens": None if prompt is None else prompt + completion}, **extra)


def ingest(stack, records):
    stack.dataplane.add_records(records)
    wait_ingested(stack)


def usage_cost(stack, rid, index=0):
    v = sql(stack, f"SELECT coalesce(cost::text, 'null') FROM usage_records"
                   f" WHERE request_id = '{rid}' AND attempt_index = {index}")
    return None if v == "null" else Decimal(v)


def audit_doc(stack, env, rid):
    status, body, _ = stack.api.request("GET", env.path(f"/audit/{rid}"))
    assert status == 200, body
    return body


@pytest.fixture
def penv(audit_stack):
    return Env(audit_stack.api)


# ------------------------------------------------------------------ the API
def test_price_crud_and_derived_validity(audit_stack):
    api, model = audit_stack.api, model_name()
    first = create_price(api, model=model, validFrom="2026-01-01T00:00:00Z",
                         cachedInput=1.25)
    assert first["currency"] == "USD" and first["input"] == 2.5 and first["output"] == 10
    assert first["cachedInput"] == 1.25 and first["validTo"] is None
    assert first["validFrom"] == "2026-01-01T00:00:00.000Z"

    second = create_price(api, model=model, validFrom="2026-06-01T00:00:00+02:00",
                          input=0.000001)
    assert second["cachedInput"] is None and second["input"] == 0.000001
    status, got, _ = api.request("GET", f"/api/v1/prices/{first['id']}")
    assert status == 200 and got["validTo"] == "2026-05-31T22:00:00.000Z"

    status, page, _ = api.request("GET", f"/api/v1/prices?provider=openai&model={model}")
    assert status == 200 and page["total"] == 2
    assert {p["id"] for p in page["data"]} == {first["id"], second["id"]}
    status, page, _ = api.request("GET", f"/api/v1/prices?provider=anthropic&model={model}")
    assert status == 200 and page["total"] == 0

    status, patched, _ = api.request("PATCH", f"/api/v1/prices/{first['id']}", {"output": 12})
    assert status == 200, patched
    assert patched["output"] == 12 and patched["input"] == 2.5
    assert patched["validFrom"] == first["validFrom"] and patched["updatedAt"] >= first["updatedAt"]
    status, put, _ = api.request("PUT", f"/api/v1/prices/{first['id']}",
                                 {"provider": "openai", "model": model, "input": 3,
                                  "output": 15})
    assert status == 200, put
    assert (put["input"], put["output"], put["cachedInput"]) == (3, 15, None)
    assert put["validFrom"] == first["validFrom"]          # absent from a PUT: kept

    assert api.request("DELETE", f"/api/v1/prices/{second['id']}")[0] == 204
    status, log, _ = api.request("GET", f"/api/v1/activity?objectId={second['id']}")
    assert status == 200, log
    objects = {e["action"]: e["object"] for e in log["data"]}      # a price is named by its model
    assert objects["price:create"] == {"kind": "price", "id": second["id"], "name": model}
    assert objects["price:delete"]["name"] == model
    assert api.request("GET", f"/api/v1/prices/{second['id']}")[0] == 404
    assert api.request("DELETE", f"/api/v1/prices/{second['id']}")[0] == 404
    assert api.request("GET", f"/api/v1/prices/{first['id']}")[1]["validTo"] is None


def test_price_validation(audit_stack):
    api, model = audit_stack.api, model_name()
    ok = {"provider": "openai", "model": model, "input": 1, "output": 2}
    for change, field in [({"input": -1}, "input"), ({"output": "2"}, "output"),
                          ({"input": 0.0000001}, "input"), ({"input": 1e6}, "input"),
                          ({"cachedInput": -0.5}, "cachedInput"),
                          ({"provider": "openia"}, "provider"), ({"model": ""}, "model"),
                          ({"model": "x" * 129}, "model"), ({"model": "a\nb"}, "model"),
                          ({"currency": "EUR"}, "currency"),
                          ({"validFrom": "yesterday"}, "validFrom"),
                          ({"validTo": "2026-01-01T00:00:00Z"}, "validTo"),
                          ({"colour": "red"}, "colour")]:
        status, body, _ = api.request("POST", "/api/v1/prices", dict(ok, **change))
        assert status == 400, (change, body)
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["details"]["field"] == field, (change, body)
    missing = dict(ok)
    del missing["output"]
    status, body, _ = api.request("POST", "/api/v1/prices", missing)
    assert status == 400 and body["error"]["details"]["field"] == "output"

    # the alias of gemini is stored as its id; one price per provider, model and start
    price = create_price(api, provider="google", model=model, validFrom="2026-03-01T00:00:00Z")
    assert price["provider"] == "gemini"
    status, body, _ = api.request("POST", "/api/v1/prices",
                                  dict(ok, provider="gemini", validFrom="2026-03-01T00:00:00Z"))
    assert status == 409 and body["error"]["details"]["field"] == "validFrom"
    assert api.request("GET", "/api/v1/prices?provider=nope")[0] == 400


def test_seeded_prices(audit_stack):
    status, page, _ = audit_stack.api.request("GET",
                                              "/api/v1/prices?provider=openai&model=gpt-4o")
    assert status == 200 and page["total"] >= 1
    seed = min(page["data"], key=lambda p: p["validFrom"])
    assert (seed["input"], seed["output"], seed["cachedInput"]) == (2.5, 10, 1.25)
    for provider in ("openai", "anthropic", "gemini", "groq", "aws-bedrock"):
        status, page, _ = audit_stack.api.request("GET", f"/api/v1/prices?provider={provider}")
        assert status == 200 and page["total"] >= 3, provider


def test_only_admins_change_prices(audit_stack):
    api = audit_stack.api
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"username": unique("reader"), "password": PASSWORD})
    assert status == 201, user
    assert api.request("POST", f"/api/v1/roles/{READ_ONLY}/assign",
                       {"userIds": [user["id"]]})[0] == 200
    reader = Api(audit_stack.cp.url)
    reader.login(user["username"], PASSWORD)
    price = create_price(api, model=model_name())
    assert reader.request("GET", "/api/v1/prices")[0] == 200
    assert reader.request("GET", f"/api/v1/prices/{price['id']}")[0] == 200
    status, body, _ = reader.request("POST", "/api/v1/prices",
                                     {"provider": "openai", "model": "x", "input": 1,
                                      "output": 1})
    assert status == 403, body
    assert reader.request("PATCH", f"/api/v1/prices/{price['id']}", {"input": 0})[0] == 403
    assert reader.request("DELETE", f"/api/v1/prices/{price['id']}")[0] == 403


# ----------------------------------------------------------------- the cost
def test_ingested_cost_per_row_and_record(audit_stack, penv):
    s, model, other = audit_stack, model_name(), model_name()
    create_price(s.api, model=model, input=2.5, output=10, cachedInput=1.25,
                 validFrom="2026-01-01T00:00:00Z")
    settle_prices()
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    plain = record(penv, t, [attempt(model)])
    dated = record(penv, t, [attempt(model + "-2024-08-06")])
    cached = record(penv, t, [attempt(model, cachedTokens=400)])
    unknown = record(penv, t, [attempt(other)])
    fallback = record(penv, t, [attempt(model, None, None, status=503),
                                attempt(model, 100, 10)])
    refused = record(penv, t, [])
    ingest(s, [plain, dated, cached, unknown, fallback, refused])

    # (1000 * 2.5 + 500 * 10) / 1e6; cached prompt tokens at the cached input price
    assert usage_cost(s, plain["id"]) == Decimal("0.0075")
    assert usage_cost(s, dated["id"]) == Decimal("0.0075")
    assert usage_cost(s, cached["id"]) == Decimal("0.007")
    assert usage_cost(s, unknown["id"]) is None
    assert usage_cost(s, fallback["id"], 0) is None
    assert usage_cost(s, fallback["id"], 1) == Decimal("0.00035")
    assert usage_cost(s, refused["id"]) is None

    assert audit_doc(s, penv, plain["id"])["cost"] == 0.0075
    assert audit_doc(s, penv, fallback["id"])["cost"] == 0.00035
    assert audit_doc(s, penv, unknown["id"])["cost"] is None
    status, page, _ = s.api.request("GET", penv.path("/audit?pageSize=100"))
    assert status == 200
    costs = {r["id"]: r["cost"] for r in page["data"]}
    assert costs[cached["id"]] == 0.007 and costs[refused["id"]] is None


def test_price_change_applies_to_later_requests(audit_stack, penv):
    s, model = audit_stack, model_name()
    change = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    create_price(s.api, model=model, input=1, output=2, validFrom="2026-01-01T00:00:00Z")
    create_price(s.api, model=model, input=4, output=8, validFrom=iso(change))
    settle_prices()
    before = record(penv, change - dt.timedelta(milliseconds=1), [attempt(model, 1000, 1000)])
    at = record(penv, change, [attempt(model, 1000, 1000)])
    after = record(penv, change + dt.timedelta(minutes=1), [attempt(model, 1000, 1000)])
    ingest(s, [before, at, after])
    assert usage_cost(s, before["id"]) == Decimal("0.003")
    assert usage_cost(s, at["id"]) == Decimal("0.012")
    assert usage_cost(s, after["id"]) == Decimal("0.012")

    # a change made now reprices the requests ingested from now on, not the stored ones
    status, _, _ = s.api.request("POST", "/api/v1/prices",
                                 {"provider": "openai", "model": model, "input": 0,
                                  "output": 0, "validFrom": iso(change + dt.timedelta(
                                      seconds=30))})
    assert status == 201
    settle_prices()
    later = record(penv, change + dt.timedelta(minutes=2), [attempt(model, 1000, 1000)])
    ingest(s, [later])
    assert usage_cost(s, later["id"]) == Decimal("0")
    assert usage_cost(s, after["id"]) == Decimal("0.012")


def test_usage_aggregates_cost(audit_stack, penv):
    s, model, other = audit_stack, model_name(), model_name()
    create_price(s.api, model=model, input=1, output=1, validFrom="2026-01-01T00:00:00Z")
    settle_prices()
    start = dt.datetime.now(UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=30)
    records = [record(penv, start + dt.timedelta(seconds=10 * i),
                      [attempt(model, 1000 * (i + 1), 0)]) for i in range(4)]
    records += [record(penv, start, [attempt(other)]),
                record(penv, start, [attempt(model, None, None, status=500)])]
    ingest(s, records)
    query = {"granularity": "hour", "metrics": {"cost": "sum", "promptTokens": "sum"},
             "dimensions": ["model"],
             "filter": {"dateRange": {"start": iso(start - dt.timedelta(hours=1)),
                                      "end": iso(start + dt.timedelta(hours=1))}}}
    status, body, _ = s.api.request("POST", penv.path("/usage"), query)
    assert status == 200, body
    by_model = {}
    for point in body["data"]:
        row = by_model.setdefault(point["model"], {"cost": None, "promptTokens": 0})
        if point["cost"] is not None:
            row["cost"] = (row["cost"] or 0) + point["cost"]
        row["promptTokens"] += point["promptTokens"]
    # 10000 prompt tokens at 1 USD per million; an unpriced model's sum is null
    assert by_model[model]["cost"] == pytest.approx(0.01)
    assert by_model[other] == {"cost": None, "promptTokens": 1000}

    # the same from usage_records (a percentile), and the other aggregations
    query["metrics"] = {"cost": "sum", "tokensPerSecond": "p50"}
    status, raw, _ = s.api.request("POST", penv.path("/usage"), query)
    assert status == 200, raw
    assert sum(p["cost"] or 0 for p in raw["data"] if p["model"] == model) \
        == pytest.approx(0.01)
    assert all(p["cost"] is None for p in raw["data"] if p["model"] == other)
    query["metrics"] = {"cost": "max"}
    status, body, _ = s.api.request("POST", penv.path("/usage"), query)
    assert status == 200 and max(p["cost"] or 0 for p in body["data"]) == pytest.approx(0.004)


def test_cost_metrics(audit_stack, penv):
    s, model, other = audit_stack, model_name(), model_name()
    create_price(s.api, model=model, input=1, output=1, validFrom="2026-01-01T00:00:00Z")
    settle_prices()
    t = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    ingest(s, [record(penv, t, [attempt(model, 1000, 1000)]),
               record(penv, t, [attempt(model, 500, 500)]),
               record(penv, t, [attempt(other)])])
    status, text, _ = s.api.request("GET", "/metrics", token=s.metrics_token)
    assert status == 200
    labels = (f'workspace="{penv.ws}",environment="{penv.env}",provider="openai",'
              f'model="{model}"')
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values[f"vmx_cp_usage_cost_usd_total{{{labels}}}"] == pytest.approx(0.003)
    unpriced = labels.replace(model, other)
    assert values[f"vmx_cp_usage_unpriced_rows_total{{{unpriced}}}"] == 1
    assert f"vmx_cp_usage_cost_usd_total{{{unpriced}}}" not in values


def test_cost_of_a_request_through_the_gateway(gw, fake):
    """The data plane's own record of a chat completion, priced by its model."""
    model = model_name()
    status, body, _ = gw.api.request("POST", "/api/v1/prices",
                                     {"provider": "openai", "model": model, "input": 1,
                                      "output": 3, "validFrom": "2026-01-01T00:00:00Z"})
    assert status == 201, body
    priced_at = time.time()
    env = gw.provision(connections={"a": {"provider": "openai",
                                          "config": {"apiKey": fake.api_key,
                                                     "baseUrl": fake.url}}},
                       resources={"chat": {"model": ("a", model)}},
                       keys={"k": {"resources": ["chat"]}})
    time.sleep(max(0.0, priced_at + 2.5 - time.time()))   # past the ingestion's next round
    answer = env.chat("chat")
    assert answer.status == 200, answer
    usage = answer.json()["usage"]

    def stored():
        st, page, _ = gw.api.request("GET", env.prefix + "/audit?pageSize=1&resourceId="
                                     + env.res["chat"]["id"])
        return page["data"][0] if st == 200 and page["data"] else None

    wait_until(stored, what="the request's audit record")
    expected = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 3) / 1e6
    assert stored()["cost"] == pytest.approx(expected) and expected > 0
