import { Suspense } from "react";
import {
  ActionIcon,
  AppShell,
  Avatar,
  Burger,
  Group,
  Menu,
  NavLink,
  Select,
  Text,
  UnstyledButton,
  useComputedColorScheme,
  useMantineColorScheme,
} from "@mantine/core";
import { useDisclosure } from "@mantine/hooks";
import { useQueryClient } from "@tanstack/react-query";
import { Link, Outlet, useLocation, useNavigate } from "react-router-dom";
import { api, clearToken } from "../api/client";
import { PageLoader } from "./PageLoader";
import { useMe, usePermissions, useSelection } from "./session";
import { res } from "../perm/policy";

const LINKS: [string, string][] = [
  ["/setup", "Getting started"],
  ["/workspaces", "Workspaces"],
  ["/environments", "Environments"],
  ["/connections", "AI connections"],
  ["/resources", "AI resources"],
  ["/api-keys", "API keys"],
  ["/playground", "Chat playground"],
  ["/batches", "Batches"],
  ["/pools", "Prioritization"],
  ["/usage", "Usage and audit"],
  ["/prices", "Prices"],
  ["/activity", "Activity log"],
  ["/users", "Users"],
  ["/roles", "Roles"],
  ["/dataplanes", "Data planes"],
];

export function ThemeToggle() {
  const { setColorScheme } = useMantineColorScheme();
  const scheme = useComputedColorScheme("light");
  const next = scheme === "dark" ? "light" : "dark";
  return (
    <ActionIcon
      variant="default"
      size="lg"
      onClick={() => setColorScheme(next)}
      aria-label={`Switch to the ${next} theme`}
      data-testid="theme-toggle"
    >
      <span aria-hidden="true">{scheme === "dark" ? "☀" : "☾"}</span>
    </ActionIcon>
  );
}

function Selectors() {
  const s = useSelection();
  return (
    <Group gap="xs" wrap="nowrap">
      <Select
        aria-label="Workspace"
        placeholder={s.loading ? "Loading…" : "No workspace"}
        data={s.workspaces.map((w) => ({ value: w.id, label: w.name }))}
        value={s.ws?.id ?? null}
        onChange={(v) => s.setWs(v)}
        allowDeselect={false}
        w={{ base: 112, sm: 180 }}
        size="sm"
        comboboxProps={{ withinPortal: true }}
        data-testid="ws-select"
      />
      <Select
        aria-label="Environment"
        placeholder={s.ws ? "No environment" : "—"}
        data={s.environments.map((e) => ({ value: e.id, label: e.name }))}
        value={s.env?.id ?? null}
        onChange={(v) => s.setEnv(v)}
        allowDeselect={false}
        w={{ base: 104, sm: 160 }}
        size="sm"
        data-testid="env-select"
      />
    </Group>
  );
}

export function Shell() {
  const [opened, { toggle, close }] = useDisclosure();
  const loc = useLocation();
  const nav = useNavigate();
  const me = useMe();
  const sel = useSelection();
  const { can } = usePermissions();
  // the activity log: hidden from who may list neither all of it nor the workspace's
  const showActivity =
    can("activity:list", "activity:*") ||
    (!!sel.ws && can("workspace-activity:list", `${res.ws(sel.ws.name)}:activity:*`));
  const qc = useQueryClient();
  const signOut = async () => {
    try {
      await api("POST", "/auth/logout");
    } catch {
      /* the session may be gone already */
    }
    clearToken();
    qc.clear();
    nav("/signin", { replace: true });
  };
  return (
    <AppShell
      header={{ height: 60 }}
      navbar={{ width: 220, breakpoint: "sm", collapsed: { mobile: !opened } }}
      padding="md"
    >
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <AppShell.Header>
        <Group h="100%" px={{ base: "xs", sm: "md" }} justify="space-between" wrap="nowrap" gap={6}>
          <Group gap="xs" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label="Navigation" />
            <Text fw={700} visibleFrom="xs">
              VM-X
            </Text>
          </Group>
          <Selectors />
          <Group gap={6} wrap="nowrap">
            <ThemeToggle />
            <Menu position="bottom-end">
              <Menu.Target>
                <UnstyledButton aria-label="Account menu" data-testid="account-menu">
                  <Text size="sm" fw={500} truncate maw={120} visibleFrom="sm">
                    {me.data?.username ?? "…"}
                  </Text>
                  <Avatar size={32} color="indigo" hiddenFrom="sm" aria-hidden="true">
                    {(me.data?.username ?? "?").slice(0, 2).toUpperCase()}
                  </Avatar>
                </UnstyledButton>
              </Menu.Target>
              <Menu.Dropdown>
                <Menu.Item component={Link} to="/profile">
                  Profile
                </Menu.Item>
                <Menu.Item component={Link} to="/password">
                  Change password
                </Menu.Item>
                <Menu.Divider />
                <Menu.Item onClick={signOut}>Sign out</Menu.Item>
              </Menu.Dropdown>
            </Menu>
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="xs" aria-label="Main">
        <nav>
          {LINKS.filter(([to]) => to !== "/activity" || showActivity).map(([to, label]) => (
            <NavLink
              key={to}
              component={Link}
              to={to}
              label={label}
              active={loc.pathname === to || loc.pathname.startsWith(to + "/")}
              onClick={close}
            />
          ))}
        </nav>
      </AppShell.Navbar>
      <AppShell.Main id="main">
        <Suspense fallback={<PageLoader />}>
          <Outlet />
        </Suspense>
      </AppShell.Main>
    </AppShell>
  );
}
