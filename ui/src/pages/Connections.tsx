import { useMemo, useState, type FormEvent } from "react";
import { Chart, type Row } from "../components/chart";
import {
  Badge,
  Button,
  Divider,
  Group,
  Modal,
  Paper,
  Select,
  SimpleGrid,
  Stack,
  Table,
  TagsInput,
  Text,
  TextInput,
} from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Capacity, Connection } from "../api/types";
import { useEnvPath, usePermissions, useSelection } from "../app/session";
import {
  CapacityEditor,
  capacitySummary,
  cleanCapacity,
  DataTable,
  DeleteButton,
  ErrorAlert,
  fmtDate,
  FormActions,
  NameFields,
  NeedEnv,
  PageHeader,
} from "../components/common";
import { cleanConfig, ProviderConfigFields, useProviders } from "../components/providers";
import { res } from "../perm/policy";

export function useConnections(path: string | null) {
  return useQuery({
    queryKey: ["connections", path],
    queryFn: () => listAll<Connection>(`${path}/connections`),
    enabled: !!path,
  });
}

type Discovered = { models?: Record<string, { capacity?: Capacity[]; updatedAt?: string }> };

function DiscoveredCapacity({ value }: { value: unknown }) {
  const models = Object.entries((value as Discovered | null)?.models ?? {});
  return (
    <Stack gap={4}>
      <Text size="sm" fw={500}>
        Discovered capacity (from the provider's rate-limit headers)
      </Text>
      {models.length === 0 ? (
        <Text size="sm" c="dimmed">
          Nothing discovered yet.
        </Text>
      ) : (
        <Table withTableBorder fz="sm">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Model</Table.Th>
              <Table.Th>Limits</Table.Th>
              <Table.Th>Seen</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {models.map(([m, e]) => (
              <Table.Tr key={m}>
                <Table.Td>{m}</Table.Td>
                <Table.Td>
                  {(e.capacity ?? []).map(capacitySummary).join("; ")}
                </Table.Td>
                <Table.Td>{fmtDate(e.updatedAt)}</Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      )}
    </Stack>
  );
}


const HOUR = 3600_000;
const REQ_SERIES: [string, string, string][] = [["requestCount", "requests", "#4263eb"], ["errorCount", "errors", "#e03131"]];
const TOK_SERIES: [string, string, string][] = [["totalTokens", "tokens", "#2f9e44"]];

/** The connection's requests and tokens over the last 24 hours (POST .../usage filtered on connectionId). */
function ConnectionUsage({ path, id }: { path: string; id: string }) {
  const [now] = useState(() => Date.now());
  const q = useQuery({
    queryKey: ["usage", path, "connection", id, now],
    queryFn: () =>
      api<{ data: Row[] }>("POST", `${path}/usage`, {
        granularity: "hour",
        metrics: { requestCount: "sum", errorCount: "sum", totalTokens: "sum" },
        dimensions: [],
        filter: {
          dateRange: { start: new Date(now - 24 * HOUR).toISOString(), end: new Date(now + 60_000).toISOString() },
          fields: { connectionId: id },
        },
      }),
  });
  const rows = q.data?.data ?? [];
  const points = useMemo(() => {
    const by = new Map(rows.map((r) => [Date.parse(r.time), r]));
    const out: Row[] = [];
    for (let t = Math.floor((now - 24 * HOUR) / HOUR) * HOUR + HOUR; t <= now; t += HOUR)
      out.push(by.get(t) ?? { time: new Date(t).toISOString(), requestCount: 0, errorCount: 0, totalTokens: 0 });
    return out;
  }, [q.data, now]);
  const total = (k: string) => rows.reduce((n, r) => n + Number(r[k] ?? 0), 0);
  return (
    <section aria-label="Usage over the last 24 hours">
      <Text fw={600} size="sm" mb="xs">
        Usage over the last 24 hours
        {q.data && rows.length > 0 ? `: ${total("requestCount").toLocaleString()} requests, ${total("totalTokens").toLocaleString()} tokens` : ""}
      </Text>
      <ErrorAlert error={q.error} />
      {q.isLoading ? (
        <Text size="sm" c="dimmed">
          Loading…
        </Text>
      ) : q.data && rows.length === 0 ? (
        <Text size="sm" c="dimmed" data-testid="connection-usage-empty">
          No request through this connection in the last 24 hours.
        </Text>
      ) : q.data ? (
        <SimpleGrid cols={{ base: 1, sm: 2 }}>
          <Chart title="Requests" points={points} series={REQ_SERIES} height={120} />
          <Chart title="Tokens" points={points} series={TOK_SERIES} height={120} />
        </SimpleGrid>
      ) : null}
    </section>
  );
}

function ConnectionForm({
  path,
  initial,
  onClose,
  readOnly,
}: {
  path: string;
  initial: Connection | null;
  onClose: () => void;
  readOnly: boolean;
}) {
  const providers = useProviders();
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [provider, setProvider] = useState(initial?.provider ?? "openai");
  const [config, setConfig] = useState<Record<string, string>>(initial?.config ?? {});
  const [allowedModels, setAllowed] = useState<string[]>(initial?.allowedModels ?? []);
  const [capacity, setCapacity] = useState<Capacity[]>(initial?.capacity ?? []);
  const qc = useQueryClient();
  const prov = providers.data?.find((p) => p.id === provider);
  const { errs, busy, submit } = useSubmit(async () => {
    const body = {
      name,
      description,
      provider,
      config: cleanConfig(config),
      allowedModels,
      capacity: cleanCapacity(capacity),
    };
    if (initial) await api("PUT", `${path}/connections/${initial.id}`, body);
    else await api("POST", `${path}/connections`, body);
    qc.invalidateQueries({ queryKey: ["connections"] });
    onClose();
  }, fieldsOf("name", "description", "provider", "config", "allowedModels", "capacity"));
  return (
    <Modal opened onClose={onClose} size="lg" title={initial ? `Connection ${initial.name}` : "New connection"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <NameFields
            errs={errs}
            name={name}
            setName={setName}
            description={description}
            setDescription={setDescription}
            readOnly={readOnly}
          />
          <Select
            label="Provider"
            data={(providers.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
            value={provider}
            onChange={(v) => {
              setProvider(v ?? "openai");
              if (!initial) setConfig({});
            }}
            error={errs.at("provider")}
            allowDeselect={false}
            disabled={readOnly}
          />
          <ProviderConfigFields
            provider={prov}
            value={config}
            onChange={setConfig}
            errorAt={errs.at}
            editing={!!initial}
            readOnly={readOnly}
          />
          <TagsInput
            label="Allowed models"
            description="Empty: any model. Suggestions: the provider's usual models."
            data={prov?.defaultModels ?? []}
            value={allowedModels}
            onChange={setAllowed}
            error={errs.at("allowedModels")}
            disabled={readOnly}
            clearable
          />
          <CapacityEditor value={capacity} onChange={setCapacity} errorAt={errs.at} readOnly={readOnly} />
          {initial && (
            <>
              <Divider />
              <DiscoveredCapacity value={initial.discoveredCapacity} />
              <Divider />
              <ConnectionUsage path={path} id={initial.id} />
            </>
          )}
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

interface QuickRow {
  provider: string;
  name: string;
  config: Record<string, string>;
  error?: string;
  field?: string;
  done?: boolean;
}

/** Several providers in one form: one connection per row. */
function QuickAdd({ path, onClose }: { path: string; onClose: () => void }) {
  const providers = useProviders();
  const [rows, setRows] = useState<QuickRow[]>([
    { provider: "openai", name: "openai", config: {} },
    { provider: "anthropic", name: "anthropic", config: {} },
  ]);
  const [busy, setBusy] = useState(false);
  const qc = useQueryClient();
  const set = (i: number, patch: Partial<QuickRow>) =>
    setRows((rs) => rs.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    let allOk = true;
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      if (r.done) continue;
      try {
        await api("POST", `${path}/connections`, {
          name: r.name,
          provider: r.provider,
          config: cleanConfig(r.config),
        });
        set(i, { done: true, error: undefined, field: undefined });
      } catch (err) {
        allOk = false;
        set(i, {
          error: err instanceof ApiError ? err.message : String(err),
          field: err instanceof ApiError ? err.field : undefined,
        });
      }
    }
    qc.invalidateQueries({ queryKey: ["connections"] });
    setBusy(false);
    if (allOk) onClose();
  };
  return (
    <Modal opened onClose={onClose} size="lg" title="Quick add connections">
      <form onSubmit={submit} noValidate>
        <Stack>
          {rows.map((r, i) => {
            const prov = providers.data?.find((p) => p.id === r.provider);
            const at = (f: string) => (r.field && (r.field === f || r.field.startsWith(f + ".")) ? r.error : undefined);
            return (
              <Paper key={i} withBorder p="sm">
                <Stack gap="xs">
                  <Group grow align="flex-start">
                    <Select
                      label={`Provider ${i + 1}`}
                      data={(providers.data ?? []).map((p) => ({ value: p.id, label: p.name }))}
                      value={r.provider}
                      onChange={(v) => set(i, { provider: v ?? "openai", name: v ?? "openai", config: {} })}
                      allowDeselect={false}
                      disabled={r.done}
                    />
                    <TextInput
                      label={`Name ${i + 1}`}
                      value={r.name}
                      onChange={(e) => set(i, { name: e.currentTarget.value })}
                      error={at("name")}
                      disabled={r.done}
                    />
                  </Group>
                  <ProviderConfigFields
                    provider={prov}
                    value={r.config}
                    onChange={(c) => set(i, { config: c })}
                    errorAt={at}
                    idPrefix={`row${i}.`}
                    readOnly={r.done}
                  />
                  {r.error && !r.field?.match(/^(name|config)/) && (
                    <Text c="var(--mantine-color-error)" size="sm" role="alert">
                      {r.field ? `${r.field}: ` : ""}
                      {r.error}
                    </Text>
                  )}
                  <Group justify="space-between">
                    {r.done ? <Badge color="green">created</Badge> : <span />}
                    {!r.done && rows.length > 1 && (
                      <Button size="xs" variant="subtle" color="red" onClick={() => setRows(rows.filter((_, j) => j !== i))}>
                        Remove row {i + 1}
                      </Button>
                    )}
                  </Group>
                </Stack>
              </Paper>
            );
          })}
          <Group justify="space-between">
            <Button
              variant="light"
              onClick={() => setRows([...rows, { provider: "gemini", name: "gemini", config: {} }])}
            >
              Add a provider
            </Button>
            <Group>
              <Button variant="default" onClick={onClose}>
                Close
              </Button>
              <Button type="submit" loading={busy}>
                Create all
              </Button>
            </Group>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

export default function Connections() {
  const path = useEnvPath();
  const sel = useSelection();
  const { can } = usePermissions();
  const q = useConnections(path);
  const providers = useProviders();
  const [editing, setEditing] = useState<Connection | "new" | null>(null);
  const [quick, setQuick] = useState(false);
  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="AI connections" />
        <NeedEnv />
      </>
    );
  }
  const ws = sel.ws?.name ?? "";
  const env = sel.env?.name ?? "";
  const r = (name = "*") => res.envObj(ws, env, "ai-connection", name);
  const canUpdate = (c: Connection) => can("ai-connection:update", r(c.name));
  return (
    <>
      <PageHeader title="AI connections">
        {can("ai-connection:create", r()) && (
          <>
            <Button variant="default" onClick={() => setQuick(true)}>
              Quick add
            </Button>
            <Button onClick={() => setEditing("new")}>New connection</Button>
          </>
        )}
      </PageHeader>
      <ErrorAlert error={q.error} />
      <DataTable
        label="AI connections"
        loading={q.isLoading || sel.loading}
        rows={q.data}
        rowKey={(c) => c.id}
        columns={[
          { label: "Name", render: (c) => c.name },
          {
            label: "Provider",
            render: (c) => (
              <Badge variant="light">{providers.data?.find((p) => p.id === c.provider)?.name ?? c.provider}</Badge>
            ),
          },
          {
            label: "Allowed models",
            render: (c) => (c.allowedModels?.length ? c.allowedModels.join(", ") : "any"),
            hideOnMobile: true,
          },
          {
            label: "Capacity",
            render: (c) =>
              c.capacity?.length
                ? c.capacity.map(capacitySummary).join(", ")
                : "—",
            hideOnMobile: true,
          },
        ]}
        actions={(c) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(c)} aria-label={`${canUpdate(c) ? "Edit" : "View"} ${c.name}`}>
              {canUpdate(c) ? "Edit" : "View"}
            </Button>
            {can("ai-connection:delete", r(c.name)) && (
              <DeleteButton
                what={`connection ${c.name}`}
                run={() => api("DELETE", `${path}/connections/${c.id}`)}
                invalidate={[["connections"]]}
              />
            )}
          </>
        )}
      />
      {editing && path && (
        <ConnectionForm
          key={editing === "new" ? "new" : editing.id}
          path={path}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canUpdate(editing)}
        />
      )}
      {quick && path && <QuickAdd path={path} onClose={() => setQuick(false)} />}
    </>
  );
}
