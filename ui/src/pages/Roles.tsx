import { useState } from "react";
import { Alert, Badge, Button, Code, Group, JsonInput, Modal, Stack, Text } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Role } from "../api/types";
import { usePermissions } from "../app/session";
import {
  DataTable,
  DeleteButton,
  ErrorAlert,
  FormActions,
  NameFields,
  PageHeader,
} from "../components/common";
import { res } from "../perm/policy";

const EXAMPLE = {
  statements: [
    {
      effect: "allow",
      actions: ["*:get", "*:list", "ai-resource:*"],
      resources: ["workspace:acme:environment:production:*"],
    },
  ],
};

function RoleForm({ initial, onClose, readOnly }: { initial: Role | null; onClose: () => void; readOnly: boolean }) {
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const [policy, setPolicy] = useState(JSON.stringify(initial?.policy ?? EXAMPLE, null, 2));
  const [policyErr, setPolicyErr] = useState<string | null>(null);
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(
    async () => {
      setPolicyErr(null);
      let doc: unknown;
      try {
        doc = JSON.parse(policy);
      } catch (x) {
        setPolicyErr(`Not valid JSON: ${(x as Error).message}`);
        return;
      }
      const body = { name, description, policy: doc };
      if (initial) await api("PUT", `/roles/${initial.id}`, body);
      else await api("POST", "/roles", body);
      qc.invalidateQueries({ queryKey: ["roles"] });
      onClose();
    },
    fieldsOf("name", "description"),
    (err) => {
      // a policy error names its place in the document: policy.statements[1].actions[0]
      if (!(err instanceof ApiError && err.field?.startsWith("policy"))) return false;
      setPolicyErr(err.message.startsWith(err.field) ? err.message : `${err.field}: ${err.message}`);
      return true;
    },
  );

  return (
    <Modal opened onClose={onClose} size="lg" title={initial ? `Role ${initial.name}` : "New role"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          {initial?.builtin && <Alert color="blue">A built-in role: it can be neither changed nor deleted.</Alert>}
          <NameFields
            errs={errs}
            name={name}
            setName={setName}
            description={description}
            setDescription={setDescription}
            readOnly={readOnly}
          />
          <JsonInput
            label="Policy"
            description={
              <>
                Statements of <Code>effect</Code> (allow | deny), <Code>actions</Code> and <Code>resources</Code>{" "}
                globs, anchored; a deny wins. Resources: <Code>workspace:&lt;ws&gt;:environment:&lt;env&gt;:ai-resource:&lt;name&gt;</Code>,{" "}
                <Code>user:&lt;username&gt;</Code>, <Code>role:&lt;name&gt;</Code>…
              </>
            }
            value={policy}
            onChange={setPolicy}
            error={policyErr ?? undefined}
            autosize
            minRows={8}
            maxRows={24}
            disabled={readOnly}
            styles={{ input: { fontFamily: "ui-monospace, monospace" } }}
          />
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export default function Roles() {
  const q = useQuery({ queryKey: ["roles"], queryFn: () => listAll<Role>("/roles") });
  const { can } = usePermissions();
  const [editing, setEditing] = useState<Role | "new" | null>(null);
  const canUpdate = (r: Role) => !r.builtin && can("role:update", res.role(r.name));
  return (
    <>
      <PageHeader title="Roles">
        {can("role:create", res.role()) && <Button onClick={() => setEditing("new")}>New role</Button>}
      </PageHeader>
      <Text c="dimmed" mb="md" size="sm">
        A user's permissions are the policies of all its roles together.
      </Text>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Roles"
        loading={q.isLoading}
        rows={q.data}
        rowKey={(r) => r.id}
        columns={[
          {
            label: "Name",
            render: (r) => (
              <Group gap={6}>
                {r.name}
                {r.builtin && (
                  <Badge size="xs" variant="light">
                    built-in
                  </Badge>
                )}
              </Group>
            ),
          },
          { label: "Description", render: (r) => r.description || "—", hideOnMobile: true },
          { label: "Users", render: (r) => r.userCount ?? "—" },
        ]}
        actions={(r) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(r)} aria-label={`${canUpdate(r) ? "Edit" : "View"} ${r.name}`}>
              {canUpdate(r) ? "Edit" : "View"}
            </Button>
            {!r.builtin && can("role:delete", res.role(r.name)) && (
              <DeleteButton what={`role ${r.name}`} run={() => api("DELETE", `/roles/${r.id}`)} invalidate={[["roles"]]} />
            )}
          </>
        )}
      />
      {editing && (
        <RoleForm
          key={editing === "new" ? "new" : editing.id}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canUpdate(editing)}
        />
      )}
    </>
  );
}
