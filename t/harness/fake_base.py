"""Server plumbing shared by the fake providers (fake_openai, fake_anthropic, fake_gemini,
fake_bedrock).

A FakeServer runs an asyncio loop in a background thread and serves HTTP/1.1 with keep-alive,
plain or TLS, on a loopback port.  It parses every request (Content-Length or chunked body,
`Expect: 100-continue`), records it, and hands it to the subclass's `handle(req, writer)`,
which answers with the helpers below:

  send(writer, req, status, body_bytes, headers)     a whole answer with Content-Length
  stream(writer, req, status, headers, events, behavior)
                                                     a streamed answer: each event (bytes)
                                                     as one HTTP chunk, or for `split-stream`
                                                     in several chunks and TCP writes split
                                                     mid-event; `slow-stream` sleeps between
                                                     events, `stream-drip` 0.1 s; `stream-cut` drops the connection
                                                     after `cut_after` events (at most all
                                                     but the last)
  reset(writer)                                      TCP RST without an answer
  embedding(text, n)                                 the fakes' embedding vector of text
  stall()                                            never answer

A subclass may change how a stream ends early by overriding `interrupt` (stream-cut by default),
and where split-stream cuts its TCP writes with `split_offsets`.

`compress` (None by default) makes every answer, whole or streamed, compressed with a
`Content-Encoding` although nobody asked: "gzip", "deflate" (zlib-wrapped), "deflate-raw" (raw
deflate, sent as `deflate` as some servers do), "gzip-corrupt" (a gzip body with a broken magic
number) or "gzip-truncated" (a stream without its end and trailer).  A stream is one compressed
stream, each event sync-flushed into its own write.

Wire bytes: every fake answers by default in the shapes the real provider sends (see
t/fixtures/README.md), and serves the recorded-shape files of t/fixtures/<provider>/ verbatim
for the behaviour `fixture-<name>` (fixture_bytes / split_events).  `split_at` cuts a streamed
answer's body (the bytes of all its events, HTTP chunk framing aside) at chosen byte offsets:
each piece is one HTTP chunk, written, flushed and followed by `split_delay` seconds of pause, so
that the gateway gets it in a read of its own (TCP_NODELAY is on).  split_at = "each" sends
one byte at a time; a list of offsets cuts there; None (the default) sends event by event.

Behaviour is chosen per request by the subclass (usually from the model name), or forced for
every request with set_behavior().
"""
import asyncio
import hashlib
import json
import math
import os
import random
import re
import socket
import ssl
import string
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Payload Too Large", 422: "Unprocessable Entity", 424: "Failed Dependency",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout", 529: "Site Overloaded"}

# Loop bounds: a stalled answer ends by itself after this many seconds.
STALL_SECONDS = 600

# t/fixtures: provider answers in the byte shapes of public recordings (see its README.md)
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


@dataclass
class Recorded:
    method: str
    path: str               # raw request target, query included
    version: str
    headers: dict           # lower-case name -> last value
    header_list: list       # [(name, value)] as received
    raw_body: bytes
    body: object            # parsed JSON, or None
    conn_id: int
    sni: object = None      # TLS server name the client sent (None: none, or plain HTTP)
    time: float = field(default_factory=time.time)
    info: dict = field(default_factory=dict)   # what the fake made of it (model, auth, ...)

    @property
    def route(self):
        """The path without the query string."""
        return self.path.split("?", 1)[0]

    @property
    def query(self):
        return self.path.split("?", 1)[1] if "?" in self.path else ""

    def header_values(self, name):
        n = name.lower()
        return [v for k, v in self.header_list if k.lower() == n]


def rand_id(prefix, n=24, alphabet=string.ascii_letters + string.digits):
    return prefix + "".join(random.choice(alphabet) for _ in range(n))


def words(text):
    """Split text in words, each but the first with its leading space."""
    out = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return out


