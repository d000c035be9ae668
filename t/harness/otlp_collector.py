"""A loopback OpenTelemetry collector: OTLP/HTTP with JSON bodies.

POST /v1/traces and POST /v1/metrics bodies are parsed and kept (with their
headers); `status` (None: 200) is answered instead when set, to test the
exporter's retries.  spans() flattens every resourceSpans -> scopeSpans ->
spans received, with the resource attributes and decoded span attributes.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def attr_value(v):
    """The Python value of an OTLP AnyValue."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    raise ValueError(f"unknown AnyValue {v!r}")


def attrs(lst):
    return {a["key"]: attr_value(a["value"]) for a in lst or []}


class Collector:
    def __init__(self):
        self.lock = threading.Condition()
        self.traces = []          # [(headers dict, parsed body)]
        self.metrics = []
        self.status = None
        self.failed_posts = 0     # answered with `status`
        self.bad = []             # bodies that did not parse, or wrong content types
        coll = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n)
                kind = {"/v1/traces": "traces", "/v1/metrics": "metrics"}.get(self.path)
                status = coll.status or (200 if kind else 404)
                with coll.lock:
                    if coll.status:
                        coll.failed_posts += 1
                    elif kind:
                        try:
                            if self.headers.get("Content-Type") != "application/json":
                                raise ValueError(self.headers.get("Content-Type"))
                            body = json.loads(data)
                            getattr(coll, kind).append(
                                ({k.lower(): v for k, v in self.headers.items()}, body))
                        except ValueError as e:
                            coll.bad.append((self.path, str(e), data[:500]))
                    coll.lock.notify_all()
                out = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-collector",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def spans(self):
        """Every span received: dicts with the OTLP fields, `attrs` (decoded) and
        `resource` (the resource's decoded attributes)."""
        out = []
        with self.lock:
            bodies = [b for _, b in self.traces]
        for body in bodies:
            for rs in body.get("resourceSpans", []):
                res = attrs(rs.get("resource", {}).get("attributes"))
                for ss in rs.get("scopeSpans", []):
                    for s in ss.get("spans", []):
                        out.append(dict(s, attrs=attrs(s.get("attributes")), resource=res))
        return out

    def wait_spans(self, predicate, timeout=20, what="spans"):
        """Waits until predicate(spans()) is truthy; returns its value."""
        deadline = time.time() + timeout
        while True:
            got = predicate(self.spans())
            if got:
                return got
            if time.time() > deadline:
                raise AssertionError(f"collector: no {what} after {timeout} s "
                                     f"({len(self.spans())} span(s) received)")
            with self.lock:
                self.lock.wait(0.2)

    def last_metrics(self):
        """{name: metric} of the latest metrics export, or {}."""
        with self.lock:
            if not self.metrics:
                return {}
            body = self.metrics[-1][1]
        out = {}
        for rm in body.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    out[m["name"]] = dict(m, resource=attrs(rm.get("resource", {})
                                                            .get("attributes")))
        return out
