"""The control-plane daemon (build/vmx-control-plane) for tests."""
import os
import pathlib
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
BINARY = ROOT / "build" / "vmx-control-plane"


def write_secret_files(base_dir) -> tuple:
    """Creates (token_file, master_key_file) with random hex contents."""
    base_dir = pathlib.Path(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    token_file = base_dir / "dataplane.token"
    master_key_file = base_dir / "master.key"
    for path, value in ((token_file, secrets.token_hex(32)),
                        (master_key_file, secrets.token_hex(32))):
        path.write_text(value + "\n")
        path.chmod(0o600)
    return token_file, master_key_file


class ControlPlane:
    def __init__(self, base_dir: pathlib.Path, port: int, dsn: str, dataplanes: list,
                 token_file: pathlib.Path, master_key_file: pathlib.Path,
                 admin_password: str = "admin-test-password", reconcile_interval: int = 1,
                 env: dict = None, wrapper: list = None):
        """env: extra environment variables; wrapper: a command prefix such as
        ["valgrind", "--error-exitcode=99"] (also read from VMX_TEST_CP_WRAPPER,
        split on spaces)."""
        self.base_dir = pathlib.Path(base_dir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = self.base_dir / "control-plane.log"
        self.proc = None
        # never the caller's AWS credentials or STS endpoint: a test that
        # wants them passes them in env (see fake_sts.py)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "VMX_STS_"))}
        self.env.update({
            "VMX_LISTEN": f"127.0.0.1:{port}",
            "VMX_DATABASE_URL": dsn,
            "VMX_MASTER_KEY_FILE": str(master_key_file),
            "VMX_DATAPLANE_TOKEN_FILE": str(token_file),
            "VMX_DATAPLANES": ",".join(dataplanes),
            "VMX_RECONCILE_INTERVAL": str(reconcile_interval),
            "VMX_LOG_LEVEL": "debug",
            "VMX_SCHEMA_DIR": str(ROOT / "schema"),
            "VMX_TOKENIZER": str(ROOT / "build" / "o200k_base.tiktoken"),
        })
        if admin_password is None:
            self.env.pop("VMX_ADMIN_PASSWORD", None)
        else:
            self.env["VMX_ADMIN_PASSWORD"] = admin_password
        self.env.update(env or {})
        if wrapper is None and os.environ.get("VMX_TEST_CP_WRAPPER"):
            wrapper = os.environ["VMX_TEST_CP_WRAPPER"].split()
        self.wrapper = wrapper or []

    def start(self) -> None:
        """Runs the daemon from the repository root; waits for /api/v1/health 200."""
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `make control-plane`")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrapper + [str(BINARY)], cwd=ROOT, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.time() + (60 if self.wrapper else 20)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"control plane exited with {self.proc.returncode}; "
                                   f"log:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"control plane did not become healthy; log:\n{self.log_text()}")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 15 s; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
