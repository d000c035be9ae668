// The official Google Gen AI SDK (@google/genai, pinned) against t/harness/fake_gemini.py:
// generateContent and generateContentStream (alt=sse), function calls, the blocked answer and
// the API's errors.  VMX_FAKE_GEMINI_URL and VMX_FAKE_GEMINI_KEY come from
// t/gateway/test_provider_fakes.py; without them the tests are skipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, FinishReason, GoogleGenAI, Type } from '@google/genai';

const URL = process.env.VMX_FAKE_GEMINI_URL;
const KEY = process.env.VMX_FAKE_GEMINI_KEY;
const skip = !URL && 'VMX_FAKE_GEMINI_URL not set';

const client = (apiKey = KEY) => new GoogleGenAI({ apiKey, httpOptions: { baseUrl: URL, timeout: 10_000 } });

const CONTENTS = [{ role: 'user', parts: [{ text: 'hi there' }] }];
const TOOLS = [{
  functionDeclarations: [{
    name: 'get_weather',
    description: 'Weather of a city',
    parameters: { type: Type.OBJECT, properties: { city: { type: Type.STRING } }, required: ['city'] },
  }],
}];

test('generateContent: a text answer', { skip }, async () => {
  const r = await client().models.generateContent({
    model: 'gemini-echo', contents: CONTENTS,
    config: { systemInstruction: 'Be brief.', temperature: 0.2, maxOutputTokens: 64 },
  });
  assert.equal(r.text, 'Hello from gemini-echo! You said: hi there');
  const [cand] = r.candidates;
  assert.equal(cand.content.role, 'model');
  assert.equal(cand.finishReason, FinishReason.STOP);
  assert.equal(cand.index, 0);
  assert.ok(Array.isArray(cand.safetyRatings) && cand.safetyRatings.length > 0);
  assert.equal(r.usageMetadata.candidatesTokenCount, 7);
  assert.equal(r.usageMetadata.totalTokenCount,
    r.usageMetadata.promptTokenCount + r.usageMetadata.candidatesTokenCount);
  assert.equal(r.modelVersion, 'gemini-echo');
  assert.ok(r.responseId.length > 10);
});

test('generateContent: a model id with dots and dashes', { skip }, async () => {
  const r = await client().models.generateContent({ model: 'models/gemini-2.5-flash-lite', contents: 'hello' });
  assert.equal(r.text, 'Hello from gemini-2.5-flash-lite! You said: hello');
});

test('generateContent: functionCall, then the answer to the functionResponse', { skip }, async () => {
  const c = client();
  const r = await c.models.generateContent({ model: 'tools', contents: CONTENTS, config: { tools: TOOLS } });
  assert.deepEqual(r.functionCalls.map(({ name, args }) => ({ name, args })),
    [{ name: 'get_weather', args: { city: 'Paris' } }]);
  assert.equal(r.candidates[0].finishReason, FinishReason.STOP);
  const r2 = await c.models.generateContent({
    model: 'tools', config: { tools: TOOLS },
    contents: [...CONTENTS, r.candidates[0].content,
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp: '21C' } } }] }],
  });
  assert.equal(r2.text, 'The tool answered: {"temp":"21C"}');
});

for (const model of ['gemini-stream', 'split-stream']) {
  test(`generateContentStream: text pieces (${model})`, { skip }, async () => {
    const stream = await client().models.generateContentStream({ model, contents: CONTENTS });
    const pieces = [];
    let last;
    for await (const chunk of stream) {
      pieces.push(chunk.text);
      last = chunk;
    }
    assert.ok(pieces.length >= 3, `pieces: ${JSON.stringify(pieces)}`);
    assert.equal(pieces.join(''), `Hello from ${model}! You said: hi there`);
    assert.equal(last.candidates[0].finishReason, FinishReason.STOP);
    assert.equal(last.usageMetadata.candidatesTokenCount, 7);
  });
}

test('generateContentStream: a function call', { skip }, async () => {
  const stream = await client().models.generateContentStream({ model: 'tools', contents: CONTENTS, config: { tools: TOOLS } });
  const calls = [];
  for await (const chunk of stream) calls.push(...(chunk.functionCalls ?? []));
  assert.deepEqual(calls.map(({ name, args }) => ({ name, args })), [{ name: 'get_weather', args: { city: 'Paris' } }]);
});

test('generateContentStream: an error object mid-stream is thrown as ApiError', { skip }, async () => {
  const stream = await client().models.generateContentStream({ model: 'stream-error', contents: CONTENTS });
  const pieces = [];
  await assert.rejects((async () => { for await (const c of stream) pieces.push(c.text); })(), (e) => {
    assert.ok(e instanceof ApiError, `got ${e}`);
    assert.equal(e.status, 500);
    assert.match(e.message, /INTERNAL/);
    return true;
  });
  assert.deepEqual(pieces, ['Hello from', ' stream-error! You']);
});

test('blocked: promptFeedback.blockReason SAFETY and no candidates', { skip }, async () => {
  const r = await client().models.generateContent({ model: 'blocked', contents: CONTENTS });
  assert.equal(r.candidates, undefined);
  assert.equal(r.text, undefined);
  assert.equal(r.promptFeedback.blockReason, 'SAFETY');
  const stream = await client().models.generateContentStream({ model: 'blocked', contents: CONTENTS });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.equal(chunks.length, 1);
  assert.equal(chunks[0].promptFeedback.blockReason, 'SAFETY');
});

test('max-tokens: finishReason MAX_TOKENS', { skip }, async () => {
  const r = await client().models.generateContent({ model: 'max-tokens', contents: CONTENTS });
  assert.equal(r.candidates[0].finishReason, FinishReason.MAX_TOKENS);
  assert.equal(r.text, 'Hello from');
});

const ERRORS = [
  ['fail-400', 400, 'INVALID_ARGUMENT'],
  ['fail-403', 403, 'PERMISSION_DENIED'],
  ['fail-404', 404, 'NOT_FOUND'],
  ['fail-429', 429, 'RESOURCE_EXHAUSTED'],
  ['fail-500', 500, 'INTERNAL'],
  ['fail-503', 503, 'UNAVAILABLE'],
];
for (const [model, status, name] of ERRORS) {
  for (const stream of [false, true]) {
    test(`ApiError ${status} ${name} for ${model}${stream ? ' (stream)' : ''}`, { skip }, async () => {
      const call = stream
        ? client().models.generateContentStream({ model, contents: CONTENTS })
        : client().models.generateContent({ model, contents: CONTENTS });
      await assert.rejects(call, (e) => {
        assert.ok(e instanceof ApiError, `got ${e}`);
        assert.equal(e.status, status);
        const body = JSON.parse(e.message);
        assert.equal(body.error.code, status);
        assert.equal(body.error.status, name);
        if (status === 429) {
          assert.ok(body.error.details.some((d) => d['@type'].endsWith('RetryInfo') && d.retryDelay === '1s'));
        }
        return true;
      });
    });
  }
}

test('a wrong API key: 400 API_KEY_INVALID', { skip }, async () => {
  await assert.rejects(client('AIzaWrong').models.generateContent({ model: 'm', contents: CONTENTS }), (e) => {
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 400);
    assert.equal(JSON.parse(e.message).error.details[0].reason, 'API_KEY_INVALID');
    return true;
  });
});
