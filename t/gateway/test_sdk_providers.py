"""The official OpenAI Node SDK (t/sdk/providers.test.mjs, pinned) through the gateway to
Anthropic, Gemini and AWS Bedrock: plain, streamed, tool round trip, image, typed errors,
and the same shapes whatever the provider answered."""
import json
from pathlib import Path

from gwutil import (anthropic_connection, bedrock_connection, gemini_connection,
                    wait_credentials)

PROVIDERS_TEST = Path(__file__).resolve().parents[1] / "sdk" / "providers.test.mjs"


def test_openai_node_sdk_through_native_providers(gw, fake_anthropic, fake_gemini,
                                                   fake_bedrock, run_node_tests):
    conns = {"ant": ("anthropic", "claude-sdk", "fail-529"),
             "gem": ("gemini", "gemini-sdk", "fail-500"),
             "bed": ("aws-bedrock", "amazon.nova-lite-v1:0", "fail-500")}
    resources, providers = {}, []
    for c, (provider, upstream, down) in conns.items():
        names = {"chat": upstream, "tools": "tools", "bad": "fail-400", "limited": "fail-429",
                 "down": down}
        entry = {"provider": provider, "upstream": upstream}
        for role, model in names.items():
            resources[f"sdk-{c}-{role}"] = {"model": (c, model)}
            entry[role] = f"sdk-{c}-{role}"
        providers.append(entry)
    env = gw.provision(
        connections={"ant": anthropic_connection(fake_anthropic),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock)},
        resources=resources,
        keys={"sdk": {"resources": list(resources)}},
    )
    wait_credentials(gw, env, ["bed"])
    out = run_node_tests({
        "VMX_BASE_URL": gw.url + "/v1",
        "VMX_API_KEY": env.key("sdk"),
        "VMX_PROVIDERS": json.dumps(providers),
    }, files=[str(PROVIDERS_TEST)])
    print(out)
    assert "ℹ fail 0" in out, out
    assert "ℹ skipped 0" in out, out
    assert "ℹ pass 16" in out, out
