"""POST /v1/embeddings through the gateway (issue 14, item 5): the same keys, resources,
routing, limits, audit and fallback as chat.  OpenAI and Groq get the client's body with the
model replaced; Gemini embedContent / batchEmbedContents and Bedrock InvokeModel (Titan Text
Embeddings v2, Cohere Embed v3) are translated, and their vectors come back in OpenAI's
shape, float or base64; an array larger than one provider call takes (Titan: one input) takes
calls one after the other within the attempt.  The fakes speak each provider's wire format and compute every
vector with fake_base.embedding(), so a test knows the values the client must get.
"""
import base64
import json
import struct
import time

import pytest

from gwutil import (anthropic_connection, bedrock_connection, connection_for,
                    gemini_connection, http_request, record, wait_credentials)
from harness.fake_base import embedding

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"
GEMINI = "text-embedding-004"


@pytest.fixture(scope="module")
def env(gw, fake, fake_gemini, fake_bedrock, fake_anthropic):
    e = gw.provision(
        connections={"oai": connection_for(fake),
                     "grq": connection_for(fake, provider="groq", config={
                         "apiKey": fake.api_key, "baseUrl": fake.origin + "/openai/v1"}),
                     "gem": gemini_connection(fake_gemini),
                     "bed": bedrock_connection(fake_bedrock),
                     "ant": anthropic_connection(fake_anthropic)},
        resources={
            "emb-oai": {"model": ("oai", "text-embedding-3-small")},
            "emb-grq": {"model": ("grq", "nomic-embed-text")},
            "emb-gem": {"model": ("gem", GEMINI)},
            "emb-titan": {"model": ("bed", TITAN)},
            "emb-cohere": {"model": ("bed", COHERE)},
            "emb-ant": {"model": ("ant", "claude-test")},
            "emb-converse": {"model": ("bed", "amazon.nova-lite-v1:0")},
            "emb-oai-400": {"model": ("oai", "fail-400")},
            "emb-gem-400": {"model": ("gem", "fail-400")},
            "emb-titan-400": {"model": ("bed", "fail-400-" + TITAN)},
            # fallback on 5xx and 429, past a model without embeddings
            "emb-fb": {"model": ("oai", "fail-503"),
                       "fallback": [("ant", "claude-test"), ("gem", GEMINI)]},
            "emb-429-fb": {"model": ("gem", "fail-429"), "fallback": [("bed", TITAN)]},
            "emb-titan-fb": {"model": ("bed", TITAN), "fallback": [("gem", GEMINI)]},
            "emb-reset-fb": {"model": ("oai", "reset"), "fallback": [("gem", GEMINI)]},
            "emb-no-fb": {"model": ("oai", "fail-500"), "useFallback": False,
                          "fallback": [("gem", GEMINI)]},
        },
        keys={"main": {"resources": ["emb-oai", "emb-grq", "emb-gem", "emb-titan", "emb-cohere",
                                     "emb-ant", "emb-converse", "emb-oai-400", "emb-gem-400",
                                     "emb-titan-400", "emb-fb", "emb-429-fb", "emb-titan-fb",
                                     "emb-reset-fb", "emb-no-fb"]}},
    )
    wait_credentials(gw, e, ["bed"])
    return e


def embed(env, model, key=None, path="/v1/embeddings", **members):
    body = {"model": model, **members}
    return http_request(env.gw.url, "POST", path, body,
                        {"Authorization": f"Bearer {key or env.key()}"})


def f32(values):
    """A vector's float32 bytes: what the client's floats must read back as."""
    return struct.pack(f"<{len(values)}f", *values)


def vectors(r, base64_encoded=False):
    b = r.json()
    assert b["object"] == "list", b
    assert [d["index"] for d in b["data"]] == list(range(len(b["data"]))), b
    assert all(d["object"] == "embedding" for d in b["data"]), b
    out = []
    for d in b["data"]:
        if base64_encoded:
            assert isinstance(d["embedding"], str), d
            raw = base64.b64decode(d["embedding"])
            out.append(raw)
        else:
            assert all(isinstance(x, float) for x in d["embedding"]), d
            out.append(f32(d["embedding"]))
    return out


