import { useEffect, useState } from "react";
import { Alert, Button, Center, Paper, PasswordInput, Stack, Text, TextInput, Title } from "@mantine/core";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useNavigate } from "react-router-dom";
import { api, listAll } from "../api/client";
import { useSubmit } from "../api/errors";
import type { User } from "../api/types";
import { useMe } from "../app/session";
import {
  DataTable,
  DeleteButton,
  ErrorAlert,
  fmtDate,
  FormError,
  PageHeader,
} from "../components/common";

interface Session {
  id: string;
  createdAt: string;
  lastSeenAt: string | null;
  expiresAt: string;
  fromAddress: string | null;
  current: boolean;
}

/** GET /auth/sessions: the caller's own sessions; any but the current one can be ended. */
function Sessions() {
  const q = useQuery({ queryKey: ["sessions"], queryFn: () => listAll<Session>("/auth/sessions") });
  return (
    <>
      <Title order={3} mt="xl" mb="sm">
        Your sessions
      </Title>
      <ErrorAlert error={q.error} />
      <DataTable
        label="Your sessions"
        loading={q.isLoading}
        rows={q.data}
        rowKey={(x) => x.id}
        columns={[
          { label: "Signed in", render: (x) => fmtDate(x.createdAt) + (x.current ? " (this one)" : "") },
          { label: "Last seen", render: (x) => fmtDate(x.lastSeenAt), hideOnMobile: true },
          { label: "From", render: (x) => x.fromAddress ?? "—", hideOnMobile: true },
          { label: "Expires", render: (x) => fmtDate(x.expiresAt), hideOnMobile: true },
        ]}
        actions={(x) =>
          x.current ? null : (
            <DeleteButton
              label="End"
              what={`the session of ${fmtDate(x.createdAt)}`}
              run={() => api("DELETE", `/auth/sessions/${x.id}`)}
              invalidate={[["sessions"]]}
            />
          )
        }
      />
    </>
  );
}

/** POST /auth/password; users in CHANGE_PASSWORD land here before anything else. */
export function PasswordChange() {
  const me = useMe();
  const [oldPassword, setOld] = useState("");
  const [newPassword, setNew] = useState("");
  const [again, setAgain] = useState("");
  const [done, setDone] = useState(false);
  const [mismatch, setMismatch] = useState(false);
  const qc = useQueryClient();
  const nav = useNavigate();
  const forced = me.data?.state === "CHANGE_PASSWORD";

  const { errs, busy, submit } = useSubmit(async () => {
    if (newPassword !== again) {
      setMismatch(true);
      return;
    }
    setMismatch(false);
    const u = await api<User>("POST", "/auth/password", { oldPassword, newPassword });
    qc.setQueryData(["me"], u);
    qc.invalidateQueries();
    setDone(true);
    setOld("");
    setNew("");
    setAgain("");
    if (forced) nav("/", { replace: true });
  }, (f) => f === "oldPassword" || f === "newPassword");

  const form = (
    <form onSubmit={submit} noValidate>
      <Stack maw={420}>
        {forced && (
          <Alert color="yellow" title="Choose a new password">
            Your password was set by an administrator: choose your own before going on.
          </Alert>
        )}
        {done && (
          <Alert color="green" role="status">
            Password changed. Your other sessions were ended.
          </Alert>
        )}
        <FormError message={errs.general} />
        <PasswordInput
          label="Current password"
          autoComplete="current-password"
          value={oldPassword}
          onChange={(e) => setOld(e.currentTarget.value)}
          error={errs.at("oldPassword")}
          required
        />
        <PasswordInput
          label="New password"
          description="At least 12 characters, not your username."
          autoComplete="new-password"
          value={newPassword}
          onChange={(e) => setNew(e.currentTarget.value)}
          error={errs.at("newPassword")}
          required
        />
        <PasswordInput
          label="New password again"
          autoComplete="new-password"
          value={again}
          onChange={(e) => setAgain(e.currentTarget.value)}
          error={mismatch ? "The two new passwords differ." : undefined}
          required
        />
        <Button type="submit" loading={busy}>
          Change password
        </Button>
      </Stack>
    </form>
  );
  if (forced) {
    return (
      <Center mih="100vh" p="md" component="main">
        <Paper withBorder p="xl" w="100%" maw={460}>
          <Title order={1} size="h2" mb="md">
            Change password
          </Title>
          {form}
        </Paper>
      </Center>
    );
  }
  return (
    <main style={{ padding: 16, maxWidth: 720, margin: "0 auto" }}>
      <PageHeader title="Change password">
        <Button variant="default" onClick={() => nav(-1)}>
          Back
        </Button>
      </PageHeader>
      {form}
    </main>
  );
}

/** PATCH /auth/me: the caller's name and email. */
export function Profile() {
  const me = useMe();
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [saved, setSaved] = useState(false);
  const qc = useQueryClient();
  useEffect(() => {
    if (me.data) {
      setName(me.data.name ?? "");
      setEmail(me.data.email ?? "");
    }
  }, [me.data]);
  const { errs, busy, submit } = useSubmit(async () => {
    setSaved(false);
    const u = await api<User>("PATCH", "/auth/me", { name, email });
    qc.setQueryData(["me"], u);
    setSaved(true);
  }, (f) => f === "name" || f === "email");
  return (
    <>
      <PageHeader title="Profile" />
      <form onSubmit={submit} noValidate>
        <Stack maw={480}>
          {saved && (
            <Alert color="green" role="status">
              Saved.
            </Alert>
          )}
          <FormError message={errs.general} />
          <TextInput label="Username" value={me.data?.username ?? ""} readOnly disabled />
          <TextInput
            label="Name"
            value={name}
            onChange={(e) => setName(e.currentTarget.value)}
            error={errs.at("name")}
          />
          <TextInput
            label="Email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.currentTarget.value)}
            error={errs.at("email")}
          />
          <Text size="sm" c="dimmed">
            Roles: {(me.data?.roles ?? []).join(", ") || "none"} · member since{" "}
            {fmtDate(me.data?.createdAt)}
          </Text>
          <Button type="submit" loading={busy} w="fit-content">
            Save
          </Button>
        </Stack>
      </form>
      <Sessions />
    </>
  );
}
