"""Helpers shared by the control-plane tests."""
import uuid


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env_path(env, tail=""):
    ws_id, env_id = env
    return f"/api/v1/workspaces/{ws_id}/environments/{env_id}{tail}"


def openai_connection(api, env, **over):
    fields = {"name": unique("conn"), "provider": "openai",
              "config": {"apiKey": "sk-test-" + uuid.uuid4().hex},
              "allowedModels": []}
    fields.update(over)
    return api.create_connection(env[0], env[1], **fields)