def assert_error(r, status, param=None, code=None):
    assert r.status == status, r
    assert r.header("content-type").startswith("application/json"), r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"], e
    assert e["param"] == param, e
    if code is not None:
        assert e["code"] == code, e
    assert r.header("x-vmx-request-id"), r
    return e


def posts(fake):
    return [q for q in fake.requests if q.method == "POST"]


# ------------------------------------------------------------------ OpenAI and Groq
def test_openai_string_passes_through(env, fake):
    r = embed(env, "emb-oai", input="hello world", user="u-1", vmx={"correlationId": "c-1"})
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "openai"
    assert r.header("x-vmx-model") == "text-embedding-3-small"
    assert vectors(r) == [f32(embedding("hello world", 1536))]
    assert r.json()["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    (q,) = fake.embeddings_requests()
    assert q.route == "/v1/embeddings" and q.headers["authorization"] == f"Bearer {fake.api_key}"
    # the client's members, the model replaced, the gateway's own left out
    assert q.body == {"model": "text-embedding-3-small", "input": "hello world", "user": "u-1"}


def test_groq_array_dimensions_base64(env, fake):
    texts = ["the quick brown fox", "jumps"]
    r = embed(env, "emb-grq", input=texts, dimensions=8, encoding_format="base64")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "groq"
    assert vectors(r, base64_encoded=True) == [f32(embedding(t, 8)) for t in texts]
    (q,) = fake.embeddings_requests()
    assert q.route == "/openai/v1/embeddings", q.path
    assert q.body == {"model": "nomic-embed-text", "input": texts, "dimensions": 8,
                      "encoding_format": "base64"}


def test_token_ids_pass_to_openai(env, fake):
    r = embed(env, "emb-oai", input=[[1, 2, 3], [4]], dimensions=4)
    assert r.status == 200, r
    assert vectors(r) == [f32(embedding("[1, 2, 3]", 4)), f32(embedding("[4]", 4))]
    assert r.json()["usage"]["prompt_tokens"] == 4


# ------------------------------------------------------------------ Gemini
def test_gemini_embed_content(env, fake_gemini):
    r = embed(env, "emb-gem", input="hello world", dimensions=8)
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini"
    b = r.json()
    assert b["model"] == GEMINI, b
    assert vectors(r) == [f32(embedding("hello world", 8))]
    # Gemini reports no usage: the gateway's own count of the input
    assert b["usage"] == {"prompt_tokens": 2, "total_tokens": 2}, b
    (q,) = posts(fake_gemini)
    assert q.route == f"/v1beta/models/{GEMINI}:embedContent", q.path
    assert q.headers.get("x-goog-api-key") == fake_gemini.api_key
    assert q.body == {"content": {"parts": [{"text": "hello world"}]},
                      "outputDimensionality": 8}


def test_gemini_batch_base64(env, fake_gemini):
    texts = ["one", "two words", "three little words"]
    r = embed(env, "emb-gem", input=texts, encoding_format="base64")
    assert r.status == 200, r
    assert vectors(r, base64_encoded=True) == [f32(embedding(t, 768)) for t in texts]
    assert r.json()["usage"]["prompt_tokens"] == 6
    (q,) = posts(fake_gemini)
    assert q.route == f"/v1beta/models/{GEMINI}:batchEmbedContents", q.path
    assert q.body == {"requests": [{"model": f"models/{GEMINI}",
                                    "content": {"parts": [{"text": t}]}} for t in texts]}


def test_large_input_counted_in_a_thread(env, fake_gemini):
    """A body over 4 KiB is counted by the tokenizer's thread pool, input by input; Gemini
    reports no usage, so the client gets that count."""
    texts = ["hello world"] * 500
    r = embed(env, "emb-gem", input=texts, dimensions=2)
    assert r.status == 200, r
    assert r.json()["usage"] == {"prompt_tokens": 1000, "total_tokens": 1000}
    assert len(posts(fake_gemini)) == 5


def test_gemini_takes_no_token_ids(env, fake_gemini):
    e = assert_error(embed(env, "emb-gem", input=[1, 2, 3]), 400, "input", "invalid_request")
    assert "token ids" in e["message"], e
    assert posts(fake_gemini) == []


def test_gemini_batches_of_100(env, fake_gemini):
    texts = [f"text {i}" for i in range(205)]
    r = embed(env, "emb-gem", input=texts, dimensions=2)
    assert r.status == 200, r
    assert vectors(r) == [f32(embedding(t, 2)) for t in texts]
    assert r.json()["usage"]["prompt_tokens"] >= 2 * len(texts)
    batches = [q.body["requests"] for q in posts(fake_gemini)]
    assert [len(b) for b in batches] == [100, 100, 5], [len(b) for b in batches]
    assert [q["content"]["parts"][0]["text"] for b in batches for q in b] == texts
    assert r.header("x-vmx-event-count") == "0", r.headers
    # one attempt, its calls on one kept connection
    assert len({q.conn_id for q in posts(fake_gemini)}) == 1


# ------------------------------------------------------------------ Bedrock
def test_titan_invoke_model(env, fake_bedrock):
    r = embed(env, "emb-titan", input="bonjour tout le monde", dimensions=256)
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "aws-bedrock"
    assert vectors(r) == [f32(embedding("bonjour tout le monde", 256))]
    # Titan's inputTextTokenCount (the fake's: words)
    assert r.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    (q,) = posts(fake_bedrock)
    assert q.route == "/model/amazon.titan-embed-text-v2%3A0/invoke", q.path
    assert q.info["auth"]["ok"], q.info["auth"]
    assert q.body == {"inputText": "bonjour tout le monde", "dimensions": 256,
                      "normalize": True}


def test_titan_array_takes_a_call_an_input(gw, env, fake_bedrock):
    texts = ["one", "two words", "three short words"]
    r = embed(env, "emb-titan", input=texts, encoding_format="base64")
    assert r.status == 200, r
    assert vectors(r, base64_encoded=True) == [f32(embedding(t, 1024)) for t in texts]
    # the inputTextTokenCount of each call, summed
    assert r.json()["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    calls = posts(fake_bedrock)
    assert [q.body["inputText"] for q in calls] == texts
    assert all(q.info["auth"]["ok"] for q in calls), [q.info["auth"] for q in calls]
    assert len({q.conn_id for q in calls}) == 1
    assert r.header("x-vmx-event-count") == "0", r.headers
    rec = record(gw, r)
    (attempt,) = rec["attempts"]
    assert attempt["statusCode"] == 200 and attempt["promptTokens"] == 6, attempt


def test_failed_call_falls_back_with_the_whole_array(env, fake_bedrock, fake_gemini):
    """A call failing in the middle of an attempt fails it: the next model embeds every
    input, and nothing of the failed attempt reaches the client."""
    texts = ["first", "fail-503", "third"]
    r = embed(env, "emb-titan-fb", input=texts)
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini"
    assert vectors(r) == [f32(embedding(t, 768)) for t in texts]
    assert r.header("x-vmx-event-count") == "1", r.headers
    assert r.header("x-vmx-event-0-fallback-status-code") == "503"
    assert [q.body["inputText"] for q in posts(fake_bedrock)] == texts[:2]
    (q,) = posts(fake_gemini)
    assert len(q.body["requests"]) == 3


def test_cohere_invoke_model(env, fake_bedrock):
    texts = ["bonjour", "le café est prêt"]
    r = embed(env, "emb-cohere", input=texts)
    assert r.status == 200, r
    assert vectors(r) == [f32(embedding(t, 1024)) for t in texts]
    assert r.json()["usage"]["prompt_tokens"] > 0
    (q,) = posts(fake_bedrock)
    assert q.route == "/model/cohere.embed-english-v3/invoke", q.path
    assert q.info["auth"]["ok"], q.info["auth"]
    assert q.body == {"texts": texts, "input_type": "search_document",
                      "embedding_types": ["float"]}


def test_cohere_takes_no_dimensions(env, fake_bedrock):
    e = assert_error(embed(env, "emb-cohere", input="x", dimensions=8), 400, "dimensions")
    assert "fixed size" in e["message"], e
    assert posts(fake_bedrock) == []


def test_bedrock_model_without_embeddings(env, fake_bedrock):
    e = assert_error(embed(env, "emb-converse", input="x"), 400, "model")
    assert "Titan" in e["message"] and "Cohere" in e["message"], e
    assert posts(fake_bedrock) == []


def test_anthropic_has_no_embeddings(env, fake_anthropic):
    e = assert_error(embed(env, "emb-ant", input="x"), 400, "model", "invalid_request")
    assert "anthropic has no embeddings" in e["message"], e
    assert posts(fake_anthropic) == []


# ------------------------------------------------------------------ the client's errors
@pytest.mark.parametrize("members,param", [
    ({}, "input"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": 3}, "input"),
    ({"input": ["a", ""]}, "input[1]"),
    ({"input": ["a", 1]}, "input[1]"),
    ({"input": [1, -2]}, "input"),
    ({"input": [[1], []]}, "input[1]"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "dimensions": 2.5}, "dimensions"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "user": 7}, "user"),
], ids=["no-input", "empty", "empty-array", "number", "empty-item", "mixed", "negative-id",
        "empty-ids", "zero-dimensions", "float-dimensions", "format", "user"])
def test_bad_request_names_the_member(env, fake, members, param):
    assert_error(embed(env, "emb-oai", **members), 400, param, "invalid_request")
    assert fake.embeddings_requests() == []


def test_model_is_required_and_a_resource(env, fake):
    r = http_request(env.gw.url, "POST", "/v1/embeddings", {"input": "x"},
                     {"Authorization": f"Bearer {env.key()}"})
    assert_error(r, 400, "model")
    r = embed(env, "no-such-resource", input="x")
    assert_error(r, 404, code="model_not_found")
    r = embed(env, "emb-oai", key="sk-wrong", input="x")
    assert_error(r, 401, code="invalid_api_key")
    r = http_request(env.gw.url, "GET", "/v1/embeddings", None,
                     {"Authorization": f"Bearer {env.key()}"})
    assert_error(r, 405, code="method_not_allowed")
    assert fake.embeddings_requests() == []


# ------------------------------------------------------------------ provider errors, fallback
@pytest.mark.parametrize("res", ["emb-oai-400", "emb-gem-400", "emb-titan-400"])
def test_provider_error_in_openai_envelope(env, res):
    r = embed(env, res, input="x")
    assert r.status == 400, r
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"} and e["message"], e
    assert e["type"] == "invalid_request_error", e


def test_fallback_past_a_failure_and_a_model_without_embeddings(env, fake, fake_gemini,
                                                                 fake_anthropic):
    r = embed(env, "emb-fb", input="hello world")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini"
    assert vectors(r) == [f32(embedding("hello world", 768))]
    assert r.header("x-vmx-event-count") == "2", r.headers
    assert r.header("x-vmx-event-0-fallback-status-code") == "503"
    assert "no embeddings" in r.header("x-vmx-event-1-fallback-failure-reason")
    assert len(fake.embeddings_requests()) == 1
    assert posts(fake_anthropic) == []
    assert len(posts(fake_gemini)) == 1


def test_fallback_on_429(env, fake_bedrock):
    r = embed(env, "emb-429-fb", input="fall back")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "aws-bedrock"
    assert vectors(r) == [f32(embedding("fall back", 1024))]
    assert len(posts(fake_bedrock)) == 1


def test_fallback_on_a_connection_error(env, fake_gemini):
    r = embed(env, "emb-reset-fb", input="reset")
    assert r.status == 200, r
    assert r.header("x-vmx-provider") == "gemini"
    assert r.header("x-vmx-event-count") == "1", r.headers
    assert r.header("x-vmx-event-0-fallback-failure-reason"), r.headers
    assert len(posts(fake_gemini)) == 1


def test_last_failure_reaches_the_client(env, fake_gemini):
    r = embed(env, "emb-no-fb", input="x")
    assert r.status == 500, r
    e = r.json()["error"]
    assert e["type"] == "server_error", e
    assert posts(fake_gemini) == []


# ------------------------------------------------------------------ scoped path, audit
def test_scoped_path(env):
    r = embed(env, "emb-oai", path=f"/v1/completion/{env.ws_id}/{env.env_id}/embeddings",
              input="scoped")
    assert r.status == 200, r
    r = embed(env, "emb-oai", path=f"/v1/completion/{env.ws_id}/other-env/embeddings",
              input="scoped")
    assert_error(r, 401, code="invalid_api_key")


def test_audit_record(gw, env):
    r = embed(env, "emb-gem", input=["hello world", "hello"], dimensions=4)
    assert r.status == 200, r
    rec = record(gw, r)
    assert rec["path"] == "/v1/embeddings" and rec["method"] == "POST", rec
    assert rec["statusCode"] == 200 and rec["stream"] is False, rec
    assert rec["provider"] == "gemini" and rec["model"] == GEMINI, rec
    (attempt,) = rec["attempts"]
    assert attempt["promptTokens"] == 3 and attempt["completionTokens"] == 0, attempt
    assert attempt["totalTokens"] == 3, attempt
    assert rec["request"]["input"] == ["hello world", "hello"], rec["request"]
    assert [len(d["embedding"]) for d in rec["response"]["data"]] == [4, 4], rec["response"]

    r = embed(env, "emb-oai", input="")
    rec = record(gw, r)
    assert rec["statusCode"] == 400 and rec["errorCode"] == "invalid_request", rec


# ------------------------------------------------------------------ limits
def test_tokens_limit(gw, fake):
    """The input's tokens are reserved before the call and settled to the provider's usage:
    a request whose input alone passes the connection's token limit is a 429."""
    left = 60 - time.time() % 60
    if left < 20:       # windows are aligned to the minute
        time.sleep(left + 0.1)
    env = gw.provision(
        connections={"t": connection_for(fake, capacity=[{"period": "minute", "tokens": 10}])},
        resources={"emb-tokens": {"model": ("t", "text-embedding-3-small")}},
        keys={"k": {"resources": ["emb-tokens"]}},
    )
    r = embed(env, "emb-tokens", input="hello world")
    assert r.status == 200, r
    r = embed(env, "emb-tokens", input=" ".join(["word"] * 20))
    assert_error(r, 429, code="resource_exhausted")
    assert r.json()["error"]["message"] == \
        'Connection "t" has reached its limit of 10 tokens per minute'
    assert r.header("retry-after"), r
    assert len(fake.embeddings_requests()) == 1


# ------------------------------------------------------------------ the official SDK
def test_openai_node_sdk_embeddings(gw, env, run_node_tests):
    from pathlib import Path
    out = run_node_tests({
        "VMX_BASE_URL": gw.url + "/v1",
        "VMX_API_KEY": env.key(),
        "VMX_EMBEDDINGS": json.dumps([
            {"provider": "openai", "model": "emb-oai"},
            {"provider": "gemini", "model": "emb-gem"},
            {"provider": "aws-bedrock", "model": "emb-cohere"},
            # Titan: the SDK's array of two takes two calls
            {"provider": "aws-bedrock", "model": "emb-titan"}]),
    }, files=[str(Path(__file__).resolve().parents[1] / "sdk" / "embeddings.test.mjs")])
    print(out)
    assert "ℹ fail 0" in out, out
    assert "ℹ skipped 0" in out, out
    assert "ℹ pass 9" in out, out
