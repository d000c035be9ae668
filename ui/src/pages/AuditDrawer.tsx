import { Badge, Button, Code, Collapse, Divider, Drawer, Group, Paper, ScrollArea, SimpleGrid, Stack, Text, Timeline, Title } from "@mantine/core";
import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { useNavigate } from "react-router-dom";
import { api } from "../api/client";
import { ErrorAlert } from "../components/common";
import type { AuditRecord } from "./AuditList";
import { requestMessages, type PlaygroundState } from "./replay";

/** An event of the audit record (SPEC §7): a fallback or a routing decision. */
export interface AuditEvent {
  type?: string;
  timestamp?: string;
  provider?: string | null;
  model?: string | null;
  connectionId?: string | null;
  statusCode?: number | null;
  reason?: string | null;
  groupId?: string | null;
  originalProvider?: string | null;
  originalModel?: string | null;
}

export interface AuditAttempt {
  provider?: string | null;
  model?: string | null;
  connectionId?: string | null;
  statusCode?: number | null;
  failureReason?: string | null;
  providerDuration?: number | null;
  timeToFirstToken?: number | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
  totalTokens?: number | null;
}

export type FullAuditRecord = Omit<AuditRecord, "events"> & {
  connectionId?: string | null;
  gateDuration?: number | null;
  routingDuration?: number | null;
  stream?: boolean;
  attempts?: AuditAttempt[] | null;
  events?: AuditEvent[] | null;
  payloadTruncated?: boolean;
  cost?: number | null;
};

