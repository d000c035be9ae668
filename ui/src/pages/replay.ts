// What the audit log hands to the chat playground: a stored request's messages.

export interface Message {
  role: string;
  content: string;
}

/** What another page may hand to the playground (router state). */
export interface PlaygroundState {
  messages?: Message[];
  resource?: string;
}

/** The chat messages of a stored request payload (an object or its JSON text), if any. */
export function requestMessages(request: unknown): Message[] | null {
  let r = request;
  if (typeof r === "string") {
    try {
      r = JSON.parse(r);
    } catch {
      return null;
    }
  }
  const ms = (r as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(ms)) return null;
  return ms.map((m: { role?: unknown; content?: unknown }) => ({
    role: typeof m?.role === "string" ? m.role : "user",
    content:
      typeof m?.content === "string"
        ? m.content
        : Array.isArray(m?.content)
          ? m.content.map((p: { text?: unknown }) => (typeof p?.text === "string" ? p.text : "")).join("")
          : "",
  }));
}

