import { useState } from "react";
import { Alert, Badge, Button, Code, Group, JsonInput, Paper, Stack, Table, Text, TextInput, Title } from "@mantine/core";
import { api, ApiError } from "../api/client";
import type { ModelRef } from "../api/types";

interface Condition {
  field: string;
  expression?: string;
  value?: unknown;
  result: boolean;
  missing?: boolean;
  group?: boolean;
  position?: number;
}

interface GroupTrace {
  index: number;
  id?: string;
  description?: string;
  enabled: boolean;
  action: string;
  then?: ModelRef | null;
  traffic?: number;
  matched: boolean;
  chosen: boolean;
  draw?: number;
  taken?: boolean;
  conditions?: Condition[];
}

export interface RouteTestAnswer {
  resourceSource?: string;
  routingEnabled?: boolean;
  routingSkipped?: string;
  matchedGroup: number | null;
  action: string;
  routed?: boolean;
  model: ModelRef | null;
  fallbackModels?: ModelRef[];
  tokens?: { prompt: number; estimated: boolean };
  trafficSplit?: { random: number; source: string; passed: number };
  groups: GroupTrace[];
  truncated?: boolean;
}

const fmtModel = (m?: ModelRef | null) => (m ? `${m.provider} ${m.model}` : "—");

/** A sample chat request for a resource (its name is the model clients send). */
export function sampleRequest(model: string) {
  return JSON.stringify({ model, messages: [{ role: "user", content: "Hello! Which model are you?" }] }, null, 2);
}

/**
 * The routing test bench: POST .../resources/{id}/route-test with a request
 * (and the unsaved resource when the editor has changes). Errors about the
 * resource document go to the editor (onResourceError, the field without its
 * `resource.` prefix); those about the request, error rates or draw to the
 * bench's own fields.
 */
export function RouteTestBench({
  path,
  resourceId,
  resourceName,
  unsaved,
  onResourceError,
}: {
  path: string;
  resourceId: string;
  resourceName: string;
  /** the resource document as the editor would save it, null when unchanged or not valid */
  unsaved: () => unknown | null;
  onResourceError: (e: ApiError) => void;
}) {
  const [request, setRequest] = useState(() => sampleRequest(resourceName));
  const [rates, setRates] = useState("");
  const [random, setRandom] = useState("");
  const [answer, setAnswer] = useState<RouteTestAnswer | null>(null);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState<{ field?: string; message: string } | null>(null);
  const [sentUnsaved, setSentUnsaved] = useState(false);

  const errAt = (f: string) => (err?.field && (err.field === f || err.field.startsWith(f + ".") || err.field.startsWith(f + "[")) ? err.message : undefined);

  const run = async () => {
    setErr(null);
    let req: unknown;
    try {
      req = JSON.parse(request);
    } catch (x) {
      setErr({ field: "request", message: `Not valid JSON: ${(x as Error).message}` });
      return;
    }
    const body: Record<string, unknown> = { request: req };
    if (rates.trim()) {
      try {
        body.errorRates = JSON.parse(rates);
      } catch (x) {
        setErr({ field: "errorRates", message: `Not valid JSON: ${(x as Error).message}` });
        return;
      }
    }
    if (random.trim()) {
      const n = Number(random);
      if (!Number.isFinite(n)) {
        setErr({ field: "random", message: "A number from 0 to 100 (not 100)." });
        return;
      }
      body.random = n;
    }
    const doc = unsaved();
    if (doc) body.resource = doc;
    setBusy(true);
    try {
      setAnswer(await api<RouteTestAnswer>("POST", `${path}/resources/${resourceId}/route-test`, body));
      setSentUnsaved(!!doc);
    } catch (e) {
      setAnswer(null);
      if (e instanceof ApiError && e.field?.startsWith("resource.")) {
        const pos = typeof e.details.position === "number" ? ` (at character ${e.details.position})` : "";
        onResourceError(new ApiError(e.status, e.code, e.message + pos, { ...e.details, field: e.field.slice(9) }));
        setErr({ message: `The unsaved routing is refused: ${e.field}: ${e.message}${pos}` });
      } else if (e instanceof ApiError) {
        const pos = typeof e.details.position === "number" ? ` (at character ${e.details.position})` : "";
        setErr({ field: e.field, message: (e.field ? `${e.field}: ` : "") + e.message + pos });
      } else setErr({ message: String(e) });
    } finally {
      setBusy(false);
    }
  };

  const general = err && !["request", "errorRates", "random"].some((f) => errAt(f)) ? err.message : null;
  return (
    <Paper withBorder p="sm" data-testid="route-test">
      <Stack gap="sm">
        <Title order={3} size="h5">
          Routing test bench
        </Title>
        <Text size="sm" c="dimmed">
          What the gateway would do with a request, without calling a provider. With unsaved changes, the routing as
          edited here is tested.
        </Text>
        <JsonInput
          label="Request (an OpenAI chat completion body)"
          value={request}
          onChange={setRequest}
          error={errAt("request")}
          autosize
          minRows={4}
          maxRows={14}
          styles={{ input: { fontFamily: "ui-monospace, monospace" } }}
        />
        <Group grow align="flex-start" wrap="wrap">
          <TextInput
            label="Error rates (optional)"
            description='{"5": 20, "5:429": 10}: errorRate(minutes[, status]) in percent'
            value={rates}
            onChange={(e) => setRates(e.currentTarget.value)}
            error={errAt("errorRates")}
            miw={200}
          />
          <TextInput
            label="Traffic draw (optional)"
            description="0 to 100; unset: drawn"
            value={random}
            onChange={(e) => setRandom(e.currentTarget.value)}
            error={errAt("random")}
            inputMode="decimal"
            miw={140}
          />
        </Group>
        <Group justify="flex-end">
          <Button variant="light" onClick={run} loading={busy}>
            Test routing
          </Button>
        </Group>
        {general && (
          <Alert color="red" role="alert">
            {general}
          </Alert>
        )}
        {answer && <RouteTestResult a={answer} unsaved={sentUnsaved} />}
      </Stack>
    </Paper>
  );
}

