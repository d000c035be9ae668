"""The official OpenAI Node SDK (t/sdk, pinned in package-lock.json), unchanged,
against the gateway: baseURL = gateway + /v1, apiKey = a VM-X key, model = a
resource name (SPEC §2)."""
from gwutil import connection_for


def test_openai_node_sdk(gw, fake, fake2, run_node_tests):
    env = gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2)},
        resources={
            "sdk-chat": {"model": ("a", "gpt-sdk")},
            "sdk-tools": {"model": ("a", "tools")},
            "sdk-limited": {"model": ("a", "fail-429"), "fallback": [("b", "fail-429")]},
            "sdk-forbidden": {"model": ("a", "gpt-sdk")},
            "sdk-first-error-fb": {"model": ("a", "stream-error-first"),
                                   "fallback": [("b", "gpt-sdk-fb")]},
            "sdk-first-error": {"model": ("a", "stream-error-first")},
            "sdk-mid-error": {"model": ("a", "stream-error")},
        },
        keys={"sdk": {"resources": ["sdk-chat", "sdk-tools", "sdk-limited", "sdk-first-error-fb",
                                    "sdk-first-error", "sdk-mid-error"]}},
    )
    out = run_node_tests({
        "VMX_TARGET": "gateway",
        "VMX_BASE_URL": gw.url + "/v1",
        "VMX_API_KEY": env.key("sdk"),
        "VMX_MODEL_CHAT": "sdk-chat",
        "VMX_UPSTREAM_MODEL": "gpt-sdk",
        "VMX_MODEL_TOOLS": "sdk-tools",
        "VMX_MODEL_RATE_LIMITED": "sdk-limited",
        "VMX_MODEL_FORBIDDEN": "sdk-forbidden",
        "VMX_MODEL_MISSING": "sdk-no-such-resource",
        "VMX_MODEL_STREAM_FIRST_ERROR_FB": "sdk-first-error-fb",
        "VMX_MODEL_STREAM_FIRST_ERROR": "sdk-first-error",
        "VMX_MODEL_STREAM_MID_ERROR": "sdk-mid-error",
    })
    print(out)
    assert "ℹ fail 0" in out, out
    assert "ℹ skipped 0" in out, out
