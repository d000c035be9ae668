import { useRef, useState, type FormEvent } from "react";
import {
  ActionIcon,
  Alert,
  Button,
  Code,
  Group,
  Paper,
  PasswordInput,
  Select,
  SimpleGrid,
  Stack,
  Switch,
  Table,
  Text,
  Textarea,
  Timeline,
  Title,
} from "@mantine/core";
import { useLocation } from "react-router-dom";
import { useEnvPath, useSelection } from "../app/session";
import { useSessionKeys } from "../app/sessionKeys";
import { NeedEnv, PageHeader } from "../components/common";
import { useResources } from "./Resources";
import type { Message, PlaygroundState } from "./replay";


const HEADERS = [
  "x-vmx-request-id",
  "x-vmx-provider",
  "x-vmx-model",
  "x-vmx-connection-id",
  "x-vmx-gate-duration-ms",
  "x-vmx-routing-duration-ms",
  "x-vmx-event-count",
];

interface Answer {
  status: number;
  headers: [string, string][];
  events: { index: number; fields: [string, string][] }[];
  text: string;
  error?: { message: string; type?: string; code?: string; param?: string | null };
  done: boolean;
}

function readHeaders(h: Headers): Pick<Answer, "headers" | "events"> {
  const headers = HEADERS.filter((n) => h.get(n) != null).map((n) => [n, h.get(n)!] as [string, string]);
  const n = Number(h.get("x-vmx-event-count") ?? 0);
  const events: Answer["events"] = [];
  const all = [...h.entries()];
  for (let i = 0; i < n && i < 32; i++) {
    const prefix = `x-vmx-event-${i}-`;
    events.push({
      index: i,
      fields: all.filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v] as [string, string]),
    });
  }
  return { headers, events };
}

/** Text of the content deltas in one SSE data payload; "[DONE]" ends. */
export function deltaText(data: string): string {
  try {
    const j = JSON.parse(data) as { choices?: { delta?: { content?: string | null } }[] };
    return (j.choices ?? []).map((c) => c.delta?.content ?? "").join("");
  } catch {
    return "";
  }
}

// requests in flight, read by the end-to-end tests (as the API client does)
const w = window as unknown as { __vmxInflight?: number };

