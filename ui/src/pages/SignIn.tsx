import { useEffect, useState } from "react";
import {
  Alert,
  Button,
  Center,
  Divider,
  Group,
  Paper,
  PasswordInput,
  Stack,
  Text,
  TextInput,
  Title,
} from "@mantine/core";
import { useQueryClient } from "@tanstack/react-query";
import { Navigate, useLocation, useNavigate } from "react-router-dom";
import { api, ApiError, getToken, probeOidc, setToken } from "../api/client";
import { fieldsOf, useSubmit } from "../api/errors";
import type { User } from "../api/types";
import { ThemeToggle } from "../app/Shell";

export function SignIn() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [oidc, setOidc] = useState(false);
  const nav = useNavigate();
  const loc = useLocation();
  const qc = useQueryClient();
  const { errs, busy, submit } = useSubmit(
    async () => {
      const r = await api<{ token: string; expiresAt: string; user: User }>(
        "POST",
        "/auth/login",
        { username, password },
        { auth: false },
      );
      setToken(r.token, r.expiresAt);
      qc.clear();
      qc.setQueryData(["me"], r.user);
      const from = (loc.state as { from?: string } | null)?.from;
      nav(r.user.state === "CHANGE_PASSWORD" ? "/password" : from || "/", { replace: true });
    },
    fieldsOf("username", "password"),
    (err) => {
      if (!(err instanceof ApiError && err.status === 401)) return false;
      errs.setGeneral("Wrong username or password.");
      return true;
    },
  );

  useEffect(() => {
    let live = true;
    probeOidc().then((on) => live && setOidc(on));
    return () => {
      live = false;
    };
  }, []);

  if (getToken() && !busy) return <Navigate to="/" replace />;



  return (
    // anchored at the top, not centred: the SSO button appearing after the
    // probe adds below the form instead of moving it
    <Center p="md" pt={{ base: "xl", sm: "12vh" }} style={{ alignItems: "flex-start" }} mih="100vh" component="main">
      <Paper withBorder shadow="sm" p="xl" w="100%" maw={400} radius="md">
        <form onSubmit={submit} noValidate>
          <Stack>
            <Group justify="space-between">
              <Title order={1} size="h2">
                VM-X gateway
              </Title>
              <ThemeToggle />
            </Group>
            <Text c="dimmed" size="sm">
              Sign in to manage connections, resources and API keys.
            </Text>
            {errs.general && (
              <Alert color="red" role="alert" data-testid="signin-error">
                {errs.general}
              </Alert>
            )}
            <TextInput
              label="Username"
              name="username"
              autoComplete="username"
              value={username}
              onChange={(e) => setUsername(e.currentTarget.value)}
              error={errs.at("username")}
              required
              autoFocus
            />
            <PasswordInput
              label="Password"
              name="password"
              autoComplete="current-password"
              value={password}
              onChange={(e) => setPassword(e.currentTarget.value)}
              error={errs.at("password")}
              required
            />
            <Button type="submit" loading={busy} fullWidth>
              Sign in
            </Button>
            {oidc && (
              <>
                <Divider label="or" labelPosition="center" />
                <Button component="a" href="/api/v1/auth/oidc/login" variant="default" fullWidth>
                  Sign in with SSO
                </Button>
              </>
            )}
            <Text size="xs" c="dimmed">
              First start: user <b>admin</b>, with the
              password printed by the control plane or set by VMX_ADMIN_PASSWORD.
            </Text>
          </Stack>
        </form>
      </Paper>
    </Center>
  );
}
