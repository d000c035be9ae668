import { useState, type ReactNode } from "react";
import {
  ActionIcon,
  Alert,
  Button,
  Code,
  CopyButton,
  Group,
  Modal,
  NumberInput,
  Pagination,
  Paper,
  ScrollArea,
  Select,
  Skeleton,
  Stack,
  Switch,
  Table,
  Text,
  Textarea,
  TextInput,
  Title,
  Tooltip,
} from "@mantine/core";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import type { Capacity } from "../api/types";
import type { useFieldErrors } from "../api/errors";

export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <Group justify="space-between" mb="md" wrap="wrap" gap="sm">
      <Title order={2}>{title}</Title>
      <Group gap="xs">{children}</Group>
    </Group>
  );
}

export function ErrorAlert({ error }: { error: unknown }) {
  if (!error) return null;
  const msg =
    error instanceof ApiError
      ? `${error.message}${error.status ? ` (${error.status} ${error.code})` : ""}`
      : String(error);
  return (
    <Alert color="red" title="The API refused" role="alert" data-testid="api-error">
      {msg}
    </Alert>
  );
}

export interface Column<T> {
  label: string;
  render: (row: T) => ReactNode;
  hideOnMobile?: boolean;
}

/** A table with skeleton rows of the same height while loading (no layout jump). */
export function DataTable<T>({
  rows,
  columns,
  loading,
  rowKey,
  actions,
  empty = "Nothing here yet.",
  label,
}: {
  rows: T[] | undefined;
  columns: Column<T>[];
  loading: boolean;
  rowKey: (r: T) => string;
  actions?: (r: T) => ReactNode;
  empty?: string;
  label: string;
}) {
  const cols = columns.length + (actions ? 1 : 0);
  return (
    <Paper withBorder radius="md">
      <ScrollArea type="auto">
        <Table verticalSpacing="sm" highlightOnHover aria-label={label} miw={300}>
          <Table.Thead>
            <Table.Tr>
              {columns.map((c) => (
                <Table.Th key={c.label} visibleFrom={c.hideOnMobile ? "sm" : undefined}>
                  {c.label}
                </Table.Th>
              ))}
              {actions && (
                <Table.Th>
                  <span className="sr-only">Actions</span>
                </Table.Th>
              )}
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {loading &&
              [0, 1, 2].map((i) => (
                <Table.Tr key={i}>
                  <Table.Td colSpan={cols}>
                    <Skeleton height={22} />
                  </Table.Td>
                </Table.Tr>
              ))}
            {!loading && rows && rows.length === 0 && (
              <Table.Tr>
                <Table.Td colSpan={cols}>
                  <Text c="dimmed" py="xs">
                    {empty}
                  </Text>
                </Table.Td>
              </Table.Tr>
            )}
            {!loading &&
              rows?.map((r) => (
                <Table.Tr key={rowKey(r)}>
                  {columns.map((c) => (
                    <Table.Td key={c.label} visibleFrom={c.hideOnMobile ? "sm" : undefined}>
                      {c.render(r)}
                    </Table.Td>
                  ))}
                  {actions && (
                    <Table.Td>
                      <Group gap={4} justify="flex-end" wrap="wrap" miw={64}>
                        {actions(r)}
                      </Group>
                    </Table.Td>
                  )}
                </Table.Tr>
              ))}
          </Table.Tbody>
        </Table>
      </ScrollArea>
    </Paper>
  );
}

/** Confirms and runs a DELETE; shows the API's refusal (403, 409) in the dialog. */
export function DeleteButton({
  what,
  run,
  invalidate,
  label = "Delete",
  dismiss = "Cancel",
}: {
  what: string;
  run: () => Promise<unknown>;
  invalidate: unknown[][];
  label?: string;
  dismiss?: string;
}) {
  const [open, setOpen] = useState(false);
  const qc = useQueryClient();
  const m = useMutation({
    mutationFn: run,
    onSuccess: () => {
      setOpen(false);
      invalidate.forEach((k) => qc.invalidateQueries({ queryKey: k }));
    },
  });
  return (
    <>
      <Button
        size="xs"
        variant="subtle"
        color="red"
        onClick={() => {
          m.reset();
          setOpen(true);
        }}
        aria-label={`${label} ${what}`}
      >
        {label}
      </Button>
      <Modal opened={open} onClose={() => setOpen(false)} title={`${label} ${what}?`} centered>
        <Stack>
          <Text>This cannot be undone.</Text>
          <ErrorAlert error={m.error} />
          <Group justify="flex-end">
            <Button variant="default" onClick={() => setOpen(false)}>
              {dismiss}
            </Button>
            <Button color="red" loading={m.isPending} onClick={() => m.mutate()}>
              {label}
            </Button>
          </Group>
        </Stack>
      </Modal>
    </>
  );
}

