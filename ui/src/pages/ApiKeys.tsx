import { useEffect, useState } from "react";
import {
  Alert,
  Badge,
  Button,
  Code,
  Group,
  Modal,
  MultiSelect,
  NumberInput,
  Stack,
  Switch,
  Text,
  TextInput,
} from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { ApiKey, Capacity } from "../api/types";
import { useEnvPath, usePermissions, useSelection } from "../app/session";
import { rememberKey } from "../app/sessionKeys";
import {
  CapacityEditor,
  cleanCapacity,
  CopyValue,
  DataTable,
  DeleteButton,
  ErrorAlert,
  fmtDate,
  FormActions,
  FormError,
  NameFields,
  NeedEnv,
  PageHeader,
  toIso,
  toLocal,
} from "../components/common";
import { res } from "../perm/policy";
import { useResources } from "./Resources";

function KeyForm({
  path,
  initial,
  onClose,
  onCreated,
  readOnly,
}: {
  path: string;
  initial: ApiKey | null;
  onClose: () => void;
  onCreated: (k: ApiKey) => void;
  readOnly: boolean;
}) {
  const resources = useResources(path);
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [scope, setScope] = useState<string[]>(initial?.resources ?? []);
  const [expiresAt, setExpiresAt] = useState(toLocal(initial?.expiresAt));
  const [enforceCapacity, setEnforce] = useState(initial?.enforceCapacity ?? false);
  const [capacity, setCapacity] = useState<Capacity[]>(initial?.capacity ?? []);
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(async () => {
    const body = {
      name,
      description,
      enabled,
      resources: scope,
      labels: initial?.labels ?? {},
      expiresAt: toIso(expiresAt),
      enforceCapacity,
      capacity: cleanCapacity(capacity),
    };
    if (initial) {
      await api("PUT", `${path}/api-keys/${initial.id}`, body);
      onClose();
    } else {
      onCreated(await api<ApiKey>("POST", `${path}/api-keys`, body));
    }
    qc.invalidateQueries({ queryKey: ["api-keys"] });
  }, fieldsOf("name", "description", "enabled", "resources", "expiresAt", "enforceCapacity", "capacity"));
  return (
    <Modal opened onClose={onClose} size="lg" title={initial ? `API key ${initial.name}` : "New API key"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <NameFields
            errs={errs}
            name={name}
            setName={setName}
            description={description}
            setDescription={setDescription}
            readOnly={readOnly}
          />
          <MultiSelect
            label="Resources it may call"
            data={(resources.data ?? []).map((r) => ({ value: r.id, label: r.name }))}
            value={scope}
            onChange={setScope}
            error={errs.at("resources")}
            searchable
            disabled={readOnly}
          />
          <TextInput
            type="datetime-local"
            label="Expires at"
            description="Empty: never."
            value={expiresAt}
            onChange={(e) => setExpiresAt(e.currentTarget.value)}
            error={errs.at("expiresAt")}
            disabled={readOnly}
          />
          <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} disabled={readOnly} />
          <Switch
            label="Enforce this key's capacity"
            checked={enforceCapacity}
            onChange={(e) => setEnforce(e.currentTarget.checked)}
            disabled={readOnly}
          />
          <CapacityEditor value={capacity} onChange={setCapacity} errorAt={errs.at} readOnly={readOnly} />
          {initial && (
            <Text size="sm" c="dimmed">
              Key {initial.maskedKey} · last used {fmtDate(initial.lastUsedAt)}
              {initial.previousKeyExpiresAt && ` · previous key valid until ${fmtDate(initial.previousKeyExpiresAt)}`}
            </Text>
          )}
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

function ShowKeyOnce({ k, onClose }: { k: ApiKey; onClose: () => void }) {
  useEffect(() => rememberKey(k.name, k.key), [k]);
  return (
    <Modal opened onClose={onClose} size="lg" title={`The key of ${k.name}`}>
      <Stack data-testid="new-key">
        <Alert color="yellow">This is the only time the key is shown: copy it now.</Alert>
        <CopyValue value={k.key ?? ""} label="API key" />
        <Group justify="flex-end">
          <Button onClick={onClose}>I have copied it</Button>
        </Group>
      </Stack>
    </Modal>
  );
}

function Rotate({ path, k, onRotated, onClose }: { path: string; k: ApiKey; onRotated: (k: ApiKey) => void; onClose: () => void }) {
  const [grace, setGrace] = useState<number | string>(3600);
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(async () => {
    const r = await api<ApiKey>("POST", `${path}/api-keys/${k.id}/rotate`, {
      gracePeriodSeconds: Number(grace) || 0,
    });
    qc.invalidateQueries({ queryKey: ["api-keys"] });
    onRotated(r);
  }, (f) => f === "gracePeriodSeconds");
  return (
    <Modal opened onClose={onClose} title={`Rotate ${k.name}`}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <FormError message={errs.general} />
          <Text size="sm">
            A new key replaces <Code>{k.maskedKey}</Code>; the old one keeps working for the grace period.
          </Text>
          <NumberInput
            label="Grace period (seconds)"
            description="0 to 2592000 (30 days)."
            value={grace}
            onChange={setGrace}
            min={0}
            max={2592000}
            error={errs.at("gracePeriodSeconds")}
          />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" loading={busy}>
              Rotate
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}

export default function ApiKeys() {
  const path = useEnvPath();
  const sel = useSelection();
  const { can } = usePermissions();
  const qc = useQueryClient();
  const q = useQuery({
    queryKey: ["api-keys", path],
    queryFn: () => listAll<ApiKey>(`${path}/api-keys`),
    enabled: !!path,
  });
  const resources = useResources(path);
  const [editing, setEditing] = useState<ApiKey | "new" | null>(null);
  const [shown, setShown] = useState<ApiKey | null>(null);
  const [rotating, setRotating] = useState<ApiKey | null>(null);
  const [toggleErr, setToggleErr] = useState<unknown>(null);
  if (!path && !sel.loading) {
    return (
      <>
        <PageHeader title="API keys" />
        <NeedEnv />
      </>
    );
  }
  const r = (name = "*") => res.envObj(sel.ws?.name ?? "", sel.env?.name ?? "", "api-key", name);
  const canUpdate = (k: ApiKey) => can("api-key:update", r(k.name));
  const toggle = async (k: ApiKey) => {
    setToggleErr(null);
    try {
      await api("PATCH", `${path}/api-keys/${k.id}`, { enabled: !k.enabled });
      qc.invalidateQueries({ queryKey: ["api-keys"] });
    } catch (e) {
      setToggleErr(e);
    }
  };
  const resName = (id: string) => resources.data?.find((x) => x.id === id)?.name ?? id.slice(0, 8);
  return (
    <>
      <PageHeader title="API keys">
        {can("api-key:create", r()) && <Button onClick={() => setEditing("new")}>New API key</Button>}
      </PageHeader>
      <ErrorAlert error={toggleErr ?? q.error} />
      <DataTable
        label="API keys"
        loading={q.isLoading || sel.loading}
        rows={q.data}
        rowKey={(k) => k.id}
        columns={[
          { label: "Name", render: (k) => k.name },
          { label: "Key", render: (k) => <Code>{k.maskedKey}</Code>, hideOnMobile: true },
          {
            label: "State",
            render: (k) => (
              <Badge color={k.enabled ? "green" : "gray"} variant="light">
                {k.enabled ? "enabled" : "disabled"}
              </Badge>
            ),
          },
          { label: "Resources", render: (k) => k.resources.map(resName).join(", ") || "none", hideOnMobile: true },
          { label: "Expires", render: (k) => fmtDate(k.expiresAt), hideOnMobile: true },
          { label: "Last used", render: (k) => fmtDate(k.lastUsedAt), hideOnMobile: true },
        ]}
        actions={(k) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(k)} aria-label={`${canUpdate(k) ? "Edit" : "View"} ${k.name}`}>
              {canUpdate(k) ? "Edit" : "View"}
            </Button>
            {canUpdate(k) && (
              <Button size="xs" variant="subtle" onClick={() => toggle(k)} aria-label={`${k.enabled ? "Disable" : "Enable"} ${k.name}`}>
                {k.enabled ? "Disable" : "Enable"}
              </Button>
            )}
            {can("api-key:rotate", r(k.name)) && (
              <Button size="xs" variant="subtle" onClick={() => setRotating(k)} aria-label={`Rotate ${k.name}`}>
                Rotate
              </Button>
            )}
            {can("api-key:delete", r(k.name)) && (
              <DeleteButton
                label="Revoke"
                what={`key ${k.name}`}
                run={() => api("DELETE", `${path}/api-keys/${k.id}`)}
                invalidate={[["api-keys"]]}
              />
            )}
          </>
        )}
      />
      {editing && path && (
        <KeyForm
          key={editing === "new" ? "new" : editing.id}
          path={path}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onCreated={(k) => {
            setEditing(null);
            setShown(k);
          }}
          readOnly={editing !== "new" && !canUpdate(editing)}
        />
      )}
      {rotating && path && (
        <Rotate
          path={path}
          k={rotating}
          onClose={() => setRotating(null)}
          onRotated={(k) => {
            setRotating(null);
            setShown(k);
          }}
        />
      )}
      {shown && <ShowKeyOnce k={shown} onClose={() => setShown(null)} />}
    </>
  );
}
