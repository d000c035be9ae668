import { useState } from "react";
import { Badge, Button, Modal, Select, Stack, Text } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { api, type List } from "../api/client";
import type { Batch, BatchItem, BatchItemStatus, BatchStatus } from "../api/types";
import { useEnvPath, usePermissions, useSelection } from "../app/session";
import { DataTable, DeleteButton, ErrorAlert, fmtDate, ListPager, NeedEnv, PageHeader } from "../components/common";
import { res } from "../perm/policy";

const PAGE = 25;

/** while a batch runs, its list and items are read again this often */
const REFRESH_MS = 5000;

const COLORS: Record<BatchStatus | BatchItemStatus, string> = {
  QUEUED: "gray",
  PENDING: "gray",
  RUNNING: "blue",
  CANCELLING: "orange",
  CANCELLED: "gray",
  COMPLETED: "green",
  SUCCEEDED: "green",
  FAILED: "red",
};

const ITEM_STATUSES: BatchItemStatus[] = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];

const ended = (b: Batch) => b.status === "COMPLETED" || b.status === "CANCELLED" || b.status === "FAILED";

/** only a batch whose items may still start can be cancelled (the API answers 409 once ended) */
const cancellable = (b: Batch) => b.status === "QUEUED" || b.status === "RUNNING";

const shortId = (id: string) => id.slice(0, 8);

function StatusBadge({ status }: { status: BatchStatus | BatchItemStatus }) {
  return (
    <Badge variant="light" color={COLORS[status] ?? "gray"}>
      {status.toLowerCase()}
    </Badge>
  );
}

/** The counts a batch has, zeros left out: "3 succeeded, 1 failed, 6 pending of 10". */
export function batchCounts(c: Batch["counts"]): string {
  const parts = (["succeeded", "failed", "cancelled", "running", "pending"] as const)
    .filter((k) => c[k] > 0)
    .map((k) => `${c[k]} ${k}`);
  return `${parts.length ? parts.join(", ") + " of " : ""}${c.total}`;
}

/** A batch's items, a page at a time, by index; filtered by status. */
export function BatchItems({ path, batch, onClose }: { path: string; batch: Batch; onClose: () => void }) {
  const [status, setStatus] = useState<string | null>(null);
  const [page, setPage] = useState(1);
  const qs = new URLSearchParams({ pageIndex: String(page - 1), pageSize: String(PAGE) });
  if (status) qs.set("status", status);
  const q = useQuery({
    queryKey: ["batch-items", path, batch.id, qs.toString()],
    queryFn: () => api<List<BatchItem>>("GET", `${path}/completion-batch/${batch.id}/items?${qs}`),
    refetchInterval: ended(batch) ? false : REFRESH_MS,
  });
  return (
    <Modal opened onClose={onClose} title={`Items of batch ${shortId(batch.id)}`} size="xl">
      <Stack>
        <Select
          label="Status"
          placeholder="Every status"
          data={ITEM_STATUSES.map((s) => ({ value: s, label: s.toLowerCase() }))}
          value={status}
          onChange={(v) => {
            setStatus(v);
            setPage(1);
          }}
          clearable
          w={200}
        />
        <ErrorAlert error={q.error} />
        <DataTable
          label="Batch items"
          loading={q.isLoading}
          rows={q.data?.data}
          rowKey={(i) => String(i.index)}
          empty="No item."
          columns={[
            { label: "#", render: (i) => i.index },
            { label: "Custom id", render: (i) => i.customId ?? "—", hideOnMobile: true },
            { label: "Resource", render: (i) => i.resource },
            {
              label: "Status",
              render: (i) => (
                <>
                  <StatusBadge status={i.status} /> {i.statusCode ?? ""}
                </>
              ),
            },
            { label: "Error", render: (i) => i.error?.message ?? "—" },
            { label: "Tries", render: (i) => i.tries, hideOnMobile: true },
            { label: "Finished", render: (i) => fmtDate(i.finishedAt), hideOnMobile: true },
          ]}
        />
        {q.data && <ListPager total={q.data.total} pageSize={PAGE} page={page} onChange={setPage} what="item(s)" />}
      </Stack>
    </Modal>
  );
}

/** An environment's batches, newest first, with their counts; read again while one runs. */
export function BatchList({ path, mayCancel }: { path: string; mayCancel: (b: Batch) => boolean }) {
  const [page, setPage] = useState(1);
  const [openId, setOpenId] = useState<string | null>(null);
  const qs = new URLSearchParams({ pageIndex: String(page - 1), pageSize: String(PAGE) });
  const q = useQuery({
    queryKey: ["batches", path, qs.toString()],
    queryFn: () => api<List<Batch>>("GET", `${path}/completion-batch?${qs}`),
    refetchInterval: (query) => (query.state.data?.data.some((b) => !ended(b)) ? REFRESH_MS : false),
  });
  // the list's latest copy: its items stop being read again once it ended
  const open = q.data?.data.find((b) => b.id === openId);
  return (
    <>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Batches"
        loading={q.isLoading}
        rows={q.data?.data}
        rowKey={(b) => b.id}
        empty="No batch: a client creates them with POST .../completion-batch."
        columns={[
          { label: "Batch", render: (b) => <code>{shortId(b.id)}</code> },
          { label: "Mode", render: (b) => b.mode.toLowerCase(), hideOnMobile: true },
          {
            label: "Status",
            render: (b) => (
              <>
                <StatusBadge status={b.status} />
                {b.error && (
                  <Text size="xs" c="red">
                    {b.error.message}
                  </Text>
                )}
              </>
            ),
          },
          { label: "Items", render: (b) => batchCounts(b.counts) },
          { label: "Pool", render: (b) => b.pool ?? "—", hideOnMobile: true },
          { label: "Created", render: (b) => fmtDate(b.createdAt), hideOnMobile: true },
        ]}
        actions={(b) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setOpenId(b.id)} aria-label={`Items of batch ${shortId(b.id)}`}>
              Items
            </Button>
            {cancellable(b) && mayCancel(b) && (
              <DeleteButton
                label="Cancel"
                dismiss="Keep it"
                what={`batch ${shortId(b.id)}`}
                run={() => api("POST", `${path}/completion-batch/${b.id}/cancel`)}
                invalidate={[["batches"], ["batch-items"]]}
              />
            )}
          </>
        )}
      />
      {q.data && <ListPager total={q.data.total} pageSize={PAGE} page={page} onChange={setPage} what="batch(es)" />}
      {open && <BatchItems path={path} batch={open} onClose={() => setOpenId(null)} />}
    </>
  );
}

/** Completion batches (issue 14): those of the selected environment, their items, cancel. */
export default function Batches() {
  const path = useEnvPath();
  const sel = useSelection();
  const { can } = usePermissions();
  const mayCancel = (b: Batch) =>
    can("completion-batch:cancel", res.envObj(sel.ws?.name ?? "", sel.env?.name ?? "", "completion-batch", b.id));
  return (
    <>
      <PageHeader title="Batches" />
      <Text c="dimmed" size="sm" mb="md">
        Chat completions a client sent at once, run by the control plane under one API key of the environment. Pending
        items of a cancelled batch do not run; running ones finish.
      </Text>
      {path ? <BatchList path={path} mayCancel={mayCancel} /> : !sel.loading && <NeedEnv />}
    </>
  );
}
