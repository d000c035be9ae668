import { useState } from "react";
import { Badge, Button, Group, Modal, MultiSelect, PasswordInput, Stack, Switch, TextInput } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, listAll } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { Role, User } from "../api/types";
import { useMe, usePermissions } from "../app/session";
import {
  DataTable,
  DeleteButton,
  ErrorAlert,
  FormActions,
  FormError,
  PageHeader,
} from "../components/common";
import { res } from "../perm/policy";

function UserForm({
  initial,
  onClose,
  readOnly,
  canAssign,
}: {
  initial: User | null;
  onClose: () => void;
  readOnly: boolean;
  canAssign: boolean;
}) {
  const roles = useQuery({ queryKey: ["roles"], queryFn: () => listAll<Role>("/roles"), retry: false });
  const [username, setUsername] = useState(initial?.username ?? "");
  const [name, setName] = useState(initial?.name ?? "");
  const [email, setEmail] = useState(initial?.email ?? "");
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [password, setPassword] = useState("");
  const [temporary, setTemporary] = useState(true);
  const [userRoles, setUserRoles] = useState<string[]>(initial?.roles ?? []);
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(async () => {
    let u: User;
    if (initial) {
      const body: Record<string, unknown> = { username, name, email, enabled };
      if (password) {
        body.password = password;
        body.temporaryPassword = temporary;
      }
      u = await api<User>("PATCH", `/users/${initial.id}`, body);
    } else {
      u = await api<User>("POST", "/users", {
        username,
        name,
        email,
        enabled,
        password,
        temporaryPassword: temporary,
      });
    }
    if (canAssign && roles.data) {
      const before = new Set(initial?.roles ?? []);
      const after = new Set(userRoles);
      for (const r of roles.data) {
        if (after.has(r.name) && !before.has(r.name)) {
          await api("POST", `/roles/${r.id}/assign`, { userIds: [u.id] });
        } else if (!after.has(r.name) && before.has(r.name)) {
          await api("POST", `/roles/${r.id}/unassign`, { userIds: [u.id] });
        }
      }
    }
    qc.invalidateQueries({ queryKey: ["users"] });
    qc.invalidateQueries({ queryKey: ["roles"] });
    onClose();
  }, fieldsOf("username", "name", "email", "enabled", "password"), () => {
    // a user made before a role failed to change is listed all the same
    qc.invalidateQueries({ queryKey: ["users"] });
    return false;
  });
  return (
    <Modal opened onClose={onClose} title={initial ? `User ${initial.username}` : "New user"}>
      <form onSubmit={submit} noValidate>
        <Stack>
          <FormError message={errs.general} />
          <TextInput
            label="Username"
            value={username}
            onChange={(e) => setUsername(e.currentTarget.value)}
            error={errs.at("username")}
            required
            disabled={readOnly}
            data-autofocus
          />
          <TextInput label="Name" value={name} onChange={(e) => setName(e.currentTarget.value)} error={errs.at("name")} disabled={readOnly} />
          <TextInput
            label="Email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.currentTarget.value)}
            error={errs.at("email")}
            disabled={readOnly}
          />
          {!readOnly && (
            <>
              <PasswordInput
                label={initial ? "New password" : "Password"}
                description={initial ? "Empty: unchanged. At least 12 characters." : "At least 12 characters."}
                value={password}
                onChange={(e) => setPassword(e.currentTarget.value)}
                error={errs.at("password")}
                required={!initial}
                autoComplete="new-password"
              />
              <Switch
                label="Temporary: the user must change it at the next sign-in"
                checked={temporary}
                onChange={(e) => setTemporary(e.currentTarget.checked)}
                disabled={!!initial && !password}
              />
            </>
          )}
          <Switch label="Enabled" checked={enabled} onChange={(e) => setEnabled(e.currentTarget.checked)} error={errs.at("enabled")} disabled={readOnly} />
          <MultiSelect
            label="Roles"
            data={(roles.data ?? []).map((r) => r.name)}
            value={userRoles}
            onChange={setUserRoles}
            disabled={readOnly || !canAssign || !roles.data}
          />
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export default function Users() {
  const q = useQuery({ queryKey: ["users"], queryFn: () => listAll<User>("/users") });
  const me = useMe();
  const { can } = usePermissions();
  const [editing, setEditing] = useState<User | "new" | null>(null);
  const canUpdate = (u: User) => can("user:update", res.user(u.username));
  return (
    <>
      <PageHeader title="Users">
        {can("user:create", res.user()) && <Button onClick={() => setEditing("new")}>New user</Button>}
      </PageHeader>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Users"
        loading={q.isLoading}
        rows={q.data}
        rowKey={(u) => u.id}
        columns={[
          { label: "Username", render: (u) => u.username },
          { label: "Name", render: (u) => u.name || "—", hideOnMobile: true },
          { label: "Roles", render: (u) => (u.roles ?? []).join(", ") || "none" },
          {
            label: "State",
            render: (u) => (
              <Group gap={4}>
                <Badge variant="light" color={u.enabled ? "green" : "gray"}>
                  {u.enabled ? "enabled" : "disabled"}
                </Badge>
                {u.state === "CHANGE_PASSWORD" && (
                  <Badge variant="light" color="yellow">
                    must change password
                  </Badge>
                )}
              </Group>
            ),
            hideOnMobile: true,
          },
        ]}
        actions={(u) => (
          <>
            <Button size="xs" variant="subtle" onClick={() => setEditing(u)} aria-label={`${canUpdate(u) ? "Edit" : "View"} ${u.username}`}>
              {canUpdate(u) ? "Edit" : "View"}
            </Button>
            {can("user:delete", res.user(u.username)) && u.id !== me.data?.id && (
              <DeleteButton what={`user ${u.username}`} run={() => api("DELETE", `/users/${u.id}`)} invalidate={[["users"]]} />
            )}
          </>
        )}
      />
      {editing && (
        <UserForm
          key={editing === "new" ? "new" : editing.id}
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          readOnly={editing !== "new" && !canUpdate(editing)}
          canAssign={can("role:assign", res.role()) && can("role:unassign", res.role())}
        />
      )}
    </>
  );
}
