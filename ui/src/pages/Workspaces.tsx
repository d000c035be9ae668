import { useState } from "react";
import { Anchor, Badge, Button, Group, Modal, Select, Stack, Text, TextInput } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useParams } from "react-router-dom";
import { api, listAll } from "../api/client";
import { useSubmit } from "../api/errors";
import type { Member, User, Workspace } from "../api/types";
import { useMe, usePermissions } from "../app/session";
import {
  DataTable,
  DeleteButton,
  ErrorAlert,
  fmtDate,
  FormActions,
  FormError,
  NameFields,
  PageHeader,
} from "../components/common";
import { res } from "../perm/policy";

function WorkspaceForm({
  initial,
  opened,
  onClose,
  readOnly,
}: {
  initial: Workspace | null;
  opened: boolean;
  onClose: () => void;
  readOnly?: boolean;
}) {
  const [name, setName] = useState(initial?.name ?? "");
  const [description, setDescription] = useState(initial?.description ?? "");
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(async () => {
    const body = { name, description };
    if (initial) await api("PATCH", `/workspaces/${initial.id}`, body);
    else await api("POST", "/workspaces", body);
    qc.invalidateQueries({ queryKey: ["workspaces"] });
    onClose();
  }, (f) => f === "name" || f === "description");
  return (
    <Modal opened={opened} onClose={onClose} title={initial ? `Workspace ${initial.name}` : "New workspace"}>
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
          <FormActions readOnly={readOnly} busy={busy} creating={!initial} onClose={onClose} />
        </Stack>
      </form>
    </Modal>
  );
}

export function Workspaces() {
  const q = useQuery({ queryKey: ["workspaces"], queryFn: () => listAll<Workspace>("/workspaces") });
  const { can } = usePermissions();
  const [editing, setEditing] = useState<Workspace | null | "new">(null);
  const canCreate = can("workspace:create", "workspace:*");
  return (
    <>
      <PageHeader title="Workspaces">
        {canCreate && <Button onClick={() => setEditing("new")}>New workspace</Button>}
      </PageHeader>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Workspaces"
        loading={q.isLoading}
        rows={q.data}
        rowKey={(w) => w.id}
        columns={[
          {
            label: "Name",
            render: (w) => (
              <Anchor component={Link} to={`/workspaces/${w.id}`}>
                {w.name}
              </Anchor>
            ),
          },
          { label: "Description", render: (w) => w.description || "—", hideOnMobile: true },
          { label: "Created", render: (w) => fmtDate(w.createdAt), hideOnMobile: true },
        ]}
        actions={(w) => (
          <>
            {can("workspace:update", res.ws(w.name)) && (
              <Button size="xs" variant="subtle" onClick={() => setEditing(w)} aria-label={`Edit ${w.name}`}>
                Edit
              </Button>
            )}
            {can("workspace:delete", res.ws(w.name)) && (
              <DeleteButton
                what={`workspace ${w.name}`}
                run={() => api("DELETE", `/workspaces/${w.id}`)}
                invalidate={[["workspaces"]]}
              />
            )}
          </>
        )}
      />
      {editing && (
        <WorkspaceForm
          key={editing === "new" ? "new" : editing.id}
          opened
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
        />
      )}
    </>
  );
}

function AddMember({ ws, onDone }: { ws: Workspace; onDone: () => void }) {
  const users = useQuery({ queryKey: ["users"], queryFn: () => listAll<User>("/users"), retry: false });
  const [userId, setUserId] = useState<string | null>(null);
  const [username, setUsername] = useState("");
  const [role, setRole] = useState<string>("MEMBER");
  const { errs, busy, submit } = useSubmit(async () => {
    await api("POST", `/workspaces/${ws.id}/members`, { userId: userId ?? username, role });
    onDone();
  }, (f) => f === "userId" || f === "role");
  return (
    <form onSubmit={submit} noValidate>
      <Stack>
        <FormError message={errs.general} />
        {users.isSuccess ? (
          <Select
            label="User"
            searchable
            data={users.data.map((u) => ({ value: u.id, label: u.username }))}
            value={userId}
            onChange={setUserId}
            error={errs.at("userId")}
            required
          />
        ) : (
          <TextInput
            label="User id"
            description="You may not list users: enter the id."
            value={username}
            onChange={(e) => setUsername(e.currentTarget.value)}
            error={errs.at("userId")}
            required
          />
        )}
        <Select
          label="Role"
          data={["MEMBER", "OWNER"]}
          value={role}
          onChange={(v) => setRole(v ?? "MEMBER")}
          error={errs.at("role")}
          allowDeselect={false}
        />
        <Group justify="flex-end">
          <Button type="submit" loading={busy}>
            Add
          </Button>
        </Group>
      </Stack>
    </form>
  );
}

