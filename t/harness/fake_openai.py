"""A fake OpenAI-format provider for the integration tests.

Speaks OpenAI's chat-completions wire format (JSON and server-sent events),
over HTTP/1.1 with keep-alive, plain or TLS, on a loopback port.  It runs an
asyncio loop in a background thread and records every request it receives.

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
  html-NNN       answer HTTP NNN with an HTML page (as a proxy in front of a provider)
  slow-N         wait N seconds (float) before answering
  chunked        a JSON answer in chunked transfer encoding, in several writes
  big-N          an answer of N characters (one SSE event of that size when streamed)
  tools          answer with tool_calls (tool_call deltas when streaming);
                 when the last message is a tool result, answer with text
  anything else  an "echo" answer: "Hello from <model>! You said: <last user text>"

A wrong or missing `Authorization: Bearer <api_key>` gives 401 first.
"""
import asyncio
import json
import random
import socket
import ssl
import string
import struct
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Recorded:
    method: str
    path: str
    version: str
    headers: dict           # lower-case name -> last value
    header_list: list       # [(name, value)] as received
    raw_body: bytes
    body: object            # parsed JSON, or None
    conn_id: int
    sni: object = None      # TLS server name the client sent (None: none, or plain HTTP)
    time: float = field(default_factory=time.time)


def _rid(prefix, n=24):
    return prefix + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(n))


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

REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
           422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}


def _words(text):
    out = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return out


