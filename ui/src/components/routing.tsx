// The routing editor of a resource (SPEC §4): groups tried in order, each
// either a list of conditions (UI mode) or an expression (ADVANCED mode),
// calling another model or blocking. Nested groups are kept as they are and
// edited in the JSON view.
import {
  ActionIcon,
  Button,
  Group,
  NumberInput,
  Paper,
  SegmentedControl,
  Select,
  Stack,
  Switch,
  Text,
  TextInput,
  Textarea,
} from "@mantine/core";
import type { Connection, ModelRef } from "../api/types";
import { ModelPicker } from "./models";

export interface Condition {
  type: "condition";
  id: string;
  label?: string;
  expression: string;
  comparator: string;
  value?: { type: string; expression?: string | null };
}
export interface RoutingGroup {
  type: "group";
  id: string;
  description?: string;
  enabled?: boolean;
  operator?: "AND" | "OR";
  conditions: (Condition | RoutingGroup)[];
  mode?: "UI" | "ADVANCED";
  expression?: string;
  action?: "CALL_MODEL" | "BLOCK";
  then?: ModelRef & { traffic?: number | null };
}
export interface Routing {
  enabled: boolean;
  conditions: RoutingGroup[];
}

const COMPARATORS = [
  "EQUAL", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_OR_EQUAL", "LESS_THAN", "LESS_THAN_OR_EQUAL",
  "CONTAINS", "NOT_CONTAINS", "STARTS_WITH", "ENDS_WITH", "PATTERN", "IN", "NOT_IN", "EXISTS",
];
const VALUE_TYPES = ["string", "number", "boolean", "comma-delimited-list", "json-object", "json-array"];
const VARIABLES = [
  "tokens.input", "request.messagesCount", "request.toolsCount", "request.lastMessage.content",
  "request.firstMessage.content", "request.allMessagesContent", "request.model", "apiKey.id",
  "sourceIp",
];

const newId = () =>
  typeof crypto !== "undefined" && "randomUUID" in crypto
    ? crypto.randomUUID()
    : Math.random().toString(16).slice(2) + Date.now().toString(16);

