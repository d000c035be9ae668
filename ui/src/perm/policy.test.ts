import { describe, expect, it } from "vitest";
import { escapeName, globMatch, policiesAllow, res } from "./policy";

const admin = { statements: [{ effect: "allow" as const, actions: ["*"], resources: ["*"] }] };
const readOnly = {
  statements: [{ effect: "allow" as const, actions: ["*:get", "*:list"], resources: ["*"] }],
};
const power = {
  statements: [
    { effect: "allow" as const, actions: ["*"], resources: ["*"] },
    {
      effect: "deny" as const,
      actions: ["user:create", "user:update", "user:delete", "role:create", "role:update",
        "role:delete", "role:assign", "role:unassign", "workspace:access-all"],
      resources: ["*"],
    },
  ],
};

describe("globMatch", () => {
  it("is anchored at both ends", () => {
    expect(globMatch("ai-connection:get", "ai-connection:get")).toBe(true);
    expect(globMatch("connection:get", "ai-connection:get")).toBe(false);
    expect(globMatch("ai-connection", "ai-connection:get")).toBe(false);
  });
  it("* matches any run, colons included; ? one character", () => {
    expect(globMatch("workspace:acme:*", "workspace:acme:environment:prod:api-key:k")).toBe(true);
    expect(globMatch("*:get", "ai-resource:get")).toBe(true);
    expect(globMatch("role:?", "role:ab")).toBe(false);
    expect(globMatch("role:??", "role:ab")).toBe(true);
  });
  it("treats regex characters literally", () => {
    expect(globMatch("a.b", "axb")).toBe(false);
    expect(globMatch("a(b)", "a(b)")).toBe(true);
  });
});

describe("policiesAllow", () => {
  it("admin may do anything", () => {
    expect(policiesAllow([admin], "user:delete", "user:bob")).toBe(true);
  });
  it("read-only may only get and list", () => {
    expect(policiesAllow([readOnly], "ai-connection:list", res.envObj("a", "p", "ai-connection")))
      .toBe(true);
    expect(policiesAllow([readOnly], "ai-connection:create",
      res.envObj("a", "p", "ai-connection", "c"))).toBe(false);
  });
  it("deny wins over allow, across roles", () => {
    expect(policiesAllow([power], "ai-resource:create", "workspace:a:environment:b:ai-resource:x"))
      .toBe(true);
    expect(policiesAllow([power], "user:create", "user:bob")).toBe(false);
    expect(policiesAllow([admin, power], "role:update", "role:x")).toBe(false);
  });
  it("no role, no match: refused", () => {
    expect(policiesAllow([], "workspace:list", "workspace:*")).toBe(false);
  });
  it("names are escaped so a glob cannot reach another workspace", () => {
    expect(escapeName("acme:evil")).toBe("acme%3Aevil");
    expect(escapeName("a b*?%")).toBe("a%20b%2A%3F%25");
    expect(escapeName("é")).toBe("%C3%A9");
    const p = {
      statements: [{ effect: "allow" as const, actions: ["*"], resources: ["workspace:acme:*"] }],
    };
    expect(policiesAllow([p], "environment:get", res.env("acme", "prod"))).toBe(true);
    expect(policiesAllow([p], "workspace:get", res.ws("acme:evil"))).toBe(false);
  });
});
