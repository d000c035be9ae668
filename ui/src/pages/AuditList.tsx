import { useEffect, useRef, useState } from "react";
import { Badge, Button, Group, Paper, Select, Table, Text, TextInput } from "@mantine/core";
import { useInfiniteQuery } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { api, ApiError, type List } from "../api/client";
import { ErrorAlert, fmtDate } from "../components/common";
import { useConnections } from "./Connections";
import { useResources } from "./Resources";

export interface AuditRecord {
  id: string;
  timestamp: string;
  resource?: string;
  resourceId?: string;
  provider?: string;
  model?: string;
  statusCode: number;
  duration?: number;
  apiKeyId?: string;
  correlationId?: string | null;
  errorMessage?: string | null;
  failureReason?: string | null;
  request?: unknown;
  response?: unknown;
  events?: unknown[];
}

const PAGE = 500;
const ROW = 44;
const FILTERS = ["resourceId", "connectionId", "model", "statusCode", "apiKeyId", "correlationId"] as const;
type Filter = (typeof FILTERS)[number];
const EMPTY: Record<Filter, string> = { resourceId: "", connectionId: "", model: "", statusCode: "", apiKeyId: "", correlationId: "" };

/**
 * The audit log of an environment, virtualised: only the rows in view are in
 * the DOM, pages of 500 are fetched as the list is scrolled (10,000 rows and
 * more stay smooth). Filters of SPEC §7; the date range is the page's.
 */
