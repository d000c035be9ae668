"""The routing test bench, POST .../resources/{id}/route-test: the data
plane's compiler and evaluator (lib/vmx_rules) run on a pasted request with
a trace of each group and condition, the prompt tokens counted by the data
plane's tokenizer, and the model chain that would be called; no provider is
called."""
import uuid

from harness.api import Api
from cphelpers import condition, env_path, model, openai_connection, unique

PASSWORD = "a-long-test-password"
READ_ONLY = "00000000-0000-4000-8000-000000000002"


def group(conditions=(), **over):
    g = {"type": "group", "id": unique("g"), "description": "d", "enabled": True,
         "operator": "AND", "conditions": list(conditions), "mode": "UI",
         "action": "CALL_MODEL"}
    g.update(over)
    return g


def chat(text, **over):
    body = {"model": "chat", "messages": [{"role": "user", "content": text}]}
    body.update(over)
    return body


def bench(api, env, rid, body, **kw):
    return api.request("POST", env_path(env, f"/resources/{rid}/route-test"), body, **kw)


def resource_with(api, env, groups, enabled=True, **over):
    """an openai connection c, a groq one g, and a resource on c with a fallback
    on g whose routing groups are groups(c, g)"""
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini", "gpt-4o"])
    g = api.create_connection(env[0], env[1], name=unique("groq"), provider="groq",
                              config={"apiKey": "gk"})
    fields = {"name": unique("r"), "model": model(c),
              "fallbackModels": [model(g, "llama-3.1-8b-instant", "groq")],
              "routing": {"enabled": enabled, "conditions": groups(c, g)}}
    fields.update(over)
    return c, g, api.create_resource(env[0], env[1], **fields)


def test_picks_the_group_and_model(api, env):
    long_g = group([condition("tokens.input", "GREATER_THAN", "number", "50")],
                   description="long prompts")
    sql_g = group([condition("request.lastMessage.content", "PATTERN", "string", r"\bSQL\b"),
                   condition("request.model", "EQUAL", "string", "chat")])

    def groups(c, g):
        long_g["then"] = model(c, "gpt-4o")
        sql_g["then"] = model(g, "llama-3.1-8b-instant", "groq")
        return [long_g, sql_g]

    c, g, r = resource_with(api, env, groups)
    chain = [model(g, "llama-3.1-8b-instant", "groq")]

    # nothing matches: the primary model, then the fallbacks
    status, a, _ = bench(api, env, r["id"], {"request": chat("hello")})
    assert status == 200, a
    assert a["matchedGroup"] is None and a["action"] == "CALL_MODEL" and not a["routed"]
    assert a["model"] == model(c) and a["fallbackModels"] == chain
    # 3 per message, "user" and "hello" one token each, 3 for the reply
    assert a["tokens"] == {"prompt": 8, "estimated": True}
    assert a["resourceSource"] == "stored" and a["routingEnabled"] is True
    assert a["errorRateSource"] == "request" and a["truncated"] is False
    g0, g1 = a["groups"]
    assert g0["index"] == 0 and g0["id"] == long_g["id"]
    assert g0["description"] == "long prompts" and g0["enabled"] is True
    assert g0["then"] == model(c, "gpt-4o") and g0["traffic"] == 100
    assert g0["matched"] is False and g0["chosen"] is False
    assert g0["conditions"] == [{"field": "routing.conditions[0].conditions[0]",
                                 "expression": "tokens.input", "value": 8, "result": False}]
    # an AND that failed still shows its second condition
    assert g1["conditions"] == [
        {"field": "routing.conditions[1].conditions[0]",
         "expression": "request.lastMessage.content", "value": "hello", "result": False},
        {"field": "routing.conditions[1].conditions[1]", "expression": "request.model",
         "value": "chat", "result": True}]

    status, a, _ = bench(api, env, r["id"], {"request": chat("write SQL for me")})
    assert status == 200, a
    assert a["matchedGroup"] == 1 and a["routed"] is True
    assert a["model"] == model(g, "llama-3.1-8b-instant", "groq")
    assert a["fallbackModels"] == chain
    assert [x["chosen"] for x in a["groups"]] == [False, True]

    # the first match wins; the groups after it are shown, not chosen
    status, a, _ = bench(api, env, r["id"], {"request": chat("SQL " * 80)})
    assert status == 200, a
    assert a["matchedGroup"] == 0 and a["model"] == model(c, "gpt-4o")
    assert a["tokens"]["prompt"] > 50
    assert [(x["matched"], x["chosen"]) for x in a["groups"]] == [(True, True), (True, False)]
    value = a["groups"][1]["conditions"][0]
    assert value["truncated"] is True and len(value["value"].encode()) < 256


