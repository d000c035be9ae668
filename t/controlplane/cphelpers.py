"""Helpers shared by the control-plane tests."""
import time
import uuid


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def wait_ingested(stack, timeout=30.0):
    """Until the stored cursor of a stack's fake data plane is the end of its spool."""
    dp = stack.dataplane
    end = dp.end_cursor()
    wait_until(lambda: stack.pg.psql("SELECT cursor FROM record_cursors WHERE dataplane = "
                                     f"'{dp.url}'") == end, timeout, f"cursor {end}")


def env_path(env, tail=""):
    ws_id, env_id = env
    return f"/api/v1/workspaces/{ws_id}/environments/{env_id}{tail}"


def openai_connection(api, env, **over):
    fields = {"name": unique("conn"), "provider": "openai",
              "config": {"apiKey": "sk-test-" + uuid.uuid4().hex},
              "allowedModels": []}
    fields.update(over)
    return api.create_connection(env[0], env[1], **fields)


def model(conn, name="gpt-4o-mini", provider="openai"):
    """a resource's model entry on connection conn"""
    return {"provider": provider, "model": name, "connectionId": conn["id"]}


def condition(expression, comparator, vtype="string", value=None):
    """a UI condition of a routing group"""
    return {"type": "condition", "id": uuid.uuid4().hex, "label": "l",
            "expression": expression, "comparator": comparator,
            "value": {"type": vtype, "expression": value}}