/** A paginated list's count and pages (page from 1). */
export function ListPager({
  total,
  pageSize,
  page,
  onChange,
  what,
}: {
  total: number;
  pageSize: number;
  page: number;
  onChange: (page: number) => void;
  what: string;
}) {
  return (
    <Group justify="space-between" mt="sm" wrap="wrap">
      <Text size="xs" c="dimmed">
        {total} {what}
      </Text>
      <Pagination
        total={Math.max(1, Math.ceil(total / pageSize))}
        value={page}
        onChange={onChange}
        size="sm"
        aria-label="Pages"
        getControlProps={(c) => ({
          "aria-label":
            c === "previous" ? "Previous page" : c === "next" ? "Next page" : c === "first" ? "First page" : "Last page",
        })}
        getItemProps={(n) => ({ "aria-label": `Page ${n}` })}
      />
    </Group>
  );
}

export function CopyValue({ value, label }: { value: string; label: string }) {
  return (
    <Group gap="xs" wrap="nowrap" align="flex-start">
      <Code block style={{ flex: 1, wordBreak: "break-all", whiteSpace: "pre-wrap" }}>
        {value}
      </Code>
      <CopyButton value={value}>
        {({ copied, copy }) => (
          <Tooltip label={copied ? "Copied" : "Copy"}>
            <Button size="xs" variant={copied ? "filled" : "light"} onClick={copy} aria-label={`Copy ${label}`}>
              {copied ? "Copied" : "Copy"}
            </Button>
          </Tooltip>
        )}
      </CopyButton>
    </Group>
  );
}

const PERIODS = ["minute", "hour", "day", "week", "month", "lifetime"];

/** Capacity entries {period, requests, tokens, cost, enabled, dimension}. */
export function CapacityEditor({
  value,
  onChange,
  errorAt,
  field = "capacity",
  readOnly,
}: {
  value: Capacity[];
  onChange: (v: Capacity[]) => void;
  errorAt: (field: string) => string | undefined;
  field?: string;
  readOnly?: boolean;
}) {
  const set = (i: number, patch: Partial<Capacity>) =>
    onChange(value.map((c, j) => (j === i ? { ...c, ...patch } : c)));
  const num = (v: string | number) => (v === "" || v === undefined ? null : Number(v));
  return (
    <Stack gap="xs">
      <Text size="sm" fw={500}>
        Capacity
      </Text>
      {value.length === 0 && (
        <Text size="sm" c="dimmed">
          No limits.
        </Text>
      )}
      {value.map((c, i) => (
        <Paper key={i} withBorder p="xs">
          <Group gap="xs" align="flex-end" wrap="wrap">
            <Select
              label="Period"
              data={PERIODS}
              value={c.period}
              onChange={(v) => set(i, { period: (v ?? "minute") as Capacity["period"] })}
              error={errorAt(`${field}[${i}].period`)}
              w={120}
              allowDeselect={false}
              disabled={readOnly}
            />
            <NumberInput
              label="Requests"
              value={c.requests ?? ""}
              onChange={(v) => set(i, { requests: num(v) })}
              error={errorAt(`${field}[${i}].requests`)}
              min={0}
              w={120}
              disabled={readOnly}
            />
            <NumberInput
              label="Tokens"
              value={c.tokens ?? ""}
              onChange={(v) => set(i, { tokens: num(v) })}
              error={errorAt(`${field}[${i}].tokens`)}
              min={0}
              w={130}
              disabled={readOnly}
            />
            <NumberInput
              label="Cost (USD)"
              value={c.cost ?? ""}
              onChange={(v) => set(i, { cost: num(v) })}
              error={errorAt(`${field}[${i}].cost`)}
              min={0}
              max={1e9}
              prefix="$"
              decimalScale={6}
              w={130}
              disabled={readOnly}
            />
            <Switch
              label="Per source IP"
              checked={c.dimension === "source-ip"}
              onChange={(e) => set(i, { dimension: e.currentTarget.checked ? "source-ip" : null })}
              disabled={readOnly}
              mb={8}
            />
            <Switch
              label="Enabled"
              checked={c.enabled !== false}
              onChange={(e) => set(i, { enabled: e.currentTarget.checked })}
              disabled={readOnly}
              mb={8}
            />
            {!readOnly && (
              <ActionIcon
                variant="subtle"
                color="red"
                aria-label={`Remove capacity entry ${i + 1}`}
                onClick={() => onChange(value.filter((_, j) => j !== i))}
                mb={6}
              >
                ×
              </ActionIcon>
            )}
          </Group>
        </Paper>
      ))}
      {errorAt(field) && !value.some((_, i) => errorAt(`${field}[${i}]`)) && (
        <Text c="var(--mantine-color-error)" size="sm" role="alert">
          {errorAt(field)}
        </Text>
      )}
      {!readOnly && (
        <Group>
          <Button
            size="xs"
            variant="light"
            onClick={() => onChange([...value, { period: "minute", requests: 60, enabled: true }])}
          >
            Add a limit
          </Button>
        </Group>
      )}
    </Stack>
  );
}

