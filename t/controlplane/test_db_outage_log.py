"""A PostgreSQL outage under a running control plane is logged once per cause:
the first failure with its reason, again only when the reason changes, and once
when the database is back (docs/ARCHITECTURE.md, "Control plane environment")."""
import socket
import threading
import time

import pytest

from harness.api import Api
from harness.control_plane import ControlPlane, write_secret_files
from harness.ports import free_port
from harness.postgres import Postgres

FAILED = "db: connect failed"
BACK = "db: connected again"


@pytest.fixture
def outage_stack(tmp_path):
    pg = Postgres(tmp_path / "pg", free_port())
    pg.start()
    token_file, key_file = write_secret_files(tmp_path / "secrets")
    cp = ControlPlane(tmp_path / "cp", free_port(), pg.dsn,
                      [f"http://127.0.0.1:{free_port()}"], token_file, key_file,
                      env={"VMX_INGEST_INTERVAL_MS": "100", "VMX_LOG_LEVEL": "info"})
    cp.start()
    try:
        yield pg, cp
    finally:
        rc = cp.stop()
        pg.stop()
        assert rc == 0, cp.log_text()[-3000:]


class Closer:
    """Takes the database's port, accepting connections and closing them at once:
    a failure with another reason than a refused connection."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


def busy(api, seconds):
    """API calls (each one acquires a connection) for a while; the statuses."""
    statuses = set()
    deadline = time.time() + seconds
    while time.time() < deadline:
        statuses.add(api.request("GET", "/api/v1/workspaces")[0])
        statuses.add(api.request("GET", "/api/v1/health", token=None)[0])
        time.sleep(0.05)
    return statuses


def test_outage_logged_once_per_cause(outage_stack):
    pg, cp = outage_stack
    api = Api(cp.url)
    api.login()
    assert api.request("GET", "/api/v1/workspaces")[0] == 200
    pg.stop()                # the pooled connection is found lost by the next request
    assert busy(api, 3) == {503}
    closer = Closer(pg.port)
    try:
        assert busy(api, 2) == {503}
    finally:
        closer.close()
    assert busy(api, 2) == {503}
    log = cp.log_text()
    failed = [line for line in log.splitlines() if FAILED in line]
    assert len(failed) == 3, "\n".join(failed)
    assert "Connection refused" in failed[0] and "Connection refused" in failed[2], failed
    assert "Connection refused" not in failed[1], failed
    assert BACK not in log

    pg.restart()
    deadline = time.time() + 10
    while api.request("GET", "/api/v1/health", token=None)[0] != 200:
        assert time.time() < deadline, cp.log_text()[-2000:]
        time.sleep(0.1)
    assert busy(api, 1) == {200}
    log = cp.log_text()
    assert sum(FAILED in line for line in log.splitlines()) == 3, log[-3000:]
    assert sum(BACK in line for line in log.splitlines()) == 1, log[-3000:]
