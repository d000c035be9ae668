import { useEffect, useState } from "react";
import { ActionIcon, Alert, Button, Group, MultiSelect, NumberInput, Paper, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import { useSubmit } from "../api/errors";
import { useEnvPath, usePermissions, useSelection } from "../app/session";
import { DeleteButton, ErrorAlert, FormError, NeedEnv, PageHeader } from "../components/common";
import { res } from "../perm/policy";
import { useResources } from "./Resources";

interface Pool {
  name: string;
  rank: number;
  minReservation: number;
  maxReservation: number;
  resources: string[];
}
interface Strategy {
  name?: string;
  windowSeconds?: number;
  cooldownSeconds?: number;
  scaleUpPercent?: number;
}
interface PoolDefinition {
  pools: Pool[];
  strategy: Strategy;
  updatedAt?: string;
}


const clamp = (v: number) => Math.max(0, Math.min(100, Number(v) || 0));

/** A pool's reservation as shares of 100 %: the minimum filled, the maximum outlined. */
export function ShareBar({ name, min, max }: { name: string; min: number; max: number }) {
  const lo = clamp(min);
  const hi = clamp(max);
  return (
    <div
      role="img"
      aria-label={`${name}: minimum ${lo}%, maximum ${hi}%`}
      data-testid="pool-bar"
      style={{
        position: "relative",
        height: 14,
        flex: 1,
        minWidth: 120,
        borderRadius: 4,
        background: "var(--mantine-color-default-hover)",
      }}
    >
      <div
        style={{
          position: "absolute",
          inset: 0,
          width: `${hi}%`,
          border: "2px solid var(--mantine-color-blue-filled)",
          borderRadius: 4,
          boxSizing: "border-box",
        }}
      />
      <div
        style={{
          position: "absolute",
          top: 0,
          bottom: 0,
          left: 0,
          width: `${lo}%`,
          background: "var(--mantine-color-blue-filled)",
          borderRadius: 4,
        }}
      />
    </div>
  );
}

/** Prioritization (SPEC §6): pools of resources sharing their connections' per-minute tokens. */
export default function Pools() {
  const path = useEnvPath();
  const sel = useSelection();
  const { can } = usePermissions();
  const qc = useQueryClient();
  const resources = useResources(path);
  const q = useQuery({
    queryKey: ["pools", path],
    queryFn: () => api<PoolDefinition>("GET", `${path}/pool-definition`),
    enabled: !!path,
  });
  const [pools, setPools] = useState<Pool[]>([]);
  const [strategy, setStrategy] = useState<Strategy>({});
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    if (q.data) {
      setPools(q.data.pools);
      setStrategy(q.data.strategy ?? {});
    }
  }, [q.data]);
  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="Prioritization" />
        <NeedEnv />
      </>
    );
  }
  const r = res.envObj(sel.ws?.name ?? "", sel.env?.name ?? "", "pool-definition").replace(/:\*$/, "");
  const canEdit = can("pool-definition:update", r);
  const set = (i: number, patch: Partial<Pool>) => setPools(pools.map((p, j) => (j === i ? { ...p, ...patch } : p)));
  const { errs, busy, submit } = useSubmit(async () => {
    setSaved(false);
    await api("PUT", `${path}/pool-definition`, { pools, strategy });
    qc.invalidateQueries({ queryKey: ["pools"] });
    setSaved(true);
  }, (f) => f.startsWith("pools") || f.startsWith("strategy"));
  const sum = pools.reduce((n, p) => n + (Number(p.minReservation) || 0), 0);
  const num = (v: string | number) => (v === "" ? 0 : Number(v));
  return (
    <>
      <PageHeader title="Prioritization">
        {canEdit && q.data?.updatedAt && (
          <DeleteButton
            label="Remove"
            what="the pool definition"
            run={() => api("DELETE", `${path}/pool-definition`)}
            invalidate={[["pools"]]}
          />
        )}
      </PageHeader>
      <Text c="dimmed" size="sm" mb="md">
        Pools share a connection's per-minute token capacity: each is guaranteed its minimum, idle share is lent
        to busy pools up to their maximum, lower rank first (rank 0 is served first).
      </Text>
      <ErrorAlert error={q.error} />
      <form onSubmit={submit} noValidate>
        <Stack maw={900}>
          {saved && (
            <Alert color="green" role="status">
              Saved.
            </Alert>
          )}
          <FormError message={errs.general} />
          {q.isLoading && <Paper withBorder h={120} />}
          {!q.isLoading && pools.length === 0 && <Text size="sm">No pool: no prioritization in this environment.</Text>}
          {pools.map((p, i) => (
            <Paper key={i} withBorder p="sm">
              <Group align="flex-start" wrap="wrap" gap="xs">
                <TextInput
                  label={`Pool ${i + 1}: name`}
                  value={p.name}
                  onChange={(e) => set(i, { name: e.currentTarget.value })}
                  error={errs.at(`pools[${i}].name`)}
                  disabled={!canEdit}
                  w={170}
                />
                <NumberInput
                  label="Rank"
                  value={p.rank}
                  onChange={(v) => set(i, { rank: num(v) })}
                  error={!!errs.at(`pools[${i}].rank`)}
                  allowDecimal={false}
                  disabled={!canEdit}
                  w={80}
                />
                <NumberInput
                  label="Min %"
                  value={p.minReservation}
                  onChange={(v) => set(i, { minReservation: num(v) })}
                  error={!!errs.at(`pools[${i}].minReservation`)}
                  min={0}
                  max={100}
                  disabled={!canEdit}
                  w={90}
                />
                <NumberInput
                  label="Max %"
                  value={p.maxReservation}
                  onChange={(v) => set(i, { maxReservation: num(v) })}
                  error={!!errs.at(`pools[${i}].maxReservation`)}
                  min={0}
                  max={100}
                  disabled={!canEdit}
                  w={90}
                />
                <MultiSelect
                  label="Resources"
                  data={(resources.data ?? []).map((x) => ({ value: x.id, label: x.name }))}
                  value={p.resources}
                  onChange={(v) => set(i, { resources: v })}
                  error={errs.at(`pools[${i}].resources`)}
                  disabled={!canEdit}
                  style={{ flex: 1, minWidth: 200 }}
                />
                {canEdit && (
                  <ActionIcon
                    variant="subtle"
                    color="red"
                    mt={26}
                    onClick={() => setPools(pools.filter((_, j) => j !== i))}
                    aria-label={`Remove pool ${i + 1}`}
                  >
                    ×
                  </ActionIcon>
                )}
              </Group>
              <Group gap="xs" mt="xs" wrap="nowrap">
                <ShareBar name={p.name || `Pool ${i + 1}`} min={p.minReservation} max={p.maxReservation} />
                <Text size="xs" c="dimmed" w={90} ta="right">
                  {clamp(p.minReservation)}–{clamp(p.maxReservation)}%
                </Text>
              </Group>
              {["rank", "minReservation", "maxReservation"].map((k) => errs.at(`pools[${i}].${k}`)).find(Boolean) && (
                <Text c="var(--mantine-color-error)" size="sm" mt={4} role="alert">
                  {["rank", "minReservation", "maxReservation"].map((k) => errs.at(`pools[${i}].${k}`)).find(Boolean)}
                </Text>
              )}
            </Paper>
          ))}
          {pools.length > 0 && (
            <Paper withBorder p="sm">
              <Title order={3} size="h5" mb="xs">
                Reservations by rank
              </Title>
              <Stack gap={6} data-testid="pool-overview">
                {[...pools]
                  .map((p, i) => ({ p, i }))
                  .sort((a, b) => a.p.rank - b.p.rank || a.i - b.i)
                  .map(({ p, i }) => (
                    <Group key={i} gap="xs" wrap="nowrap">
                      <Text size="sm" w={140} truncate>
                        {p.rank}. {p.name || `Pool ${i + 1}`}
                      </Text>
                      <ShareBar name={p.name || `Pool ${i + 1}`} min={p.minReservation} max={p.maxReservation} />
                      <Text size="xs" c="dimmed" w={70} ta="right">
                        {clamp(p.minReservation)}–{clamp(p.maxReservation)}%
                      </Text>
                    </Group>
                  ))}
              </Stack>
              <Text size="xs" c="dimmed" mt="xs">
                Filled: the guaranteed minimum; outlined: the maximum it may borrow up to.
              </Text>
            </Paper>
          )}
          {sum > 100 ? (
            <Alert color="orange" role="alert" title="Minimums over 100%">
              The minimums add up to {sum}%: they cannot all be guaranteed (at most 100%).
            </Alert>
          ) : (
            <Text size="sm" c="dimmed">
              Minimums add up to {sum}% (at most 100%).
            </Text>
          )}
          {canEdit && (
            <Button
              variant="light"
              w="fit-content"
              onClick={() =>
                setPools([...pools, { name: `pool-${pools.length + 1}`, rank: pools.length, minReservation: 0, maxReservation: 100, resources: [] }])
              }
            >
              Add a pool
            </Button>
          )}
          <Title order={3} size="h4">
            Strategy: adaptive
          </Title>
          <Group wrap="wrap">
            <NumberInput
              label="Window (s)"
              value={strategy.windowSeconds ?? 30}
              onChange={(v) => setStrategy({ ...strategy, windowSeconds: num(v) })}
              error={errs.at("strategy.windowSeconds")}
              min={1}
              max={60}
              disabled={!canEdit}
              w={130}
            />
            <NumberInput
              label="Cooldown (s)"
              value={strategy.cooldownSeconds ?? 5}
              onChange={(v) => setStrategy({ ...strategy, cooldownSeconds: num(v) })}
              error={errs.at("strategy.cooldownSeconds")}
              min={0}
              max={3600}
              disabled={!canEdit}
              w={130}
            />
            <NumberInput
              label="Scale up (%)"
              value={strategy.scaleUpPercent ?? 50}
              onChange={(v) => setStrategy({ ...strategy, scaleUpPercent: num(v) })}
              error={errs.at("strategy.scaleUpPercent")}
              min={1}
              max={100}
              disabled={!canEdit}
              w={130}
            />
          </Group>
          {canEdit && (
            <Button type="submit" loading={busy} w="fit-content">
              Save
            </Button>
          )}
        </Stack>
      </form>
    </>
  );
}
