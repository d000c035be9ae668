import { useEffect, useRef } from "react";
import { Paper, Text, useComputedColorScheme } from "@mantine/core";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export type Row = { time: string; [k: string]: unknown };

/** A uPlot time chart of the given series ([key, label, color]) over the rows. */
export function Chart({ title, points, series, height = 200 }: { title: string; points: Row[]; series: [string, string, string][]; height?: number }) {
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
        height,
        series: [{}, ...series.map(([, label, color]) => ({ label, stroke: color, width: 2, fill: color + "22" }))],
        axes: [axis, axis],
        legend: { show: true },
      },
      data,
      el,
    );
    const ro = new ResizeObserver(() => plot.setSize({ width: el.clientWidth || 300, height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [points, series, dark, height]);
  return (
    <Paper withBorder p="sm">
      <Text fw={600} size="sm" mb="xs">
        {title}
      </Text>
      <div ref={ref} style={{ minHeight: height + 30 }} role="img" aria-label={`${title} chart`} />
    </Paper>
  );
}