/** A capacity entry in a line: its limits, "–" for none, the budget only when it has one (as the
 * gateway's message writes it: cents always, up to six decimals). */
export function capacitySummary(c: Capacity): string {
  const cost = c.cost != null ? ` / $${c.cost.toFixed(6).replace(/0{1,4}$/, "")}` : "";
  return `${c.requests ?? "–"} req / ${c.tokens ?? "–"} tok${cost} per ${c.period}`;
}

/** Remove null members of capacity entries (the API takes absent as "no limit"). */
export function cleanCapacity(c: Capacity[] | undefined): Capacity[] {
  return (c ?? []).map((e) => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (v !== null && v !== undefined) o[k] = v;
    return o as unknown as Capacity;
  });
}

export function fmtDate(s?: string | null): string {
  if (!s) return "—";
  const d = new Date(s);
  return isNaN(d.getTime()) ? s : d.toLocaleString();
}

/** RFC 3339 from a datetime-local value (local time), or null */
export function toIso(local: string): string | null {
  if (!local) return null;
  const d = new Date(local);
  return isNaN(d.getTime()) ? local : d.toISOString();
}

/** a datetime-local value (local time) of an RFC 3339 time, "" when none */
export function toLocal(iso?: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return "";
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** A form's general error (one no field is named for), when there is one. */
export function FormError({ message }: { message?: string | null }) {
  return message ? (
    <Alert color="red" role="alert">
      {message}
    </Alert>
  ) : null;
}

/** A form's footer: Cancel (Close when read-only) and, unless read-only, Create or Save. */
export function FormActions({
  readOnly,
  busy,
  creating,
  onClose,
}: {
  readOnly?: boolean;
  busy: boolean;
  creating: boolean;
  onClose: () => void;
}) {
  return (
    <Group justify="flex-end">
      <Button variant="default" onClick={onClose}>
        {readOnly ? "Close" : "Cancel"}
      </Button>
      {!readOnly && (
        <Button type="submit" loading={busy}>
          {creating ? "Create" : "Save"}
        </Button>
      )}
    </Group>
  );
}

export function NeedEnv() {
  return (
    <Alert color="blue" title="No environment selected">
      Create a workspace and an environment first (Getting started), or pick one in the header.
    </Alert>
  );
}


/** A form's general error, then the name and description every object has. */
export function NameFields({
  errs,
  name,
  setName,
  description,
  setDescription,
  readOnly,
  nameHint,
}: {
  errs: ReturnType<typeof useFieldErrors>;
  name: string;
  setName: (v: string) => void;
  description: string;
  setDescription: (v: string) => void;
  readOnly?: boolean;
  nameHint?: string;
}) {
  return (
    <>
      <FormError message={errs.general} />
      <TextInput
        label="Name"
        description={nameHint}
        value={name}
        onChange={(e) => setName(e.currentTarget.value)}
        error={errs.at("name")}
        required
        disabled={readOnly}
        data-autofocus
      />
      <Textarea
        label="Description"
        value={description}
        onChange={(e) => setDescription(e.currentTarget.value)}
        error={errs.at("description")}
        disabled={readOnly}
      />
    </>
  );
}
