// The management API client: bearer token, error envelope, 401 and
// password_change_required handling.
//
// The session token is kept in sessionStorage: it lives as long as the
// browser tab, is not shared with other tabs or left behind on disk once the
// tab is closed, and is never sent automatically (unlike a cookie, so no CSRF).
// Script injected into the page could read it from either storage; the UI
// renders no HTML from the API, which is React's default.

const TOKEN_KEY = "vmx.token";
const EXPIRES_KEY = "vmx.expiresAt";

export function getToken(): string | null {
  const t = sessionStorage.getItem(TOKEN_KEY);
  const exp = sessionStorage.getItem(EXPIRES_KEY);
  if (t && exp && Date.parse(exp) <= Date.now()) {
    clearToken();
    return null;
  }
  return t;
}

export function setToken(token: string, expiresAt?: string | null) {
  sessionStorage.setItem(TOKEN_KEY, token);
  if (expiresAt) sessionStorage.setItem(EXPIRES_KEY, expiresAt);
  else sessionStorage.removeItem(EXPIRES_KEY);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
}

/**
 * The OIDC callback ends on `<ui url>#token=...&expiresAt=...`: take the
 * token from the fragment, store it, and remove the fragment from the
 * address bar and the history entry. Returns true when a token was found.
 */
export function takeTokenFromFragment(loc: Location = window.location): boolean {
  if (!loc.hash || loc.hash.length < 2) return false;
  const params = new URLSearchParams(loc.hash.slice(1));
  const token = params.get("token");
  if (!token) return false;
  setToken(token, params.get("expiresAt"));
  window.history.replaceState(null, "", loc.pathname + loc.search);
  return true;
}

export interface ErrorDetails {
  field?: string;
  [k: string]: unknown;
}

export class ApiError extends Error {
  status: number;
  code: string;
  details: ErrorDetails;
  constructor(status: number, code: string, message: string, details?: ErrorDetails) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? {};
  }
  get field(): string | undefined {
    return typeof this.details.field === "string" ? this.details.field : undefined;
  }
}

type Listener = (e: ApiError) => void;
const listeners = new Set<Listener>();
/** Called for 401 (session gone) and 403 password_change_required. */
export function onAuthProblem(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export const API = "/api/v1";

// requests in flight, read by the end-to-end tests to know a page settled
const w = window as unknown as { __vmxInflight?: number };
w.__vmxInflight = 0;
async function tracked<T>(p: Promise<T>): Promise<T> {
  w.__vmxInflight = (w.__vmxInflight ?? 0) + 1;
  try {
    return await p;
  } finally {
    w.__vmxInflight! -= 1;
  }
}

export async function api<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  opts: { auth?: boolean } = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = getToken();
  if (opts.auth !== false && token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await tracked(
      fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      }),
    );
  } catch (e) {
    throw new ApiError(0, "network_error", "The gateway cannot be reached: " + String(e));
  }
  if (res.status === 204) return undefined as T;
  const text = await tracked(res.text());
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const env = (data as { error?: { code?: string; message?: string; details?: ErrorDetails } })
      ?.error;
    const err = new ApiError(
      res.status,
      env?.code ?? `http_${res.status}`,
      env?.message ?? (typeof data === "string" && data ? data : res.statusText || "request failed"),
      env?.details,
    );
    if (
      (res.status === 401 && opts.auth !== false) ||
      (res.status === 403 && err.code === "password_change_required")
    ) {
      listeners.forEach((l) => l(err));
    }
    throw err;
  }
  return data as T;
}

export interface List<T> {
  data: T[];
  total: number;
  pageIndex: number;
  pageSize: number;
}

/** Every page of a list (pageSize 1000). */
export async function listAll<T>(path: string): Promise<T[]> {
  const out: T[] = [];
  const sep = path.includes("?") ? "&" : "?";
  for (let page = 0; page < 100; page++) {
    const l = await api<List<T>>("GET", `${path}${sep}pageSize=1000&pageIndex=${page}`);
    out.push(...l.data);
    if (out.length >= l.total || l.data.length === 0) break;
  }
  return out;
}

/**
 * OIDC is on when its login route does not answer 404. Probed without
 * following the redirect (an opaqueredirect answer means on); the control
 * plane offers no cheaper signal.
 */
export async function probeOidc(): Promise<boolean> {
  try {
    const r = await tracked(
      fetch(API + "/auth/oidc/login", { redirect: "manual", credentials: "omit" }),
    );
    if (r.type === "opaqueredirect") return true;
    return r.status !== 404 && r.status !== 0;
  } catch {
    return false;
  }
}
