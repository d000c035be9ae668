"""GET /api/v1/providers: the catalog."""


def test_provider_catalog(api):
    status, body, _ = api.request("GET", "/api/v1/providers")
    assert status == 200
    providers = {p["id"]: p for p in body["data"]}
    assert set(providers) == {"openai", "anthropic", "gemini", "groq", "aws-bedrock"}
    assert body["total"] == 5
    assert providers["openai"]["defaultBaseUrl"] == "https://api.openai.com/v1"
    assert providers["groq"]["defaultBaseUrl"] == "https://api.groq.com/openai/v1"
    assert providers["anthropic"]["defaultBaseUrl"] == "https://api.anthropic.com"
    assert (providers["gemini"]["defaultBaseUrl"]
            == "https://generativelanguage.googleapis.com/v1beta")
    assert providers["aws-bedrock"]["defaultBaseUrl"] is None
    for pid in ("openai", "anthropic", "gemini", "groq"):
        fields = {f["name"]: f for f in providers[pid]["configFields"]}
        assert fields["apiKey"]["secret"] and fields["apiKey"]["required"]
        assert not fields["baseUrl"]["required"] and not fields["baseUrl"]["secret"]
        assert providers[pid]["defaultModels"]
        assert providers[pid]["name"]
    fields = {f["name"]: f for f in providers["aws-bedrock"]["configFields"]}
    assert fields["region"]["required"] and fields["iamRoleArn"]["required"]
    assert not fields["externalId"]["required"] and not fields["endpoint"]["required"]
    assert not any(f["secret"] for f in fields.values())
    for f in fields.values():
        assert set(f) == {"name", "type", "required", "secret", "description"}


def test_providers_need_auth(api):
    status, _, _ = api.request("GET", "/api/v1/providers", token=None)
    assert status == 401
