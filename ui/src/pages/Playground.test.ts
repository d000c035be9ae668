import { describe, expect, it } from "vitest";
import { deltaText } from "./Playground";
import { requestMessages } from "./replay";

describe("playground helpers", () => {
  it("reads the content deltas of an SSE data payload", () => {
    expect(deltaText('{"choices":[{"index":0,"delta":{"content":"Hel"}}]}')).toBe("Hel");
    expect(deltaText('{"choices":[{"index":0,"delta":{"role":"assistant"}}]}')).toBe("");
    expect(deltaText("[DONE]")).toBe("");
    expect(deltaText("not json")).toBe("");
  });

  it("takes the messages of a stored request, as an object or its JSON text", () => {
    const req = { model: "chat", messages: [{ role: "system", content: "be brief" }, { role: "user", content: [{ type: "text", text: "hi" }] }] };
    expect(requestMessages(req)).toEqual([
      { role: "system", content: "be brief" },
      { role: "user", content: "hi" },
    ]);
    expect(requestMessages(JSON.stringify(req))?.length).toBe(2);
    expect(requestMessages(null)).toBeNull();
    expect(requestMessages("{broken")).toBeNull();
    expect(requestMessages({ prompt: "x" })).toBeNull();
  });
});
