"""A fake Anthropic provider (Messages API) for the integration tests.

POST /v1/messages with `x-api-key` and `anthropic-version`, answering `message` objects as JSON
or, with "stream": true, as server-sent events (message_start, content_block_start, ping,
content_block_delta, content_block_stop, message_delta, message_stop), with the real API's
headers (request-id, anthropic-ratelimit-*) and error envelope
{"type":"error","error":{"type":..,"message":..},"request_id":..}.

The request is checked the way the real API checks it (JSON object, model, max_tokens, messages
with user/assistant roles only, known content block types, tool_result blocks answering the
tool_use blocks of the previous assistant turn, tools with input_schema): a gateway's wrong
translation gets the real 400 invalid_request_error.

Behaviour by requested model name (or for every request with set_behavior()):

  fail-NNN       HTTP NNN with the real error type: 400 invalid_request_error,
                 401 authentication_error, 403 permission_error, 404 not_found_error,
                 413 request_too_large, 429 rate_limit_error (retry-after),
                 500 api_error, 529 overloaded_error
  stall          read the request and never answer
  reset          close the connection (TCP RST) without answering
  slow-N         wait N seconds (float) before answering
  slow-stream    stream with `stream_delay` seconds between events
  split-stream   each SSE event in several HTTP chunks and TCP writes, cut mid-line
  stream-cut     stream `cut_after` events, then drop the connection
  stream-error   stream two text deltas, then `event: error` (overloaded_error)
  stream-error-first   a 200 stream that is only the real API's overloaded error event:
                 `event: error` with {"type": "error", "error": {"type": "overloaded_error",
                 "message": "Overloaded"}} byte for byte
  tools          answer with a tool_use block for the request's first tool (streamed as
                 input_json_delta pieces); when the last user turn holds tool_result
                 blocks, answer with text "The tool answered: <result>"
  tools-text     like tools, with a text block before the tool_use block
  max-tokens     echo answer cut with stop_reason "max_tokens"
  stop-sequence  echo answer with stop_reason "stop_sequence" and the request's first stop
                 sequence (or "###")
  big-N          an answer of N characters
  fixture-NAME   t/fixtures/anthropic/NAME.json (NAME.sse when streamed) verbatim; NAME
                 error_NNN answers HTTP NNN
  anything else  an echo answer: "Hello from <model>! You said: <last user text>"

Wire shapes (t/fixtures/README.md): compact JSON without a final newline, "model" first in a
message; whole answers in chunked transfer encoding, errors with a Content-Length; in the
stream, most `data:` objects carry a run of spaces before their last "}" (the real service pads
them), and `ping` is `{"type": "ping"}` with a space.

The key is taken from `x-api-key` (what SPEC §3 has the gateway send) or, as the current API
and SDK do, `Authorization: Bearer <key>` (unless accept_bearer=False); req.info["auth_scheme"]
tells which ("x-api-key" or "bearer").  A missing or wrong key gives 401 first (api_key=None
accepts any key), then a missing `anthropic-version` gives 400.
"""
import json
import random
import time
import uuid

try:
    from .fake_base import (FakeServer, big_text, compact, fail_status, fixture_bytes,
                            http_date, rand_id, run_forever, split_events, words)
except ImportError:  # run as a script
    from fake_base import (FakeServer, big_text, compact, fail_status, fixture_bytes,
                           http_date, rand_id, run_forever, split_events, words)

