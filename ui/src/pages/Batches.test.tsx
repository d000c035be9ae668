import { afterEach, describe, expect, it, vi } from "vitest";
import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { MantineProvider } from "@mantine/core";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import type { Batch, BatchItem } from "../api/types";
import { batchCounts, BatchList } from "./Batches";

const PATH = "/workspaces/w1/environments/e1";
const BASE = `/api/v1${PATH}/completion-batch`;

function batch(id: string, status: Batch["status"], counts: Partial<Batch["counts"]>): Batch {
  return {
    id,
    apiKeyId: "k1",
    mode: "ASYNC",
    status,
    pool: null,
    callbackUrl: null,
    counts: { total: 0, pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, ...counts },
    error: null,
    createdAt: "2026-12-02T10:00:00Z",
    startedAt: null,
    completedAt: null,
    cancelledAt: null,
  };
}

const running = batch("aaaaaaaa-0000-4000-8000-000000000001", "RUNNING", {
  total: 10,
  succeeded: 3,
  failed: 1,
  running: 2,
  pending: 4,
});
const done = batch("bbbbbbbb-0000-4000-8000-000000000002", "COMPLETED", { total: 2, succeeded: 2 });

const items: BatchItem[] = [
  {
    index: 3,
    customId: "q-3",
    resource: "chat",
    status: "FAILED",
    statusCode: 400,
    error: { code: "invalid_request", message: "messages must not be empty", type: "invalid_request_error" },
    requestId: "r3",
    tries: 1,
    startedAt: null,
    finishedAt: null,
  },
];

const list = <T,>(data: T[]) => new Response(JSON.stringify({ data, total: data.length, pageIndex: 0, pageSize: 25 }));

/** fetch of the batches' routes; every call is kept as "METHOD url" */
function stubFetch() {
  const calls: string[] = [];
  vi.stubGlobal(
    "fetch",
    vi.fn((url: string, init?: RequestInit) => {
      calls.push(`${init?.method ?? "GET"} ${url}`);
      if (url.startsWith(`${BASE}?`)) return Promise.resolve(list([running, done]));
      if (url.startsWith(`${BASE}/${running.id}/items?`)) return Promise.resolve(list(items));
      if (url === `${BASE}/${running.id}/cancel`) {
        return Promise.resolve(new Response(JSON.stringify({ ...running, status: "CANCELLING" })));
      }
      return Promise.resolve(new Response(JSON.stringify({ error: { code: "not_found", message: "no" } }), { status: 404 }));
    }),
  );
  return calls;
}

function renderList(mayCancel = () => true) {
  return render(
    <MantineProvider>
      <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
        <BatchList path={PATH} mayCancel={mayCancel} />
      </QueryClientProvider>
    </MantineProvider>,
  );
}

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe("batchCounts", () => {
  it("writes the counts a batch has, zeros left out", () => {
    expect(batchCounts(running.counts)).toBe("3 succeeded, 1 failed, 2 running, 4 pending of 10");
    expect(batchCounts(done.counts)).toBe("2 succeeded of 2");
    expect(batchCounts(batch("c", "QUEUED", {}).counts)).toBe("0");
  });
});

describe("BatchList", () => {
  it("lists the batches with their status and counts, a cancel button only while one may still run", async () => {
    const calls = stubFetch();
    renderList();
    expect(await screen.findByText("3 succeeded, 1 failed, 2 running, 4 pending of 10")).toBeTruthy();
    expect(screen.getByText("2 succeeded of 2")).toBeTruthy();
    expect(screen.getByText("running")).toBeTruthy();
    expect(screen.getByText("completed")).toBeTruthy();
    expect(calls[0]).toBe(`GET ${BASE}?pageIndex=0&pageSize=25`);
    expect(screen.getByRole("button", { name: "Cancel batch aaaaaaaa" })).toBeTruthy();
    expect(screen.queryByRole("button", { name: "Cancel batch bbbbbbbb" })).toBeNull();
  });

  it("cancels a batch after the confirmation", async () => {
    const calls = stubFetch();
    renderList();
    fireEvent.click(await screen.findByRole("button", { name: "Cancel batch aaaaaaaa" }));
    const dialog = await screen.findByRole("dialog");
    fireEvent.click(within(dialog).getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(calls).toContain(`POST ${BASE}/${running.id}/cancel`));
  });

  it("offers no cancel without the permission", async () => {
    stubFetch();
    renderList(() => false);
    await screen.findByText("2 succeeded of 2");
    expect(screen.queryByRole("button", { name: /^Cancel batch/ })).toBeNull();
  });

  it("shows a batch's items and filters them by status", async () => {
    const calls = stubFetch();
    renderList();
    fireEvent.click(await screen.findByRole("button", { name: "Items of batch aaaaaaaa" }));
    expect(await screen.findByText("messages must not be empty")).toBeTruthy();
    expect(screen.getByText("q-3")).toBeTruthy();
    expect(calls).toContain(`GET ${BASE}/${running.id}/items?pageIndex=0&pageSize=25`);
    fireEvent.click(screen.getByRole("textbox", { name: "Status" }));
    fireEvent.click(await screen.findByRole("option", { name: "failed" }));
    await waitFor(() => expect(calls).toContain(`GET ${BASE}/${running.id}/items?pageIndex=0&pageSize=25&status=FAILED`));
  });

  it("shows the API's refusal", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(() =>
        Promise.resolve(new Response(JSON.stringify({ error: { code: "forbidden", message: "not allowed" } }), { status: 403 })),
      ),
    );
    renderList();
    expect((await screen.findByTestId("api-error")).textContent).toContain("not allowed (403 forbidden)");
  });
});
