// Client-side evaluation of the caller's policies (SPEC §8, docs/ARCHITECTURE.md
// "Roles, policies and workspace membership"), to hide what the caller may not
// do. The control plane decides: this only spares the user buttons that would
// answer 403. Same rules as policy.c: globs anchored at both ends, `*` any run
// (`:` included), `?` one character; any applying deny refuses, else any
// applying allow allows, else refused.
import type { Policy, Statement } from "../api/types";

const cache = new Map<string, RegExp>();

export function globMatch(glob: string, s: string): boolean {
  let re = cache.get(glob);
  if (!re) {
    let src = "^";
    for (const ch of glob) {
      if (ch === "*") src += "[\\s\\S]*";
      else if (ch === "?") src += "[\\s\\S]";
      else src += ch.replace(/[.+^${}()|[\]\\/]/g, "\\$&");
    }
    re = new RegExp(src + "$", "u");
    cache.set(glob, re);
  }
  return re.test(s);
}

function applies(st: Statement, action: string, resource: string): boolean {
  return (
    st.actions.some((a) => globMatch(a, action)) &&
    st.resources.some((r) => globMatch(r, resource))
  );
}

export function policiesAllow(policies: Policy[], action: string, resource: string): boolean {
  let allowed = false;
  for (const p of policies) {
    for (const st of p.statements ?? []) {
      if (!applies(st, action, resource)) continue;
      if (st.effect === "deny") return false;
      if (st.effect === "allow") allowed = true;
    }
  }
  return allowed;
}

/**
 * A name as it appears in a resource string: `:` `*` `?` `%`, spaces and
 * bytes outside printable ASCII as %XX (of the UTF-8 bytes).
 */
export function escapeName(name: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(name)) {
    const c = String.fromCharCode(b);
    if (b <= 0x20 || b >= 0x7f || c === ":" || c === "*" || c === "?" || c === "%") {
      out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
    } else {
      out += c;
    }
  }
  return out;
}

/** Resource strings of the route table. */
export const res = {
  ws: (ws: string) => `workspace:${escapeName(ws)}`,
  env: (ws: string, env: string) => `workspace:${escapeName(ws)}:environment:${escapeName(env)}`,
  envObj: (ws: string, env: string, kind: string, name = "*") =>
    `${res.env(ws, env)}:${kind}:${name === "*" ? "*" : escapeName(name)}`,
  member: (ws: string, username = "*") =>
    `workspace:${escapeName(ws)}:member:${username === "*" ? "*" : escapeName(username)}`,
  user: (u = "*") => `user:${u === "*" ? "*" : escapeName(u)}`,
  role: (r = "*") => `role:${r === "*" ? "*" : escapeName(r)}`,
};
