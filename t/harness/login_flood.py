"""A flood of failing logins against a control plane while an administrator
keeps reading GET /api/v1/workspaces: the test (t/controlplane/
test_login_throttle.py) checks that every read succeeds, the bench
(bench/login_flood.py) prints their latency against the same without the
flood."""
import http.client
import json
import threading
import time
import urllib.parse
import uuid


def _post_login(conn, username, address):
    body = json.dumps({"username": username, "password": "wrong-" + uuid.uuid4().hex})
    conn.request("POST", "/api/v1/auth/login", body=body,
                 headers={"Content-Type": "application/json", "X-Forwarded-For": address})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def flood(url, stop, loops=64):
    """Starts `loops` threads failing logins (each its own user name and
    forwarded address) until stop is set; returns (threads, statuses: a dict
    status -> count, shared)."""
    u = urllib.parse.urlsplit(url)
    statuses = {}
    lock = threading.Lock()

    def loop(n):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        name, address = f"flood-{n}-{uuid.uuid4().hex[:6]}", f"192.0.2.{n % 250 + 1}"
        while not stop.is_set():
            try:
                status = _post_login(conn, name, address)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                status = "error"
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(loops)]
    for t in threads:
        t.start()
    return threads, statuses


def admin_reads(url, token, seconds):
    """GET /api/v1/workspaces in a loop for `seconds`: [(status, seconds taken)]."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        conn.request("GET", "/api/v1/workspaces?pageSize=10",
                     headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        resp.read()
        out.append((resp.status, time.monotonic() - t0))
    conn.close()
    return out


def during_flood(url, token, seconds, loops=64):
    """admin_reads() while flood() runs: (reads, flood statuses)."""
    stop = threading.Event()
    threads, statuses = flood(url, stop, loops)
    try:
        time.sleep(0.5)          # every loop under way
        reads = admin_reads(url, token, seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=35)
    return reads, statuses
