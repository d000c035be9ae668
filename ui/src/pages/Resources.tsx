import { useState } from "react";
import {
  ActionIcon,
  Button,
  Group,
  JsonInput,
  Modal,
  Paper,
  SegmentedControl,
  Stack,
  Switch,
  Text,
} from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Capacity, ModelRef, Resource } from "../api/types";
import { useEnvPath, usePermissions, useSelection } from "../app/session";
import {
  CapacityEditor,
  cleanCapacity,
  DataTable,
  DeleteButton,
  ErrorAlert,
  FormActions,
  NameFields,
  NeedEnv,
  PageHeader,
} from "../components/common";
import { ModelPicker } from "../components/models";
import { cleanRouting, RoutingEditor, type Routing } from "../components/routing";
import { res } from "../perm/policy";
import { RouteTestBench } from "../components/routeTest";
import { useConnections } from "./Connections";

export function useResources(path: string | null) {
  return useQuery({
    queryKey: ["resources", path],
    queryFn: () => listAll<Resource>(`${path}/resources`),
    enabled: !!path,
  });
}

function ResourceForm({
  path,
  initial,
  onClose,
  readOnly,
}: {
  path: string;
  initial: Resource | null;
  onClose: () => void;
  readOnly: boolean;
}) {
  const conns = useConnections(path);
  const connections = conns.data ?? [];
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [model, setModel] = useState<ModelRef>(
    initial?.model ?? { provider: "openai", model: "", connectionId: "" },
  );
  const [fallback, setFallback] = useState<ModelRef[]>(initial?.fallbackModels ?? []);
  const [useFallback, setUseFallback] = useState(initial?.useFallback ?? true);
  const [enforceCapacity, setEnforce] = useState(initial?.enforceCapacity ?? false);
  const [capacity, setCapacity] = useState<Capacity[]>(initial?.capacity ?? []);
  const [routing, setRouting] = useState<Routing>(
    (initial?.routing as Routing | undefined) ?? { enabled: false, conditions: [] },
  );
  const [routingView, setRoutingView] = useState<"form" | "json">("form");
  const [routingText, setRoutingText] = useState("");
  const [routingTextErr, setRoutingTextErr] = useState<string | null>(null);
  const switchView = (v: string) => {
    if (v === "json") {
      setRoutingText(JSON.stringify(cleanRouting(routing), null, 2));
      setRoutingTextErr(null);
      setRoutingView("json");
    } else {
      try {
        setRouting(JSON.parse(routingText));
        setRoutingView("form");
      } catch (x) {
        setRoutingTextErr(`Not valid JSON: ${(x as Error).message}`);
      }
    }
  };
  const qc = useQueryClient();
  const move = (i: number, d: number) => {
    const f = [...fallback];
    const [x] = f.splice(i, 1);
    f.splice(i + d, 0, x);
    setFallback(f);
  };
  /** the document a save sends; null (and the error shown) when the JSON view does not parse */
  const buildBody = () => {
    let routingObj: unknown = cleanRouting(routing);
    if (routingView === "json") {
      try {
        routingObj = JSON.parse(routingText);
      } catch (x) {
        setRoutingTextErr(`Not valid JSON: ${(x as Error).message}`);
        return null;
      }
    }
    return {
      name,
      description,
      model,
      fallbackModels: fallback,
      useFallback,
      secondaryModels: initial?.secondaryModels ?? [],
      enforceCapacity,
      capacity: cleanCapacity(capacity),
      routing: routingObj,
    };
  };
  // the document as first shown, to tell unsaved changes (first render: the initial state)
  const [pristine] = useState(() => ({ doc: "" }));
  if (!pristine.doc) pristine.doc = JSON.stringify(buildBody());
  const knownField = fieldsOf(
    "name", "description", "model", "fallbackModels", "useFallback", "enforceCapacity", "capacity", "routing",
  );
  const { errs, busy, submit } = useSubmit(async () => {
    const body = buildBody();
    if (!body) return;
    if (initial) await api("PUT", `${path}/resources/${initial.id}`, body);
    else await api("POST", `${path}/resources`, body);
    qc.invalidateQueries({ queryKey: ["resources"] });
    onClose();
  }, knownField);
  return (
    <Modal opened onClose={onClose} size="xl" title={initial ? `Resource ${initial.name}` : "New resource"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <NameFields
            errs={errs}
            name={name}
            setName={setName}
            description={description}
            setDescription={setDescription}
            readOnly={readOnly}
            nameHint="What clients send as `model`."
          />
          <ModelPicker
            label="Primary"
            value={model}
            onChange={setModel}
            connections={connections}
            field="model"
            errorAt={errs.at}
            readOnly={readOnly}
          />
          <Stack gap="xs">
            <Group justify="space-between">
              <Text size="sm" fw={500}>
                Fallback chain (tried in this order)
              </Text>
              <Switch
                label="Use fallback"
                checked={useFallback}
                onChange={(e) => setUseFallback(e.currentTarget.checked)}
                disabled={readOnly}
              />
            </Group>
            {fallback.map((f, i) => (
              <Paper key={i} withBorder p="xs">
                <Group align="flex-end" wrap="nowrap">
                  <Text size="sm" fw={600} w={20} mb={8}>
                    {i + 1}.
                  </Text>
                  <div style={{ flex: 1 }}>
                    <ModelPicker
                      label={`Fallback ${i + 1}`}
                      value={f}
                      onChange={(v) => setFallback(fallback.map((x, j) => (j === i ? v : x)))}
                      connections={connections}
                      field={`fallbackModels[${i}]`}
                      errorAt={errs.at}
                      readOnly={readOnly}
                    />
                  </div>
                  {!readOnly && (
                    <Group gap={2} wrap="nowrap" mb={4}>
                      <ActionIcon variant="default" disabled={i === 0} onClick={() => move(i, -1)} aria-label={`Move fallback ${i + 1} up`}>
                        ↑
                      </ActionIcon>
                      <ActionIcon
                        variant="default"
                        disabled={i === fallback.length - 1}
                        onClick={() => move(i, 1)}
                        aria-label={`Move fallback ${i + 1} down`}
                      >
                        ↓
                      </ActionIcon>
                      <ActionIcon
                        variant="subtle"
                        color="red"
                        onClick={() => setFallback(fallback.filter((_, j) => j !== i))}
                        aria-label={`Remove fallback ${i + 1}`}
                      >
                        ×
                      </ActionIcon>
                    </Group>
                  )}
                </Group>
              </Paper>
            ))}
            {!readOnly && (
              <Group>
                <Button
                  size="xs"
                  variant="light"
                  onClick={() =>
                    setFallback([...fallback, { provider: model.provider, model: "", connectionId: model.connectionId }])
                  }
                >
                  Add a fallback model
                </Button>
              </Group>
            )}
          </Stack>
          <Switch
            label="Enforce this resource's capacity"
            checked={enforceCapacity}
            onChange={(e) => setEnforce(e.currentTarget.checked)}
            disabled={readOnly}
          />
          <CapacityEditor value={capacity} onChange={setCapacity} errorAt={errs.at} readOnly={readOnly} />
          <Stack gap="xs">
            <Group justify="space-between">
              <Text size="sm" fw={500}>
                Routing
              </Text>
              <SegmentedControl
                size="xs"
                aria-label="Routing view"
                data={[
                  { value: "form", label: "Rules" },
                  { value: "json", label: "JSON" },
                ]}
                value={routingView}
                onChange={switchView}
              />
            </Group>
            {routingView === "form" ? (
              <RoutingEditor
                value={routing}
                onChange={setRouting}
                connections={connections}
                errorAt={errs.at}
                readOnly={readOnly}
                primary={model}
              />
            ) : (
              <JsonInput
                label="Routing (JSON)"
                description='{"enabled": bool, "conditions": [groups]} as in SPEC §4.'
                value={routingText}
                onChange={setRoutingText}
                error={routingTextErr ?? errs.at("routing")}
                autosize
                minRows={3}
                maxRows={18}
                disabled={readOnly}
                styles={{ input: { fontFamily: "ui-monospace, monospace" } }}
              />
            )}
          </Stack>
          {initial && (
            <RouteTestBench
              path={path}
              resourceId={initial.id}
              resourceName={initial.name}
              unsaved={() => {
                const b = buildBody();
                return b && JSON.stringify(b) !== pristine.doc ? b : null;
              }}
              onResourceError={(e) => {
                errs.clear();
                errs.fromError(e, knownField);
              }}
            />
          )}
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export default function Resources() {
  const path = useEnvPath();
  const sel = useSelection();
  const { can } = usePermissions();
  const q = useResources(path);
  const conns = useConnections(path);
  const [editing, setEditing] = useState<Resource | "new" | null>(null);
  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="AI resources" />
        <NeedEnv />
      </>
    );
  }
  const r = (name = "*") => res.envObj(sel.ws?.name ?? "", sel.env?.name ?? "", "ai-resource", name);
  const canUpdate = (x: Resource) => can("ai-resource:update", r(x.name));
  const connName = (id: string) => conns.data?.find((c) => c.id === id)?.name ?? id.slice(0, 8);
  return (
    <>
      <PageHeader title="AI resources">
        {can("ai-resource:create", r()) && <Button onClick={() => setEditing("new")}>New resource</Button>}
      </PageHeader>
      <ErrorAlert error={q.error} />
      <DataTable
        label="AI resources"
        loading={q.isLoading || sel.loading}
        rows={q.data}
        rowKey={(x) => x.id}
        columns={[
          { label: "Name", render: (x) => x.name },
          { label: "Model", render: (x) => `${x.model.model} @ ${connName(x.model.connectionId)}` },
          {
            label: "Fallback",
            render: (x) =>
              x.useFallback === false || !x.fallbackModels?.length
                ? "—"
                : x.fallbackModels.map((f) => f.model).join(" → "),
            hideOnMobile: true,
          },
        ]}
        actions={(x) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(x)} aria-label={`${canUpdate(x) ? "Edit" : "View"} ${x.name}`}>
              {canUpdate(x) ? "Edit" : "View"}
            </Button>
            {can("ai-resource:delete", r(x.name)) && (
              <DeleteButton
                what={`resource ${x.name}`}
                run={() => api("DELETE", `${path}/resources/${x.id}`)}
                invalidate={[["resources"]]}
              />
            )}
          </>
        )}
      />
      {editing && path && (
        <ResourceForm
          key={editing === "new" ? "new" : editing.id}
          path={path}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canUpdate(editing)}
        />
      )}
    </>
  );
}
