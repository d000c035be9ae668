import { afterEach, describe, expect, it, vi } from "vitest";
import { api, ApiError, getToken, onAuthProblem, setToken, takeTokenFromFragment } from "./client";

function answer(status: number, body: unknown) {
  return vi.fn().mockResolvedValue(
    new Response(body === undefined ? null : JSON.stringify(body), {
      status,
      headers: { "Content-Type": "application/json" },
    }),
  );
}

afterEach(() => {
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

describe("api", () => {
  it("sends the bearer token and parses JSON", async () => {
    setToken("tok-1", new Date(Date.now() + 60_000).toISOString());
    const f = answer(200, { id: "x" });
    vi.stubGlobal("fetch", f);
    expect(await api("GET", "/auth/me")).toEqual({ id: "x" });
    const [url, init] = f.mock.calls[0];
    expect(url).toBe("/api/v1/auth/me");
    expect(init.headers.Authorization).toBe("Bearer tok-1");
  });

  it("maps the error envelope, field included", async () => {
    vi.stubGlobal(
      "fetch",
      answer(400, { error: { code: "validation_error", message: "too short", details: { field: "config.apiKey" } } }),
    );
    const e = (await api("POST", "/x", {}).catch((x) => x)) as ApiError;
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(400);
    expect(e.code).toBe("validation_error");
    expect(e.field).toBe("config.apiKey");
    expect(e.message).toBe("too short");
  });

  it("reports 401 and password_change_required, not other 403s", async () => {
    const seen: string[] = [];
    const off = onAuthProblem((e) => seen.push(`${e.status} ${e.code}`));
    vi.stubGlobal("fetch", answer(401, { error: { code: "unauthorized", message: "no" } }));
    await api("GET", "/workspaces").catch(() => {});
    vi.stubGlobal("fetch", answer(403, { error: { code: "password_change_required", message: "change" } }));
    await api("GET", "/workspaces").catch(() => {});
    vi.stubGlobal("fetch", answer(403, { error: { code: "forbidden", message: "no" } }));
    await api("GET", "/workspaces").catch(() => {});
    off();
    expect(seen).toEqual(["401 unauthorized", "403 password_change_required"]);
  });

  it("204 answers undefined", async () => {
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response(null, { status: 204 })));
    expect(await api("DELETE", "/x")).toBeUndefined();
  });
});

describe("tokens", () => {
  it("takes the OIDC token from the fragment and clears it", () => {
    window.history.replaceState(null, "", "/setup#token=abc&expiresAt=2099-01-01T00:00:00Z");
    expect(takeTokenFromFragment()).toBe(true);
    expect(getToken()).toBe("abc");
    expect(window.location.hash).toBe("");
    expect(window.location.pathname).toBe("/setup");
  });

  it("forgets an expired token", () => {
    setToken("old", "2000-01-01T00:00:00Z");
    expect(getToken()).toBeNull();
  });
});
