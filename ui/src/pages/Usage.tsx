import { useEffect, useMemo, useRef, useState } from "react";
import { Badge, Button, Code, Group, Modal, Paper, ScrollArea, SegmentedControl, Select, SimpleGrid, Stack, Text, TextInput, Title, useComputedColorScheme } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, type List } from "../api/client";
import { useEnvPath, useSelection } from "../app/session";
import { DataTable, ErrorAlert, fmtDate, NeedEnv, PageHeader } from "../components/common";
import { useResources } from "./Resources";

interface Point {
  time: string;
  requestCount?: number | null;
  errorCount?: number | null;
  totalTokens?: number | null;
  requestDuration?: number | null;
}

const REQUESTS: [keyof Point, string, string][] = [
  ["requestCount", "requests", "#4263eb"],
  ["errorCount", "errors", "#e03131"],
];
const TOKENS: [keyof Point, string, string][] = [["totalTokens", "tokens", "#2f9e44"]];

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

function Chart({ title, points, series }: { title: string; points: Point[]; series: [keyof Point, string, string][] }) {
  const ref = useRef<HTMLDivElement>(null);
  const dark = useComputedColorScheme("light") === "dark";
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const xs = points.map((p) => Date.parse(p.time) / 1000);
    const data: uPlot.AlignedData = [xs, ...series.map(([k]) => points.map((p) => (p[k] as number | null) ?? null))];
    const axis = { stroke: dark ? "#c1c2c5" : "#495057", grid: { stroke: dark ? "#373a40" : "#e9ecef" } };
    const plot = new uPlot(
      {
        width: el.clientWidth || 300,
        height: 200,
        series: [{}, ...series.map(([, label, color]) => ({ label, stroke: color, width: 2, fill: color + "22" }))],
        axes: [axis, axis],
        legend: { show: true },
      },
      data,
      el,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 300, height: 200 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [points, series, dark]);
  return (
    <Paper withBorder p="sm">
      <Text fw={600} size="sm" mb="xs">
        {title}
      </Text>
      <div ref={ref} style={{ minHeight: 230 }} role="img" aria-label={`${title} chart`} />
    </Paper>
  );
}

interface AuditRecord {
  id: string;
  timestamp: string;
  resource?: string;
  provider?: string;
  model?: string;
  statusCode: number;
  duration?: number;
  apiKeyId?: string;
  errorMessage?: string | null;
  failureReason?: string | null;
  request?: unknown;
  response?: unknown;
  events?: unknown[];
}

function AuditDetail({ path, id, onClose }: { path: string; id: string; onClose: () => void }) {
  const q = useQuery({ queryKey: ["audit", path, id], queryFn: () => api<AuditRecord>("GET", `${path}/audit/${id}`) });
  return (
    <Modal opened onClose={onClose} size="xl" title="Audit record">
      <ErrorAlert error={q.error} />
      {q.data && (
        <ScrollArea.Autosize mah="70vh">
          <Code block>{JSON.stringify(q.data, null, 2)}</Code>
        </ScrollArea.Autosize>
      )}
    </Modal>
  );
}

/** Usage charts (uPlot) and the audit log of the selected environment. */
export default function Usage() {
  const path = useEnvPath();
  const sel = useSelection();
  const resources = useResources(path);
  const [range, setRange] = useState("24h");
  const [status, setStatus] = useState<string | null>(null);
  const [model, setModel] = useState("");
  const [open, setOpen] = useState<string | null>(null);
  const [now, setNow] = useState(() => Date.now());
  const start = new Date(now - RANGES[range].ms).toISOString();
  const end = new Date(now + 60_000).toISOString();
  const usage = useQuery({
    queryKey: ["usage", path, range],
    queryFn: () =>
      api<{ data: Point[] }>("POST", `${path}/usage`, {
        granularity: RANGES[range].granularity,
        metrics: { requestCount: "sum", errorCount: "sum", totalTokens: "sum", requestDuration: "avg" },
        dimensions: [],
        filter: { dateRange: { start, end } },
      }),
    enabled: !!path,
  });
  const qs = new URLSearchParams({ startDate: start, endDate: end, pageSize: "50" });
  if (status) qs.set("statusCode", status);
  if (model) qs.set("model", model);
  const audit = useQuery({
    queryKey: ["audit", path, range, status, model],
    queryFn: () => api<List<AuditRecord>>("GET", `${path}/audit?${qs}`),
    enabled: !!path,
  });
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
  const resName = (n?: string) => n ?? "—";
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
      <SimpleGrid cols={{ base: 1, sm: 3 }} mb="md">
        {(
          [
            ["Requests", total("requestCount")],
            ["Errors", total("errorCount")],
            ["Tokens", total("totalTokens")],
          ] as const
        ).map(([label, n]) => (
          <Paper key={label} withBorder p="sm">
            <Text size="sm" c="dimmed">
              {label}
            </Text>
            <Text fw={700} size="xl">
              {usage.isLoading ? "…" : n.toLocaleString()}
            </Text>
          </Paper>
        ))}
      </SimpleGrid>
      <SimpleGrid cols={{ base: 1, md: 2 }} mb="lg">
        <Chart title="Requests and errors" points={points} series={REQUESTS} />
        <Chart title="Tokens" points={points} series={TOKENS} />
      </SimpleGrid>
      <Title order={3} mb="sm">
        Audit log
      </Title>
      <Group mb="sm" wrap="wrap">
        <Select
          label="Status"
          placeholder="any"
          data={["200", "400", "401", "403", "404", "429", "500", "502", "503"]}
          value={status}
          onChange={setStatus}
          clearable
          w={120}
        />
        <TextInput label="Model" placeholder="any" value={model} onChange={(e) => setModel(e.currentTarget.value)} w={200} />
      </Group>
      <ErrorAlert error={audit.error} />
      <Stack gap={4}>
        <DataTable
          label="Audit log"
          loading={audit.isLoading}
          rows={audit.data?.data}
          rowKey={(r) => r.id}
          empty="No request in this range."
          columns={[
            { label: "Time", render: (r) => fmtDate(r.timestamp) },
            {
              label: "Status",
              render: (r) => (
                <Badge variant="light" color={r.statusCode < 400 ? "green" : r.statusCode < 500 ? "yellow" : "red"}>
                  {r.statusCode}
                </Badge>
              ),
            },
            { label: "Resource", render: (r) => resName(r.resource ?? resources.data?.find((x) => x.id === (r as { resourceId?: string }).resourceId)?.name) },
            { label: "Model", render: (r) => `${r.provider ?? ""} ${r.model ?? ""}`.trim() || "—", hideOnMobile: true },
            { label: "Duration", render: (r) => (r.duration != null ? `${r.duration} ms` : "—"), hideOnMobile: true },
          ]}
          actions={(r) => (
            <Button size="xs" variant="subtle" onClick={() => setOpen(r.id)} aria-label={`Details of the request at ${fmtDate(r.timestamp)}`}>
              Details
            </Button>
          )}
        />
        {audit.data && (
          <Text size="xs" c="dimmed">
            {audit.data.total} record(s) in range; the newest 50 shown.
          </Text>
        )}
      </Stack>
      {open && path && <AuditDetail path={path} id={open} onClose={() => setOpen(null)} />}
    </>
  );
}
