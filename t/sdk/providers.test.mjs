// The official OpenAI Node SDK, unchanged, through the gateway to providers of other formats
// (Anthropic, Gemini, AWS Bedrock, translated by the gateway): the SDK cannot tell which
// provider answered except by the x-vmx-provider header.
//
// Environment (set by t/gateway/test_sdk_providers.py; without VMX_PROVIDERS this file
// defines no test):
//   VMX_BASE_URL   base URL with /v1
//   VMX_API_KEY    a key allowed to call every resource below
//   VMX_PROVIDERS  JSON list of {provider, chat, upstream, tools, bad, limited, down}:
//                  resources answering the echo text (the provider sees `upstream`), tool
//                  calls, 400, 429 and 5xx
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const env = process.env;
const PROVIDERS = env.VMX_PROVIDERS ? JSON.parse(env.VMX_PROVIDERS) : [];

const client = (opts = {}) =>
  new OpenAI({ baseURL: env.VMX_BASE_URL, apiKey: env.VMX_API_KEY, timeout: 20000, ...opts });
const noRetry = () => client({ maxRetries: 0 });
const messages = [{ role: "user", content: "what is the weather like" }];
const tools = [{
  type: "function",
  function: {
    name: "get_weather", description: "The weather of a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
// a 1x1 PNG
const PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

// the shape of a value: keys and types, not values
function shape(v) {
  if (Array.isArray(v)) return v.length ? [shape(v[0])] : [];
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, shape(v[k])]));
  }
  return v === null ? "null" : typeof v;
}
const shapes = {};

for (const p of PROVIDERS) {
  const expected = `Hello from ${p.upstream}! You said: what is the weather like`;

  test(`${p.provider}: chat.completions.create`, async () => {
    const { data, response } = await client()
      .chat.completions.create({ model: p.chat, messages, temperature: 0.2, max_tokens: 50 })
      .withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-vmx-provider"), p.provider);
    assert.equal(data.object, "chat.completion");
    assert.match(data.id, /^chatcmpl-/);
    assert.equal(data.model, p.upstream);
    assert.equal(data.choices.length, 1);
    assert.equal(data.choices[0].message.role, "assistant");
    assert.equal(data.choices[0].message.content, expected);
    assert.equal(data.choices[0].finish_reason, "stop");
    assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
    shapes[p.provider] = { whole: shape(data) };
  });

  test(`${p.provider}: streaming with for await`, async () => {
    const stream = await client().chat.completions.create({
      model: p.chat, messages, stream: true, stream_options: { include_usage: true },
    });
    let text = "", role = null, finish = null, usage = null, n = 0;
    const kinds = [];
    for await (const chunk of stream) {
      n++;
      assert.equal(chunk.object, "chat.completion.chunk");
      if (chunk.usage) {
        assert.deepEqual(chunk.choices, []);
        usage = chunk.usage;
        kinds.push(shape(chunk));
        continue;
      }
      const c = chunk.choices[0];
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
      if (n <= 2 || c.finish_reason) kinds.push(shape(chunk));
    }
    assert.ok(n >= 3, `chunks: ${n}`);
    assert.equal(role, "assistant");
    assert.equal(text, expected);
    assert.equal(finish, "stop");
    assert.ok(usage && usage.completion_tokens > 0, "usage chunk");
    assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
    (shapes[p.provider] ??= {}).chunks = kinds;
  });

  test(`${p.provider}: tool call, tool result, answer`, async () => {
    const ask = [{ role: "user", content: "What is the weather in Paris?" }];
    const first = await client().chat.completions.create({ model: p.tools, messages: ask, tools });
    const msg = first.choices[0].message;
    assert.equal(first.choices[0].finish_reason, "tool_calls");
    assert.equal(msg.tool_calls.length, 1);
    const call = msg.tool_calls[0];
    assert.equal(call.type, "function");
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });

    // the same call, streamed: the SDK's helper assembles the pieces
    const runner = client().chat.completions.stream({ model: p.tools, messages: ask, tools });
    const streamed = await runner.finalChatCompletion();
    const scall = streamed.choices[0].message.tool_calls[0];
    assert.equal(streamed.choices[0].finish_reason, "tool_calls");
    assert.equal(scall.function.name, "get_weather");
    assert.deepEqual(JSON.parse(scall.function.arguments), { city: "Paris" });

    const second = await client().chat.completions.create({
      model: p.tools, tools,
      messages: [...ask, msg, { role: "tool", tool_call_id: call.id, content: '{"temperature":21}' }],
    });
    assert.equal(second.choices[0].finish_reason, "stop");
    assert.match(second.choices[0].message.content, /^The tool answered: .*21/);
  });

  test(`${p.provider}: image as a data URL`, async () => {
    const data = await client().chat.completions.create({
      model: p.chat,
      messages: [{ role: "user", content: [
        { type: "text", text: "what is the weather like" },
        { type: "image_url", image_url: { url: PNG } },
      ] }],
    });
    assert.equal(data.choices[0].message.content, expected);
  });

  test(`${p.provider}: typed errors`, async () => {
    await assert.rejects(
      noRetry().chat.completions.create({ model: p.bad, messages }),
      (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.error?.message
        && e.headers.get("x-vmx-provider") !== undefined,
    );
    await assert.rejects(
      noRetry().chat.completions.create({ model: p.limited, messages }),
      (e) => e instanceof OpenAI.RateLimitError && e.status === 429,
    );
    await assert.rejects(
      noRetry().chat.completions.create({ model: p.down, messages }),
      (e) => e instanceof OpenAI.InternalServerError && e.status >= 500,
    );
    // streamed: the error comes before the first byte, as the same typed exception
    await assert.rejects(
      noRetry().chat.completions.create({ model: p.limited, messages, stream: true }),
      (e) => e instanceof OpenAI.RateLimitError,
    );
  });
}

if (PROVIDERS.length > 1) {
  test("the same shapes whatever the provider", () => {
    const [first, ...rest] = PROVIDERS.map((p) => p.provider);
    assert.ok(shapes[first]?.whole && shapes[first]?.chunks, "the earlier tests ran");
    for (const p of rest) {
      assert.deepEqual(shapes[p], shapes[first], `${p} vs ${first}`);
    }
  });
}
