import { describe, expect, it } from "vitest";
import { responseText } from "./AuditDrawer";

describe("responseText", () => {
  it("reads a JSON completion, as an object or its text", () => {
    const r = { choices: [{ message: { role: "assistant", content: "Hi there" }, finish_reason: "stop" }] };
    expect(responseText(r)).toEqual({ text: "Hi there", finishReason: "stop" });
    expect(responseText(JSON.stringify(r))).toEqual({ text: "Hi there", finishReason: "stop" });
  });
  it("joins the deltas of a streamed answer", () => {
    const sse =
      'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n' +
      'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"length"}]}\n\ndata: [DONE]\n\n';
    expect(responseText(sse)).toEqual({ text: "Hello", finishReason: "length" });
  });
  it("joins the chunks of a stored stream (an array)", () => {
    const chunks = [
      { choices: [{ delta: { role: "assistant" } }] },
      { choices: [{ delta: { content: "Hi " } }] },
      { choices: [{ delta: { content: "you" }, finish_reason: "stop" }] },
    ];
    expect(responseText(chunks)).toEqual({ text: "Hi you", finishReason: "stop" });
    expect(responseText([{ object: "x" }])).toBeNull();
  });
  it("gives nothing for other payloads", () => {
    expect(responseText({ data: [{ embedding: [0.1] }] })).toBeNull();
    expect(responseText("plain text")).toBeNull();
    expect(responseText(null)).toBeNull();
  });
});
