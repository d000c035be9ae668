import { createContext, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, getToken, listAll } from "../api/client";
import type { Environment, Policy, Role, User, Workspace } from "../api/types";
import { policiesAllow } from "../perm/policy";

export function useMe(enabled = true) {
  return useQuery({
    queryKey: ["me"],
    queryFn: () => api<User>("GET", "/auth/me"),
    enabled: enabled && !!getToken(),
    retry: false,
    staleTime: 30_000,
  });
}

/**
 * `can(action, resource)`: the caller's policies (its roles' from GET /roles)
 * evaluated client-side. Unknown (roles not readable, still loading): true, and
 * the API has the last word.
 */
export function usePermissions() {
  const me = useMe();
  const active = me.data?.state === "ACTIVE";
  const roles = useQuery({
    queryKey: ["roles"],
    queryFn: () => listAll<Role>("/roles"),
    enabled: active,
    retry: false,
    staleTime: 30_000,
  });
  return useMemo(() => {
    const names = new Set(me.data?.roles ?? []);
    const known = roles.isSuccess && me.isSuccess;
    const policies: Policy[] = known
      ? (roles.data ?? []).filter((r) => names.has(r.name)).map((r) => r.policy)
      : [];
    return {
      known,
      can: (action: string, resource: string) =>
        !known || policiesAllow(policies, action, resource),
    };
  }, [me.data, me.isSuccess, roles.data, roles.isSuccess]);
}

interface Selection {
  workspaces: Workspace[];
  environments: Environment[];
  ws: Workspace | null;
  env: Environment | null;
  loading: boolean;
  setWs: (id: string | null) => void;
  setEnv: (id: string | null) => void;
}

const SelectionCtx = createContext<Selection | null>(null);

/** The selected workspace and environment, kept in localStorage. */
export function SelectionProvider({ children }: { children: ReactNode }) {
  const me = useMe();
  const active = me.data?.state === "ACTIVE";
  const [wsId, setWsId] = useState<string | null>(() => localStorage.getItem("vmx.ws"));
  const [envId, setEnvId] = useState<string | null>(() => localStorage.getItem("vmx.env"));
  const wsq = useQuery({
    queryKey: ["workspaces"],
    queryFn: () => listAll<Workspace>("/workspaces"),
    enabled: active,
  });
  const ws = wsq.data?.find((w) => w.id === wsId) ?? wsq.data?.[0] ?? null;
  const envq = useQuery({
    queryKey: ["environments", ws?.id],
    queryFn: () => listAll<Environment>(`/workspaces/${ws!.id}/environments`),
    enabled: active && !!ws,
  });
  const env = envq.data?.find((e) => e.id === envId) ?? envq.data?.[0] ?? null;
  const qc = useQueryClient();
  // only an explicit choice is kept: a choice not (yet) in a list being
  // refetched shows the first entry meanwhile, and is not overwritten by it
  useEffect(() => {
    if (wsId) localStorage.setItem("vmx.ws", wsId);
    if (envId) localStorage.setItem("vmx.env", envId);
  }, [wsId, envId]);
  const value: Selection = {
    workspaces: wsq.data ?? [],
    environments: envq.data ?? [],
    ws,
    env,
    loading: wsq.isLoading || envq.isLoading,
    setWs: (id) => {
      setWsId(id);
      setEnvId(null);
      qc.invalidateQueries({ queryKey: ["environments"] });
    },
    setEnv: setEnvId,
  };
  return <SelectionCtx.Provider value={value}>{children}</SelectionCtx.Provider>;
}

export function useSelection(): Selection {
  const s = useContext(SelectionCtx);
  if (!s) throw new Error("no SelectionProvider");
  return s;
}

/** `/workspaces/{ws}/environments/{env}` of the selection, or null */
export function useEnvPath(): string | null {
  const { ws, env } = useSelection();
  return ws && env ? `/workspaces/${ws.id}/environments/${env.id}` : null;
}
