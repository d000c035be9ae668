// The official AWS SDK (@aws-sdk/client-bedrock-runtime, pinned) against
// t/harness/fake_bedrock.py: Converse and ConverseStream (binary event stream, CRC-checked by
// the SDK), tool use, stream exceptions, HTTP errors as the SDK's typed exceptions, and the
// fake's SigV4 verification of the SDK's own signatures.  VMX_FAKE_BEDROCK_URL, _REGION,
// _ACCESS_KEY_ID, _SECRET_ACCESS_KEY and _SESSION_TOKEN come from
// t/gateway/test_provider_fakes.py; without them the tests are skipped.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AccessDeniedException, BedrockRuntimeClient, BedrockRuntimeServiceException, ConverseCommand,
  ConverseStreamCommand, InternalServerException, ModelStreamErrorException,
  ResourceNotFoundException, ServiceUnavailableException, ThrottlingException, ValidationException,
} from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';

const E = process.env;
const URL = E.VMX_FAKE_BEDROCK_URL;
const skip = !URL && 'VMX_FAKE_BEDROCK_URL not set';
const CREDS = {
  accessKeyId: E.VMX_FAKE_BEDROCK_ACCESS_KEY_ID,
  secretAccessKey: E.VMX_FAKE_BEDROCK_SECRET_ACCESS_KEY,
  sessionToken: E.VMX_FAKE_BEDROCK_SESSION_TOKEN,
};

// The client's default handler speaks HTTP/2; the gateway (and the fake) speak HTTP/1.1,
// which Bedrock serves too.
// Every client is destroyed at the end: its keep-alive TLS sockets would keep node running.
const clients = [];
const client = (credentials = CREDS, region = E.VMX_FAKE_BEDROCK_REGION) => {
  const c = new BedrockRuntimeClient({
    region, endpoint: URL, credentials, maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ requestTimeout: 10_000 }),
  });
  clients.push(c);
  return c;
};
after(() => { for (const c of clients) c.destroy(); });

