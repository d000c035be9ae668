"""Every route of the management API against hostile bodies.

The routes come from the daemon itself (`vmx-control-plane --routes`, the
table in control-plane/router.c). For each route and method, a few hundred
bodies from a seeded generator: mutations of real documents (what the GET
routes answer and a few request bodies, each reduced to the members a route
takes) where a member gets a wrong type, a huge array, deep nesting, a long
string, NUL, invalid UTF-8 or a duplicated key, objects whose members repeat
thousands of times, and raw bytes that are hardly JSON. Checks: the daemon
stays up and never answers 5xx, except 503 while PostgreSQL is down (the last
phase stops it and sends some of the bodies again), and it exits cleanly
afterwards.
"""
import http.client
import json
import random
import subprocess
import uuid

from harness.control_plane import BINARY
from cphelpers import env_path, openai_connection, unique

BODIES = 300             # per route and method
BODIES_DB_DOWN = 12      # per route and method, PostgreSQL stopped
SEED = 20261121


def routes():
    out = subprocess.run([str(BINARY), "--routes"], check=True, capture_output=True,
                         text=True).stdout
    return [tuple(line.split()[:3]) for line in out.splitlines() if line.strip()]


class Dup:
    """An object written as its (key, value) pairs, duplicates kept."""

    def __init__(self, pairs=()):
        self.pairs = list(pairs)


class Raw(bytes):
    """JSON text as it is (a nesting too deep to build as objects)."""


BAD_UTF8 = "@@bad-utf8@@"
RAW_NUL = "@@raw-nul@@"


def dump(v):
    """JSON text of v as bytes; Dup objects keep their duplicated keys and the
    markers above become invalid UTF-8 and a raw NUL inside strings."""
    slots = {}

    def strip(x):
        if isinstance(x, (Dup, Raw)):
            slots[f"@@slot{len(slots)}@@"] = x
            return f"@@slot{len(slots) - 1}@@"
        if isinstance(x, dict):
            return {k: strip(y) for k, y in x.items()}
        if isinstance(x, list):
            return [strip(y) for y in x]
        return x

    data = json.dumps(strip(v), ensure_ascii=False).encode("utf-8", "surrogateescape")
    for name, x in slots.items():
        if isinstance(x, Raw):
            text = bytes(x)
        else:
            member = {}          # a member repeated is written once
            for k, y in x.pairs:
                if (k, id(y)) not in member:
                    member[(k, id(y))] = json.dumps(k).encode() + b":" + dump(y)
            text = b"{" + b",".join(member[(k, id(y))] for k, y in x.pairs) + b"}"
        data = data.replace(f'"{name}"'.encode(), text)
    return (data.replace(BAD_UTF8.encode(), b"\xff\xfe\xc0\x80\xed\xa0\x80\xf4\x90\x80\x80")
            .replace(RAW_NUL.encode(), b"a\x00b"))


def nested(depth):
    """depth levels of arrays and objects in turn around 1."""
    opens = "".join("[" if i % 2 else '{"a":' for i in range(depth))
    closes = "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    return Raw((opens + "1" + closes).encode())


# big values, written once: arrays and objects of thousands of members
HUGE = [Raw(dump(v)) for v in (
    list(range(60000)), ["s" * (i % 40) for i in range(20000)],
    [str(uuid.UUID(int=i)) for i in range(5000)],
    [{"provider": "openai", "model": "m", "connectionId": str(uuid.UUID(int=i))}
     for i in range(3000)],
    {f"k{i}": i for i in range(20000)}, Dup([("a", 1)] * 3000),
    Dup([("name", "n")] * 3000), [[]] * 30000, [{}] * 30000)]


