import { useMemo, useState } from "react";
import { Group, Paper, SegmentedControl, Select, SimpleGrid, Stack, Text, Title } from "@mantine/core";
import { useQueries, useQuery } from "@tanstack/react-query";
import { Chart, type Row } from "../components/chart";
import { api } from "../api/client";
import { useEnvPath, useSelection } from "../app/session";
import { DataTable, ErrorAlert, NeedEnv, PageHeader } from "../components/common";
import { useResources } from "./Resources";
import { useConnections } from "./Connections";
import { AuditList } from "./AuditList";
import AuditDrawer from "./AuditDrawer";

interface Point {
  time: string;
  requestCount?: number | null;
  errorCount?: number | null;
  totalTokens?: number | null;
  requestDuration?: number | null;
  cost?: number | null;
  [k: string]: unknown;
}

const REQUESTS: [string, string, string][] = [
  ["requestCount", "requests", "#4263eb"],
  ["errorCount", "errors", "#e03131"],
];
const TOKENS: [string, string, string][] = [["totalTokens", "tokens", "#2f9e44"]];

const NO_POINTS: Point[] = [];

const RANGES: Record<string, { ms: number; granularity: string }> = {
  "1h": { ms: 3600_000, granularity: "minute" },
  "24h": { ms: 86400_000, granularity: "hour" },
  "30d": { ms: 30 * 86400_000, granularity: "day" },
};

const STEP: Record<string, number> = { minute: 60_000, hour: 3600_000, day: 86400_000 };

/** Every bucket of the range, those without data at 0 (counts) or null (averages). */
function fillBuckets(data: Point[], now: number, range: string): Point[] {
  const { ms, granularity } = RANGES[range];
  const step = STEP[granularity];
  const byTime = new Map(data.map((p) => [Date.parse(p.time), p]));
  const out: Point[] = [];
  const first = Math.floor((now - ms) / step) * step + step;
  for (let t = first; t <= now; t += step) {
    out.push(
      byTime.get(t) ?? { time: new Date(t).toISOString(), requestCount: 0, errorCount: 0, totalTokens: 0, requestDuration: null },
    );
  }
  return out.length ? out : data;
}




const COLORS = ["#4263eb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#e03131", "#868e96"];
const DIMENSIONS = [
  { value: "model", label: "Model" },
  { value: "provider", label: "Provider" },
  { value: "resourceId", label: "Resource" },
  { value: "connectionId", label: "Connection" },
  { value: "apiKeyId", label: "API key" },
];

function usageQuery(path: string, range: string, now: number, metrics: Record<string, string>, dimensions: string[]) {
  return {
    queryKey: ["usage", path, range, now, metrics, dimensions],
    queryFn: () =>
      api<{ data: Row[] }>("POST", `${path}/usage`, {
        granularity: RANGES[range].granularity,
        metrics,
        dimensions,
        filter: { dateRange: { start: new Date(now - RANGES[range].ms).toISOString(), end: new Date(now + 60_000).toISOString() } },
      }),
  };
}

/** Every bucket of the range for the given series keys (missing: null). */
function buckets(rows: Row[], now: number, range: string, keys: string[]): Row[] {
  const { ms, granularity } = RANGES[range];
  const step = STEP[granularity];
  const byTime = new Map<number, Row>();
  for (const r of rows) {
    const t = Date.parse(r.time);
    byTime.set(t, { ...(byTime.get(t) ?? { time: r.time }), ...r });
  }
  const out: Row[] = [];
  for (let t = Math.floor((now - ms) / step) * step + step; t <= now; t += step) {
    out.push(byTime.get(t) ?? Object.fromEntries([["time", new Date(t).toISOString()], ...keys.map((k) => [k, null])]) as Row);
  }
  return out;
}

/**
 * Latency percentiles (request duration and time to first token), requests by a
 * chosen dimension, failures by reason: POST .../usage with percentiles (one
 * query per percentile: a metric takes one aggregation) and dimensions.
 */