ERRORS = {
    400: ("invalid_request_error", "The fake provider was asked to fail with 400."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified "
                              "resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed the rate limit for your organization "
                              "of 50 requests per minute. For details, refer to: "
                              "docs/en/api/rate-limits."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

# Values distinct from anything the gateway would compute, so that tests can tell whether
# the provider's limit headers were read (SPEC §3, discovered capacity).
RATELIMIT = {
    "requests-limit": "4000",
    "requests-remaining": "3999",
    "tokens-limit": "480000",
    "tokens-remaining": "479950",
    "input-tokens-limit": "400000",
    "input-tokens-remaining": "399950",
    "output-tokens-limit": "80000",
    "output-tokens-remaining": "80000",
}

BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking",
               "redacted_thinking", "search_result", "server_tool_use",
               "web_search_tool_result", "container_upload"}


def _content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for b in content:
            if isinstance(b, dict):
                if b.get("type") == "text":
                    out.append(b.get("text", ""))
                elif b.get("type") == "tool_result":
                    out.append(_content_text(b.get("content", "")))
        return " ".join(out)
    return ""


def _rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class FakeAnthropic(FakeServer):
    kind = "fake-anthropic"

    def __init__(self, api_key="sk-ant-fake-test-key", tls=None, host="127.0.0.1", port=0,
                 name="anthropic", require_version=True, accept_bearer=True):
        """api_key: the key to accept (None: any).  tls: None, or (cert, key).
        accept_bearer: like the current API, also take the key as `Authorization: Bearer`
        (which the SDK sends); False accepts `x-api-key` only."""
        super().__init__(tls=tls, host=host, port=port, name=name)
        self.accept_bearer = accept_bearer
        self.api_key = api_key
        self.require_version = require_version
        self.retry_after = "1"
        self.organization_id = str(uuid.UUID(int=0x5eed_0000_0000_4000_8000_0000_0000_0001))

    @property
    def url(self):
        """Base URL as a connection's config.baseUrl (the SDK's baseURL): no /v1."""
        return self.origin

    def message_requests(self):
        with self._cond:
            return [r for r in self.requests if r.route.endswith("/v1/messages")]

    # ---------------------------------------------------------------- headers and errors
    def _headers(self, ctype, request_id):
        now = time.time()
        reset = _rfc3339(now + 1)
        h = [("Date", http_date(now)), ("Content-Type", ctype)]
        for k in ("input-tokens", "output-tokens", "requests", "tokens"):
            h.append((f"anthropic-ratelimit-{k}-limit", RATELIMIT[f"{k}-limit"]))
            h.append((f"anthropic-ratelimit-{k}-remaining", RATELIMIT[f"{k}-remaining"]))
            h.append((f"anthropic-ratelimit-{k}-reset", reset))
        h += [("request-id", request_id),
              ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
              ("anthropic-organization-id", self.organization_id),
              ("x-envoy-upstream-service-time", str(random.randint(300, 3000))),
              ("via", "1.1 google"),
              ("cf-cache-status", "DYNAMIC"),
              ("X-Robots-Tag", "none"),
              ("Server", "cloudflare"),
              ("CF-RAY", rand_id("", 16, "0123456789abcdef") + "-SJC")]
        return h

    async def _error(self, writer, req, status, type_=None, message=None):
        t, m = ERRORS.get(status, ("api_error", f"Fake provider error {status}"))
        rid = rand_id("req_011C", 20)
        body = {"type": "error", "error": {"type": type_ or t, "message": message or m},
                "request_id": rid}
        hdrs = self._headers("application/json", rid)
        if status == 429:
            hdrs = [(k, "0" if k == "anthropic-ratelimit-requests-remaining" else v)
                    for k, v in hdrs]
            hdrs.append(("retry-after", self.retry_after))
        hdrs.append(("x-should-retry", "true" if status in (408, 409, 429) or status >= 500
                     else "false"))
        return await self.send(writer, req, status, compact(body), hdrs)

    # ---------------------------------------------------------------- request checks
    def _check(self, body):
        """The real API's validation, in its words; returns an error message or None."""
        if not isinstance(body, dict):
            return "There was an issue with your request body. Request body must be a JSON object."
        for k in ("model", "max_tokens", "messages"):
            if k not in body:
                return f"{k}: Field required"
        if not isinstance(body["model"], str):
            return "model: Input should be a valid string"
        if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool):
            return "max_tokens: Input should be a valid integer"
        if body["max_tokens"] < 1:
            return "max_tokens: Input should be greater than or equal to 1"
        msgs = body["messages"]
        if not isinstance(msgs, list):
            return "messages: Input should be a valid list"
        if "system" in body and not isinstance(body["system"], (str, list)):
            return "system: Input should be a valid string"
        prev_tool_ids = set()
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                return f"messages.{i}: Input should be a valid dictionary"
            role = m.get("role")
            if role not in ("user", "assistant"):
                if role == "system":
                    return ('messages: Unexpected role "system". The Messages API accepts a '
                            'top-level `system` parameter, not "system" as an input message '
                            'role.')
                return f"messages.{i}.role: Input should be 'user' or 'assistant'"
            content = m.get("content")
            if content is None:
                return f"messages.{i}.content: Field required"
            blocks = content if isinstance(content, list) else None
            if blocks is None and not isinstance(content, str):
                return f"messages.{i}.content: Input should be a valid list"
            results = []
            uses = []
            for j, b in enumerate(blocks or []):
                if not isinstance(b, dict) or b.get("type") not in BLOCK_TYPES:
                    t = b.get("type") if isinstance(b, dict) else None
                    return (f"messages.{i}.content.{j}: Input tag '{t}' found using 'type' "
                            "does not match any of the expected tags: " +
                            ", ".join(f"'{x}'" for x in sorted(BLOCK_TYPES)))
                t = b["type"]
                if t == "text" and not isinstance(b.get("text"), str):
                    return f"messages.{i}.content.{j}.text.text: Field required"
                if t == "tool_use":
                    if role != "assistant":
                        return (f"messages.{i}.content.{j}: tool_use blocks can only be in "
                                "`assistant` messages")
                    for k in ("id", "name", "input"):
                        if k not in b:
                            return f"messages.{i}.content.{j}.tool_use.{k}: Field required"
                    uses.append(b["id"])
                if t == "tool_result":
                    if role != "user":
                        return (f"messages.{i}.content.{j}: tool_result blocks can only be in "
                                "`user` messages")
                    if "tool_use_id" not in b:
                        return f"messages.{i}.content.{j}.tool_result.tool_use_id: Field required"
                    results.append(b["tool_use_id"])
            for tid in results:
                if tid not in prev_tool_ids:
                    return (f"messages.{i}.content.0: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {tid}. Each `tool_result` block must have "
                            "a corresponding `tool_use` block in the previous message.")
            if prev_tool_ids and not set(prev_tool_ids) <= set(results):
                missing = ", ".join(sorted(set(prev_tool_ids) - set(results)))
                return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {missing}. Each `tool_use` block must have a "
                        "corresponding `tool_result` block in the next message.")
            prev_tool_ids = set(uses)
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                return "tools: Input should be a valid list"
            for i, t in enumerate(tools):
                if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                    return f"tools.{i}.custom.name: Field required"
                if "type" not in t or t.get("type") == "custom":
                    if not isinstance(t.get("input_schema"), dict):
                        return f"tools.{i}.custom.input_schema: Field required"
        tc = body.get("tool_choice")
        if tc is not None:
            if not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "tool", "none"):
                return ("tool_choice: Input tag found using 'type' does not match any of the "
                        "expected tags: 'auto', 'any', 'tool', 'none'")
            if tc["type"] == "tool" and not isinstance(tc.get("name"), str):
                return "tool_choice.tool.name: Field required"
        return None

    # ---------------------------------------------------------------- dispatch
    async def handle(self, req, writer):
        route = req.route
        if route != "/v1/messages" and not route.endswith("/v1/messages"):
            return await self._error(writer, req, 404, "not_found_error", "Not Found")
        if req.method != "POST":
            return await self._error(writer, req, 405, "invalid_request_error",
                                     f"Method Not Allowed: {req.method}")
        key = req.headers.get("x-api-key")
        bearer = req.headers.get("authorization", "")
        if key is not None:
            req.info["auth_scheme"] = "x-api-key"
        elif bearer.startswith("Bearer ") and self.accept_bearer:
            req.info["auth_scheme"] = "bearer"
            key = bearer[7:]
        if self.api_key is not None and key != self.api_key:
            return await self._error(writer, req, 401, "authentication_error",
                                     "x-api-key header is required" if key is None
                                     else "invalid x-api-key"
                                     if req.info.get("auth_scheme") == "x-api-key"
                                     else "Invalid bearer token")
        if self.require_version and not req.headers.get("anthropic-version"):
            return await self._error(writer, req, 400, "invalid_request_error",
                                     "anthropic-version: header is required")
        if req.body is None and req.raw_body:
            return await self._error(writer, req, 400, "invalid_request_error",
                                     "There was an issue with your request body. Request body "
                                     "is not valid JSON.")
        problem = self._check(req.body)
        if problem:
            return await self._error(writer, req, 400, "invalid_request_error", problem)
        body = req.body
        model = body["model"]
        behavior = self.behavior or model
        req.info["model"] = model
        req.info["behavior"] = behavior

        if behavior.startswith("fail-"):
            return await self._error(writer, req, fail_status(behavior))
        if behavior.startswith("fixture-"):
            return await self._fixture(writer, req, behavior[8:], bool(body.get("stream")))
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        plan = self._plan(body, model, behavior)
        if body.get("stream"):
            return await self._stream(writer, req, body, model, behavior, plan)
        rid = rand_id("req_011C", 20)
        return await self.send_chunked(writer, req, 200,
                                       compact(self._message(body, model, plan)),
                                       self._headers("application/json", rid))

    async def _fixture(self, writer, req, name, stream):
        """t/fixtures/anthropic/<name> verbatim, with the real headers."""
        rid = rand_id("req_011C", 20)
        if name.startswith("error_"):
            status = int(name[6:9])
            hdrs = self._headers("application/json", rid)
            if status == 429:
                hdrs.append(("retry-after", self.retry_after))
            hdrs.append(("x-should-retry", "true" if status in (408, 409, 429) or status >= 500
                         else "false"))
            return await self.send(writer, req, status,
                                   fixture_bytes("anthropic", name + ".json"), hdrs)
        if stream:
            hdrs = self._headers("text/event-stream; charset=utf-8", rid)
            hdrs.append(("Cache-Control", "no-cache"))
            return await self.stream(writer, req, 200, hdrs,
                                     split_events(fixture_bytes("anthropic", name + ".sse")))
        return await self.send_chunked(writer, req, 200,
                                       fixture_bytes("anthropic", name + ".json"),
                                       self._headers("application/json", rid))

    # ---------------------------------------------------------------- answers
    def _prompt_tokens(self, body):
        n = len(_content_text(body.get("system")).split()) if body.get("system") else 0
        for m in body.get("messages") or []:
            n += 4 + len(_content_text(m.get("content")).split())
        return n + 3

    def _tool_use(self, body):
        tools = body.get("tools") or []
        tool = {"name": "get_weather", "input_schema": {}}
        tc = body.get("tool_choice") or {}
        for t in tools:
            if isinstance(t, dict) and (tc.get("type") != "tool" or t.get("name") == tc.get("name")):
                tool = t
                break
        props = (tool.get("input_schema") or {}).get("properties") or {}
        args = {}
        for k, v in props.items():
            t = v.get("type") if isinstance(v, dict) else "string"
            args[k] = {"number": 1, "integer": 1, "boolean": True}.get(t, "Paris")
        return {"type": "tool_use", "id": rand_id("toolu_01", 22), "name": tool.get("name"),
                "input": args}

    def _plan(self, body, model, behavior):
        """What to answer: (blocks, stop_reason, stop_sequence); blocks of the message."""
        msgs = body["messages"]
        tools_mode = behavior in ("tools", "tools-text")
        last = msgs[-1] if msgs else {}
        last_results = [b for b in (last.get("content") if isinstance(last.get("content"), list)
                                    else []) if isinstance(b, dict)
                        and b.get("type") == "tool_result"]
        if tools_mode and not last_results:
            blocks = []
            if behavior == "tools-text":
                blocks.append({"type": "text", "text": "Let me check that for you."})
            blocks.append(self._tool_use(body))
            return blocks, "tool_use", None
        if tools_mode:
            text = "The tool answered: " + _content_text(last_results[-1].get("content", ""))
        elif behavior.startswith("big-"):
            text = big_text(behavior)
        else:
            last_user = ""
            for m in msgs:
                if m.get("role") == "user":
                    last_user = _content_text(m.get("content"))
            text = f"Hello from {model}! You said: {last_user}"
        if behavior == "max-tokens":
            return [{"type": "text", "text": "".join(words(text)[:2])}], "max_tokens", None
        if behavior == "stop-sequence":
            seq = (body.get("stop_sequences") or ["###"])[0]
            return [{"type": "text", "text": text}], "stop_sequence", seq
        return [{"type": "text", "text": text}], "end_turn", None

    @staticmethod
    def _output_tokens(blocks):
        n = 0
        for b in blocks:
            n += len(words(b["text"])) if b["type"] == "text" else 12
        return n

    def _usage(self, body, output_tokens):
        return {"input_tokens": self._prompt_tokens(body),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0,
                                   "ephemeral_1h_input_tokens": 0},
                "output_tokens": output_tokens,
                "service_tier": "standard"}

    def _message(self, body, model, plan):
        blocks, stop, seq = plan
        return {"model": model, "id": rand_id("msg_01", 22), "type": "message",
                "role": "assistant", "content": blocks, "stop_reason": stop,
                "stop_sequence": seq, "usage": self._usage(body, self._output_tokens(blocks))}

    @staticmethod
    def _sse(event, data):
        """One event; like the real service, pad the data object with 0 to 15 spaces before
        its last "}" (ping is spelled `{"type": "ping"}`)."""
        if event == "ping":
            return b'event: ping\ndata: {"type": "ping"}\n\n'
        d = compact(data)
        pad = random.randint(0, 15)
        if pad and event != "message_delta":
            d = d[:-1] + b" " * pad + b"}"
        return b"event: " + event.encode() + b"\ndata: " + d + b"\n\n"

    def _events(self, body, model, behavior, plan):
        blocks, stop, seq = plan
        msg = self._message(body, model, ([], None, None))
        msg["usage"]["output_tokens"] = 1
        ev = [self._sse("message_start", {"type": "message_start", "message": msg})]
        deltas = 0
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                ev.append(self._sse("content_block_start", {
                    "type": "content_block_start", "index": i,
                    "content_block": {"type": "text", "text": ""}}))
                if i == 0:
                    ev.append(self._sse("ping", {"type": "ping"}))
                for w in words(b["text"]):
                    if behavior == "stream-error" and deltas == 2:
                        ev.append(self._sse("error", {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                            "request_id": rand_id("req_011C", 20)}))
                        return ev
                    ev.append(self._sse("content_block_delta", {
                        "type": "content_block_delta", "index": i,
                        "delta": {"type": "text_delta", "text": w}}))
                    deltas += 1
            else:
                ev.append(self._sse("content_block_start", {
                    "type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"],
                                      "input": {}}}))
                if i == 0:
                    ev.append(self._sse("ping", {"type": "ping"}))
                args = json.dumps(b["input"], separators=(",", ":"))
                pieces = [""] + [args[k:k + 7] for k in range(0, len(args), 7)]
                for p in pieces:
                    ev.append(self._sse("content_block_delta", {
                        "type": "content_block_delta", "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": p}}))
            ev.append(self._sse("content_block_stop", {"type": "content_block_stop",
                                                       "index": i}))
        u = self._usage(body, 0)
        ev.append(self._sse("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": seq},
            "usage": {"input_tokens": u["input_tokens"], "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0,
                      "output_tokens": self._output_tokens(blocks)}}))
        ev.append(self._sse("message_stop", {"type": "message_stop"}))
        return ev

    async def _stream(self, writer, req, body, model, behavior, plan):
        events = self._events(body, model, behavior, plan)
        if behavior == "stream-error-first":
            events = [b'event: error\ndata: {"type": "error", "error": {"type": '
                      b'"overloaded_error", "message": "Overloaded"}}\n\n']
        hdrs = self._headers("text/event-stream; charset=utf-8", rand_id("req_011C", 20))
        hdrs.append(("Cache-Control", "no-cache"))
        return await self.stream(writer, req, 200, hdrs, events, behavior)


if __name__ == "__main__":
    run_forever(FakeAnthropic)
