import { Fragment, useState } from "react";
import {
  Badge,
  Button,
  Code,
  Group,
  Paper,
  ScrollArea,
  SegmentedControl,
  Select,
  Skeleton,
  Table,
  Text,
  TextInput,
  VisuallyHidden,
} from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { api, ApiError, type List } from "../api/client";
import { usePermissions, useSelection } from "../app/session";
import { ErrorAlert, fmtDate, ListPager, PageHeader } from "../components/common";
import { res } from "../perm/policy";

interface ActivityRecord {
  id: string;
  at: string;
  userId?: string | null;
  username?: string | null;
  fromAddress?: string | null;
  action: string;
  method?: string;
  path?: string;
  workspaceId?: string | null;
  environmentId?: string | null;
  object?: { kind?: string; id?: string | null; name?: string | null } | null;
  outcome: string;
  status?: number;
  changes?: Record<string, { before?: unknown; after?: unknown }> | null;
}

const PAGE = 25;
const FILTERS = ["userId", "action", "objectId", "from", "to", "outcome"] as const;
type Filter = (typeof FILTERS)[number];

const show = (v: unknown) => (v === undefined ? "—" : JSON.stringify(v));

function Changes({ r }: { r: ActivityRecord }) {
  const entries = Object.entries(r.changes ?? {});
  return (
    <Table verticalSpacing={2} aria-label={`Changes of ${r.action} at ${fmtDate(r.at)}`}>
      <Table.Thead>
        <Table.Tr>
          <Table.Th>Field</Table.Th>
          <Table.Th>Before</Table.Th>
          <Table.Th>After</Table.Th>
        </Table.Tr>
      </Table.Thead>
      <Table.Tbody>
        {entries.length === 0 && (
          <Table.Tr>
            <Table.Td colSpan={3}>
              <Text size="sm" c="dimmed">
                No field changed. {r.method} {r.path}
              </Text>
            </Table.Td>
          </Table.Tr>
        )}
        {entries.map(([k, v]) => (
          <Table.Tr key={k}>
            <Table.Td>
              <Code>{k}</Code>
            </Table.Td>
            <Table.Td style={{ wordBreak: "break-all" }}>{show(v.before)}</Table.Td>
            <Table.Td style={{ wordBreak: "break-all" }}>{show(v.after)}</Table.Td>
          </Table.Tr>
        ))}
      </Table.Tbody>
    </Table>
  );
}

