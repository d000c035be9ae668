// The official OpenAI Node SDK, unchanged, against an OpenAI-compatible endpoint:
// the VM-X gateway (VMX_TARGET=gateway) or the fake provider directly
// (VMX_TARGET=fake, which checks that the fake speaks OpenAI's format).
//
// Environment (set by t/gateway/test_sdk.py and t/gateway/test_fake_provider.py):
//   VMX_BASE_URL           base URL with /v1
//   VMX_API_KEY            a valid key
//   VMX_MODEL_CHAT         model/resource answering the echo text
//   VMX_UPSTREAM_MODEL     the model name the provider sees for VMX_MODEL_CHAT
//   VMX_MODEL_TOOLS        model/resource answering with tool calls
//   VMX_MODEL_RATE_LIMITED model/resource whose provider chain answers 429
//   VMX_MODEL_FORBIDDEN    model/resource that gives 403
//   VMX_MODEL_MISSING      model/resource that gives 404
//   VMX_MODEL_STREAM_FIRST_ERROR_FB  (gateway) a resource whose first model's 200 stream opens
//                          with an error event and whose fallback answers
//   VMX_MODEL_STREAM_FIRST_ERROR     (gateway) the same without a fallback
//   VMX_MODEL_STREAM_MID_ERROR       (gateway) a stream with an error event after content
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI from "openai";

const env = process.env;
const TARGET = env.VMX_TARGET || "gateway";
const gateway = TARGET === "gateway";
const BASE = env.VMX_BASE_URL;
const KEY = env.VMX_API_KEY;
const CHAT = env.VMX_MODEL_CHAT;
const UPSTREAM = env.VMX_UPSTREAM_MODEL || CHAT;
const TOOLS = env.VMX_MODEL_TOOLS;

assert.ok(BASE && KEY && CHAT && TOOLS, "VMX_BASE_URL, VMX_API_KEY, VMX_MODEL_CHAT, VMX_MODEL_TOOLS must be set");

const client = (opts = {}) => new OpenAI({ baseURL: BASE, apiKey: KEY, timeout: 20000, ...opts });
const noRetry = (opts = {}) => client({ maxRetries: 0, ...opts });
const messages = [{ role: "user", content: "what is the weather like" }];
const expectedText = `Hello from ${UPSTREAM}! You said: what is the weather like`;

test("chat.completions.create, non-streaming", async () => {
  const { data, response } = await client()
    .chat.completions.create({ model: CHAT, messages, temperature: 0.2 })
    .withResponse();
  assert.equal(response.status, 200);
  assert.equal(data.object, "chat.completion");
  assert.equal(data.choices.length, 1);
  assert.equal(data.choices[0].message.role, "assistant");
  assert.equal(data.choices[0].message.content, expectedText);
  assert.equal(data.choices[0].finish_reason, "stop");
  assert.ok(data.usage.prompt_tokens > 0);
  assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
  if (gateway) {
    assert.ok(response.headers.get("x-vmx-request-id"), "x-vmx-request-id");
    assert.equal(response.headers.get("x-vmx-model"), UPSTREAM);
  }
});

test("streaming with for await collects the deltas", async () => {
  const stream = await client().chat.completions.create({ model: CHAT, messages, stream: true });
  let text = "";
  let role = null;
  let finish = null;
  let n = 0;
  for await (const chunk of stream) {
    n++;
    assert.equal(chunk.object, "chat.completion.chunk");
    assert.equal(chunk.usage ?? null, null, "no usage chunk unless asked for");
    const c = chunk.choices[0];
    assert.ok(c, "every chunk has a choice when include_usage is off");
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.ok(n >= 3, `chunks: ${n}`);
  assert.equal(role, "assistant");
  assert.equal(text, expectedText);
  assert.equal(finish, "stop");
});

test("streaming with stream_options.include_usage gets the usage", async () => {
  const stream = await client().chat.completions.create({
    model: CHAT, messages, stream: true, stream_options: { include_usage: true },
  });
  let usage = null;
  let text = "";
  for await (const chunk of stream) {
    if (chunk.usage) {
      usage = chunk.usage;
      assert.deepEqual(chunk.choices, []);
    }
    for (const c of chunk.choices) text += c.delta.content ?? "";
  }
  assert.equal(text, expectedText);
  assert.ok(usage, "usage chunk received");
  assert.ok(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
});

test("stream helper (chat.completions.stream) assembles the final message", async () => {
  const runner = client().chat.completions.stream({ model: CHAT, messages });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, expectedText);
});

const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather of a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];

test("tools round trip (non-streaming)", async () => {
  const c = client();
  const first = await c.chat.completions.create({ model: TOOLS, messages, tools, tool_choice: "auto" });
  const msg = first.choices[0].message;
  assert.equal(first.choices[0].finish_reason, "tool_calls");
  assert.equal(msg.tool_calls.length, 1);
  const call = msg.tool_calls[0];
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
  const second = await c.chat.completions.create({
    model: TOOLS,
    tools,
    messages: [...messages, msg, { role: "tool", tool_call_id: call.id, content: "sunny, 21C" }],
  });
  assert.equal(second.choices[0].message.content, "The tool answered: sunny, 21C");
  assert.equal(second.choices[0].finish_reason, "stop");
});

