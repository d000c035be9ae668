import { Badge, Text } from "@mantine/core";
import { useQuery } from "@tanstack/react-query";
import { listAll } from "../api/client";
import { DataTable, ErrorAlert, fmtDate, PageHeader } from "../components/common";

interface DataPlane {
  url: string;
  version: number | null;
  desiredVersion: number | null;
  status: string;
  lastSeenAt: string | null;
  lastError: string | null;
  problems?: { message?: string; [k: string]: unknown }[];
  problemsTotal?: number;
}

export default function DataPlanes() {
  const q = useQuery({
    queryKey: ["dataplanes"],
    queryFn: () => listAll<DataPlane>("/dataplanes"),
    refetchInterval: 10_000,
  });
  return (
    <>
      <PageHeader title="Data planes" />
      <Text c="dimmed" size="sm" mb="md">
        Each nginx node, the configuration version it runs and when it last answered.
      </Text>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Data planes"
        loading={q.isLoading}
        rows={q.data}
        rowKey={(d) => d.url}
        empty="No data plane configured."
        columns={[
          { label: "URL", render: (d) => d.url },
          {
            label: "Status",
            render: (d) => (
              <Badge variant="light" color={d.status === "in-sync" ? "green" : d.status === "unreachable" ? "red" : "yellow"}>
                {d.status}
              </Badge>
            ),
          },
          { label: "Version", render: (d) => `${d.version ?? "—"} / ${d.desiredVersion ?? "—"}` },
          { label: "Last seen", render: (d) => fmtDate(d.lastSeenAt), hideOnMobile: true },
          {
            label: "Problems",
            render: (d) =>
              d.lastError || d.problemsTotal
                ? [d.lastError, ...(d.problems ?? []).map((p) => p.message ?? JSON.stringify(p))].filter(Boolean).join("; ")
                : "none",
            hideOnMobile: true,
          },
        ]}
      />
    </>
  );
}
