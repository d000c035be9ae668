"""`./build.sh run` on free ports and a state directory of its own: its secrets
(PostgreSQL with a password, Redis with requirepass, the control plane's metrics
behind a token), its supervision (the control plane, Redis and PostgreSQL killed
with SIGKILL come back within seconds while the gateway keeps answering a key), and
a clean stop on SIGTERM with nothing left running."""
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from gwutil import connection_for, free_port, http_request
from harness.api import Api
from harness.postgres import PG_BIN

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "build-run-" + uuid.uuid4().hex


def session_pids(sid):
    """Processes of session sid (not zombies): {pid: command line}."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out[int(d)] = cmd
    return out


def pid_of(sid, marker):
    found = [p for p, cmd in session_pids(sid).items() if cmd.startswith(marker)]
    assert len(found) == 1, (marker, session_pids(sid))
    return found[0]


class Run:
    def __init__(self, base):
        self.var = base / "var"
        self.ports = {name: free_port() for name in
                      ("VMX_PORT", "VMX_CP_PORT", "VMX_PG_PORT", "VMX_REDIS_PORT")}
        env = dict(os.environ, VMX_VAR=str(self.var), VMX_ADMIN_PASSWORD=ADMIN_PASSWORD,
                   **{k: str(v) for k, v in self.ports.items()})
        self.out = open(base / "build-run.log", "wb")
        self.proc = subprocess.Popen([str(ROOT / "build.sh"), "run"], cwd=ROOT, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.ports['VMX_PORT']}"
        self.cp_url = f"http://127.0.0.1:{self.ports['VMX_CP_PORT']}"

    def log(self):
        return Path(self.out.name).read_text(errors="replace")

    def wait(self, what, check, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log()[-3000:]
            try:
                if check():
                    return time.time()
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what} not within {timeout} s:\n{self.log()[-3000:]}")


def redis_ping(port, password=None):
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        if password:
            s.sendall(f"AUTH {password}\r\n".encode())
            s.recv(100)
        s.sendall(b"PING\r\n")
        return s.recv(100)


@pytest.fixture
def run(fake):
    base = Path(tempfile.mkdtemp(prefix="vmx-build-run-"))
    base.chmod(0o755)           # PostgreSQL runs as nobody under var/
    r = Run(base)
    try:
        yield r
    finally:
        if r.proc.poll() is None:
            os.killpg(r.proc.pid, signal.SIGKILL)
            r.proc.wait()
        r.out.close()
        subprocess.run(["rm", "-rf", str(base)])


def test_build_run_secrets_supervision_and_stop(run, fake):
    cp = run.cp_url
    run.wait("the stack", lambda: http_request(run.url, "GET", "/api/v1/health").status == 200,
             300)
    for name in ("pg.password", "redis.password", "metrics.token", "master.key",
                 "dataplane.token"):
        assert (run.var / name).stat().st_mode & 0o077 == 0, name

    # credentials everywhere
    r = subprocess.run([str(PG_BIN / "psql"), "-w", "-h", "127.0.0.1", "-p",
                        str(run.ports["VMX_PG_PORT"]), "-U", "vmx", "-d", "vmx", "-c", "SELECT 1"],
                       capture_output=True, text=True, env=dict(os.environ, PGPASSFILE="/dev/null"))
    assert r.returncode != 0 and "password" in r.stderr, r.stderr
    assert redis_ping(run.ports["VMX_REDIS_PORT"]).startswith(b"-NOAUTH")
    redis_password = (run.var / "redis.password").read_text().strip()
    assert redis_ping(run.ports["VMX_REDIS_PORT"], redis_password) == b"+PONG\r\n"
    assert http_request(cp, "GET", "/metrics").status == 401
    token = (run.var / "metrics.token").read_text().strip()
    r = http_request(cp, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and "vmx_cp_" in r.text

    api = Api(run.url)
    api.login(password=ADMIN_PASSWORD)
    ws = api.create_workspace("build-run")["id"]
    env = api.create_environment(ws, "production")["id"]
    conn = api.create_connection(ws, env, name="c", **connection_for(fake))["id"]
    res = api.create_resource(ws, env, name="chat", model={
        "provider": "openai", "model": "gpt-4o-mini", "connectionId": conn})["id"]
    key = api.create_api_key(ws, env, name="k", resources=[res])["key"]

    def chat():
        return http_request(run.url, "POST", "/v1/chat/completions",
                            {"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                            {"Authorization": f"Bearer {key}"}, timeout=10).status

    run.wait("the key on the data plane", lambda: chat() == 200, 30)
    run.wait("nginx counting through Redis",
             lambda: b"vmx:" in subprocess.run(
                 ["redis-cli", "-p", str(run.ports["VMX_REDIS_PORT"]), "--no-auth-warning",
                  "-a", redis_password, "KEYS", "vmx:*"], capture_output=True).stdout, 15)

    sid = run.proc.pid
    pg_marker = f"{PG_BIN}/postgres -D {run.var}/pg"
    for name, marker, back, timeout in (
            ("control plane", "build/vmx-control-plane",
             lambda: http_request(cp, "GET", "/api/v1/health").status == 200, 8),
            ("redis", "redis-server",
             lambda: redis_ping(run.ports["VMX_REDIS_PORT"], redis_password) == b"+PONG\r\n",
             8),
            ("postgres", pg_marker,
             lambda: http_request(cp, "GET", "/api/v1/health").status == 200, 30)):
        old = pid_of(sid, marker)
        os.kill(old, signal.SIGKILL)
        statuses = []
        deadline = time.time() + timeout
        while True:
            statuses.append(chat())
            pids = [p for p, c in session_pids(sid).items() if c.startswith(marker)]
            try:
                up = pids and pids != [old] and back()
            except OSError:
                up = False
            if up:
                break
            assert time.time() < deadline, f"{name} not back:\n{run.log()[-3000:]}"
            time.sleep(0.1)
        assert set(statuses) == {200}, (name, statuses)
        assert f"exited with status" in run.log()
        assert chat() == 200
    assert http_request(cp, "GET", "/api/v1/workspaces",
                        headers={"Authorization": f"Bearer {api.token}"}).status == 200

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(60) == 0, run.log()[-3000:]
    deadline = time.time() + 10
    while session_pids(sid) and time.time() < deadline:
        time.sleep(0.1)
    assert session_pids(sid) == {}, session_pids(sid)