function parse(v: unknown): unknown {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** The assistant's text and finish reason of a stored response: a JSON completion, a streamed answer's chunks (an array), or SSE text. */
export function responseText(response: unknown): { text: string; finishReason: string | null } | null {
  const r = parse(response);
  if (Array.isArray(r)) {
    // a streamed answer: its chunks, joined into an array
    let text = "";
    let finishReason: string | null = null;
    let any = false;
    for (const chunk of r) {
      const c = (chunk as { choices?: { delta?: { content?: unknown }; finish_reason?: unknown }[] } | null)?.choices?.[0];
      if (!c) continue;
      any = true;
      if (typeof c.delta?.content === "string") text += c.delta.content;
      if (typeof c.finish_reason === "string") finishReason = c.finish_reason;
    }
    return any ? { text, finishReason } : null;
  }
  if (r && typeof r === "object") {
    const c = (r as { choices?: { message?: { content?: unknown }; finish_reason?: unknown }[] }).choices?.[0];
    if (c && typeof c.message?.content === "string")
      return { text: c.message.content, finishReason: typeof c.finish_reason === "string" ? c.finish_reason : null };
    return null;
  }
  if (typeof r !== "string" || !r.includes("data:")) return null;
  let text = "";
  let finishReason: string | null = null;
  let any = false;
  for (const line of r.split("\n")) {
    const m = line.match(/^data:\s*(.*)$/);
    if (!m || m[1].trim() === "[DONE]") continue;
    try {
      const c = JSON.parse(m[1])?.choices?.[0];
      if (!c) continue;
      any = true;
      if (typeof c.delta?.content === "string") text += c.delta.content;
      if (typeof c.finish_reason === "string") finishReason = c.finish_reason;
    } catch {
      /* not a JSON chunk */
    }
  }
  return any ? { text, finishReason } : null;
}

function json(v: unknown) {
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

function ms(v: number | null | undefined) {
  return v == null || v < 0 ? "—" : `${Math.round(v * 10) / 10} ms`;
}

function Field({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div>
      <Text size="xs" c="dimmed">
        {label}
      </Text>
      <Text size="sm" component="div" style={{ wordBreak: "break-all" }}>
        {children ?? "—"}
      </Text>
    </div>
  );
}

function Section({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <section aria-label={title}>
      <Title order={3} size="h5" mb="xs">
        {title}
      </Title>
      {children}
    </section>
  );
}

function EventItem({ e }: { e: AuditEvent }) {
  if (e.type === "routing")
    return (
      <Text size="sm">
        Routed {e.originalProvider ?? "?"}/{e.originalModel ?? "?"} → {e.provider ?? "?"}/{e.model ?? "?"}
        {e.groupId ? ` (group ${e.groupId})` : ""}
      </Text>
    );
  return (
    <Text size="sm">
      {e.provider ?? "?"}/{e.model ?? "?"} failed
      {e.statusCode != null && e.statusCode >= 0 ? ` with ${e.statusCode}` : ""}
      {e.reason ? `: ${e.reason}` : ""}
    </Text>
  );
}

/** An audit record, in sections: summary, request, response, events, raw JSON. */
export default function AuditDrawer({ path, id, onClose, connectionName }: { path: string; id: string; onClose: () => void; connectionName?: (id: string) => string }) {
  const q = useQuery({ queryKey: ["audit", path, id], queryFn: () => api<FullAuditRecord>("GET", `${path}/audit/${id}`) });
  const nav = useNavigate();
  const [raw, setRaw] = useState(false);
  const a = q.data;
  const messages = a ? requestMessages(a.request) : null;
  const answer = a ? responseText(a.response) : null;
  const last = a?.attempts?.length ? a.attempts[a.attempts.length - 1] : undefined;
  const events = a?.events ?? [];
  return (
    <Drawer opened onClose={onClose} position="right" size="xl" title="Audit record" closeButtonProps={{ "aria-label": "Close" }} scrollAreaComponent={ScrollArea.Autosize}>
      <ErrorAlert error={q.error} />
      {a && (
        <Stack gap="lg">
          <Group>
            {messages ? (
              <Button onClick={() => nav("/playground", { state: { messages, resource: a.resource } satisfies PlaygroundState })}>Open in playground</Button>
            ) : (
              <Text size="sm" c="dimmed">
                The request payload was not stored: it cannot be replayed.
              </Text>
            )}
          </Group>
          <Section title="Summary">
            <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="sm">
              <Field label="Time">{new Date(a.timestamp).toLocaleString()}</Field>
              <Field label="Status">
                <Badge color={a.statusCode < 400 ? "green" : "red"} variant="light">
                  {a.statusCode}
                </Badge>
                {a.failureReason ? ` ${a.failureReason}` : ""}
              </Field>
              <Field label="Resource">{a.resource}</Field>
              <Field label="Provider / model">{a.provider || a.model ? `${a.provider ?? "?"} / ${a.model ?? "?"}` : null}</Field>
              <Field label="Connection">{a.connectionId ? (connectionName?.(a.connectionId) ?? a.connectionId) : null}</Field>
              <Field label="API key">{a.apiKeyId}</Field>
              <Field label="Correlation id">{a.correlationId}</Field>
              <Field label="Duration">{ms(a.duration)}</Field>
              <Field label="Gate / routing">{`${ms(a.gateDuration)} / ${ms(a.routingDuration)}`}</Field>
              <Field label="Provider / first token">{`${ms(last?.providerDuration)} / ${ms(last?.timeToFirstToken)}`}</Field>
              <Field label="Tokens (prompt + completion = total)">
                {last && (last.totalTokens ?? -1) >= 0
                  ? `${last.promptTokens ?? "?"} + ${last.completionTokens ?? "?"} = ${last.totalTokens}`
                  : null}
              </Field>
              <Field label="Cost">{a.cost != null ? `$${a.cost}` : null}</Field>
              {a.errorMessage && <Field label="Error">{a.errorMessage}</Field>}
            </SimpleGrid>
          </Section>
          <Divider />
          <Section title="Request">
            {a.request == null ? (
              <Text size="sm" c="dimmed">
                Not stored.
              </Text>
            ) : messages ? (
              <Stack gap="xs" data-testid="audit-messages">
                {messages.map((m, i) => (
                  <Paper key={i} withBorder p="xs">
                    <Text size="xs" fw={700} tt="uppercase" c="dimmed">
                      {m.role}
                    </Text>
                    <Text size="sm" style={{ whiteSpace: "pre-wrap" }}>
                      {m.content}
                    </Text>
                  </Paper>
                ))}
              </Stack>
            ) : (
              <Code block>{json(a.request)}</Code>
            )}
          </Section>
          <Section title="Response">
            {a.response == null ? (
              <Text size="sm" c="dimmed">
                Not stored.
              </Text>
            ) : answer ? (
              <Paper withBorder p="xs" data-testid="audit-response">
                <Text size="xs" fw={700} tt="uppercase" c="dimmed">
                  assistant{answer.finishReason ? ` · finish reason: ${answer.finishReason}` : ""}
                </Text>
                <Text size="sm" style={{ whiteSpace: "pre-wrap" }}>
                  {answer.text}
                </Text>
              </Paper>
            ) : (
              <Code block>{json(a.response)}</Code>
            )}
            {a.payloadTruncated && (
              <Text size="xs" c="dimmed" mt="xs">
                The stored payload was truncated.
              </Text>
            )}
          </Section>
          <Section title="Events">
            {events.length === 0 ? (
              <Text size="sm" c="dimmed">
                No fallback or routing event.
              </Text>
            ) : (
              <Timeline bulletSize={14} lineWidth={2}>
                {events.map((e, i) => (
                  <Timeline.Item key={i} title={e.type === "routing" ? "Routing" : "Fallback"} color={e.type === "routing" ? "blue" : "orange"}>
                    <EventItem e={e} />
                    {e.timestamp && (
                      <Text size="xs" c="dimmed">
                        {new Date(e.timestamp).toLocaleTimeString()}
                      </Text>
                    )}
                  </Timeline.Item>
                ))}
              </Timeline>
            )}
          </Section>
          <div>
            <Button variant="subtle" size="compact-sm" onClick={() => setRaw((r) => !r)} aria-expanded={raw}>
              {raw ? "Hide raw JSON" : "Show raw JSON"}
            </Button>
            <Collapse in={raw}>
              <Code block mt="xs">
                {JSON.stringify(a, null, 2)}
              </Code>
            </Collapse>
          </div>
        </Stack>
      )}
    </Drawer>
  );
}