def hostile_value(rnd):
    """A value of the wrong type, size or content."""
    kind = rnd.randrange(24)
    return [
        lambda: None, lambda: True, lambda: False, lambda: 0, lambda: -1,
        lambda: rnd.choice([1.5, -0.0, 1e308, -1e308, 5e-324, 2 ** 63, -(2 ** 63) - 1,
                            2 ** 31, 10 ** 30, 4294967296]),
        lambda: "", lambda: "x" * rnd.choice([256, 1025, 70000, 300000]),
        lambda: rnd.choice(["\x00", "a\x00b", "\u0000admin", RAW_NUL]),
        lambda: rnd.choice([BAD_UTF8, "ok" + BAD_UTF8, "\ud800".encode("utf-8", "surrogatepass")
                            .decode("utf-8", "surrogateescape")]),
        lambda: rnd.choice(["********", str(uuid.uuid4()), "' OR 1=1 --", "%s%n%x%p",
                            "\u202e\U0001F600", "../../etc/passwd", "a,b", "minute", "sum",
                            "openai", "p99", "2026-01-01T00:00:00Z", "99999-99-99T99:99:99Z"]),
        lambda: [], lambda: {},
        lambda: [rnd.randrange(-5, 1000) for _ in range(5)],
        lambda: ["s" * rnd.randrange(0, 40) for _ in range(10)],
        lambda: [str(uuid.uuid4()) for _ in range(2)],
        lambda: rnd.choice(HUGE),
        lambda: rnd.choice(HUGE),
        lambda: nested(rnd.choice([20, 400, 990, 1001, 5000])),
        lambda: {f"k{i}": i for i in range(10)},
        lambda: Dup([("a", 1)] * 2),
        lambda: [None, True, "x", 1, [], {}],
        lambda: {"": None, "\x00": 1, BAD_UTF8: 2},
        lambda: rnd.choice([[hostile_value(rnd)], {"x": hostile_value(rnd)}]),
    ][kind]()


def paths_of(v, at=()):
    """Every path to a value inside v (dicts and lists)."""
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths_of(x, at + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v[:8]):
            yield from paths_of(x, at + (i,))


def mutate(rnd, doc):
    doc = json.loads(json.dumps(doc))
    for _ in range(rnd.choice([1, 1, 2, 3])):
        if not isinstance(doc, dict):
            break
        path = rnd.choice(list(paths_of(doc))[1:] or [("name",)])
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        op = rnd.randrange(10)
        if op == 0 and isinstance(parent, dict):
            parent.pop(last, None)
        elif op == 1 and isinstance(parent, dict):
            # the member repeated: a hostile value first, or the same value many times
            pairs = Dup()
            for k, x in parent.items():
                if k == last:
                    if rnd.randrange(2):
                        pairs.pairs.append((k, hostile_value(rnd)))
                    else:
                        pairs.pairs += [(k, x)] * rnd.choice([1, 50, 3000])
                pairs.pairs.append((k, x))
            if path[:-1]:
                holder = doc
                for step in path[:-2]:
                    holder = holder[step]
                holder[path[-2]] = pairs
            else:
                return pairs
            break
        elif op == 2 and isinstance(parent, dict):
            parent["unknown" + str(rnd.randrange(5))] = hostile_value(rnd)
        else:
            parent[last] = hostile_value(rnd)
    return doc


RAW = [b"", b" ", b"null", b"0", b"\"x\"", b"[]", b"[1,2", b"{", b"{\"a\":}", b"\x00",
       b"{\"a\":1}\x00garbage", b"\xff\xfe{}", b"{\"a\":\"\xff\"}", b"{\"a\":1e999}",
       b"{\"a\":-1e999}", b"{\"a\":NaN}", b"{\"a\":Infinity}", b"{'a':1}", b"{\"a\":1,}",
       b"{\"a\":\"\\ud800\"}", b"{\"a\":\"\\u0000\"}", b"[" * 100000, b"{\"a\":" * 2000,
       b"{}" * 1000, b" " * 1048577]