function value(v: unknown, missing?: boolean) {
  if (missing) return "missing";
  return JSON.stringify(v ?? null);
}

export function RouteTestResult({ a, unsaved }: { a: RouteTestAnswer; unsaved?: boolean }) {
  const chain = a.action === "BLOCK" ? [] : [a.model, ...(a.fallbackModels ?? [])].filter(Boolean) as ModelRef[];
  return (
    <Stack gap="xs" data-testid="route-test-result">
      <Group gap="xs" wrap="wrap">
        <Badge variant="light" color={a.action === "BLOCK" ? "red" : "green"}>
          {a.action}
        </Badge>
        <Text size="sm" data-testid="route-test-group">
          {a.matchedGroup == null
            ? a.routingSkipped
              ? `Routing skipped (${a.routingSkipped})`
              : a.routingEnabled === false
                ? "Routing is off"
                : "No group matched"
            : `Group ${a.matchedGroup + 1}${a.groups[a.matchedGroup]?.id ? ` (${a.groups[a.matchedGroup].id})` : ""} decided`}
        </Text>
        {unsaved && (
          <Badge variant="light" color="yellow">
            unsaved routing
          </Badge>
        )}
      </Group>
      <Text size="sm" data-testid="route-test-model">
        Calls: {a.action === "BLOCK" ? "nothing (blocked: 400 blocked_by_routing_condition)" : chain.map(fmtModel).join(" → ")}
      </Text>
      <Text size="sm">
        Prompt tokens: {a.tokens ? `${a.tokens.prompt}${a.tokens.estimated ? " (estimated)" : " (no tokenizer)"}` : "—"}
        {a.trafficSplit &&
          ` · traffic draw ${a.trafficSplit.random.toFixed(1)} (${a.trafficSplit.source}), ${a.trafficSplit.passed} group(s) let it pass`}
      </Text>
      {a.groups.map((g) => (
        <Paper key={g.index} withBorder p="xs">
          <Group gap="xs" mb={4} wrap="wrap">
            <Text size="sm" fw={600}>
              Group {g.index + 1}
              {g.id ? ` (${g.id})` : ""}
            </Text>
            {!g.enabled && <Badge variant="light" color="gray">disabled</Badge>}
            {g.enabled && (
              <Badge variant="light" color={g.matched ? "green" : "red"}>
                {g.matched ? "matched" : "no match"}
              </Badge>
            )}
            {g.chosen && <Badge variant="light">chosen</Badge>}
            <Text size="xs" c="dimmed">
              {g.action === "BLOCK" ? "blocks" : `calls ${fmtModel(g.then)}`}
              {g.traffic != null && g.traffic < 100 ? ` · share ${g.traffic}%` : ""}
              {g.draw != null ? ` · draw ${g.draw.toFixed(1)} ${g.taken ? "taken" : "passed"}` : ""}
            </Text>
          </Group>
          {g.conditions && g.conditions.length > 0 && (
            <Table verticalSpacing={2} aria-label={`Group ${g.index + 1} conditions`}>
              <Table.Thead>
                <Table.Tr>
                  <Table.Th>Expression</Table.Th>
                  <Table.Th>Value</Table.Th>
                  <Table.Th>Result</Table.Th>
                </Table.Tr>
              </Table.Thead>
              <Table.Tbody>
                {g.conditions.map((c) => (
                  <Table.Tr key={c.field}>
                    <Table.Td>
                      {c.group ? <Text size="xs" c="dimmed">(nested group)</Text> : <Code>{c.expression}</Code>}
                    </Table.Td>
                    <Table.Td style={{ wordBreak: "break-all" }}>{c.group ? "" : value(c.value, c.missing)}</Table.Td>
                    <Table.Td>
                      <Badge variant="light" color={c.result ? "green" : "red"}>
                        {c.result ? "true" : "false"}
                      </Badge>
                    </Table.Td>
                  </Table.Tr>
                ))}
              </Table.Tbody>
            </Table>
          )}
        </Paper>
      ))}
      {a.truncated && <Text size="xs" c="dimmed">The trace was truncated.</Text>}
    </Stack>
  );
}
