// The official Anthropic SDK (@anthropic-ai/sdk, pinned) against t/harness/fake_anthropic.py:
// the fake must speak the Messages API well enough for the SDK to parse every answer, stream
// and error.  VMX_FAKE_ANTHROPIC_URL and VMX_FAKE_ANTHROPIC_KEY come from
// t/gateway/test_provider_fakes.py; without them the tests are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Anthropic, {
  APIError, AuthenticationError, BadRequestError, InternalServerError, NotFoundError,
  OverloadedError, PermissionDeniedError, RateLimitError,
} from '@anthropic-ai/sdk';

const URL = process.env.VMX_FAKE_ANTHROPIC_URL;
const KEY = process.env.VMX_FAKE_ANTHROPIC_KEY;
const skip = !URL && 'VMX_FAKE_ANTHROPIC_URL not set';

const client = (apiKey = KEY) =>
  new Anthropic({ apiKey, baseURL: URL, maxRetries: 0, timeout: 10_000 });

const USER = [{ role: 'user', content: 'hi there' }];
const TOOLS = [{
  name: 'get_weather',
  description: 'Weather of a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
}];

test('messages.create: a text message', { skip }, async () => {
  const { data: msg, response } = await client()
    .messages.create({ model: 'claude-echo', max_tokens: 64, messages: USER })
    .withResponse();
  assert.equal(msg.type, 'message');
  assert.match(msg.id, /^msg_01/);
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.model, 'claude-echo');
  assert.deepEqual(msg.content, [{ type: 'text', text: 'Hello from claude-echo! You said: hi there' }]);
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.stop_sequence, null);
  assert.ok(msg.usage.input_tokens > 0);
  assert.equal(msg.usage.output_tokens, 7);
  assert.equal(msg.usage.cache_read_input_tokens, 0);
  assert.match(msg._request_id, /^req_/);
  assert.equal(response.headers.get('anthropic-ratelimit-requests-limit'), '4000');
  assert.equal(response.headers.get('anthropic-ratelimit-tokens-limit'), '480000');
});

