"""Helpers of the data-plane tests: raw HTTP requests, incremental SSE reading,
connection fields for the fake providers, audit records from the spool."""
import http.client
import json
import socket
import time
import urllib.request
import uuid

from harness.spool import records_in

# vmx_first_byte_timeout and vmx_idle_timeout of the session's nginx (see GATEWAY_DIRECTIVES
# in t/conftest.py)
READ_TIMEOUT = 2.0


def free_port():
    try:
        from harness.ports import free_port as fp
        return fp()
    except ImportError:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        return p


def closed_port():
    """A loopback port nobody listens on (connect is refused)."""
    return free_port()


class Resp:
    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = headers          # http.client.HTTPMessage (case-insensitive get)
        self.body = body
        self.reason = reason

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def header(self, name):
        return self.headers.get(name)

    def __repr__(self):
        hs = "".join(f"\n  {k}: {v}" for k, v in self.headers.items())
        return f"<HTTP {self.status} {self.reason}{hs}\n\n{self.body[:2000]!r}>"


def http_request(url, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection; body may be bytes, str, or a JSON-able object."""
    host, port = url.split("//", 1)[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return Resp(r.status, r.headers, data, r.reason)
    finally:
        c.close()


class Stream:
    """A streaming request read incrementally, event by event."""

    def __init__(self, url, path, body, headers=None, timeout=30):
        host, port = url.split("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        self.conn.request("POST", path, json.dumps(body).encode(), h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.buf = b""
        self.raw = b""
        self.eof = False

    def header(self, name):
        return self.headers.get(name)

    def next_event(self):
        """The next `data:` payload (str), or None at the end of the body."""
        while True:
            i = self.buf.find(b"\n\n")
            if i >= 0:
                block, self.buf = self.buf[:i], self.buf[i + 2:]
                data = [ln[5:].strip() for ln in block.decode().split("\n") if ln.startswith("data:")]
                if data:
                    return "\n".join(data)
                continue
            if self.eof:
                return None
            chunk = self.resp.read1(65536)
            if not chunk:
                self.eof = True
                continue
            self.raw += chunk
            self.buf += chunk

    def rest(self):
        out = []
        while True:
            e = self.next_event()
            if e is None:
                return out
            out.append(e)

    def close(self):
        self.conn.close()


def sse_events(body):
    """Split a text/event-stream body into the `data:` payloads (strings)."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data:"):
                out.append(line[5:].strip())
    return out


def connection_for(fake, **extra):
    """Fields of a connection to a fake provider."""
    c = {"provider": "openai", "config": {"apiKey": fake.api_key, "baseUrl": fake.url}}
    c.update(extra)
    return c


def anthropic_connection(fake, **extra):
    """Fields of an anthropic connection to a fake Anthropic (baseUrl without /v1)."""
    c = {"provider": "anthropic", "config": {"apiKey": fake.api_key, "baseUrl": fake.url}}
    c.update(extra)
    return c


def gemini_connection(fake, **extra):
    """Fields of a gemini connection to a fake Gemini (baseUrl with /v1beta, as the default)."""
    c = {"provider": "gemini", "config": {"apiKey": fake.api_key, "baseUrl": fake.url + "/v1beta"}}
    c.update(extra)
    return c


def bedrock_connection(fake, role=None, **extra):
    """Fields of an aws-bedrock connection to a fake Bedrock: the control plane assumes `role`
    at the session's fake STS.  A TLS fake is reached by host name (certificates are checked
    against names)."""
    host = "localhost" if fake.tls else "127.0.0.1"
    role = role or f"arn:aws:iam::123456789012:role/vmx-test-{uuid.uuid4().hex[:8]}"
    c = {"provider": "aws-bedrock",
         "config": {"region": fake.region, "iamRoleArn": role,
                    "endpoint": f"{fake.scheme}://{host}:{fake.port}"}}
    c.update(extra)
    return c


def wait_credentials(gw, env, names, state="ok", timeout=20):
    """Wait until the aws-bedrock connections' credentialsStatus is `state` and the data plane
    runs the config version that carries them."""
    deadline = time.time() + timeout
    for n in names:
        while True:
            st, body, _ = gw.api.request("GET", f"{env.prefix}/connections/{env.conns[n]['id']}")
            assert st == 200, body
            cs = body.get("credentialsStatus") or {}
            if cs.get("state") == state:
                break
            assert time.time() < deadline, f"connection {n}: credentialsStatus {cs}"
            time.sleep(0.1)
    while True:
        want, have = gw.desired_version(), gw.nginx.config_version()
        if want is not None and have is not None and have >= want:
            return
        assert time.time() < deadline, f"data plane runs {have}, control plane wants {want}"
        time.sleep(0.05)


def metric_sum(text, name, **labels):
    """The sum of the series of a metric with these labels in a Prometheus exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cp_metric(stack, name, **labels):
    """The sum of a control-plane metric's series with these labels."""
    with urllib.request.urlopen(stack.cp.url + "/metrics", timeout=5) as r:
        return metric_sum(r.read().decode(), name, **labels)


def dp_metric(gw, name, **labels):
    """The sum of a data-plane metric's series with these labels (vmx_status)."""
    r = http_request(gw.url, "GET", "/metrics")
    assert r.status == 200, r
    return metric_sum(r.text, name, **labels)


def record(gw, r, timeout=10):
    """The audit record of answer r, from the spool."""
    rid = r.header("x-vmx-request-id")
    assert rid, r
    spool = gw.stack.nginx.base_dir / "spool"
    deadline = time.time() + timeout
    while time.time() < deadline:
        for meta, request, response in records_in(spool):
            if meta["id"] == rid:
                return dict(meta, request=json.loads(request) if request else None,
                            response=json.loads(response) if response else None)
        time.sleep(0.1)
    raise AssertionError(f"no audit record of {rid}")
