"""A private redis-server on a loopback port for the tests."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class Redis:
    def __init__(self, base_dir, port, password=None, replica_of=None):
        """password: the server requires it (requirepass); command() sends it first.
        replica_of: the port of a master on 127.0.0.1 this server replicates."""
        self.base_dir = Path(base_dir)
        self.port = port
        self.password = password
        self.replica_of = replica_of
        self.proc = None
        self.log_path = self.base_dir / "redis.log"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=10):
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.base_dir),
             "--daemonize", "no", "--protected-mode", "no"]
            + (["--requirepass", self.password] if self.password else [])
            + (["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self._wait_ready(timeout)

    def _wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def info(self, section):
        """INFO section as a dict of its "name:value" lines."""
        text = self.command("INFO", section).decode(errors="replace")
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    def kill(self):
        """SIGKILL: a crash, nothing saved, no goodbye to replicas or clients."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def command(self, *args, timeout=2):
        """Send one command (RESP) and return the raw reply bytes."""
        def resp(*args):
            out = f"*{len(args)}\r\n".encode()
            for a in args:
                b = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(b), b)
            return out

        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            if self.password:
                s.sendall(resp("AUTH", self.password))
                if not s.recv(1024).startswith(b"+OK"):
                    raise OSError("redis refused the password")
            s.sendall(resp(*args))
            return s.recv(65536)

    def ping(self):
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


class Sentinel(Redis):
    """redis-server --sentinel watching one master on 127.0.0.1; command() talks to it."""

    def __init__(self, base_dir, port, master, master_port, quorum=2,
                 down_after_ms=1000, failover_timeout_ms=3000, password=None):
        """password: clients must AUTH (requirepass); command() sends it first."""
        super().__init__(base_dir, port, password=password)
        self.master = master
        self.log_path = self.base_dir / "sentinel.log"
        self.conf_path = self.base_dir / "sentinel.conf"
        self.settings = [
            f"port {port}", "bind 127.0.0.1", "protected-mode no", "daemonize no",
            f"dir {self.base_dir}",
            f"sentinel monitor {master} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master} 1",
        ] + ([f"requirepass {password}"] if password else [])

    def start(self, timeout=10):
        self.base_dir.mkdir(parents=True, exist_ok=True)
        # the sentinel rewrites its file with what it learns
        self.conf_path.write_text("\n".join(self.settings) + "\n")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf_path), "--sentinel"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self._wait_ready(timeout)

    def _fields(self, *args):
        """A reply that is an array of bulk strings, decoded."""
        lines = self.command(*args).decode(errors="replace").split("\r\n")
        return [lines[i + 1] for i in range(len(lines) - 1) if lines[i].startswith("$")
                and not lines[i].startswith("$-1")]

    def master_addr(self):
        """The master's "ip:port" as this sentinel names it, or None."""
        try:
            f = self._fields("SENTINEL", "get-master-addr-by-name", self.master)
        except OSError:
            return None
        return f"{f[0]}:{f[1]}" if len(f) == 2 else None

    def master_state(self):
        """SENTINEL MASTER's fields as a dict (num-slaves, num-other-sentinels...)."""
        f = self._fields("SENTINEL", "MASTER", self.master)
        return dict(zip(f[0::2], f[1::2]))