export function AuditList({ path, start, end, onOpen }: { path: string; start: string; end: string; onOpen: (id: string) => void }) {
  const resources = useResources(path);
  const conns = useConnections(path);
  const [draft, setDraft] = useState(EMPTY);
  const [filters, setFilters] = useState(EMPTY);
  const q = useInfiniteQuery({
    queryKey: ["audit", path, start, end, filters],
    initialPageParam: 0,
    queryFn: ({ pageParam }) => {
      const qs = new URLSearchParams({ startDate: start, endDate: end, pageSize: String(PAGE), pageIndex: String(pageParam) });
      for (const f of FILTERS) if (filters[f].trim()) qs.set(f, filters[f].trim());
      return api<List<AuditRecord>>("GET", `${path}/audit?${qs}`);
    },
    getNextPageParam: (last, all) => (all.length * PAGE < last.total ? all.length : undefined),
  });
  const rows = q.data?.pages.flatMap((p) => p.data) ?? [];
  const total = q.data?.pages[0]?.total ?? 0;
  const scroller = useRef<HTMLDivElement>(null);
  const v = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW, overscan: 12 });
  const items = v.getVirtualItems();
  const lastIndex = items.length ? items[items.length - 1].index : -1;
  useEffect(() => {
    if (lastIndex >= rows.length - 50 && q.hasNextPage && !q.isFetchingNextPage) q.fetchNextPage();
  }, [lastIndex, rows.length, q]);
  const err = q.error instanceof ApiError ? q.error : null;
  const errAt = (f: string) => (err?.field === f ? err.message : undefined);
  const set = (f: Filter) => (val: string) => setDraft((d) => ({ ...d, [f]: val }));
  const resName = (r: AuditRecord) => r.resource ?? resources.data?.find((x) => x.id === r.resourceId)?.name ?? "—";
  const padTop = items.length ? items[0].start : 0;
  const padBottom = items.length ? v.getTotalSize() - items[items.length - 1].end : 0;
  return (
    <>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(draft);
        }}
      >
        <Group mb="sm" wrap="wrap" align="flex-start">
          <Select
            label="Status"
            placeholder="any"
            data={["200", "400", "401", "403", "404", "429", "500", "502", "503"]}
            value={draft.statusCode || null}
            onChange={(x) => set("statusCode")(x ?? "")}
            error={errAt("statusCode")}
            clearable
            w={110}
          />
          <Select
            label="Resource"
            placeholder="any"
            data={(resources.data ?? []).map((r) => ({ value: r.id, label: r.name }))}
            value={draft.resourceId || null}
            onChange={(x) => set("resourceId")(x ?? "")}
            error={errAt("resourceId")}
            clearable
            w={150}
          />
          <Select
            label="Connection"
            placeholder="any"
            data={(conns.data ?? []).map((c) => ({ value: c.id, label: c.name }))}
            value={draft.connectionId || null}
            onChange={(x) => set("connectionId")(x ?? "")}
            error={errAt("connectionId")}
            clearable
            w={150}
          />
          <TextInput label="Model" placeholder="any" value={draft.model} onChange={(e) => set("model")(e.currentTarget.value)} error={errAt("model")} w={150} />
          <TextInput label="API key id" placeholder="any" value={draft.apiKeyId} onChange={(e) => set("apiKeyId")(e.currentTarget.value)} error={errAt("apiKeyId")} w={150} />
          <TextInput
            label="Correlation id"
            placeholder="any"
            value={draft.correlationId}
            onChange={(e) => set("correlationId")(e.currentTarget.value)}
            error={errAt("correlationId")}
            w={150}
          />
          <Button type="submit" mt={25}>
            Filter
          </Button>
        </Group>
      </form>
      {err && !FILTERS.some((f) => err.field === f) && <ErrorAlert error={err} />}
      <Paper withBorder radius="md">
        <div ref={scroller} style={{ maxHeight: 520, overflow: "auto" }} tabIndex={0} role="region" aria-label="Audit log, scrollable">
          <Table verticalSpacing={6} aria-label="Audit log" aria-rowcount={total} miw={300} stickyHeader>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Time</Table.Th>
                <Table.Th>Status</Table.Th>
                <Table.Th>Resource</Table.Th>
                <Table.Th visibleFrom="sm">Model</Table.Th>
                <Table.Th visibleFrom="sm">Duration</Table.Th>
                <Table.Th>Details</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody aria-busy={q.isLoading}>
              {q.isLoading && (
                <Table.Tr>
                  <Table.Td colSpan={6}>
                    <Text size="sm" c="dimmed">
                      Loading…
                    </Text>
                  </Table.Td>
                </Table.Tr>
              )}
              {q.data && rows.length === 0 && (
                <Table.Tr>
                  <Table.Td colSpan={6}>
                    <Text size="sm" c="dimmed">
                      No request in this range.
                    </Text>
                  </Table.Td>
                </Table.Tr>
              )}
              {padTop > 0 && (
                <tr aria-hidden="true">
                  <td colSpan={6} style={{ height: padTop, padding: 0, border: 0 }} />
                </tr>
              )}
              {items.map((it) => {
                const r = rows[it.index];
                return (
                  <Table.Tr key={r.id} data-index={it.index} aria-rowindex={it.index + 2} style={{ height: ROW }}>
                    <Table.Td>{fmtDate(r.timestamp)}</Table.Td>
                    <Table.Td>
                      <Badge variant="light" color={r.statusCode < 400 ? "green" : r.statusCode < 500 ? "yellow" : "red"}>
                        {r.statusCode}
                      </Badge>
                    </Table.Td>
                    <Table.Td>{resName(r)}</Table.Td>
                    <Table.Td visibleFrom="sm">{`${r.provider ?? ""} ${r.model ?? ""}`.trim() || "—"}</Table.Td>
                    <Table.Td visibleFrom="sm">{r.duration != null ? `${r.duration} ms` : "—"}</Table.Td>
                    <Table.Td>
                      <Button size="xs" variant="subtle" onClick={() => onOpen(r.id)} aria-label={`Details of the request at ${fmtDate(r.timestamp)}`}>
                        Details
                      </Button>
                    </Table.Td>
                  </Table.Tr>
                );
              })}
              {padBottom > 0 && (
                <tr aria-hidden="true">
                  <td colSpan={6} style={{ height: padBottom, padding: 0, border: 0 }} />
                </tr>
              )}
            </Table.Tbody>
          </Table>
        </div>
      </Paper>
      {q.data && (
        <Text size="xs" c="dimmed" mt={4}>
          {total.toLocaleString()} record(s) in range; {rows.length.toLocaleString()} loaded{rows.length < total ? ", more as you scroll" : ""}.
        </Text>
      )}
    </>
  );
}
