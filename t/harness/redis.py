"""A private redis-server on a loopback port for the tests."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class Redis:
    def __init__(self, base_dir, port, password=None):
        """password: the server requires it (requirepass); command() sends it first."""
        self.base_dir = Path(base_dir)
        self.port = port
        self.password = password
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
            + (["--requirepass", self.password] if self.password else []),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

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
