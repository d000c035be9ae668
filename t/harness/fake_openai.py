"""A fake OpenAI-format provider for the integration tests.

Speaks OpenAI's chat-completions wire format (JSON and server-sent events),
over HTTP/1.1 with keep-alive, plain or TLS, on a loopback port.  The server
plumbing (asyncio loop in a background thread, request parsing and recording,
streaming) is fake_base.FakeServer's.

Behaviour is chosen by the requested model name, or for every request with
set_behavior():

  fail-NNN       answer HTTP NNN in OpenAI's error envelope (400, 401, 404,
                 429 with retry-after, 500, 503, ...)
  stall          read the request and never answer
  reset          close the connection (TCP RST) without answering
  slow-stream    stream with `stream_delay` seconds between events
  split-stream   write each SSE event in several TCP writes split mid-line
                 (and mid chunk-size line), with small sleeps
  stream-cut     stream a few events, then drop the connection
  stream-stall   stream a few events, then send nothing more
  stream-drip    stream a content chunk every 0.1 s, for STALL_SECONDS
  stream-error   stream the role chunk and two content chunks, then
                 `data: {"error": {...}}` (server_error) and close the stream
  stream-error-first   a 200 stream whose first event is `data: {"error": {...}}`
                 (rate_limit_exceeded)
  html-NNN       answer HTTP NNN with an HTML page (as a proxy in front of a provider)
  slow-N         wait N seconds (float) before answering
  chunked        a JSON answer in chunked transfer encoding, in several writes
  big-N          an answer of N characters (one SSE event of that size when streamed)
  tools          answer with tool_calls (tool_call deltas when streaming);
                 when the last message is a tool result, answer with text
  anything else  an "echo" answer: "Hello from <model>! You said: <last user text>"

  With `limit_requests` = N (a per-minute limit, None: none) every answer advertises
  `x-ratelimit-limit-requests: N` and the remaining count, and a chat request beyond N
  within the last 60 s is answered 429 and counted in `limited`.

  fixture-NAME   t/fixtures/openai/NAME.json (NAME.sse when streamed) verbatim, or
                 t/fixtures/groq/... on the Groq path; NAME error_NNN answers HTTP NNN

A wrong or missing `Authorization: Bearer <api_key>` gives 401 first.

POST .../embeddings (OpenAI's embeddings.create): `input` a string, an array of strings, of
token ids or of arrays of token ids; each input's vector is fake_base.embedding() of its text
(of its ids' JSON), `dimensions` values long (1536 by default), a list of floats or with
`encoding_format: "base64"` their little-endian float32 bytes in base64; usage counts the
words (the ids).  The model name chooses fail-NNN, stall, reset and slow-N as for chat.

Wire shapes (t/fixtures/README.md): OpenAI's whole answers are two-space indented JSON with a
final newline, in chunked transfer encoding; its errors indented without the newline, with a
Content-Length; stream chunks compact, with "service_tier" and "obfuscation".  Requests under
/openai/v1/ (Groq's base URL, https://api.groq.com/openai/v1) get Groq's shapes: compact JSON
with a final newline and a Content-Length, "x_groq" ({id, seed} on the first chunk, {id, usage}
on the last, which also carries "usage"), `text/event-stream` without a charset, and Groq's
headers.
"""
import asyncio
import base64
import json
import random
import struct
import time
import uuid

try:
    from .fake_base import (REASONS, STALL_SECONDS, FakeServer, Recorded,  # noqa: F401
                            big_text, compact, embedding, fail_status, fixture_bytes,
                            http_date, pretty, rand_id, run_forever, split_events, words)
except ImportError:  # run as a script
    from fake_base import (REASONS, STALL_SECONDS, FakeServer, Recorded,  # noqa: F401
                           big_text, compact, embedding, fail_status, fixture_bytes,
                           http_date, pretty, rand_id, run_forever, split_events, words)


def error_body(message, type_, code=None, param=None):
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