def _content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class FakeOpenAI:
    def __init__(self, api_key="sk-fake-test-key", tls=None, host="127.0.0.1", port=0,
                 name="fake"):
        """tls: None, or (cert_file, key_file)."""
        self.api_key = api_key
        self.tls = tls
        self.host = host
        self.port = port
        self.name = name
        self.behavior = None
        self.stream_delay = 0.3
        self.split_delay = 0.01
        self.retry_after = "1"
        self.chunked_json = False        # send non-streamed JSON answers chunked
        self.requests = []
        self.stream_events_sent = 0      # events written by the last streamed answer
        self.stream_events_total = 0
        self.connections = 0
        self._cond = threading.Condition()
        self._loop = None
        self._thread = None
        self._server = None
        self._tasks = set()
        self._writers = set()
        self._conn_seq = 0
        self._sni_names = {}

    # ---------------------------------------------------------------- control
    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        """Base URL as a connection's config.baseUrl (with the /v1 prefix)."""
        return f"{self.scheme}://{self.host}:{self.port}/v1"

    def set_behavior(self, behavior=None):
        """Force a behaviour for every request (None: choose by model name)."""
        self.behavior = behavior

    def clear(self):
        with self._cond:
            self.requests.clear()

    def chat_requests(self):
        with self._cond:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def last(self):
        with self._cond:
            return self.requests[-1] if self.requests else None

    def wait_for_requests(self, n, timeout=10.0):
        deadline = time.time() + timeout
        with self._cond:
            while len(self.requests) < n:
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {len(self.requests)} requests, wanted {n}")
                self._cond.wait(left)
            return list(self.requests)

    def start(self):
        started = threading.Event()
        err = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_server())
            except Exception as e:  # pragma: no cover
                err.append(e)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-openai-{self.name}", daemon=True)
        self._thread.start()
        started.wait(10)
        if err:
            raise err[0]
        return self

    def stop(self):
        if not self._loop:
            return
        fut = asyncio.run_coroutine_threadsafe(self._stop_server(), self._loop)
        try:
            fut.result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    async def _start_server(self):
        ctx = None
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls[0], self.tls[1])
            ctx.set_alpn_protocols(["http/1.1"])
            ctx.sni_callback = self._sni
        self._server = await asyncio.start_server(self._client, self.host, self.port, ssl=ctx,
                                                  limit=1 << 20, backlog=512)
        self.port = self._server.sockets[0].getsockname()[1]

    def _sni(self, sslobj, name, ctx):
        self._sni_names[id(sslobj)] = name
        return None

    async def _stop_server(self):
        self._server.close()
        for w in list(self._writers):
            try:
                w.transport.abort()
            except Exception:
                pass
        for t in list(self._tasks):
            t.cancel()
        await asyncio.sleep(0)

    # ---------------------------------------------------------------- HTTP
    async def _client(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(writer)
        self._conn_seq += 1
        conn_id = self._conn_seq
        self.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        sslobj = writer.get_extra_info("ssl_object")
        sni = self._sni_names.pop(id(sslobj), None) if sslobj is not None else None
        try:
            while True:
                req = await self._read_request(reader, conn_id)
                if req is None:
                    break
                req.sni = sni
                with self._cond:
                    self.requests.append(req)
                    self._cond.notify_all()
                keep = await self._handle(req, writer)
                if not keep:
                    break
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError,
                ssl.SSLError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    async def _read_request(self, reader, conn_id):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, path, version = lines[0].split(" ", 2)
        except ValueError:
            return None
        header_list = []
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            header_list.append((k.strip(), v.strip()))
            headers[k.strip().lower()] = v.strip()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        return Recorded(method, path, version, headers, header_list, body, parsed, conn_id)

    def _base_headers(self, ctype):
        return [
            ("Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())),
            ("Content-Type", ctype),
            ("access-control-expose-headers", "X-Request-ID"),
            ("openai-organization", "user-fake"),
            ("openai-processing-ms", str(random.randint(50, 400))),
            ("openai-version", "2020-10-01"),
            ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
            ("x-ratelimit-limit-requests", RATELIMIT_HEADERS["x-ratelimit-limit-requests"]),
            ("x-ratelimit-limit-tokens", RATELIMIT_HEADERS["x-ratelimit-limit-tokens"]),
            ("x-ratelimit-remaining-requests",
             RATELIMIT_HEADERS["x-ratelimit-remaining-requests"]),
            ("x-ratelimit-remaining-tokens", RATELIMIT_HEADERS["x-ratelimit-remaining-tokens"]),
            ("x-ratelimit-reset-requests", RATELIMIT_HEADERS["x-ratelimit-reset-requests"]),
            ("x-ratelimit-reset-tokens", RATELIMIT_HEADERS["x-ratelimit-reset-tokens"]),
            ("x-request-id", _rid("req_", 32)),
        ]

    async def _send(self, writer, req, status, obj, extra=()):
        data = json.dumps(obj, separators=(",", ":")).encode()
        names = {k.lower() for k, _ in extra}
        hdrs = [h for h in self._base_headers("application/json") if h[0].lower() not in names]
        hdrs += list(extra)
        keep = req.version == "HTTP/1.1" and req.headers.get("connection", "").lower() != "close"
        hdrs.append(("Content-Length", str(len(data))))
        hdrs.append(("Connection", "keep-alive" if keep else "close"))
        head = f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        writer.write(head.encode("latin-1") + data)
        await writer.drain()
        return keep

    async def _send_error(self, writer, req, status, message=None, type_=None, code=None):
        m, t, c = ERRORS.get(status, (f"Fake provider error {status}", "server_error", None))
        extra = []
        if status == 429:
            extra = [("retry-after", self.retry_after), ("x-ratelimit-remaining-requests", "0")]
        return await self._send(writer, req, status,
                                error_body(message or m, type_ or t, code if code else c), extra)

    async def _handle(self, req, writer):
        if req.method == "GET" and req.path.endswith("/models"):
            if not self._authorized(req):
                return await self._send_error(writer, req, 401)
            return await self._send(writer, req, 200, {"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"}]})
        if not req.path.split("?")[0].endswith("/chat/completions"):
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
        if not isinstance(body.get("messages"), list):
            return await self._send_error(writer, req, 400, "Missing required parameter: 'messages'.",
                                          "invalid_request_error", "missing_required_parameter")
        model = str(body.get("model", ""))
        behavior = self.behavior or model
        stream = bool(body.get("stream"))

        if behavior.startswith("fail-"):
            try:
                status = int(behavior[5:8])
            except ValueError:
                status = 500
            return await self._send_error(writer, req, status)
        if behavior == "stall":
            await asyncio.sleep(3600)
            return False
        if behavior.startswith("html-"):
            status = int(behavior[5:8])
            page = (f"<html><head><title>{status} {REASONS.get(status, '')}</title></head><body>"
                    f"<center><h1>{status} {REASONS.get(status, '')}</h1></center></body></html>")
            data = page.encode()
            writer.write((f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                          "Content-Type: text/html\r\n"
                          f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n").encode()
                         + data)
            await writer.drain()
            return True
        if behavior == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()
            return False
        if behavior.startswith("slow-") and behavior != "slow-stream":
            try:
                await asyncio.sleep(float(behavior[5:]))
            except ValueError:
                pass

        tools_mode = behavior == "tools" or (behavior.startswith("tools") and body.get("tools"))
        if stream:
            return await self._stream(writer, req, body, model, behavior, tools_mode)
        if behavior == "chunked" or self.chunked_json:
            return await self._send_chunked(writer, req, self._completion(body, model, tools_mode))
        return await self._send(writer, req, 200, self._completion(body, model, tools_mode))

    async def _send_chunked(self, writer, req, obj):
        """A JSON answer in chunked transfer encoding, in several chunks and writes."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        hdrs = self._base_headers("application/json")
        hdrs += [("Transfer-Encoding", "chunked"), ("Connection", "keep-alive")]
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        writer.write(head.encode("latin-1"))
        await writer.drain()
        step = max(1, len(data) // 4)
        for i in range(0, len(data), step):
            part = data[i:i + step]
            writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(self.split_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    def _authorized(self, req):
        if self.api_key is None:
            return True
        return req.headers.get("authorization", "") == f"Bearer {self.api_key}"

    # ---------------------------------------------------------------- answers
    def _reply_text(self, body, model):
        if model.startswith("big-"):
            n = int(model[4:])
            return ("0123456789abcdef" * (n // 16 + 1))[:n]
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
        return {"id": _rid("call_", 24), "type": "function",
                "function": {"name": fn.get("name", "tool"), "arguments": json.dumps(args)}}

    def _wants_tool_call(self, body, tools_mode):
        if not tools_mode:
            return False
        msgs = body.get("messages") or []
        return not (msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "tool")

    def _tool_result_text(self, body):
        msgs = body.get("messages") or []
        return "The tool answered: " + _content_text(msgs[-1].get("content"))

    def _completion(self, body, model, tools_mode):
        if self._wants_tool_call(body, tools_mode):
            message = {"role": "assistant", "content": None, "tool_calls": [self._tool_call(body)],
                       "refusal": None}
            finish = "tool_calls"
            completion_tokens = 12
        else:
            text = self._tool_result_text(body) if tools_mode else self._reply_text(body, model)
            message = {"role": "assistant", "content": text, "refusal": None}
            finish = "stop"
            completion_tokens = len(_words(text))
        pt = self._prompt_tokens(body)
        return {
            "id": _rid("chatcmpl-", 29),
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
            "system_fingerprint": "fp_fake0001",
        }

    def _chunks(self, body, model, tools_mode):
        cid = _rid("chatcmpl-", 29)
        created = int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta, finish=None, choices=True):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_fake0001",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": finish}] if choices else []}
            if include_usage:
                c["usage"] = None
            return c

        out = []
        if self._wants_tool_call(body, tools_mode):
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
            words = _words(text)
            out.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            for w in words:
                out.append(chunk({"content": w}))
            out.append(chunk({}, "stop"))
            completion_tokens = len(words)
        if include_usage:
            pt = self._prompt_tokens(body)
            u = chunk(None, choices=False)
            u["usage"] = {"prompt_tokens": pt, "completion_tokens": completion_tokens,
                          "total_tokens": pt + completion_tokens,
                          "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                        "accepted_prediction_tokens": 0,
                                                        "rejected_prediction_tokens": 0}}
            out.append(u)
        return out

    async def _stream(self, writer, req, body, model, behavior, tools_mode):
        chunked = req.version == "HTTP/1.1"
        keep = chunked and req.headers.get("connection", "").lower() != "close"
        hdrs = self._base_headers("text/event-stream; charset=utf-8")
        hdrs.append(("Transfer-Encoding", "chunked") if chunked else ("Connection", "close"))
        if chunked:
            hdrs.append(("Connection", "keep-alive" if keep else "close"))
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
        writer.write(head.encode("latin-1"))
        await writer.drain()

        events = [b"data: " + json.dumps(c, separators=(",", ":")).encode() + b"\n\n"
                  for c in self._chunks(body, model, tools_mode)]
        events.append(b"data: [DONE]\n\n")
        self.stream_events_total = len(events)
        self.stream_events_sent = 0

        def frame(b):
            return (b"%x\r\n" % len(b)) + b + b"\r\n" if chunked else b

        for i, ev in enumerate(events):
            if behavior == "stream-cut" and i == 4:
                writer.transport.abort()
                return False
            if behavior == "stream-stall" and i == 4:
                await asyncio.sleep(3600)
                return False
            if behavior == "split-stream":
                # the event in 3 HTTP chunks, cut mid-line; the bytes written in 4 pieces
                a, b = max(1, len(ev) // 3), max(2, 2 * len(ev) // 3)
                raw = frame(ev[:a]) + frame(ev[a:b]) + frame(ev[b:])
                cuts = sorted({1, 3, len(raw) // 2, len(raw) - 3})
                prev = 0
                for c in cuts + [len(raw)]:
                    if c <= prev:
                        continue
                    writer.write(raw[prev:c])
                    await writer.drain()
                    prev = c
                    await asyncio.sleep(self.split_delay)
            else:
                writer.write(frame(ev))
                await writer.drain()
                if behavior == "slow-stream":
                    await asyncio.sleep(self.stream_delay)
            self.stream_events_sent = i + 1
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return keep


def run_forever():  # pragma: no cover - manual use: python3 fake_openai.py
    import sys
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    f = FakeOpenAI(port=port).start()
    print(f.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    run_forever()