test('messages.create with x-api-key and anthropic-version 2023-06-01, as the gateway sends them', { skip }, async () => {
  const c = new Anthropic({
    apiKey: null, authToken: null, baseURL: URL, maxRetries: 0, timeout: 10_000,
    defaultHeaders: { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' },
  });
  const msg = await c.messages.create({ model: 'x-api-key-style', max_tokens: 64, messages: USER });
  assert.equal(msg.content[0].text, 'Hello from x-api-key-style! You said: hi there');
  const bad = new Anthropic({
    apiKey: null, authToken: null, baseURL: URL, maxRetries: 0,
    defaultHeaders: { 'x-api-key': 'sk-ant-wrong' },
  });
  await assert.rejects(bad.messages.create({ model: 'm', max_tokens: 8, messages: USER }),
    (e) => e instanceof AuthenticationError && e.apiMessage === 'invalid x-api-key');
});

test('messages.create: tool_use block, then the answer to the tool result', { skip }, async () => {
  const c = client();
  const msg = await c.messages.create({ model: 'tools', max_tokens: 64, messages: USER, tools: TOOLS });
  assert.equal(msg.stop_reason, 'tool_use');
  assert.equal(msg.content.length, 1);
  const [use] = msg.content;
  assert.equal(use.type, 'tool_use');
  assert.match(use.id, /^toolu_01/);
  assert.equal(use.name, 'get_weather');
  assert.deepEqual(use.input, { city: 'Paris' });
  const next = await c.messages.create({
    model: 'tools', max_tokens: 64, tools: TOOLS,
    messages: [...USER, { role: 'assistant', content: msg.content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21C and sunny' }] }],
  });
  assert.equal(next.stop_reason, 'end_turn');
  assert.equal(next.content[0].text, 'The tool answered: 21C and sunny');
});

test('messages.create: a tool_result without its tool_use is refused like the API does', { skip }, async () => {
  await assert.rejects(
    client().messages.create({
      model: 'tools', max_tokens: 64, tools: TOOLS,
      messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_nope', content: 'x' }] }],
    }),
    (e) => e instanceof BadRequestError && e.status === 400 && e.type === 'invalid_request_error' &&
      /tool_use_id/.test(e.message));
});

for (const model of ['claude-stream', 'split-stream']) {
  test(`messages.stream: text deltas (${model})`, { skip }, async () => {
    const stream = client().messages.stream({ model, max_tokens: 64, messages: USER });
    const types = [];
    let text = '';
    stream.on('streamEvent', (ev) => types.push(ev.type));
    stream.on('text', (t) => { text += t; });
    const msg = await stream.finalMessage();
    assert.equal(text, `Hello from ${model}! You said: hi there`);
    assert.equal(msg.content.length, 1);
    assert.equal(msg.content[0].type, 'text');
    assert.equal(msg.content[0].text, text);
    assert.equal(msg.stop_reason, 'end_turn');
    assert.equal(msg.usage.output_tokens, 7);
    assert.ok(msg.usage.input_tokens > 0);
    assert.equal(types[0], 'message_start');
    assert.equal(types[1], 'content_block_start');
    assert.equal(types.at(-2), 'message_delta');
    assert.equal(types.at(-1), 'message_stop');
    assert.ok(types.filter((t) => t === 'content_block_delta').length >= 7);
  });
}

test('messages.create stream: raw events in order, ping skipped by the SDK', { skip }, async () => {
  const stream = await client().messages.create({ model: 'raw', max_tokens: 64, messages: USER, stream: true });
  const seen = [];
  for await (const ev of stream) seen.push(ev.type);
  assert.deepEqual([...new Set(seen)], ['message_start', 'content_block_start', 'content_block_delta',
    'content_block_stop', 'message_delta', 'message_stop']);
});

for (const model of ['tools', 'tools-text']) {
  test(`messages.stream: tool_use with input_json_delta pieces (${model})`, { skip }, async () => {
    const stream = client().messages.stream({ model, max_tokens: 64, messages: USER, tools: TOOLS });
    const partials = [];
    stream.on('inputJson', (delta) => partials.push(delta));
    const msg = await stream.finalMessage();
    assert.equal(msg.stop_reason, 'tool_use');
    const use = msg.content.at(-1);
    assert.equal(use.type, 'tool_use');
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Paris' });
    assert.ok(partials.filter((p) => p).length >= 2, `partial_json in pieces: ${JSON.stringify(partials)}`);
    assert.equal(partials.join(''), '{"city":"Paris"}');
    if (model === 'tools-text') assert.equal(msg.content[0].text, 'Let me check that for you.');
  });
}

test('messages.stream: an error event mid-stream is thrown as APIError', { skip }, async () => {
  const stream = client().messages.stream({ model: 'stream-error', max_tokens: 64, messages: USER });
  let text = '';
  stream.on('text', (t) => { text += t; });
  await assert.rejects(stream.finalMessage(), (e) => {
    assert.ok(e instanceof APIError, `got ${e}`);
    assert.equal(e.type, 'overloaded_error');
    assert.equal(e.error.error.message, 'Overloaded');
    return true;
  });
  assert.equal(text, 'Hello from');
});

test('stop reasons max_tokens and stop_sequence', { skip }, async () => {
  const a = await client().messages.create({ model: 'max-tokens', max_tokens: 2, messages: USER });
  assert.equal(a.stop_reason, 'max_tokens');
  assert.equal(a.content[0].text, 'Hello from');
  const b = await client().messages.create({ model: 'stop-sequence', max_tokens: 64, messages: USER, stop_sequences: ['END'] });
  assert.equal(b.stop_reason, 'stop_sequence');
  assert.equal(b.stop_sequence, 'END');
});

const ERRORS = [
  ['fail-400', BadRequestError, 400, 'invalid_request_error'],
  ['fail-403', PermissionDeniedError, 403, 'permission_error'],
  ['fail-404', NotFoundError, 404, 'not_found_error'],
  ['fail-429', RateLimitError, 429, 'rate_limit_error'],
  ['fail-500', InternalServerError, 500, 'api_error'],
  ['fail-529', OverloadedError, 529, 'overloaded_error'],
];
for (const [model, cls, status, type] of ERRORS) {
  for (const stream of [false, true]) {
    test(`typed error ${cls.name} for ${model}${stream ? ' (stream)' : ''}`, { skip }, async () => {
      const call = stream
        ? client().messages.stream({ model, max_tokens: 64, messages: USER }).finalMessage()
        : client().messages.create({ model, max_tokens: 64, messages: USER });
      await assert.rejects(call, (e) => {
        assert.ok(e instanceof cls, `${model}: got ${e?.constructor?.name}: ${e}`);
        assert.equal(e.status, status);
        assert.equal(e.type, type);
        assert.match(e.requestID, /^req_/);
        if (status === 429) assert.equal(e.headers.get('retry-after'), '1');
        return true;
      });
    });
  }
}

test('a wrong x-api-key is an AuthenticationError', { skip }, async () => {
  await assert.rejects(
    client('sk-ant-wrong').messages.create({ model: 'm', max_tokens: 8, messages: USER }),
    (e) => e instanceof AuthenticationError && e.status === 401 && e.type === 'authentication_error');
});