/** Who changed what: across workspaces (administrators) or in the selected workspace. */
export default function Activity() {
  const sel = useSelection();
  const { can } = usePermissions();
  const canAll = can("activity:list", "activity:*");
  const canWs = !!sel.ws && can("workspace-activity:list", `${res.ws(sel.ws.name)}:activity:*`);
  const [scopeChoice, setScope] = useState<"all" | "ws" | null>(null);
  const scope = scopeChoice ?? (canAll ? "all" : "ws");
  const [draft, setDraft] = useState<Record<Filter, string>>({ userId: "", action: "", objectId: "", from: "", to: "", outcome: "" });
  const [filters, setFilters] = useState(draft);
  const [page, setPage] = useState(1);
  const [open, setOpen] = useState<string | null>(null);
  const base = scope === "all" ? "/activity" : sel.ws ? `/workspaces/${sel.ws.id}/activity` : null;
  const qs = new URLSearchParams({ pageIndex: String(page - 1), pageSize: String(PAGE) });
  for (const f of FILTERS) if (filters[f].trim()) qs.set(f, filters[f].trim());
  const q = useQuery({
    queryKey: ["activity", base, qs.toString()],
    queryFn: () => api<List<ActivityRecord>>("GET", `${base}?${qs}`),
    enabled: !!base,
  });
  const err = q.error instanceof ApiError ? q.error : null;
  const errAt = (f: Filter) => (err?.field === f ? err.message : undefined);
  const set = (f: Filter) => (v: string) => setDraft((d) => ({ ...d, [f]: v }));
  return (
    <>
      <PageHeader title="Activity log">
        {canAll && canWs && (
          <SegmentedControl
            aria-label="Scope"
            data={[
              { value: "all", label: "All workspaces" },
              { value: "ws", label: `Workspace ${sel.ws?.name ?? ""}` },
            ]}
            value={scope}
            onChange={(v) => {
              setScope(v as "all" | "ws");
              setPage(1);
            }}
          />
        )}
      </PageHeader>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(draft);
          setPage(1);
        }}
      >
        <Group mb="sm" wrap="wrap" align="flex-start">
          <TextInput label="User id" value={draft.userId} onChange={(e) => set("userId")(e.currentTarget.value)} error={errAt("userId")} w={170} />
          <TextInput label="Action" placeholder="ai-resource:update" value={draft.action} onChange={(e) => set("action")(e.currentTarget.value)} error={errAt("action")} w={190} />
          <TextInput label="Object id" value={draft.objectId} onChange={(e) => set("objectId")(e.currentTarget.value)} error={errAt("objectId")} w={170} />
          <TextInput label="From" placeholder="2026-01-01T00:00:00Z" value={draft.from} onChange={(e) => set("from")(e.currentTarget.value)} error={errAt("from")} w={190} />
          <TextInput label="To" placeholder="RFC 3339" value={draft.to} onChange={(e) => set("to")(e.currentTarget.value)} error={errAt("to")} w={190} />
          <Select
            label="Outcome"
            placeholder="any"
            data={["success", "failure"]}
            value={draft.outcome || null}
            onChange={(v) => set("outcome")(v ?? "")}
            error={errAt("outcome")}
            clearable
            w={130}
          />
          <Button type="submit" mt={25}>
            Filter
          </Button>
        </Group>
      </form>
      {err && !FILTERS.some((f) => err.field === f) && <ErrorAlert error={err} />}
      {!base && <Text c="dimmed">Choose a workspace.</Text>}
      <Paper withBorder radius="md">
        <ScrollArea type="auto">
          <Table verticalSpacing="sm" aria-label="Activity log" miw={300}>
            <Table.Thead>
              <Table.Tr>
                <Table.Th>When</Table.Th>
                <Table.Th visibleFrom="sm">Who</Table.Th>
                <Table.Th>Action</Table.Th>
                <Table.Th visibleFrom="sm">Object</Table.Th>
                <Table.Th visibleFrom="sm">From</Table.Th>
                <Table.Th>
                  <VisuallyHidden>Changes</VisuallyHidden>
                </Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {q.isLoading &&
                base &&
                Array.from({ length: 5 }, (_, i) => (
                  <Table.Tr key={i}>
                    <Table.Td colSpan={6}>
                      <Skeleton height={20} />
                    </Table.Td>
                  </Table.Tr>
                ))}
              {q.data?.data.length === 0 && (
                <Table.Tr>
                  <Table.Td colSpan={6}>
                    <Text c="dimmed" size="sm">
                      No activity matches.
                    </Text>
                  </Table.Td>
                </Table.Tr>
              )}
              {q.data?.data.map((r) => (
                <Fragment key={r.id}>
                  <Table.Tr>
                    <Table.Td>
                      {fmtDate(r.at)}
                      <Text size="xs" c="dimmed" hiddenFrom="sm">
                        {r.username ?? r.userId ?? "—"}
                      </Text>
                    </Table.Td>
                    <Table.Td visibleFrom="sm">{r.username ?? r.userId ?? "—"}</Table.Td>
                    <Table.Td>
                      <Group gap={4} wrap="nowrap">
                        <Code>{r.action}</Code>
                        {r.outcome !== "success" && (
                          <Badge variant="light" color="red">
                            {r.outcome}
                          </Badge>
                        )}
                      </Group>
                    </Table.Td>
                    <Table.Td visibleFrom="sm">
                      {r.object ? `${r.object.kind ?? ""} ${r.object.name ?? r.object.id ?? ""}`.trim() : "—"}
                    </Table.Td>
                    <Table.Td visibleFrom="sm">{r.fromAddress ?? "—"}</Table.Td>
                    <Table.Td>
                      <Button
                        size="xs"
                        variant="subtle"
                        aria-expanded={open === r.id}
                        aria-label={`Changes of ${r.action} ${r.object?.name ?? ""} at ${fmtDate(r.at)}`}
                        onClick={() => setOpen(open === r.id ? null : r.id)}
                      >
                        {open === r.id ? "Hide" : "Changes"}
                      </Button>
                    </Table.Td>
                  </Table.Tr>
                  {open === r.id && (
                    <Table.Tr>
                      <Table.Td colSpan={6}>
                        <Changes r={r} />
                      </Table.Td>
                    </Table.Tr>
                  )}
                </Fragment>
              ))}
            </Table.Tbody>
          </Table>
        </ScrollArea>
      </Paper>
      {q.data && <ListPager total={q.data.total} pageSize={PAGE} page={page} onChange={setPage} what="record(s)" />}
    </>
  );
}
