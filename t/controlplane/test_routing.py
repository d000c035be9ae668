"""Routing rules of AI resources: compiled by the data plane's compiler on
create and update, so a bad rule is a 400 naming the field (and, inside an
expression or regex, the character position); every `then` of a group that
calls a model names a connection of the environment with its provider."""
import uuid

import pytest

from cphelpers import condition, env_path, model, openai_connection


def group(conditions=(), **over):
    g = {"type": "group", "id": uuid.uuid4().hex, "description": "d", "enabled": True,
         "operator": "AND", "conditions": list(conditions), "mode": "UI",
         "action": "CALL_MODEL"}
    g.update(over)
    return g


def routing(*groups, enabled=True):
    return {"enabled": enabled, "conditions": list(groups)}


def post(api, env, conn, routing_doc):
    return api.request("POST", env_path(env, "/resources"),
                       {"name": uuid.uuid4().hex[:12], "model": model(conn),
                        "routing": routing_doc})


def assert_invalid(status, body, field, position=None, compiled=True):
    assert status == 400, body
    error = body["error"]
    assert error["code"] == "validation_error", body
    assert error["details"]["field"] == field, body
    assert error["details"].get("position") == position, body
    # the compiler's messages name the field they are about
    assert error["message"].startswith(field + ": ") == compiled, body


def test_valid_routing_is_stored_as_sent(api, env):
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini", "gpt-4o"])
    g = api.create_connection(env[0], env[1], name="groq", provider="groq",
                              config={"apiKey": "gk"})
    doc = routing(
        group([condition("tokens.input", "GREATER_THAN", "number", "4000"),
               group([condition("request.lastMessage.content", "PATTERN", "string", r"\bSQL\b"),
                      condition("apiKey.labels.team", "IN", "comma-delimited-list", "ml, ops")],
                     operator="OR")],
              then=dict(model(c, "gpt-4o"), traffic=50)),
        group(mode="ADVANCED", conditions=[],
              expression="errorRate(5, 500) > 20 && request.model matches /^chat/i",
              then=model(g, "llama-3.1-8b-instant", "groq")),
        group([condition("request.user", "EXISTS")], action="BLOCK",
              then={"provider": "openai", "model": "gone", "connectionId": "x"}),
        group(enabled=False, conditions=[condition("sourceIp", "STARTS_WITH", "string", "10.")]))
    status, r, _ = post(api, env, c, doc)
    assert status == 201, r
    assert r["routing"] == doc

    # the routing target is in use: its connection cannot be deleted
    status, _, _ = api.request("DELETE", env_path(env, f"/connections/{g['id']}"))
    assert status == 409
    status, _, _ = api.request("DELETE", env_path(env, f"/resources/{r['id']}"))
    assert status == 204
    status, _, _ = api.request("DELETE", env_path(env, f"/connections/{g['id']}"))
    assert status == 204


@pytest.mark.parametrize("doc, field, position", [
    # expressions: the character offset in the string
    (routing(group(mode="ADVANCED", expression="tokens.input >")),
     "routing.conditions[0].expression", 14),
    (routing(group(mode="ADVANCED", expression="'été' == nope.x")),
     "routing.conditions[0].expression", 9),
    (routing(group(mode="ADVANCED", expression="errorRate(90) > 1")),
     "routing.conditions[0].expression", 10),
    (routing(group(mode="ADVANCED", expression="1 < 2 < 3")),
     "routing.conditions[0].expression", 6),
    (routing(group(mode="ADVANCED", expression="request.model matches /a(/")),
     "routing.conditions[0].expression", 25),
    (routing(group(mode="ADVANCED")), "routing.conditions[0].expression", None),
    # UI conditions, nested
    (routing(group(), group([condition("tokens.input", "EQUAL", "number", "1"),
                             group([condition("sourceIp", "LIKE", "string", "x")])])),
     "routing.conditions[1].conditions[1].conditions[0].comparator", None),
    (routing(group([condition("request.model", "PATTERN", "string", "ab(c")])),
     "routing.conditions[0].conditions[0].value.expression", 4),
    (routing(group([condition("request.metadata", "EQUAL", "json-object", '{"a":}')])),
     "routing.conditions[0].conditions[0].value.expression", 5),
    (routing(group([condition("tokens.input", "GREATER_THAN", "boolean", "true")])),
     "routing.conditions[0].conditions[0].value.type", None),
    (routing(group([condition("tokens.input", "EQUAL", "number", "many")])),
     "routing.conditions[0].conditions[0].value.expression", None),
    (routing(group([condition("nope", "EQUAL", "string", "x")])),
     "routing.conditions[0].conditions[0].expression", 0),
    (routing(group([{"type": "condition", "expression": "sourceIp",
                     "comparator": "EQUAL"}])),
     "routing.conditions[0].conditions[0].value", None),
    # groups
    (routing(group(operator="XOR")), "routing.conditions[0].operator", None),
    (routing(group(action="DROP")), "routing.conditions[0].action", None),
    (routing(group(), 3), "routing.conditions[1]", None),
    (routing(group(then={"provider": "openai", "model": "m"})),
     "routing.conditions[0].then.connectionId", None),
    # a disabled routing is checked all the same
    (routing(group(mode="ADVANCED", expression="&&"), enabled=False),
     "routing.conditions[0].expression", 0),
])
def test_invalid_rules_are_400(api, env, doc, field, position):
    c = openai_connection(api, env)
    status, body, _ = post(api, env, c, doc)
    assert_invalid(status, body, field, position)


def test_traffic_out_of_range(api, env):
    c = openai_connection(api, env)
    status, body, _ = post(api, env, c, routing(group(then=dict(model(c), traffic=150))))
    assert_invalid(status, body, "routing.conditions[0].then.traffic")


def test_then_targets_are_connections_of_the_environment(api, env):
    c = openai_connection(api, env, allowedModels=["gpt-4o-mini"])
    other_env = api.create_environment(env[0], "staging")["id"]
    elsewhere = openai_connection(api, (env[0], other_env))
    at = "routing.conditions[1].then"
    cases = [
        (dict(model(c), provider="groq"), at + ".connectionId"),
        (dict(model(c), provider="nope"), at + ".provider"),
        (model(c, "gpt-4o"), at + ".model"),
        (model(elsewhere), at + ".connectionId"),
        (dict(model(c), connectionId=str(uuid.uuid4())), at + ".connectionId"),
        (dict(model(c), connectionId="not-a-uuid"), at + ".connectionId"),
    ]
    for then, field in cases:
        status, body, _ = post(api, env, c, routing(group(then=model(c)), group(then=then)))
        assert_invalid(status, body, field, compiled=False)


def test_update_with_bad_rules_keeps_the_stored_routing(api, env):
    c = openai_connection(api, env)
    good = routing(group([condition("request.toolsCount", "GREATER_THAN", "number", "0")],
                         then=model(c)))
    status, r, _ = post(api, env, c, good)
    assert status == 201, r
    path = env_path(env, f"/resources/{r['id']}")

    bad = routing(group(mode="ADVANCED", expression="request.model in ['a'", then=model(c)))
    status, body, _ = api.request("PATCH", path, {"routing": bad})
    assert_invalid(status, body, "routing.conditions[0].expression", 21)
    status, got, _ = api.request("GET", path)
    assert status == 200 and got["routing"] == good

    fixed = routing(group(mode="ADVANCED", expression="request.model in ['a']", then=model(c)))
    status, upd, _ = api.request("PATCH", path, {"routing": fixed})
    assert status == 200 and upd["routing"] == fixed
