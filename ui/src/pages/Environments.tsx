import { useState } from "react";
import { Alert, Badge, Button, Modal, Stack, Switch } from "@mantine/core";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Environment, Workspace } from "../api/types";
import { usePermissions, useSelection } from "../app/session";
import { DataTable, DeleteButton, FormActions, NameFields, PageHeader } from "../components/common";
import { res } from "../perm/policy";

function EnvForm({
  ws,
  initial,
  onClose,
  readOnly,
}: {
  ws: Workspace;
  initial: Environment | null;
  onClose: () => void;
  readOnly: boolean;
}) {
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [storePayload, setStorePayload] = useState(initial ? initial.storePayload !== false : true);
  const [auditRequired, setAuditRequired] = useState(initial ? !!initial.auditRequired : false);
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(async () => {
    const body = { name, description, storePayload, auditRequired };
    if (initial) await api("PATCH", `/workspaces/${ws.id}/environments/${initial.id}`, body);
    else await api("POST", `/workspaces/${ws.id}/environments`, body);
    qc.invalidateQueries({ queryKey: ["environments"] });
    onClose();
  }, fieldsOf("name", "description", "storePayload", "auditRequired"));
  return (
    <Modal opened onClose={onClose} title={initial ? `Environment ${initial.name}` : "New environment"}>
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
          <Switch
            label="Store request and response payloads in audit records"
            checked={storePayload}
            onChange={(e) => setStorePayload(e.currentTarget.checked)}
            error={errs.at("storePayload")}
            disabled={readOnly}
          />
          <Switch
            label="Audit required (refuse requests that cannot be audited)"
            checked={auditRequired}
            onChange={(e) => setAuditRequired(e.currentTarget.checked)}
            error={errs.at("auditRequired")}
            disabled={readOnly}
          />
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export default function Environments() {
  const sel = useSelection();
  const { can } = usePermissions();
  const [editing, setEditing] = useState<Environment | "new" | null>(null);
  const ws = sel.ws;
  if (!ws && !sel.loading) {
    return (
      <>
        <PageHeader title="Environments" />
        <Alert color="blue">Create a workspace first.</Alert>
      </>
    );
  }
  const wsName = ws?.name ?? "";
  const canUpdate = (e: Environment) => can("environment:update", res.env(wsName, e.name));
  return (
    <>
      <PageHeader title={`Environments${ws ? ` of ${ws.name}` : ""}`}>
        {ws && can("environment:create", res.env(wsName, "*")) && (
          <Button onClick={() => setEditing("new")}>New environment</Button>
        )}
      </PageHeader>
      <DataTable
        label="Environments"
        loading={sel.loading}
        rows={sel.environments}
        rowKey={(e) => e.id}
        columns={[
          { label: "Name", render: (e) => e.name },
          { label: "Description", render: (e) => e.description || "—", hideOnMobile: true },
          {
            label: "Payloads",
            render: (e) => (
              <Badge variant="light" color={e.storePayload === false ? "gray" : "indigo"}>
                {e.storePayload === false ? "not stored" : "stored"}
              </Badge>
            ),
            hideOnMobile: true,
          },
        ]}
        actions={(e) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(e)} aria-label={`${canUpdate(e) ? "Edit" : "View"} ${e.name}`}>
              {canUpdate(e) ? "Edit" : "View"}
            </Button>
            {can("environment:delete", res.env(wsName, e.name)) && (
              <DeleteButton
                what={`environment ${e.name}`}
                run={() => api("DELETE", `/workspaces/${ws!.id}/environments/${e.id}`)}
                invalidate={[["environments"]]}
              />
            )}
          </>
        )}
      />
      {editing && ws && (
        <EnvForm
          ws={ws}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canUpdate(editing)}
        />
      )}
    </>
  );
}