def test_unsaved_resource(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [], enabled=False)
    doc = {k: v for k, v in r.items()}
    doc["routing"] = {"enabled": True, "conditions": [
        group([condition("request.user", "EXISTS")], then=model(c, "gpt-4o"))]}
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi", user="bob"),
                                             "resource": doc})
    assert status == 200, a
    assert a["resourceSource"] == "request" and a["matchedGroup"] == 0
    assert a["model"] == model(c, "gpt-4o")
    assert a["groups"][0]["conditions"][0]["value"] == "bob"

    # the stored one is untouched and its routing is off
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi", user="bob")})
    assert status == 200 and a["routingEnabled"] is False and a["groups"] == []
    assert a["matchedGroup"] is None and a["model"] == model(c)

    # the unsaved document is validated as PUT validates it
    doc["useFallback"] = False
    doc["model"] = model(c, "o3")
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi"), "resource": doc})
    assert status == 400 and a["error"]["code"] == "validation_error"
    assert a["error"]["details"]["field"] == "resource.model.model", a


def test_block_group(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [
        group([condition("request.allMessagesContent", "CONTAINS", "string", "password")],
              action="BLOCK")])
    status, a, _ = bench(api, env, r["id"], {"request": chat("my password is x")})
    assert status == 200, a
    assert a["action"] == "BLOCK" and a["matchedGroup"] == 0
    assert a["model"] is None and a["fallbackModels"] == [] and not a["routed"]
    assert a["groups"][0]["action"] == "BLOCK" and a["groups"][0]["then"] is None


def test_advanced_expression_trace_and_error_position(api, env):
    expr = "tokens.input < 100 && request.model == 'chat' || errorRate(5, 429) > 10"
    c, g, r = resource_with(api, env, lambda c, g: [
        group(mode="ADVANCED", expression=expr, then=model(c, "gpt-4o"))])
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi", model="other"),
                                             "errorRates": {"5:429": 25, "5": 1}})
    assert status == 200, a
    assert a["matchedGroup"] == 0
    field = "routing.conditions[0].expression"
    assert a["groups"][0]["conditions"] == [
        {"field": field, "expression": "tokens.input < 100", "position": 0,
         "value": 8, "result": True},
        {"field": field, "expression": "request.model == 'chat'", "position": 22,
         "value": "other", "result": False},
        {"field": field, "expression": "errorRate(5, 429) > 10", "position": 49,
         "value": 25, "result": True}]
    # errorRate() is 0 unless the body gives it
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi", model="other")})
    assert status == 200 and a["matchedGroup"] is None
    assert a["groups"][0]["conditions"][2]["value"] == 0

    # a bad expression: the field and position the compiler reports on save
    bad = {"enabled": True, "conditions": [group(mode="ADVANCED",
                                                 expression="tokens.input > 4 &&")]}
    status, saved, _ = api.request("POST", env_path(env, "/resources"),
                                   {"name": "x", "model": model(c), "routing": bad})
    assert status == 400 and saved["error"]["details"]["field"] == field
    doc = dict(name="x", model=model(c), routing=bad)
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi"), "resource": doc})
    assert status == 400 and a["error"]["code"] == "validation_error", a
    assert a["error"]["details"] == {"field": "resource." + field,
                                     "position": saved["error"]["details"]["position"]}


def test_traffic_split_with_a_fixed_draw(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [
        group(then=dict(model(c, "gpt-4o"), traffic=30))])
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi"), "random": 10})
    assert status == 200, a
    assert a["matchedGroup"] == 0 and a["model"] == model(c, "gpt-4o")
    assert a["trafficSplit"] == {"random": 10, "source": "request", "passed": 0}
    assert a["groups"][0]["taken"] is True and abs(a["groups"][0]["draw"] - 10) < 1e-6

    status, a, _ = bench(api, env, r["id"], {"request": chat("hi"), "random": 50})
    assert a["matchedGroup"] is None and a["model"] == model(c)
    assert a["trafficSplit"]["passed"] == 1
    assert a["groups"][0]["matched"] is True and a["groups"][0]["taken"] is False

    # without a draw the bench makes one, and tells it
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi")})
    split = a["trafficSplit"]
    assert split["source"] == "drawn" and 0 <= split["random"] < 100
    assert (a["matchedGroup"] == 0) == (split["random"] < 30)