test("tools round trip (streaming tool_call deltas)", async () => {
  const c = client();
  const stream = await c.chat.completions.create({ model: TOOLS, messages, tools, stream: true });
  let id = null, name = null, args = "", finish = null;
  for await (const chunk of stream) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    for (const tc of ch.delta.tool_calls ?? []) {
      assert.equal(tc.index, 0);
      if (tc.id) id = tc.id;
      if (tc.function?.name) name = tc.function.name;
      args += tc.function?.arguments ?? "";
    }
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.ok(id);
  assert.equal(name, "get_weather");
  assert.deepEqual(JSON.parse(args), { city: "Paris" });
  assert.equal(finish, "tool_calls");
  // the runner helper assembles the same call
  const runner = c.chat.completions.stream({ model: TOOLS, messages, tools });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.tool_calls[0].function.name, "get_weather");
  const second = await c.chat.completions.create({
    model: TOOLS, tools, stream: true,
    messages: [...messages, final.choices[0].message,
      { role: "tool", tool_call_id: final.choices[0].message.tool_calls[0].id, content: "rain" }],
  });
  let text = "";
  for await (const chunk of second) text += chunk.choices[0]?.delta?.content ?? "";
  assert.equal(text, "The tool answered: rain");
});

async function expectError(promise, cls, status, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
    assert.ok(err instanceof OpenAI.APIError);
    assert.equal(err.status, status);
    if (gateway && code !== undefined) {
      assert.equal(err.code, code);
      assert.ok(err.headers.get("x-vmx-request-id"), "x-vmx-request-id on errors");
    }
    assert.ok(err.error && typeof err.error.message === "string", "OpenAI error envelope");
    return true;
  });
}

test("wrong key: AuthenticationError (401)", async () => {
  await expectError(
    noRetry({ apiKey: "vmx-this-key-does-not-exist-aaaaaaaaaaaaaaaaaaaaaaa" })
      .chat.completions.create({ model: CHAT, messages }),
    OpenAI.AuthenticationError, 401, "invalid_api_key");
});

test("resource not allowed: PermissionDeniedError (403)", { skip: !env.VMX_MODEL_FORBIDDEN }, async () => {
  await expectError(
    noRetry().chat.completions.create({ model: env.VMX_MODEL_FORBIDDEN, messages }),
    OpenAI.PermissionDeniedError, 403, "api_key_resource_not_authorized");
});

test("unknown model: NotFoundError (404)", { skip: !env.VMX_MODEL_MISSING }, async () => {
  await expectError(
    noRetry().chat.completions.create({ model: env.VMX_MODEL_MISSING, messages }),
    OpenAI.NotFoundError, 404, "model_not_found");
});

test("missing messages: BadRequestError (400)", async () => {
  await expectError(
    noRetry().chat.completions.create({ model: CHAT }),
    OpenAI.BadRequestError, 400, "invalid_request");
});

test("provider 429 after the chain: RateLimitError", { skip: !env.VMX_MODEL_RATE_LIMITED }, async () => {
  await expectError(
    noRetry().chat.completions.create({ model: env.VMX_MODEL_RATE_LIMITED, messages }),
    OpenAI.RateLimitError, 429, "rate_limit_exceeded");
  await expectError(
    noRetry().chat.completions.create({ model: env.VMX_MODEL_RATE_LIMITED, messages, stream: true }),
    OpenAI.RateLimitError, 429);
});

test("a stream opening with an error falls back unseen", { skip: !env.VMX_MODEL_STREAM_FIRST_ERROR_FB }, async () => {
  const stream = await noRetry().chat.completions.create({
    model: env.VMX_MODEL_STREAM_FIRST_ERROR_FB, messages, stream: true });
  let text = "";
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  assert.ok(text.startsWith("Hello from"), text);
});

test("a stream opening with an error, no fallback: RateLimitError", { skip: !env.VMX_MODEL_STREAM_FIRST_ERROR }, async () => {
  await expectError(
    noRetry().chat.completions.create({ model: env.VMX_MODEL_STREAM_FIRST_ERROR, messages, stream: true }),
    OpenAI.RateLimitError, 429, "rate_limit_exceeded");
});

test("an error after content ends the stream with an APIError", { skip: !env.VMX_MODEL_STREAM_MID_ERROR }, async () => {
  const stream = await noRetry().chat.completions.create({
    model: env.VMX_MODEL_STREAM_MID_ERROR, messages, stream: true });
  let text = "";
  await assert.rejects((async () => {
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
  })(), (err) => {
    assert.ok(err instanceof OpenAI.APIError, `${err?.constructor?.name}: ${err?.message}`);
    assert.match(err.message, /server had an error/);
    return true;
  });
  assert.ok(text.length > 0, "the content before the error reached the client");
});

test("models.list", { skip: !gateway }, async () => {
  const ids = [];
  for await (const m of client().models.list()) {
    assert.equal(m.object, "model");
    ids.push(m.id);
  }
  assert.ok(ids.includes(CHAT), `models: ${ids}`);
  assert.ok(ids.includes(TOOLS), `models: ${ids}`);
});