export function RoutingEditor({
  value,
  onChange,
  connections,
  errorAt,
  readOnly,
  primary,
}: {
  value: Routing;
  onChange: (v: Routing) => void;
  connections: Connection[];
  errorAt: (f: string) => string | undefined;
  readOnly?: boolean;
  primary: ModelRef;
}) {
  const groups = value.conditions ?? [];
  const setGroups = (g: RoutingGroup[]) => onChange({ ...value, conditions: g });
  const setGroup = (i: number, patch: Partial<RoutingGroup>) =>
    setGroups(groups.map((g, j) => (j === i ? { ...g, ...patch } : g)));
  const move = (i: number, d: number) => {
    const g = [...groups];
    const [x] = g.splice(i, 1);
    g.splice(i + d, 0, x);
    setGroups(g);
  };
  return (
    <Stack gap="xs">
      <Switch
        label="Routing enabled (groups are tried in order; the first that matches wins)"
        checked={!!value.enabled}
        onChange={(e) => onChange({ ...value, enabled: e.currentTarget.checked })}
        disabled={readOnly}
      />
      {groups.map((g, i) => {
        const f = `routing.conditions[${i}]`;
        const conds = g.conditions ?? [];
        const setCond = (k: number, patch: Partial<Condition>) =>
          setGroup(i, { conditions: conds.map((c, j) => (j === k ? ({ ...c, ...patch } as Condition) : c)) });
        return (
          <Paper key={g.id ?? i} withBorder p="sm">
            <Stack gap="xs">
              <Group justify="space-between" wrap="wrap" gap="xs">
                <Text fw={600} size="sm">
                  Rule {i + 1}
                </Text>
                {!readOnly && (
                  <Group gap={2}>
                    <ActionIcon variant="default" disabled={i === 0} onClick={() => move(i, -1)} aria-label={`Move rule ${i + 1} up`}>
                      ↑
                    </ActionIcon>
                    <ActionIcon
                      variant="default"
                      disabled={i === groups.length - 1}
                      onClick={() => move(i, 1)}
                      aria-label={`Move rule ${i + 1} down`}
                    >
                      ↓
                    </ActionIcon>
                    <ActionIcon
                      variant="subtle"
                      color="red"
                      onClick={() => setGroups(groups.filter((_, j) => j !== i))}
                      aria-label={`Remove rule ${i + 1}`}
                    >
                      ×
                    </ActionIcon>
                  </Group>
                )}
              </Group>
              <Group grow wrap="wrap" align="flex-start">
                <TextInput
                  label={`Rule ${i + 1}: description`}
                  value={g.description ?? ""}
                  onChange={(e) => setGroup(i, { description: e.currentTarget.value })}
                  error={errorAt(`${f}.description`)}
                  disabled={readOnly}
                  miw={180}
                />
                <Select
                  label={`Rule ${i + 1}: action`}
                  data={[
                    { value: "CALL_MODEL", label: "Call another model" },
                    { value: "BLOCK", label: "Block the request" },
                  ]}
                  value={g.action ?? "CALL_MODEL"}
                  onChange={(v) => setGroup(i, { action: (v ?? "CALL_MODEL") as RoutingGroup["action"] })}
                  error={errorAt(`${f}.action`)}
                  allowDeselect={false}
                  disabled={readOnly}
                  miw={180}
                />
              </Group>
              <Group gap="md" wrap="wrap">
                <Switch
                  label="Enabled"
                  checked={g.enabled !== false}
                  onChange={(e) => setGroup(i, { enabled: e.currentTarget.checked })}
                  disabled={readOnly}
                />
                <SegmentedControl
                  size="xs"
                  aria-label={`Rule ${i + 1}: how the condition is written`}
                  data={[
                    { value: "UI", label: "Conditions" },
                    { value: "ADVANCED", label: "Expression" },
                  ]}
                  value={g.mode ?? "UI"}
                  onChange={(v) => setGroup(i, { mode: v as RoutingGroup["mode"] })}
                  disabled={readOnly}
                />
                {(g.mode ?? "UI") === "UI" && (
                  <SegmentedControl
                    size="xs"
                    aria-label={`Rule ${i + 1}: all or any condition`}
                    data={[
                      { value: "AND", label: "all match" },
                      { value: "OR", label: "any matches" },
                    ]}
                    value={g.operator ?? "AND"}
                    onChange={(v) => setGroup(i, { operator: v as "AND" | "OR" })}
                    disabled={readOnly}
                  />
                )}
              </Group>
              {g.mode === "ADVANCED" ? (
                <Textarea
                  label={`Rule ${i + 1}: expression`}
                  description="e.g. tokens.input > 4000 && request.model matches /^chat/i, errorRate(5) > 20"
                  value={g.expression ?? ""}
                  onChange={(e) => setGroup(i, { expression: e.currentTarget.value })}
                  error={errorAt(`${f}.expression`)}
                  autosize
                  minRows={1}
                  disabled={readOnly}
                  styles={{ input: { fontFamily: "ui-monospace, monospace" } }}
                />
              ) : (
                <Stack gap={6}>
                  {conds.length === 0 && (
                    <Text size="sm" c="dimmed">
                      No condition: matches every request.
                    </Text>
                  )}
                  {conds.map((c, k) =>
                    c.type === "group" ? (
                      <Text key={c.id ?? k} size="sm" c="dimmed">
                        Condition {k + 1}: a nested group (edit it in the JSON view).
                      </Text>
                    ) : (
                      <Group key={c.id ?? k} gap="xs" align="flex-start" wrap="wrap">
                        <Select
                          label={`Condition ${k + 1}: variable`}
                          data={Array.from(new Set([...VARIABLES, c.expression].filter(Boolean)))}
                          value={c.expression || null}
                          onChange={(v) => setCond(k, { expression: v ?? "" })}
                          searchable
                          error={errorAt(`${f}.conditions[${k}].expression`)}
                          disabled={readOnly}
                          w={210}
                        />
                        <Select
                          label="comparator"
                          aria-label={`Condition ${k + 1}: comparator`}
                          data={COMPARATORS}
                          value={c.comparator}
                          onChange={(v) => setCond(k, { comparator: v ?? "EQUAL" })}
                          error={errorAt(`${f}.conditions[${k}].comparator`)}
                          allowDeselect={false}
                          disabled={readOnly}
                          w={190}
                        />
                        {c.comparator !== "EXISTS" && (
                          <>
                            <Select
                              label="type"
                              aria-label={`Condition ${k + 1}: value type`}
                              data={VALUE_TYPES}
                              value={c.value?.type ?? "string"}
                              onChange={(v) => setCond(k, { value: { ...c.value, type: v ?? "string" } })}
                              allowDeselect={false}
                              disabled={readOnly}
                              w={150}
                            />
                            <TextInput
                              label="value"
                              aria-label={`Condition ${k + 1}: value`}
                              value={c.value?.expression ?? ""}
                              onChange={(e) =>
                                setCond(k, { value: { type: c.value?.type ?? "string", expression: e.currentTarget.value } })
                              }
                              error={errorAt(`${f}.conditions[${k}].value`)}
                              disabled={readOnly}
                              w={160}
                            />
                          </>
                        )}
                        {!readOnly && (
                          <ActionIcon
                            variant="subtle"
                            color="red"
                            mt={26}
                            onClick={() => setGroup(i, { conditions: conds.filter((_, j) => j !== k) })}
                            aria-label={`Remove condition ${k + 1} of rule ${i + 1}`}
                          >
                            ×
                          </ActionIcon>
                        )}
                      </Group>
                    ),
                  )}
                  {!readOnly && (
                    <Button
                      size="xs"
                      variant="subtle"
                      w="fit-content"
                      onClick={() =>
                        setGroup(i, {
                          conditions: [
                            ...conds,
                            {
                              type: "condition",
                              id: newId(),
                              label: "",
                              expression: "tokens.input",
                              comparator: "GREATER_THAN",
                              value: { type: "number", expression: "4000" },
                            },
                          ],
                        })
                      }
                    >
                      Add a condition to rule {i + 1}
                    </Button>
                  )}
                </Stack>
              )}
              {(g.action ?? "CALL_MODEL") === "CALL_MODEL" && (
                <Group align="flex-end" wrap="wrap" gap="xs">
                  <div style={{ flex: 1, minWidth: 260 }}>
                    <ModelPicker
                      label={`Rule ${i + 1} calls`}
                      value={g.then ?? { ...primary }}
                      onChange={(m) => setGroup(i, { then: { ...m, traffic: g.then?.traffic ?? null } })}
                      connections={connections}
                      field={`${f}.then`}
                      errorAt={errorAt}
                      readOnly={readOnly}
                    />
                  </div>
                  <NumberInput
                    label="Traffic %"
                    description="empty: all"
                    value={g.then?.traffic ?? ""}
                    onChange={(v) =>
                      setGroup(i, {
                        then: { ...(g.then ?? primary), traffic: v === "" ? null : Number(v) },
                      })
                    }
                    min={0}
                    max={100}
                    error={errorAt(`${f}.then.traffic`)}
                    disabled={readOnly}
                    w={110}
                  />
                </Group>
              )}
            </Stack>
          </Paper>
        );
      })}
      {errorAt("routing") && !groups.some((_, i) => errorAt(`routing.conditions[${i}]`)) && (
        <Text c="var(--mantine-color-error)" size="sm" role="alert">
          {errorAt("routing")}
        </Text>
      )}
      {!readOnly && (
        <Button
          size="xs"
          variant="light"
          w="fit-content"
          onClick={() =>
            setGroups([
              ...groups,
              {
                type: "group",
                id: newId(),
                description: "",
                enabled: true,
                operator: "AND",
                conditions: [],
                mode: "ADVANCED",
                expression: "tokens.input > 4000",
                action: "CALL_MODEL",
                then: { ...primary },
              },
            ])
          }
        >
          Add a routing rule
        </Button>
      )}
    </Stack>
  );
}

/** `then.traffic: null` means absent for the API */
export function cleanRouting(r: Routing): Routing {
  return {
    ...r,
    conditions: (r.conditions ?? []).map((g) => {
      if (!g.then) return g;
      const { traffic, ...then } = g.then;
      return { ...g, then: traffic === null || traffic === undefined ? then : { ...then, traffic } };
    }),
  };
}