def test_secondary_model_index_skips_routing(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [
        group(then=model(c, "gpt-4o"))])
    assert api.request("PATCH", env_path(env, f"/resources/{r['id']}"), {
        "secondaryModels": [model(g, "llama-3.1-8b-instant", "groq")]})[0] == 200
    status, a, _ = bench(api, env, r["id"],
                         {"request": chat("hi", vmx={"secondaryModelIndex": 0})})
    assert status == 200, a
    assert a["routingSkipped"] == "secondaryModelIndex" and a["groups"] == []
    assert a["model"] == model(g, "llama-3.1-8b-instant", "groq")
    status, a, _ = bench(api, env, r["id"],
                         {"request": chat("hi", vmx={"secondaryModelIndex": 1})})
    assert status == 400
    assert a["error"]["details"]["field"] == "request.vmx.secondaryModelIndex"


def test_bad_bodies(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [], enabled=False)
    for body, field in [({}, "request"), ({"request": []}, "request"),
                        ({"request": chat("x"), "extra": 1}, "extra"),
                        ({"request": chat("x"), "random": 100}, "random"),
                        ({"request": chat("x"), "errorRates": []}, "errorRates"),
                        ({"request": chat("x"), "errorRates": {"0": 1}}, "errorRates.0"),
                        ({"request": chat("x"), "errorRates": {"5:99": 1}}, "errorRates.5:99"),
                        ({"request": chat("x"), "errorRates": {"5": 101}}, "errorRates.5"),
                        ({"request": chat("x"), "resource": 1}, "resource"),
                        ({"request": chat("x"), "apiKey": {"labels": 1}}, "apiKey")]:
        status, a, _ = bench(api, env, r["id"], body)
        assert status == 400, (body, a)
        assert a["error"]["code"] == "validation_error"
        assert a["error"]["details"]["field"] == field, (body, a)


def test_api_key_labels_and_source_ip(api, env):
    c, g, r = resource_with(api, env, lambda c, g: [
        group([condition("apiKey.labels.tier", "IN", "comma-delimited-list", "gold, vip"),
               condition("sourceIp", "STARTS_WITH", "string", "10.")],
              then=model(c, "gpt-4o"))])
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi"),
                                             "apiKey": {"id": "k", "labels": {"tier": "vip"}},
                                             "sourceIp": "10.1.2.3"})
    assert status == 200 and a["matchedGroup"] == 0, a
    status, a, _ = bench(api, env, r["id"], {"request": chat("hi")})
    assert a["matchedGroup"] is None
    assert a["groups"][0]["conditions"][0]["missing"] is True
    assert a["groups"][0]["conditions"][0]["value"] is None


def test_not_found_and_permissions(api, cp_stack, env):
    c, g, r = resource_with(api, env, lambda c, g: [], enabled=False)
    status, a, _ = bench(api, env, str(uuid.uuid4()), {"request": chat("x")})
    assert status == 404, a

    # a member of the workspace without a role may not; a reader of the
    # resource may
    status, user, _ = api.request("POST", "/api/v1/users",
                                  {"username": unique("user"), "password": PASSWORD})
    assert status == 201, user
    assert api.request("POST", f"/api/v1/workspaces/{env[0]}/members",
                       {"userId": user["id"], "role": "MEMBER"})[0] == 201
    u = Api(cp_stack.cp.url)
    u.login(user["username"], PASSWORD)
    status, a, _ = bench(u, env, r["id"], {"request": chat("x")})
    assert status == 403, a
    assert "ai-resource:get" in a["error"]["message"]

    assert api.request("POST", f"/api/v1/roles/{READ_ONLY}/assign",
                       {"userIds": [user["id"]]})[0] == 200
    status, a, _ = bench(u, env, r["id"], {"request": chat("x")})
    assert status == 200, a
    # reading is not changing
    assert u.request("PATCH", env_path(env, f"/resources/{r['id']}"),
                     {"description": "x"})[0] == 403