ERRORS = {
    400: ("Invalid value for 'messages': the fake provider was asked to fail with 400.",
          "invalid_request_error", "invalid_value"),
    401: ("Incorrect API key provided. You can find your API key in your account settings.",
          "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.",
          "invalid_request_error", "model_not_found"),
    422: ("Unprocessable entity", "invalid_request_error", None),
    429: ("Rate limit reached for requests on the fake provider. Please try again in 1s.",
          "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}

# Values distinct from anything the gateway would compute, so that tests can tell
# whether the provider's own limit headers leaked through.
RATELIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "30000",
    "x-ratelimit-limit-tokens": "150000000",
    "x-ratelimit-remaining-requests": "29999",
    "x-ratelimit-remaining-tokens": "149999950",
    "x-ratelimit-reset-requests": "2ms",
    "x-ratelimit-reset-tokens": "0s",
}

def _content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeOpenAI(FakeServer):
    kind = "fake-openai"
    split_offsets = (1, 3)

    def __init__(self, api_key="sk-fake-test-key", tls=None, host="127.0.0.1", port=0,
                 name="fake"):
        """tls: None, or (cert_file, key_file)."""
        super().__init__(tls=tls, host=host, port=port, name=name)
        self.api_key = api_key
        self.cut_after = 4               # events written before stream-cut / stream-stall
        self.retry_after = "1"
        self.chunked_json = False        # send non-streamed JSON answers chunked
        self.limit_requests = None       # advertised per-minute limit, enforced (module doc)
        self.limited = 0                 # 429s answered beyond it
        self._admitted = []              # times of the requests of the last minute

    # ---------------------------------------------------------------- control
    @property
    def url(self):
        """Base URL as a connection's config.baseUrl (with the /v1 prefix)."""
        return f"{self.origin}/v1"

    def chat_requests(self):
        with self._cond:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def embeddings_requests(self):
        with self._cond:
            return [r for r in self.requests if r.route.endswith("/embeddings")]

    # ---------------------------------------------------------------- HTTP
    @staticmethod
    def is_groq(req):
        """Requests under Groq's base URL path (/openai/v1) get Groq's shapes."""
        return req.route.startswith("/openai/")

    def _base_headers(self, ctype, groq=False):
        """The headers of the real service, in its order (Content-Length or
        Transfer-Encoding and Connection follow)."""
        rl = [(k, RATELIMIT_HEADERS[k]) for k in (
            "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
        if groq:
            return ([("Date", http_date()), ("Content-Type", ctype),
                     ("cache-control", "no-cache" if ctype.startswith("text/event-stream")
                      else "private, max-age=0, no-store, no-cache, must-revalidate"),
                     ("vary", "Origin"), ("x-groq-region", "us-east-1")] + rl +
                    [("x-request-id", rand_id("req_01", 24, "0123456789abcdefghjkmnpqrstvwxyz")),
                     ("via", "1.1 google"), ("alt-svc", 'h3=":443"; ma=86400'),
                     ("cf-cache-status", "DYNAMIC"), ("Server", "cloudflare"),
                     ("CF-RAY", rand_id("", 16, "0123456789abcdef") + "-IAD")])
        return ([("Date", http_date()), ("Content-Type", ctype),
                 ("access-control-expose-headers", "X-Request-ID"),
                 ("openai-organization", "user-fake"),
                 ("openai-processing-ms", str(random.randint(50, 400))),
                 ("openai-project", "proj_fake0000000000000000000"),
                 ("openai-version", "2020-10-01"),
                 ("x-envoy-upstream-service-time", str(random.randint(60, 450)))] + rl +
                [("x-request-id", rand_id("req_", 32, "0123456789abcdef")),
                 ("x-openai-proxy-wasm", "v0.1"), ("cf-cache-status", "DYNAMIC"),
                 ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
                 ("X-Content-Type-Options", "nosniff"), ("Server", "cloudflare"),
                 ("CF-RAY", rand_id("", 16, "0123456789abcdef") + "-SJC"),
                 ("alt-svc", 'h3=":443"; ma=86400')])

    def _admit(self):
        """False when a request now would exceed limit_requests in the last 60 s."""
        now = time.monotonic()
        with self._cond:
            self._admitted = [t for t in self._admitted if t > now - 60]
            if len(self._admitted) >= self.limit_requests:
                self.limited += 1
                return False
            self._admitted.append(now)
            return True

    def _headers(self, req, ctype, extra=()):
        if self.limit_requests is not None:
            remaining = max(0, self.limit_requests - len(self._admitted))
            extra = [("x-ratelimit-limit-requests", str(self.limit_requests)),
                     ("x-ratelimit-remaining-requests", str(remaining))] + [
                (k, v) for k, v in extra if k.lower() != "x-ratelimit-remaining-requests"]
        names = {k.lower() for k, _ in extra}
        return [h for h in self._base_headers(ctype, self.is_groq(req))
                if h[0].lower() not in names] + list(extra)

    async def _send(self, writer, req, status, obj, extra=(), error=False):
        """A whole answer in the real service's shape: OpenAI indents (successes with a final
        newline, chunked; errors without, with a Content-Length), Groq is compact with a final
        newline and a Content-Length."""
        if self.is_groq(req):
            return await self.send(writer, req, status, compact(obj) + b"\n",
                                   self._headers(req, "application/json", extra))
        hdrs = self._headers(req, "application/json", extra)
        if error:
            return await self.send(writer, req, status, pretty(obj), hdrs)
        return await self.send_chunked(writer, req, status, pretty(obj) + b"\n", hdrs)

    async def _send_error(self, writer, req, status, message=None, type_=None, code=None):
        m, t, c = ERRORS.get(status, (f"Fake provider error {status}", "server_error", None))
        extra = []
        if status == 429:
            extra = [("retry-after", self.retry_after), ("x-ratelimit-remaining-requests", "0")]
        return await self._send(writer, req, status,
                                error_body(message or m, type_ or t, code if code else c), extra,
                                error=True)

    async def handle(self, req, writer):
        if req.method == "GET" and req.path.endswith("/models"):
            if not self._authorized(req):
                return await self._send_error(writer, req, 401)
            return await self._send(writer, req, 200, {"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}]})
        embeddings = req.route.endswith("/embeddings")
        if not embeddings and not req.route.endswith("/chat/completions"):
            return await self._send_error(writer, req, 404,
                                          f"Invalid URL ({req.method} {req.path})",
                                          "invalid_request_error", None)
        if req.method != "POST":
            return await self._send_error(writer, req, 405,
                                          f"Invalid method for URL ({req.method} {req.path})",
                                          "invalid_request_error", None)
        if not self._authorized(req):
            return await self._send_error(writer, req, 401)
        body = req.body
        if not isinstance(body, dict):
            return await self._send_error(
                writer, req, 400,
                "We could not parse the JSON body of your request.", "invalid_request_error", None)
        if embeddings:
            return await self._embeddings(writer, req, body)
        if not isinstance(body.get("messages"), list):
            return await self._send_error(writer, req, 400, "Missing required parameter: 'messages'.",
                                          "invalid_request_error", "missing_required_parameter")
        model = str(body.get("model", ""))
        behavior = self.behavior or model
        stream = bool(body.get("stream"))

        if behavior.startswith("fail-"):
            return await self._send_error(writer, req, fail_status(behavior))
        if self.limit_requests is not None and not self._admit():
            return await self._send_error(writer, req, 429)
        if behavior.startswith("fixture-"):
            return await self._send_fixture(writer, req, behavior[8:], stream)
        if behavior.startswith("html-"):
            return await self._send_html(writer, int(behavior[5:8]))
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep

        tools_mode = behavior == "tools" or (behavior.startswith("tools") and body.get("tools"))
        if stream:
            return await self._stream(writer, req, body, model, behavior, tools_mode)
        if behavior == "chunked" or self.chunked_json:
            return await self._send_chunked(writer, req, self._completion(
                body, model, tools_mode, self.is_groq(req)))
        return await self._send(writer, req, 200,
                                self._completion(body, model, tools_mode, self.is_groq(req)))

    async def _embeddings(self, writer, req, body):
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs
                                       and all(isinstance(i, int) for i in inputs)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return await self._send_error(writer, req, 400, "'input' is a required property",
                                          "invalid_request_error", None)
        model = str(body.get("model", ""))
        behavior = self.behavior or model
        if behavior.startswith("fail-"):
            return await self._send_error(writer, req, fail_status(behavior))
        done, keep = await self.common_behavior(behavior, writer)
        if done:
            return keep
        n = body.get("dimensions") or 1536
        data, tokens = [], 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item.split()) if isinstance(item, str) else len(item)
            v = embedding(text, n)
            if body.get("encoding_format") == "base64":
                v = base64.b64encode(struct.pack(f"<{n}f", *v)).decode()
            data.append({"object": "embedding", "index": i, "embedding": v})
        return await self._send(writer, req, 200, {
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _send_fixture(self, writer, req, name, stream):
        """t/fixtures/{openai,groq}/<name> verbatim, with the real headers."""
        groq = self.is_groq(req)
        d = "groq" if groq else "openai"
        if name.startswith("error_"):
            status = int(name[6:9])
            extra = [("retry-after", self.retry_after)] if status == 429 else []
            data = fixture_bytes(d, name + ".json")
            return await self.send(writer, req, status, data,
                                   self._headers(req, "application/json", extra))
        if stream:
            hdrs = self._headers(req, "text/event-stream" if groq
                                 else "text/event-stream; charset=utf-8")
            return await self.stream(writer, req, 200, hdrs,
                                     split_events(fixture_bytes(d, name + ".sse")))
        data = fixture_bytes(d, name + ".json")
        hdrs = self._headers(req, "application/json")
        if groq:
            return await self.send(writer, req, 200, data, hdrs)
        return await self.send_chunked(writer, req, 200, data, hdrs)

    async def _send_html(self, writer, status):
        """An HTML error page, as a proxy in front of a provider would answer."""
        reason = REASONS.get(status, "")
        data = (f"<html><head><title>{status} {reason}</title></head><body>"
                f"<center><h1>{status} {reason}</h1></center></body></html>").encode()
        writer.write(self._head(status, [("Content-Type", "text/html"),
                                         ("Content-Length", str(len(data))),
                                         ("Connection", "keep-alive")]) + data)
        await writer.drain()
        return True

    async def _send_chunked(self, writer, req, obj):
        """A JSON answer in chunked transfer encoding, in several chunks and writes."""
        data = compact(obj) + b"\n" if self.is_groq(req) else pretty(obj) + b"\n"
        return await self.send_chunked(writer, req, 200, data,
                                       self._headers(req, "application/json"), pieces=4)

    def _authorized(self, req):
        if self.api_key is None:
            return True
        return req.headers.get("authorization", "") == f"Bearer {self.api_key}"

    # ---------------------------------------------------------------- answers
    def _reply_text(self, body, model):
        if model.startswith("big-"):
            return big_text(model)
        msgs = body.get("messages") or []
        last_user = ""
        for m in msgs:
            if isinstance(m, dict) and m.get("role") == "user":
                last_user = _content_text(m.get("content"))
        return f"Hello from {model}! You said: {last_user}"

    def _prompt_tokens(self, body):
        n = 0
        for m in body.get("messages") or []:
            if isinstance(m, dict):
                n += 4 + len(_content_text(m.get("content")).split())
        return n + 3

    def _tool_call(self, body):
        tools = body.get("tools") or []
        fn = {"name": "get_weather", "parameters": {}}
        if tools and isinstance(tools[0], dict) and isinstance(tools[0].get("function"), dict):
            fn = tools[0]["function"]
        params = fn.get("parameters") or {}
        props = params.get("properties") or {}
        args = {}
        for k, v in props.items():
            t = v.get("type") if isinstance(v, dict) else "string"
            args[k] = {"number": 1, "integer": 1, "boolean": True}.get(t, "Paris")
        return {"id": rand_id("call_", 24), "type": "function",
                "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)}}

    def _wants_tool_call(self, body, tools_mode):
        if not tools_mode:
            return False
        msgs = body.get("messages") or []
        return not (msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "tool")

    def _tool_result_text(self, body):
        msgs = body.get("messages") or []
        return "The tool answered: " + _content_text(msgs[-1].get("content"))

    def _completion(self, body, model, tools_mode, groq=False):
        if self._wants_tool_call(body, tools_mode):
            message = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(body)],
                       "refusal": None, "annotations": []}
            finish = "tool_calls"
            completion_tokens = 12
        else:
            text = self._tool_result_text(body) if tools_mode else self._reply_text(body, model)
            message = {"role": "assistant", "content": text, "refusal": None,
                       "annotations": []}
            finish = "stop"
            completion_tokens = len(words(text))
        pt = self._prompt_tokens(body)
        if groq:
            # Groq: no refusal nor annotations, its timings in usage, x_groq
            message = {k: v for k, v in message.items() if k not in ("refusal", "annotations")
                       and not (k == "content" and v is None)}
            return {"id": "chatcmpl-" + str(uuid.uuid4()), "object": "chat.completion",
                    "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": message, "logprobs": None,
                                 "finish_reason": finish}],
                    "usage": self._groq_usage(pt, completion_tokens),
                    "usage_breakdown": None, "system_fingerprint": "fp_fake0001",
                    "x_groq": {"id": self._groq_req_id()}, "service_tier": "on_demand"}
        return {
            "id": rand_id("chatcmpl-", 29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": pt, "completion_tokens": completion_tokens,
                      "total_tokens": pt + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }

    @staticmethod
    def _groq_usage(pt, ct):
        return {"queue_time": 0.021874113, "prompt_tokens": pt, "prompt_time": 0.003512008,
                "completion_tokens": ct, "completion_time": 0.025454545,
                "total_tokens": pt + ct, "total_time": 0.028966553}

    @staticmethod
    def _groq_req_id():
        return rand_id("req_01", 24, "0123456789abcdefghjkmnpqrstvwxyz")

    def _chunks(self, body, model, tools_mode, groq=False):
        cid = "chatcmpl-" + str(uuid.uuid4()) if groq else rand_id("chatcmpl-", 29)
        created = int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish=None, choices=True):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            if not groq:
                c["service_tier"] = "default"
            c["system_fingerprint"] = "fp_fake0001"
            c["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}] if choices else []
            if include_usage and not groq:
                c["usage"] = None
            if not groq:
                # OpenAI pads its chunks with a random "obfuscation" string
                c["obfuscation"] = rand_id("", random.randint(1, 15))
            return c

        out = []
        if self._wants_tool_call(body, tools_mode) and groq:
            # Groq sends a tool call whole, in one delta
            call = self._tool_call(body)
            out.append(chunk({"role": "assistant", "content": None}))
            out.append(chunk({"tool_calls": [dict(call, index=0)]}))
            out.append(chunk({}, "tool_calls"))
            completion_tokens = 12
        elif self._wants_tool_call(body, tools_mode):
            call = self._tool_call(body)
            args = call["function"]["arguments"]
            out.append(chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": call["function"]["name"], "arguments": ""}}],
                "refusal": None}))
            for i in range(0, len(args), 5):
                out.append(chunk({"tool_calls": [{"index": 0,
                                                  "function": {"arguments": args[i:i + 5]}}]}))
            out.append(chunk({}, "tool_calls"))
            completion_tokens = 12
        else:
            text = self._tool_result_text(body) if tools_mode else self._reply_text(body, model)
            pieces = words(text)
            out.append(chunk({"role": "assistant", "content": ""} if groq else
                             {"role": "assistant", "content": "", "refusal": None}))
            for w in pieces:
                out.append(chunk({"content": w}))
            out.append(chunk({}, "stop"))
            completion_tokens = len(pieces)
        if groq:
            # Groq: x_groq {id, seed} on the first chunk, {id, usage} and usage on the last
            rid = self._groq_req_id()
            usage = self._groq_usage(self._prompt_tokens(body), completion_tokens)
            out[0]["x_groq"] = {"id": rid, "seed": random.randint(1, 2 ** 31 - 1)}
            out[-1]["x_groq"] = {"id": rid, "usage": usage}
            out[-1]["usage"] = usage
        elif include_usage:
            pt = self._prompt_tokens(body)
            u = chunk(None, choices=False)
            u["usage"] = {"prompt_tokens": pt, "completion_tokens": completion_tokens,
                          "total_tokens": pt + completion_tokens,
                          "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                        "accepted_prediction_tokens": 0,
                                                        "rejected_prediction_tokens": 0}}
            u["obfuscation"] = u.pop("obfuscation")
            out.append(u)
        return out

    async def _stream(self, writer, req, body, model, behavior, tools_mode):
        groq = self.is_groq(req)
        hdrs = self._headers(req, "text/event-stream" if groq
                             else "text/event-stream; charset=utf-8")
        events = [b"data: " + compact(c) + b"\n\n"
                  for c in self._chunks(body, model, tools_mode, groq)]
        events.append(b"data: [DONE]\n\n")
        if behavior == "stream-drip":
            events = events[:2] + [events[1]] * int(STALL_SECONDS * 10)
        if behavior.startswith("stream-error"):
            first = behavior == "stream-error-first"
            err = error_body("Rate limit reached for requests" if first
                             else "The server had an error while processing your request.",
                             "requests" if first else "server_error",
                             "rate_limit_exceeded" if first else None)
            events = ([] if first else events[:3]) + [
                b"data: " + json.dumps(err).encode() + b"\n\n"]
        return await self.stream(writer, req, 200, hdrs, events, behavior)

    async def interrupt(self, writer, behavior, i, n):
        """stream-cut: close the connection before event `cut_after` (a stream that short
        ends normally); stream-stall: send nothing more from there."""
        if i == self.cut_after and behavior == "stream-cut":
            writer.transport.abort()
            return False
        if i == self.cut_after and behavior == "stream-stall":
            return await self.stall()
        return None


if __name__ == "__main__":
    run_forever(FakeOpenAI)
