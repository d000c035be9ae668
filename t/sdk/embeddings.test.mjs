// The official OpenAI Node SDK, unchanged, calling embeddings.create through the gateway:
// float vectors, and base64 ones (the SDK asks for base64 when encoding_format is left out,
// and decodes them), whichever provider embeds and however many provider calls the input
// takes.
//
// Environment (set by t/gateway/test_embeddings.py; without VMX_EMBEDDINGS this file
// defines no test):
//   VMX_BASE_URL    base URL with /v1
//   VMX_API_KEY     a key allowed to call every resource below
//   VMX_EMBEDDINGS  JSON list of {provider, model}: a resource embedding with that provider;
//                   the first one also gets a request the gateway refuses
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const env = process.env;
const RESOURCES = env.VMX_EMBEDDINGS ? JSON.parse(env.VMX_EMBEDDINGS) : [];

const client = () =>
  new OpenAI({ baseURL: env.VMX_BASE_URL, apiKey: env.VMX_API_KEY, timeout: 20000, maxRetries: 0 });
const input = ["The food was delicious and the waiter was kind.", "bonjour"];

// the vectors' float32 values, whether parsed from JSON or decoded from base64
const float32 = (data) => data.map((d) => Array.from(d.embedding, Math.fround));

function checkList(data, provider, response) {
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-vmx-provider"), provider);
  assert.equal(data.object, "list");
  assert.deepEqual(data.data.map((d) => [d.object, d.index]),
                   [["embedding", 0], ["embedding", 1]]);
  const n = data.data[0].embedding.length;
  assert.ok(n > 0);
  for (const d of data.data) {
    assert.equal(d.embedding.length, n);
    assert.ok(d.embedding.every(Number.isFinite));
    // the fakes' vectors have length 1, as the real models'
    const norm = Math.sqrt(d.embedding.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `norm ${norm}`);
  }
  assert.ok(data.usage.prompt_tokens > 0);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens);
}

for (const { provider, model } of RESOURCES) {
  test(`${provider} (${model}): embeddings.create, float`, async () => {
    const { data, response } = await client()
      .embeddings.create({ model, input, encoding_format: "float" })
      .withResponse();
    checkList(data, provider, response);
  });

  test(`${provider} (${model}): embeddings.create, base64 decoded by the SDK`, async () => {
    const floats = await client().embeddings.create({ model, input, encoding_format: "float" });
    const { data, response } = await client()
      .embeddings.create({ model, input })
      .withResponse();
    checkList(data, provider, response);
    assert.deepEqual(float32(data.data), float32(floats.data));
  });
}

if (RESOURCES.length) {
  test("a refused input is a BadRequestError naming the member", async () => {
    await assert.rejects(
      client().embeddings.create({ model: RESOURCES[0].model, input: ["ok", ""] }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, String(err));
        assert.equal(err.status, 400);
        assert.equal(err.param, "input[1]");
        assert.equal(err.code, "invalid_request");
        return true;
      });
  });
}