def embedding(text, n):
    """A unit vector of n float32 values that only depends on text (every fake's embeddings:
    a test checks the gateway's answer against it)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    rng = random.Random(seed)
    v = [rng.uniform(-1.0, 1.0) for _ in range(n)]
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in v]


def http_date(t=None):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def pretty(obj):
    """Two-space indented JSON, `"key": value`, UTF-8 as is (OpenAI's and Google's whole
    answers; they add a final newline to successful ones)."""
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def fixture_bytes(provider, name):
    """The bytes of t/fixtures/<provider>/<name>."""
    with open(os.path.join(FIXTURES, provider, name), "rb") as f:
        return f.read()


def split_events(data):
    """A recorded stream as its events: SSE at each blank line ("\n\n" or "\r\n\r\n"),
    an AWS event stream at each message (its total length), each event with its end."""
    if data[:4] != b"data" and data[:5] != b"event" and len(data) >= 16:
        out, pos = [], 0
        while pos < len(data):
            total = struct.unpack(">I", data[pos:pos + 4])[0]
            out.append(data[pos:pos + total])
            pos += total
        return out
    return [m.group(0) for m in re.finditer(rb"(?s).*?(?:\r\n\r\n|\n\n|\r\r|$)", data)
            if m.group(0)]


def cut(data, split_at):
    """data in pieces: split_at "each" (one byte each) or byte offsets."""
    if split_at == "each":
        return [data[i:i + 1] for i in range(len(data))]
    out, prev = [], 0
    for c in sorted(set(split_at)):
        if prev < c < len(data):
            out.append(data[prev:c])
            prev = c
    out.append(data[prev:])
    return out


class FakeServer:
    """Base class of the fake providers; subclasses implement `handle` and `url`."""

    kind = "fake"
    # split-stream: byte offsets where the TCP writes of an event are cut, besides its middle
    # and 3 bytes before its end
    split_offsets = (1, 3, 7)

    def __init__(self, tls=None, host="127.0.0.1", port=0, name=None):
        """tls: None, or (cert_file, key_file)."""
        self.tls = tls
        self.host = host
        self.port = port
        self.name = name or self.kind
        self.behavior = None
        self.stream_delay = 0.3          # seconds between events for slow-stream
        self.split_delay = 0.01          # seconds between the pieces of split-stream
        self.tail_delay = 0              # seconds before a stream's last chunk
        self.cut_after = 3               # events written before stream-cut drops the connection
                                         # (fewer when the stream is shorter: never all)
        self.compress = None             # Content-Encoding of the answers (see above)
        self.split_writes = False        # every stream written as split-stream writes it
        self.split_at = None             # None, "each", or byte offsets in a streamed body
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
    def origin(self):
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self):
        return self.origin

    def set_behavior(self, behavior=None):
        """Force a behaviour for every request (None: choose by model name)."""
        self.behavior = behavior

    def clear(self):
        with self._cond:
            self.requests.clear()

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

        self._thread = threading.Thread(target=run, name=f"{self.kind}-{self.name}", daemon=True)
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

    # ---------------------------------------------------------------- HTTP in
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
                req = await self._read_request(reader, writer, conn_id)
                if req is None:
                    break
                req.sni = sni
                with self._cond:
                    self.requests.append(req)
                    self._cond.notify_all()
                keep = await self.handle(req, writer)
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

    async def _read_request(self, reader, writer, conn_id):
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
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            for _ in range(1 << 20):
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

    async def handle(self, req, writer):  # pragma: no cover - subclasses
        """Answer req; return True to keep the connection open."""
        return await self.send(writer, req, 404, b"", [])

    # ---------------------------------------------------------------- HTTP out
    @staticmethod
    def keep_alive(req):
        return req.version == "HTTP/1.1" and req.headers.get("connection", "").lower() != "close"

    @staticmethod
    def _head(status, hdrs):
        return (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n").encode("latin-1")

    def _compressor(self):
        """(Content-Encoding value, zlib compressobj) of self.compress, or (None, None)."""
        if not self.compress:
            return None, None
        bits = {"deflate": zlib.MAX_WBITS, "deflate-raw": -zlib.MAX_WBITS}.get(
            self.compress, 16 + zlib.MAX_WBITS)
        name = "deflate" if self.compress.startswith("deflate") else "gzip"
        return name, zlib.compressobj(6, zlib.DEFLATED, bits)

    def _corrupt(self, data):
        return b"\x1f\x8c" + data[2:] if self.compress == "gzip-corrupt" else data

    async def send(self, writer, req, status, data, headers):
        """A whole answer: headers [(name, value)] plus Content-Length and Connection."""
        keep = self.keep_alive(req)
        coding, z = self._compressor()
        if z:
            data = self._corrupt(z.compress(data) + z.flush())
            headers = list(headers) + [("Content-Encoding", coding)]
        hdrs = list(headers) + [("Content-Length", str(len(data))),
                                ("Connection", "keep-alive" if keep else "close")]
        writer.write(self._head(status, hdrs) + (b"" if req.method == "HEAD" else data))
        await writer.drain()
        return keep

    async def send_chunked(self, writer, req, status, data, headers, pieces=1):
        """A whole answer in chunked transfer encoding, as OpenAI, Anthropic and Google send
        theirs (no Content-Length): `pieces` chunks, each written and flushed."""
        keep = self.keep_alive(req)
        if req.version != "HTTP/1.1":
            return await self.send(writer, req, status, data, headers)
        coding, z = self._compressor()
        if z:
            data = self._corrupt(z.compress(data) + z.flush())
            headers = list(headers) + [("Content-Encoding", coding)]
        hdrs = list(headers) + [("Transfer-Encoding", "chunked"),
                                ("Connection", "keep-alive" if keep else "close")]
        writer.write(self._head(status, hdrs))
        if req.method != "HEAD":
            step = max(1, -(-len(data) // max(1, pieces)))
            for i in range(0, len(data), step):
                part = data[i:i + step]
                writer.write(b"%x\r\n" % len(part) + part + b"\r\n")
                if pieces > 1:
                    await writer.drain()
                    await asyncio.sleep(self.split_delay)
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep

    async def stream(self, writer, req, status, headers, events, behavior=""):
        """A streamed answer; events: list of bytes, each written as it is (HTTP/1.0: the
        connection closes at the end) or as one HTTP chunk (HTTP/1.1); with `split_at` set,
        the body in the pieces it says instead.  Returns keep-alive."""
        chunked = req.version == "HTTP/1.1"
        keep = chunked and req.headers.get("connection", "").lower() != "close"
        hdrs = list(headers)
        coding, z = self._compressor()
        if z:
            hdrs.append(("Content-Encoding", coding))
            events = [z.compress(ev) + z.flush(zlib.Z_SYNC_FLUSH) for ev in events]
            if events:
                events[0] = self._corrupt(events[0])
                if self.compress != "gzip-truncated":
                    events[-1] += z.flush()
        hdrs.append(("Transfer-Encoding", "chunked") if chunked else ("Connection", "close"))
        if chunked:
            hdrs.append(("Connection", "keep-alive" if keep else "close"))
        writer.write(self._head(status, hdrs))
        await writer.drain()
        self.stream_events_total = len(events)
        self.stream_events_sent = 0

        def frame(b):
            return (b"%x\r\n" % len(b)) + b + b"\r\n" if chunked else b

        if self.split_at is not None and behavior not in ("stream-cut", "stream-stall",
                                                          "split-stream"):
            for piece in cut(b"".join(events), self.split_at):
                writer.write(frame(piece))
                await writer.drain()
                await asyncio.sleep(self.split_delay)
            self.stream_events_sent = len(events)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            return keep

        for i, ev in enumerate(events):
            end = await self.interrupt(writer, behavior, i, len(events))
            if end is not None:
                return end
            if behavior == "split-stream" or self.split_writes:
                # the event in 3 HTTP chunks cut mid-event, the bytes in several TCP writes
                # cut mid-line (and mid chunk-size line)
                a, b = max(1, len(ev) // 3), max(2, 2 * len(ev) // 3)
                raw = frame(ev[:a]) + frame(ev[a:b]) + frame(ev[b:]) if chunked else ev
                cuts = sorted({*self.split_offsets, len(raw) // 2, len(raw) - 3})
                prev = 0
                for c in cuts + [len(raw)]:
                    if c <= prev or c > len(raw):
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
                elif behavior == "stream-drip":
                    await asyncio.sleep(0.1)
            self.stream_events_sent = i + 1
        if chunked:
            if self.tail_delay:
                await asyncio.sleep(self.tail_delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return keep

    async def interrupt(self, writer, behavior, i, n):
        """Called by stream() before event i of n: None writes it, anything else ends the
        answer there and is returned as keep-alive.  stream-cut: TCP RST before event
        min(cut_after, n - 1)."""
        if behavior == "stream-cut" and i == min(self.cut_after, n - 1):
            return await self.reset(writer)
        return None

    async def reset(self, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.transport.abort()
        return False

    async def stall(self):
        await asyncio.sleep(STALL_SECONDS)
        return False

    async def common_behavior(self, behavior, writer):
        """stall, reset and slow-N, shared by every fake.  Returns (done, keep)."""
        if behavior == "stall":
            return True, await self.stall()
        if behavior == "reset":
            return True, await self.reset(writer)
        if behavior.startswith("slow-") and behavior != "slow-stream":
            try:
                await asyncio.sleep(min(float(behavior[5:]), STALL_SECONDS))
            except ValueError:
                pass
        return False, True


def fail_status(behavior, default=500):
    """fail-NNN -> NNN."""
    try:
        return int(behavior[5:8])
    except ValueError:
        return default


def big_text(behavior):
    n = int(behavior[4:])
    return ("0123456789abcdef" * (n // 16 + 1))[:n]


def run_forever(cls, **kw):  # pragma: no cover - manual use: python3 fake_X.py PORT
    import sys
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    f = cls(port=port, **kw).start()
    print(f.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        f.stop()
