import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { MantineProvider } from "@mantine/core";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { SignIn } from "./SignIn";

function renderSignIn() {
  return render(
    <MantineProvider>
      <QueryClientProvider client={new QueryClient()}>
        <MemoryRouter initialEntries={["/signin"]}>
          <Routes>
            <Route path="/signin" element={<SignIn />} />
            <Route path="/" element={<p>home</p>} />
            <Route path="/password" element={<p>password page</p>} />
          </Routes>
        </MemoryRouter>
      </QueryClientProvider>
    </MantineProvider>,
  );
}

/** fetch answering the OIDC probe with 404 and the login with `login` */
function stubFetch(login: Response) {
  vi.stubGlobal(
    "fetch",
    vi.fn((url: string) =>
      Promise.resolve(url.endsWith("/oidc/login") ? new Response(null, { status: 404 }) : login),
    ),
  );
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  sessionStorage.clear();
});

function fill() {
  fireEvent.change(screen.getByLabelText(/Username/), { target: { value: "bob" } });
  fireEvent.change(screen.getByLabelText(/^Password/), { target: { value: "secret-password" } });
  fireEvent.click(screen.getByRole("button", { name: "Sign in" }));
}

describe("SignIn", () => {
  it("shows a wrong password, and no SSO button when OIDC is off", async () => {
    stubFetch(new Response(JSON.stringify({ error: { code: "unauthorized", message: "x" } }), { status: 401 }));
    renderSignIn();
    fill();
    expect(await screen.findByText("Wrong username or password.")).toBeTruthy();
    expect(screen.queryByText("Sign in with SSO")).toBeNull();
  });

  it("shows a 400 at its field", async () => {
    stubFetch(
      new Response(
        JSON.stringify({ error: { code: "validation_error", message: "username is required", details: { field: "username" } } }),
        { status: 400 },
      ),
    );
    renderSignIn();
    fill();
    const msg = await screen.findByText("username is required");
    expect(msg.id).toMatch(/error/);
  });

  it("offers SSO when the OIDC login redirects", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(() => Promise.resolve({ type: "opaqueredirect", status: 0 } as Response)),
    );
    renderSignIn();
    expect(await screen.findByText("Sign in with SSO")).toBeTruthy();
  });

  it("stores the token and goes to the password page for CHANGE_PASSWORD", async () => {
    stubFetch(
      new Response(
        JSON.stringify({
          token: "t",
          expiresAt: new Date(Date.now() + 3600_000).toISOString(),
          user: { id: "u", username: "bob", state: "CHANGE_PASSWORD", enabled: true },
        }),
        { status: 200 },
      ),
    );
    renderSignIn();
    fill();
    expect(await screen.findByText("password page")).toBeTruthy();
    await waitFor(() => expect(sessionStorage.getItem("vmx.token")).toBe("t"));
  });
});
