"""The data plane's spool framing (lib/vmx_spool.h), for fakes and tests:

    "VMX2 <meta len> <request len> <response len> <crc32 hex>\\n" meta request response "\\n"
"""
import json
import zlib

MAGIC = b"VMX2 "


def frame(meta, request=b"", response=b""):
    """One framed record; meta a dict (its JSON) or bytes, payloads bytes/str/JSON-able."""
    def as_bytes(v, dump):
        if v is None:
            return b""
        if isinstance(v, bytes):
            return v
        if isinstance(v, str) and not dump:
            return v.encode()
        return json.dumps(v).encode()

    meta = as_bytes(meta, True)
    request, response = as_bytes(request, False), as_bytes(response, False)
    crc = zlib.crc32(meta + request + response)
    return (MAGIC + f"{len(meta)} {len(request)} {len(response)} {crc:08x}\n".encode()
            + meta + request + response + b"\n")


def record(meta):
    """A record dict with "request"/"response" members framed as its payloads (JSON)."""
    meta = dict(meta)
    req, resp = meta.pop("request", None), meta.pop("response", None)
    return frame(meta, b"" if req is None else json.dumps(req).encode(),
                 b"" if resp is None else json.dumps(resp).encode())


def parse(data, partial=False):
    """The records of a spool file's bytes: [(meta dict, request bytes, response bytes)];
    raises on anything that is not a whole record, but with partial a record still being
    written at the end (a file read while workers write) ends the list."""
    out, pos = [], 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if partial and (nl < 0 or len(data) < nl + 2 + sum(
                int(x) for x in data[pos:nl].split(b" ")[1:4])):
            break
        head = data[pos:nl].split(b" ")
        assert head[0] + b" " == MAGIC, data[pos:pos + 40]
        m, q, r = (int(x) for x in head[1:4])
        body = data[nl + 1:nl + 1 + m + q + r]
        assert zlib.crc32(body) == int(head[4], 16)
        assert data[nl + 1 + m + q + r:nl + 2 + m + q + r] == b"\n"
        out.append((json.loads(body[:m]), body[m:m + q], body[m + q:]))
        pos = nl + 2 + m + q + r
    return out


def records_in(spool_dir):
    """Every record in the .vmx files of a spool directory, as (meta, request, response).
    Bytes that are no record (a test appends garbage to a live file, see
    test_audit_framing.py) are skipped up to the next "VMX2 ", as the control plane does;
    a record still being written at the end of a file ends it."""
    out = []
    for f in sorted(spool_dir.glob("records-*.vmx")):
        try:
            data = f.read_bytes()
        except FileNotFoundError:        # ingested and deleted meanwhile
            continue
        pos = 0
        while pos < len(data):
            try:
                got, end = _one(data, pos)
            except (AssertionError, ValueError, IndexError, json.JSONDecodeError):
                nxt = data.find(MAGIC, pos + 1)
                if nxt < 0:
                    break
                pos = nxt
                continue
            if got is None:
                break
            out.append(got)
            pos = end
    return out


def _one(data, pos):
    """The record at pos and where the next starts; (None, pos) when it is not all there."""
    nl = data.find(b"\n", pos)
    if nl < 0:
        return None, pos
    head = data[pos:nl].split(b" ")
    assert head[0] + b" " == MAGIC and len(head) == 5
    m, q, r = (int(x) for x in head[1:4])
    if len(data) < nl + 2 + m + q + r:
        return None, pos
    body = data[nl + 1:nl + 1 + m + q + r]
    assert zlib.crc32(body) == int(head[4], 16)
    assert data[nl + 1 + m + q + r:nl + 2 + m + q + r] == b"\n"
    meta = json.loads(body[:m])
    assert isinstance(meta, dict)
    return (meta, body[m:m + q], body[m + q:]), nl + 2 + m + q + r