function Breakdowns({ path, range, now }: { path: string; range: string; now: number }) {
  const [dim, setDim] = useState("model");
  const resources = useResources(path);
  const conns = useConnections(path);
  const pcts = ["p50", "p95", "p99"] as const;
  const lat = useQueries({
    queries: pcts.map((p) => usageQuery(path, range, now, { requestDuration: p, timeToFirstToken: p }, [])),
  });
  const by = useQuery(usageQuery(path, range, now, { requestCount: "sum", errorCount: "sum", totalTokens: "sum" }, [dim]));
  const fail = useQuery(usageQuery(path, range, now, { errorCount: "sum" }, ["failureReason"]));
  const latRows = useMemo(() => {
    const merged: Row[] = [];
    lat.forEach((q, i) =>
      (q.data?.data ?? []).forEach((r) =>
        merged.push({ time: r.time, [`d${pcts[i]}`]: r.requestDuration, [`t${pcts[i]}`]: r.timeToFirstToken }),
      ),
    );
    return buckets(merged, now, range, pcts.flatMap((p) => [`d${p}`, `t${p}`]));
  }, [lat.map((q) => q.dataUpdatedAt).join(), now, range]);
  const name = (v: unknown) => {
    const id = String(v ?? "");
    if (v == null || v === "") return "(none)";
    if (dim === "resourceId") return resources.data?.find((r) => r.id === id)?.name ?? id.slice(0, 8);
    if (dim === "connectionId") return conns.data?.find((c) => c.id === id)?.name ?? id.slice(0, 8);
    if (dim === "apiKeyId") return id.slice(0, 8);
    return id;
  };
  const groups = useMemo(() => {
    const m = new Map<string, { key: unknown; requests: number; errors: number; tokens: number }>();
    for (const r of by.data?.data ?? []) {
      const k = String(r[dim] ?? "");
      const g = m.get(k) ?? { key: r[dim], requests: 0, errors: 0, tokens: 0 };
      g.requests += Number(r.requestCount ?? 0);
      g.errors += Number(r.errorCount ?? 0);
      g.tokens += Number(r.totalTokens ?? 0);
      m.set(k, g);
    }
    return [...m.values()].sort((a, b) => b.requests - a.requests);
  }, [by.data, dim]);
  const top = groups.slice(0, COLORS.length);
  const groupRows = useMemo(() => {
    const rows: Row[] = (by.data?.data ?? []).map((r) => ({ time: r.time, [`g:${String(r[dim] ?? "")}`]: r.requestCount }));
    return buckets(rows, now, range, top.map((g) => `g:${String(g.key ?? "")}`)).map((r) => {
      const o: Row = { ...r };
      for (const g of top) o[`g:${String(g.key ?? "")}`] ??= 0;
      return o;
    });
  }, [by.data, dim, now, range, groups]);
  const failures = useMemo(() => {
    const m = new Map<string, number>();
    for (const r of fail.data?.data ?? []) {
      const k = String(r.failureReason ?? "(none)");
      m.set(k, (m.get(k) ?? 0) + Number(r.errorCount ?? 0));
    }
    return [...m.entries()].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  }, [fail.data]);
  const latSeries = useMemo<[string, string, string][]>(() => pcts.map((p, i) => [`d${p}`, `${p} ms`, COLORS[i]]), []);
  const ttftSeries = useMemo<[string, string, string][]>(() => pcts.map((p, i) => [`t${p}`, `${p} ms`, COLORS[i]]), []);
  const groupSeries = useMemo<[string, string, string][]>(
    () => top.map((g, i) => [`g:${String(g.key ?? "")}`, name(g.key), COLORS[i]]),
    [groups, resources.data, conns.data],
  );
  return (
    <>
      <ErrorAlert error={lat.find((q) => q.error)?.error ?? by.error ?? fail.error} />
      <SimpleGrid cols={{ base: 1, md: 2 }} mb="lg">
        <Chart title="Request duration (p50, p95, p99)" points={latRows} series={latSeries} />
        <Chart title="Time to first token (p50, p95, p99)" points={latRows} series={ttftSeries} />
      </SimpleGrid>
      <Group justify="space-between" mb="xs" wrap="wrap">
        <Title order={3} size="h4">
          Requests by {DIMENSIONS.find((d) => d.value === dim)?.label.toLowerCase()}
        </Title>
        <Select aria-label="Group by" data={DIMENSIONS} value={dim} onChange={(v) => setDim(v ?? "model")} allowDeselect={false} w={160} />
      </Group>
      <SimpleGrid cols={{ base: 1, md: 2 }} mb="lg">
        {groupSeries.length > 0 ? (
          <Chart title={`Requests by ${DIMENSIONS.find((d) => d.value === dim)?.label.toLowerCase() ?? dim}`} points={groupRows} series={groupSeries} />
        ) : (
          <Paper withBorder p="sm">
            <Text size="sm" c="dimmed">
              No request in this range.
            </Text>
          </Paper>
        )}
        <Stack gap="md">
          <DataTable
            label={`Usage by ${dim}`}
            loading={by.isLoading}
            rows={groups}
            rowKey={(g) => String(g.key ?? "")}
            empty="No request in this range."
            columns={[
              { label: DIMENSIONS.find((d) => d.value === dim)?.label ?? dim, render: (g) => name(g.key) },
              { label: "Requests", render: (g) => g.requests.toLocaleString() },
              { label: "Errors", render: (g) => g.errors.toLocaleString() },
              { label: "Tokens", render: (g) => g.tokens.toLocaleString(), hideOnMobile: true },
            ]}
          />
          <DataTable
            label="Failures by reason"
            loading={fail.isLoading}
            rows={failures}
            rowKey={([k]) => k}
            empty="No failure in this range."
            columns={[
              { label: "Failure reason", render: ([k]) => k },
              { label: "Errors", render: ([, n]) => n.toLocaleString() },
            ]}
          />
        </Stack>
      </SimpleGrid>
    </>
  );
}