def repeated(rnd, doc):
    """doc with the members of one of its objects each repeated many times."""
    doc = json.loads(json.dumps(doc))
    path = rnd.choice([p for p in paths_of(doc) if isinstance(get(doc, p), dict)])
    obj = get(doc, path)
    times = rnd.choice([2, max(2, min(3000, 300000 // len(dump(obj))))])
    pairs = Dup([kv for kv in obj.items() for _ in range(times)])
    if not path:
        return pairs
    get(doc, path[:-1])[path[-1]] = pairs
    return doc


def get(doc, path):
    for step in path:
        doc = doc[step]
    return doc


def bodies(rnd, own, seeds, count):
    """count bodies: mostly mutations of the route's own seeds when it has
    some, else of any."""
    for i in range(count):
        if i % 11 == 0:
            yield rnd.choice(RAW)
        elif i % 11 == 1:
            yield dump(hostile_value(rnd))
        elif i % 11 == 2:
            yield dump(repeated(rnd, rnd.choice(own or seeds)))
        else:
            yield dump(mutate(rnd, rnd.choice(own if own and i % 4 else seeds)))


class Client:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = None

    def send(self, method, path, body):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def concrete(pattern, ids):
    """The pattern's path with its {params} filled from ids (by the segment
    before the parameter, else a random UUID)."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if part.startswith("{"):
            key = part if part in ("{ws}", "{env}") else parts[i - 1]
            parts[i] = ids.get(key, str(uuid.uuid4()))
    return "/".join(parts)


def test_api_fuzz(api, cp_stack):
    cp = cp_stack.cp
    ws = api.create_workspace(unique("fuzz"))
    env = (ws["id"], api.create_environment(ws["id"], "fuzz")["id"])
    conn = openai_connection(api, env)
    res = api.create_resource(*env, name=unique("res"), model={
        "provider": "openai", "model": "gpt-4o-mini", "connectionId": conn["id"]})
    key = api.create_api_key(*env, name=unique("key"), resources=[res["id"]])
    status, pool, _ = api.request("PUT", env_path(env, "/pool-definition"), {
        "pools": [{"name": "p", "rank": 0, "minReservation": 10, "maxReservation": 50,
                   "resources": [res["id"]]}]})
    assert status == 200, pool
    ids = {"{ws}": env[0], "{env}": env[1], "connections": conn["id"],
           "resources": res["id"], "api-keys": key["id"]}

    # request bodies of the API, and what the GET routes answer
    seeds = [{"username": "admin", "password": "wrong"},
             {"userId": str(uuid.uuid4()), "role": "admin"},
             {"granularity": "hour", "metrics": {"requestCount": "sum", "totalTokens": "p95"},
              "dimensions": ["model", "statusCode"],
              "filter": {"dateRange": {"start": "2026-01-01T00:00:00Z",
                                       "end": "2036-01-01T00:00:00Z"},
                         "fields": {"model": ["a"], "statusCode": [200],
                                    "connectionId": [conn["id"]]}}}]
    table = routes()
    assert ("POST", env_path(("{ws}", "{env}"), "/usage"), "usage:get") in table, table
    for method, pattern, _ in table:
        if method == "GET":
            status, body, _ = api.request("GET", concrete(pattern, ids))
            if status == 200 and isinstance(body, dict):
                doc = body["data"][0] if isinstance(body.get("data"), list) and body["data"] \
                    else body
                if isinstance(doc, dict) and doc:
                    seeds.append(doc)

    logout_api = type(api)(cp.url)       # a session of its own for logout
    logout_api.login()
    client = Client(cp.port, api.token)
    failures = {}            # (method, pattern, status, answer): the first body

    def send(method, pattern, body, allowed_5xx=()):
        client.token = logout_api.token if pattern.endswith("/logout") else api.token
        status, data = client.send(method, concrete(pattern, ids), body)
        if status >= 500 and status not in allowed_5xx:
            failures.setdefault((method, pattern, status, data[:200]), body[:300])
        if cp.proc.poll() is not None:
            raise AssertionError(f"the control plane died on {method} {pattern} with "
                                 f"{body[:500]!r}:\n{cp.log_text()[-3000:]}")
        return status, data

    def own_seed(method, pattern, doc):
        """doc less the members the route refuses (each 400 names one), when
        the route then takes it."""
        doc = dict(doc)
        while doc:
            status, data = send(method, pattern, dump(doc))
            if status != 400:
                return doc if status < 500 else None
            field = json.loads(data)["error"].get("details", {}).get("field") or ""
            top = field.replace("[", ".").split(".")[0]
            if top not in doc:
                return None
            del doc[top]
        return None

    def run(method, pattern, count, allowed_5xx):
        rnd = random.Random(f"{SEED}:{method}:{pattern}:{count}")
        for body in bodies(rnd, own.get((method, pattern)), seeds, count):
            send(method, pattern, body, allowed_5xx)

    # the seeds each writing route takes, then deletions last
    own = {}
    for method, pattern, _ in table:
        if method in ("POST", "PUT", "PATCH"):
            own[(method, pattern)] = [d for d in (own_seed(method, pattern, s) for s in seeds)
                                      if d]
    order = sorted(table, key=lambda r: (r[0] == "DELETE", -len(r[1])))
    try:
        for method, pattern, _ in order:
            run(method, pattern, BODIES, ())
        cp_stack.pg.stop()
        try:
            for method, pattern, _ in order:
                run(method, pattern, BODIES_DB_DOWN, (503,))
        finally:
            cp_stack.pg.restart()
    finally:
        client.close()
    assert not failures, "\n".join(f"{k}: {v!r}" for k, v in failures.items())
    assert all(own[("POST", p)] for m, p, _ in table if p.endswith("/usage")), own
    status, body, _ = api.request("GET", "/api/v1/health", token=None)
    assert status == 200 and cp.proc.poll() is None, body
    # memory a body corrupted without a crash at once shows at the latest on exit
    assert cp.stop() == 0, cp.log_text()[-3000:]
    cp.start()
    api.login()
