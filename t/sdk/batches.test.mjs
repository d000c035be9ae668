// The official OpenAI Node SDK, unchanged, running a batch through the gateway: files.create
// of a JSONL input, batches.create, batches.retrieve until it ends, files.content of its
// output, batches.list and batches.cancel.
//
// Environment (set by t/gateway/test_openai_batches.py; without VMX_BATCH_MODEL this file
// defines no test):
//   VMX_BASE_URL     base URL with /v1
//   VMX_API_KEY      a key allowed to call VMX_BATCH_MODEL
//   VMX_BATCH_MODEL  a resource name; the test plays the runner for batches whose metadata
//                    has run: "yes", and leaves the others queued
import { test } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";

const env = process.env;
const MODEL = env.VMX_BATCH_MODEL;
const client = () =>
  new OpenAI({ baseURL: env.VMX_BASE_URL, apiKey: env.VMX_API_KEY, timeout: 20000, maxRetries: 0 });

const jsonl = (ids) =>
  ids
    .map((id) =>
      JSON.stringify({
        custom_id: id,
        method: "POST",
        url: "/v1/chat/completions",
        body: { model: MODEL, messages: [{ role: "user", content: `question ${id}` }] },
      }),
    )
    .join("\n") + "\n";

async function upload(openai, ids) {
  const file = await openai.files.create({
    file: await toFile(Buffer.from(jsonl(ids)), "requests.jsonl"),
    purpose: "batch",
  });
  assert.equal(file.object, "file");
  assert.equal(file.purpose, "batch");
  assert.equal(file.filename, "requests.jsonl");
  assert.match(file.id, /^file-[0-9a-f]{32}$/);
  return file;
}

async function waitEnded(openai, id) {
  for (let i = 0; i < 100; i++) {
    const batch = await openai.batches.retrieve(id);
    if (["completed", "failed", "cancelled"].includes(batch.status)) {
      return batch;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`batch ${id} did not end`);
}

if (MODEL) {
  test("files.create, batches.create, batches.retrieve, files.content", async () => {
    const openai = client();
    const file = await upload(openai, ["q1", "q2"]);
    const batch = await openai.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { run: "yes" },
    });
    assert.equal(batch.object, "batch");
    assert.match(batch.id, /^batch_[0-9a-f]{32}$/);
    assert.equal(batch.input_file_id, file.id);
    assert.deepEqual(batch.request_counts, { total: 2, completed: 0, failed: 0 });

    const done = await waitEnded(openai, batch.id);
    assert.equal(done.status, "completed");
    assert.deepEqual(done.request_counts, { total: 2, completed: 2, failed: 0 });
    assert.equal(done.error_file_id, null);

    const content = await (await openai.files.content(done.output_file_id)).text();
    const lines = content.trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.custom_id), ["q1", "q2"]);
    for (const l of lines) {
      assert.match(l.id, /^batch_req_/);
      assert.equal(l.error, null);
      assert.equal(l.response.status_code, 200);
      assert.equal(l.response.body.object, "chat.completion");
    }
    const output = await openai.files.retrieve(done.output_file_id);
    assert.equal(output.purpose, "batch_output");
  });

  test("batches.cancel", async () => {
    const openai = client();
    const file = await upload(openai, ["c1"]);
    const batch = await openai.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
    });
    const cancelled = await openai.batches.cancel(batch.id);
    assert.equal(cancelled.id, batch.id);
    assert.equal(cancelled.status, "cancelled");
    await assert.rejects(openai.batches.create({
      input_file_id: file.id, endpoint: "/v1/embeddings", completion_window: "24h",
    }), (e) => e instanceof OpenAI.BadRequestError && e.status === 400);
  });

  test("batches.list and files.list page with after", async () => {
    const openai = client();
    const ids = [];
    for await (const batch of openai.batches.list({ limit: 1 })) {
      ids.push(batch.id);
    }
    assert.ok(ids.length >= 2, ids.join());
    assert.equal(new Set(ids).size, ids.length);
    const files = [];
    for await (const file of openai.files.list({ limit: 2 })) {
      files.push(file.id);
    }
    assert.ok(files.length >= 2);
    const deleted = await openai.files.delete(files[0]);
    assert.deepEqual(deleted, { id: files[0], object: "file", deleted: true });
  });
}