/** Chat playground: sends through the gateway with an API key, shows the x-vmx-* headers. */
export default function Playground() {
  const path = useEnvPath();
  const sel = useSelection();
  const resources = useResources(path);
  const sessionKeys = useSessionKeys();
  const loc = useLocation();
  const init = (loc.state ?? {}) as PlaygroundState;
  const [key, setKey] = useState(sessionKeys[0]?.key ?? "");
  const [resource, setResource] = useState<string | null>(init.resource ?? null);
  const [messages, setMessages] = useState<Message[]>(init.messages?.length ? init.messages : [{ role: "user", content: "" }]);
  const [stream, setStream] = useState(true);
  const [answer, setAnswer] = useState<Answer | null>(null);
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<{ key?: string; resource?: string }>({});
  const abort = useRef<AbortController | null>(null);

  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="Chat playground" />
        <NeedEnv />
      </>
    );
  }
  const model = resource ?? resources.data?.[0]?.name ?? null;

  const send = async (e: FormEvent) => {
    e.preventDefault();
    const errs: typeof formError = {};
    if (!key.trim()) errs.key = "An API key is needed: paste one, or create one on the API keys page.";
    if (!model) errs.resource = "Choose a resource.";
    setFormError(errs);
    if (errs.key || errs.resource) return;
    abort.current?.abort();
    const ac = new AbortController();
    abort.current = ac;
    setBusy(true);
    w.__vmxInflight = (w.__vmxInflight ?? 0) + 1;
    let a: Answer = { status: 0, headers: [], events: [], text: "", done: false };
    const show = (p: Partial<Answer>) => {
      a = { ...a, ...p };
      setAnswer(a);
    };
    show({});
    try {
      const res = await fetch("/v1/chat/completions", {
        method: "POST",
        signal: ac.signal,
        headers: { Authorization: `Bearer ${key.trim()}`, "Content-Type": "application/json" },
        body: JSON.stringify({ model, messages: messages.filter((m) => m.content !== ""), stream }),
      });
      show({ status: res.status, ...readHeaders(res.headers) });
      const ctype = res.headers.get("content-type") ?? "";
      if (!res.ok || !ctype.includes("text/event-stream")) {
        const body = await res.text();
        let j: { error?: Answer["error"]; choices?: { message?: { content?: string } }[] } = {};
        try {
          j = JSON.parse(body);
        } catch {
          j = { error: { message: body || `HTTP ${res.status}` } };
        }
        if (!res.ok || j.error) show({ error: j.error ?? { message: `HTTP ${res.status}` }, done: true });
        else show({ text: (j.choices ?? []).map((c) => c.message?.content ?? "").join(""), done: true });
        return;
      }
      const reader = res.body!.getReader();
      const dec = new TextDecoder();
      let buf = "";
      let text = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, "");
          buf = buf.slice(nl + 1);
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          try {
            const j = JSON.parse(data) as { error?: Answer["error"] };
            if (j.error) show({ error: j.error });
          } catch {
            /* not JSON: ignored */
          }
          text += deltaText(data);
          show({ text });
        }
      }
      show({ done: true });
    } catch (err) {
      if (!ac.signal.aborted) show({ error: { message: "The gateway cannot be reached: " + String(err) }, done: true });
    } finally {
      w.__vmxInflight! -= 1;
      setBusy(false);
    }
  };

  const setMsg = (i: number, m: Partial<Message>) => setMessages((ms) => ms.map((x, j) => (j === i ? { ...x, ...m } : x)));

  return (
    <>
      <PageHeader title="Chat playground" />
      <form onSubmit={send} aria-label="Chat request">
        <Stack maw={900}>
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            <div>
              {sessionKeys.length > 0 && (
                <Select
                  label="A key created in this tab"
                  data={sessionKeys.map((k, i) => ({ value: k.key, label: `${k.name} (${i === 0 ? "newest" : "earlier"})` }))}
                  value={sessionKeys.some((k) => k.key === key) ? key : null}
                  onChange={(v) => setKey(v ?? "")}
                  mb="xs"
                />
              )}
              <PasswordInput
                label="API key"
                description="Keys are shown once by the API: paste one, or pick one created in this tab."
                value={key}
                onChange={(e) => setKey(e.currentTarget.value)}
                error={formError.key}
                autoComplete="off"
              />
            </div>
            <Select
              label="Resource (the model name)"
              data={(resources.data ?? []).map((r) => r.name)}
              value={model}
              onChange={setResource}
              error={formError.resource}
              searchable
            />
          </SimpleGrid>
          <Title order={3} size="h4">
            Messages
          </Title>
          {messages.map((m, i) => (
            <Group key={i} align="flex-start" wrap="nowrap" gap="xs">
              <Select
                aria-label={`Message ${i + 1}: role`}
                data={["system", "user", "assistant"]}
                value={m.role}
                onChange={(v) => setMsg(i, { role: v ?? "user" })}
                allowDeselect={false}
                w={120}
                style={{ flexShrink: 0 }}
              />
              <Textarea
                aria-label={`Message ${i + 1}: content`}
                value={m.content}
                onChange={(e) => setMsg(i, { content: e.currentTarget.value })}
                autosize
                minRows={2}
                style={{ flex: 1 }}
              />
              <ActionIcon
                variant="subtle"
                color="red"
                aria-label={`Remove message ${i + 1}`}
                onClick={() => setMessages((ms) => ms.filter((_, j) => j !== i))}
                disabled={messages.length === 1}
              >
                <span aria-hidden="true">✕</span>
              </ActionIcon>
            </Group>
          ))}
          <Group justify="space-between" wrap="wrap">
            <Group gap="xs">
              <Button variant="default" onClick={() => setMessages((ms) => [...ms, { role: "user", content: "" }])}>
                Add a message
              </Button>
              <Switch label="Stream" checked={stream} onChange={(e) => setStream(e.currentTarget.checked)} />
            </Group>
            <Group gap="xs">
              {busy && (
                <Button variant="default" onClick={() => abort.current?.abort()}>
                  Stop
                </Button>
              )}
              <Button type="submit" loading={busy}>
                Send
              </Button>
            </Group>
          </Group>
        </Stack>
      </form>
      {answer && (
        <Stack mt="lg" maw={900} data-testid="playground-answer">
          <Title order={3} size="h4">
            Answer {answer.status ? `(HTTP ${answer.status})` : ""}
          </Title>
          {answer.error ? (
            <Alert color="red" title={answer.error.type ?? "error"} role="alert" data-testid="playground-error">
              {answer.error.message}
              {answer.error.code ? ` (${answer.error.code})` : ""}
              {answer.error.param ? ` — ${answer.error.param}` : ""}
            </Alert>
          ) : (
            <Paper withBorder p="sm" aria-live="polite" aria-busy={!answer.done} data-testid="playground-text">
              <Text style={{ whiteSpace: "pre-wrap" }}>{answer.text || (answer.done ? "(empty)" : "…")}</Text>
            </Paper>
          )}
          {answer.headers.length > 0 && (
            <Paper withBorder>
              <Table aria-label="Gateway headers" verticalSpacing={4}>
                <Table.Tbody>
                  {answer.headers.map(([k, v]) => (
                    <Table.Tr key={k}>
                      <Table.Th scope="row" fw={500}>
                        <Code>{k}</Code>
                      </Table.Th>
                      <Table.Td style={{ wordBreak: "break-all" }}>{v}</Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Paper>
          )}
          {answer.events.length > 0 && (
            <>
              <Title order={4} size="h5">
                Events
              </Title>
              <Timeline bulletSize={14} lineWidth={2} aria-label="Routing and fallback events">
                {answer.events.map((ev) => (
                  <Timeline.Item key={ev.index} title={`${ev.index}: ${ev.fields.find(([k]) => k === "type")?.[1] ?? "event"}`}>
                    {ev.fields
                      .filter(([k]) => k !== "type")
                      .map(([k, v]) => (
                        <Text key={k} size="sm">
                          {k}: {v}
                        </Text>
                      ))}
                  </Timeline.Item>
                ))}
              </Timeline>
            </>
          )}
        </Stack>
      )}
    </>
  );
}
