"""A private PostgreSQL 15 server for tests.

initdb refuses to run as root: when the tests run as root, the server runs as
user `nobody`, with its data directory in a fresh directory of the system
temporary dir that `nobody` owns (base_dir may sit under a root-only 0700
directory such as pytest's). base_dir/data then links to it.
"""
import atexit
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")


class Postgres:
    def __init__(self, base_dir: pathlib.Path, port: int):
        self.base_dir = pathlib.Path(base_dir)
        self.port = port
        self.dsn = self.dsn_of("vmx")
        self._root = None        # directory holding data/ and the socket
        self._initialised = False

    def dsn_of(self, dbname: str) -> str:
        """The libpq connection string of another database of this server."""
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user=vmx"

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def _as_server_user():
        if os.geteuid() != 0:
            return []
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

    def _run(self, args, **kw):
        return subprocess.run(self._as_server_user() + [str(a) for a in args],
                              check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, **kw)

    def _prepare_dirs(self):
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._root = pathlib.Path(tempfile.mkdtemp(prefix="vmx-pg-"))
            shutil.chown(self._root, "nobody", "nogroup")
            atexit.register(shutil.rmtree, self._root, True)
            link = self.base_dir / "data"
            if not link.exists():
                link.symlink_to(self._root)
        else:
            self._root = self.base_dir / "server"
            self._root.mkdir(exist_ok=True)

    @property
    def data_dir(self) -> pathlib.Path:
        return self._root / "data"

    @property
    def log_path(self) -> pathlib.Path:
        return self._root / "postgres.log"

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """initdb (first time), start, and create database vmx."""
        if not self._initialised:
            self._prepare_dirs()
            self._run([PG_BIN / "initdb", "-D", self.data_dir, "-U", "vmx",
                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "-N"])
        self._pg_ctl_start()
        if not self._initialised:
            self.psql("CREATE DATABASE vmx", dbname="postgres")
            self._initialised = True

    def _pg_ctl_start(self):
        opts = (f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200")
        self._run([PG_BIN / "pg_ctl", "-D", self.data_dir, "-l", self.log_path,
                   "-o", opts, "-w", "-t", "60", "start"])
        deadline = time.time() + 30
        while time.time() < deadline:
            r = subprocess.run([PG_BIN / "pg_isready", "-h", "127.0.0.1", "-p",
                                str(self.port)], stdout=subprocess.DEVNULL)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start; see {self.log_path}")

    def stop(self) -> None:
        if self._root is None or not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([PG_BIN / "pg_ctl", "-D", self.data_dir, "-m", "fast", "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self._pg_ctl_start()

    # -- queries -----------------------------------------------------------
    def dump(self, dbname: str = "vmx") -> str:
        """The whole database as pg_dump's SQL text (schema and data)."""
        r = subprocess.run([str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "vmx", "-d", dbname],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        return r.stdout

    def psql(self, sql: str, dbname: str = "vmx") -> str:
        """Runs sql with psql; returns its unaligned, tuples-only output."""
        r = subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                            "-U", "vmx", "-d", dbname, "-X", "-A", "-t", "-q",
                            "-v", "ON_ERROR_STOP=1", "-c", sql],
                           check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        return r.stdout.strip()
