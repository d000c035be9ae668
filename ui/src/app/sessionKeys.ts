// API keys created or rotated in this tab, for the playground: the API shows
// a key once, so the UI keeps it in memory only (never in storage), and it is
// gone when the tab is reloaded or closed.
import { useSyncExternalStore } from "react";

export interface SessionKey {
  name: string;
  key: string;
}

let keys: SessionKey[] = [];
const subs = new Set<() => void>();

export function rememberKey(name: string, key: string | undefined | null) {
  if (!key) return;
  keys = [{ name, key }, ...keys.filter((k) => k.key !== key)];
  subs.forEach((f) => f());
}

export function useSessionKeys(): SessionKey[] {
  return useSyncExternalStore(
    (f) => {
      subs.add(f);
      return () => subs.delete(f);
    },
    () => keys,
  );
}