/** A workspace: its members (OWNER or MEMBER). */
export function WorkspaceDetail() {
  const { id } = useParams();
  const me = useMe();
  const qc = useQueryClient();
  const { can } = usePermissions();
  const ws = useQuery({ queryKey: ["workspace", id], queryFn: () => api<Workspace>("GET", `/workspaces/${id}`) });
  const members = useQuery({
    queryKey: ["members", id],
    queryFn: () => listAll<Member>(`/workspaces/${id}/members`),
  });
  const [adding, setAdding] = useState(false);
  const [err, setErr] = useState<unknown>(null);
  const name = ws.data?.name ?? "";
  const iAmOwner = !!members.data?.some((m) => m.userId === me.data?.id && m.role === "OWNER");
  const accessAll = can("workspace:access-all", res.ws(name));
  const ownerOk = iAmOwner || accessAll;
  const setRole = async (m: Member, role: string) => {
    setErr(null);
    try {
      await api("PATCH", `/workspaces/${id}/members/${m.userId}`, { role });
      qc.invalidateQueries({ queryKey: ["members", id] });
    } catch (e) {
      setErr(e);
    }
  };
  return (
    <>
      <PageHeader title={ws.data ? `Workspace ${ws.data.name}` : "Workspace"}>
        <Button variant="default" component={Link} to="/workspaces">
          All workspaces
        </Button>
      </PageHeader>
      <ErrorAlert error={ws.error} />
      {ws.data?.description && <Text mb="md">{ws.data.description}</Text>}
      <Group justify="space-between" mb="xs">
        <Text fw={600} size="lg" component="h2">
          Members
        </Text>
        {ownerOk && can("workspace-member:create", res.member(name)) && (
          <Button size="sm" onClick={() => setAdding(true)}>
            Add member
          </Button>
        )}
      </Group>
      <ErrorAlert error={err ?? members.error} />
      <DataTable
        label="Members"
        loading={members.isLoading}
        rows={members.data}
        rowKey={(m) => m.userId}
        columns={[
          { label: "User", render: (m) => m.username },
          {
            label: "Role",
            render: (m) =>
              ownerOk && can("workspace-member:update", res.member(name, m.username)) ? (
                <Select
                  aria-label={`Role of ${m.username}`}
                  data={["OWNER", "MEMBER"]}
                  value={m.role}
                  onChange={(v) => v && v !== m.role && setRole(m, v)}
                  allowDeselect={false}
                  w={130}
                  size="xs"
                />
              ) : (
                <Badge variant="light">{m.role}</Badge>
              ),
          },
          { label: "Since", render: (m) => fmtDate(m.createdAt), hideOnMobile: true },
        ]}
        actions={(m) =>
          (ownerOk || m.userId === me.data?.id) &&
          can("workspace-member:delete", res.member(name, m.username)) ? (
            <DeleteButton
              label={m.userId === me.data?.id ? "Leave" : "Remove"}
              what={m.userId === me.data?.id ? "the workspace" : m.username}
              run={() => api("DELETE", `/workspaces/${id}/members/${m.userId}`)}
              invalidate={[["members", id!], ["workspaces"]]}
            />
          ) : null
        }
      />
      <Modal opened={adding} onClose={() => setAdding(false)} title="Add a member">
        {ws.data && (
          <AddMember
            ws={ws.data}
            onDone={() => {
              setAdding(false);
              qc.invalidateQueries({ queryKey: ["members", id] });
            }}
          />
        )}
      </Modal>
    </>
  );
}