const HAIKU = 'anthropic.claude-3-haiku-20240307-v1:0';
const MESSAGES = [{ role: 'user', content: [{ text: 'hi there' }] }];
const TOOL_CONFIG = {
  tools: [{
    toolSpec: {
      name: 'get_weather',
      description: 'Weather of a city',
      inputSchema: { json: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
    },
  }],
};

test('Converse: a text answer for a model id with ":" (signed, URL-encoded path)', { skip }, async () => {
  const r = await client().send(new ConverseCommand({
    modelId: HAIKU, messages: MESSAGES, system: [{ text: 'Be brief.' }],
    inferenceConfig: { maxTokens: 64, temperature: 0.2 },
  }));
  assert.equal(r.$metadata.httpStatusCode, 200);
  assert.match(r.$metadata.requestId, /^[0-9a-f-]{36}$/);
  assert.deepEqual(r.output.message, { role: 'assistant', content: [{ text: `Hello from ${HAIKU}! You said: hi there` }] });
  assert.equal(r.stopReason, 'end_turn');
  assert.equal(r.usage.outputTokens, 7);
  assert.equal(r.usage.totalTokens, r.usage.inputTokens + r.usage.outputTokens);
  assert.equal(typeof r.metrics.latencyMs, 'number');
});

test('Converse: toolUse, then the answer to the toolResult', { skip }, async () => {
  const c = client();
  const r = await c.send(new ConverseCommand({ modelId: 'tools', messages: MESSAGES, toolConfig: TOOL_CONFIG }));
  assert.equal(r.stopReason, 'tool_use');
  const [{ toolUse }] = r.output.message.content;
  assert.match(toolUse.toolUseId, /^tooluse_/);
  assert.equal(toolUse.name, 'get_weather');
  assert.deepEqual(toolUse.input, { city: 'Paris' });
  const r2 = await c.send(new ConverseCommand({
    modelId: 'tools', toolConfig: TOOL_CONFIG,
    messages: [...MESSAGES, r.output.message,
      { role: 'user', content: [{ toolResult: { toolUseId: toolUse.toolUseId, content: [{ text: '21C' }] } }] }],
  }));
  assert.equal(r2.stopReason, 'end_turn');
  assert.equal(r2.output.message.content[0].text, 'The tool answered: 21C');
});

test('Converse: a conversation starting with assistant is a ValidationException', { skip }, async () => {
  await assert.rejects(
    client().send(new ConverseCommand({ modelId: 'm', messages: [{ role: 'assistant', content: [{ text: 'x' }] }] })),
    (e) => e instanceof ValidationException && e.$metadata.httpStatusCode === 400 &&
      /must start with a user message/.test(e.message));
});

async function collect(cmd) {
  const r = await client().send(cmd);
  const events = [];
  for await (const ev of r.stream) events.push(ev);
  return { r, events };
}

for (const model of [HAIKU, 'split-stream']) {
  test(`ConverseStream: text deltas (${model})`, { skip }, async () => {
    const { r, events } = await collect(new ConverseStreamCommand({ modelId: model, messages: MESSAGES }));
    assert.equal(r.$metadata.httpStatusCode, 200);
    const kinds = events.map((ev) => Object.keys(ev)[0]);
    assert.equal(kinds[0], 'messageStart');
    assert.equal(events[0].messageStart.role, 'assistant');
    assert.deepEqual(kinds.slice(-3), ['contentBlockStop', 'messageStop', 'metadata']);
    const text = events.filter((ev) => ev.contentBlockDelta).map((ev) => ev.contentBlockDelta.delta.text).join('');
    assert.equal(text, `Hello from ${model}! You said: hi there`);
    assert.equal(events.at(-2).messageStop.stopReason, 'end_turn');
    assert.equal(events.at(-1).metadata.usage.outputTokens, 7);
    assert.equal(typeof events.at(-1).metadata.metrics.latencyMs, 'number');
  });
}

for (const model of ['tools', 'tools-text']) {
  test(`ConverseStream: toolUse start and input deltas (${model})`, { skip }, async () => {
    const { events } = await collect(new ConverseStreamCommand({ modelId: model, messages: MESSAGES, toolConfig: TOOL_CONFIG }));
    const start = events.find((ev) => ev.contentBlockStart);
    assert.equal(start.contentBlockStart.start.toolUse.name, 'get_weather');
    const idx = start.contentBlockStart.contentBlockIndex;
    const inputs = events.filter((ev) => ev.contentBlockDelta?.contentBlockIndex === idx)
      .map((ev) => ev.contentBlockDelta.delta.toolUse.input);
    assert.ok(inputs.length >= 2);
    assert.deepEqual(JSON.parse(inputs.join('')), { city: 'Paris' });
    assert.equal(events.find((ev) => ev.messageStop).messageStop.stopReason, 'tool_use');
    if (model === 'tools-text') assert.equal(events[1].contentBlockDelta.delta.text, 'Let');
  });
}

const STREAM_EXCEPTIONS = [
  ['stream-error', ThrottlingException],
  ['stream-error-modelStreamErrorException', ModelStreamErrorException],
  ['stream-error-internalServerException', InternalServerException],
  ['stream-error-serviceUnavailableException', ServiceUnavailableException],
  ['stream-error-validationException', ValidationException],
];
for (const [model, cls] of STREAM_EXCEPTIONS) {
  test(`ConverseStream: an exception frame mid-stream is thrown as ${cls.name}`, { skip }, async () => {
    const r = await client().send(new ConverseStreamCommand({ modelId: model, messages: MESSAGES }));
    const texts = [];
    await assert.rejects((async () => {
      for await (const ev of r.stream) if (ev.contentBlockDelta) texts.push(ev.contentBlockDelta.delta.text);
    })(), (e) => {
      assert.ok(e instanceof cls, `got ${e?.name}: ${e}`);
      return true;
    });
    assert.deepEqual(texts, ['Hello', ' from']);
  });
}

const ERRORS = [
  ['fail-400', ValidationException, 400],
  ['fail-403', AccessDeniedException, 403],
  ['fail-404', ResourceNotFoundException, 404],
  ['fail-429', ThrottlingException, 429],
  ['fail-500', InternalServerException, 500],
  ['fail-503', ServiceUnavailableException, 503],
];
for (const [model, cls, status] of ERRORS) {
  for (const Cmd of [ConverseCommand, ConverseStreamCommand]) {
    test(`${cls.name} for ${model} (${Cmd.name})`, { skip }, async () => {
      await assert.rejects(client().send(new Cmd({ modelId: model, messages: MESSAGES })), (e) => {
        assert.ok(e instanceof cls, `got ${e?.name}: ${e}`);
        assert.equal(e.$metadata.httpStatusCode, status);
        assert.ok(e.message.length > 10);
        return true;
      });
    });
  }
}

const AUTH_FAILURES = [
  ['a wrong secret', { ...CREDS, secretAccessKey: 'wrong-secret' }, undefined, 'InvalidSignatureException'],
  ['an unknown access key', { ...CREDS, accessKeyId: 'AKIAUNKNOWN000000000' }, undefined, 'UnrecognizedClientException'],
  ['a wrong session token', { ...CREDS, sessionToken: 'wrong-token' }, undefined, 'UnrecognizedClientException'],
  ['no session token', { accessKeyId: CREDS.accessKeyId, secretAccessKey: CREDS.secretAccessKey }, undefined, 'UnrecognizedClientException'],
  ['another region', CREDS, 'eu-west-3', 'InvalidSignatureException'],
];
for (const [what, creds, region, name] of AUTH_FAILURES) {
  test(`SigV4: ${what} is refused with 403 ${name}`, { skip }, async () => {
    await assert.rejects(client(creds, region).send(new ConverseCommand({ modelId: HAIKU, messages: MESSAGES })), (e) => {
      assert.ok(e instanceof BedrockRuntimeServiceException, `got ${e}`);
      assert.equal(e.name, name);
      assert.equal(e.$metadata.httpStatusCode, 403);
      return true;
    });
  });
}