/** Usage charts (uPlot) and the audit log of the selected environment. */
export default function Usage() {
  const path = useEnvPath();
  const sel = useSelection();
  const [range, setRange] = useState("24h");
  const [open, setOpen] = useState<string | null>(null);
  const [now, setNow] = useState(() => Date.now());
  const start = new Date(now - RANGES[range].ms).toISOString();
  const end = new Date(now + 60_000).toISOString();
  const usage = useQuery({
    queryKey: ["usage", path, range],
    queryFn: () =>
      api<{ data: Point[] }>("POST", `${path}/usage`, {
        granularity: RANGES[range].granularity,
        metrics: { requestCount: "sum", errorCount: "sum", totalTokens: "sum", requestDuration: "avg", cost: "sum" },
        dimensions: [],
        filter: { dateRange: { start, end } },
      }),
    enabled: !!path,
  });
  const conns = useConnections(path);
  const connName = (id: string) => conns.data?.find((c) => c.id === id)?.name ?? id;
  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="Usage and audit" />
        <NeedEnv />
      </>
    );
  }
  const points = useMemo(() => fillBuckets(usage.data?.data ?? NO_POINTS, now, range), [usage.data, now, range]);
  const total = (k: keyof Point) => points.reduce((n, p) => n + ((p[k] as number) ?? 0), 0);
  // a bucket's cost is null when none of its rows had a price: no cost at all is "—", not $0
  const costs = points.filter((p) => p.cost != null);
  return (
    <>
      <PageHeader title="Usage and audit">
        <SegmentedControl
          aria-label="Time range"
          data={[
            { value: "1h", label: "Last hour" },
            { value: "24h", label: "24 hours" },
            { value: "30d", label: "30 days" },
          ]}
          value={range}
          onChange={(v) => {
            setRange(v);
            setNow(Date.now());
          }}
        />
      </PageHeader>
      <ErrorAlert error={usage.error} />
      <SimpleGrid cols={{ base: 1, sm: 4 }} mb="md">
        {(
          [
            ["Requests", total("requestCount").toLocaleString()],
            ["Errors", total("errorCount").toLocaleString()],
            ["Tokens", total("totalTokens").toLocaleString()],
            ["Cost", costs.length ? `$${total("cost").toFixed(4)}` : "—"],
          ] as const
        ).map(([label, n]) => (
          <Paper key={label} withBorder p="sm">
            <Text size="sm" c="dimmed">
              {label}
            </Text>
            <Text fw={700} size="xl">
              {usage.isLoading ? "…" : n}
            </Text>
          </Paper>
        ))}
      </SimpleGrid>
      <SimpleGrid cols={{ base: 1, md: 2 }} mb="lg">
        <Chart title="Requests and errors" points={points} series={REQUESTS} />
        <Chart title="Tokens" points={points} series={TOKENS} />
      </SimpleGrid>
      {path && <Breakdowns path={path} range={range} now={now} />}
      <Title order={3} mb="sm">
        Audit log
      </Title>
      {path && <AuditList path={path} start={start} end={end} onOpen={setOpen} />}
      {open && path && <AuditDrawer path={path} id={open} onClose={() => setOpen(null)} connectionName={connName} />}
    </>
  );
}
