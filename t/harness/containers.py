"""The data plane and the control plane as their images run them (docker/, built by
tools/images.sh), under podman with the host's network: the same faces as Nginx and
ControlPlane where the multi-node test needs them (url, start, stop, kill, proc,
config_version, log_text), so one test runs with processes or with containers.

Each container gets a secrets folder (/etc/vmx/secrets: the data-plane token, the
master key, Redis' password) and, for a data plane, a state folder (/var/lib/vmx: the
snapshot's disk copy and the audit spool) that outlives it, as the chart's volume does."""
import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
TAG = "test"
UID = 10001                     # the images' user


def podman_flags():
    """(global flags, run flags) that tools/images.sh found to work on this machine"""
    flags = (ROOT / "build" / "podman.flags").read_text().split()
    if flags[:1] == ["--runtime"]:
        return flags[:2], flags[2:]
    return [], flags


def build_images():
    """builds both images (tagged TAG); the reason as a string when podman cannot"""
    if shutil.which("podman") is None:
        return "podman is not installed"
    r = subprocess.run([str(ROOT / "tools" / "images.sh"), TAG], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode == 3:
        return r.stderr.strip()
    if r.returncode != 0:
        raise RuntimeError(f"tools/images.sh failed:\n{r.stdout}\n{r.stderr}")
    return None


def secrets_folder(base_dir, token_file, master_key_file, redis_password):
    """the files the images read, owned by their user"""
    folder = pathlib.Path(base_dir) / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("dataplane.token", token_file.read_text()),
                       ("master.key", master_key_file.read_text()),
                       ("redis.password", redis_password + "\n")):
        (folder / name).write_text(text)
        (folder / name).chmod(0o600)
        os.chown(folder / name, UID, UID)
    return folder


class Container:
    """one container of an image, started with `podman run -d` and removed at stop"""

    def __init__(self, name, image, secrets, env, volumes=()):
        self.name = name
        self.image = f"localhost/vmx-gateway/{image}:{TAG}"
        self.secrets = pathlib.Path(secrets)
        self.env = env
        self.volumes = list(volumes)
        self.proc = None            # its name while it runs

    def _podman(self, *args, check=True):
        glob, _ = podman_flags()
        return subprocess.run(["podman", *glob, *args], capture_output=True, text=True,
                              check=check)

    def run(self):
        _, run_flags = podman_flags()
        self._podman("rm", "-f", self.name, check=False)
        args = ["run", "-d", "--name", self.name, "--network", "host", *run_flags,
                "-v", f"{self.secrets}:/etc/vmx/secrets:ro"]
        for host, inside in self.volumes:
            args += ["-v", f"{host}:{inside}"]
        for k, v in self.env.items():
            args += ["-e", f"{k}={v}"]
        self._podman(*args, self.image)
        self.proc = self.name

    def kill(self):
        """SIGKILL, as the kernel's OOM killer or a node's loss would"""
        self._podman("kill", "--signal", "KILL", self.name, check=False)
        self._podman("wait", self.name, check=False)
        self.proc = None

    def stop(self, timeout=15):
        if self.proc is not None:
            self._podman("stop", "-t", str(timeout), self.name, check=False)
        self._podman("rm", "-f", self.name, check=False)
        self.proc = None
        return 0

    def running(self):
        r = self._podman("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return r.stdout.strip() == "true"

    def log_text(self):
        r = self._podman("logs", self.name, check=False)
        return r.stdout + r.stderr


class ControlPlaneContainer(Container):
    def __init__(self, name, secrets, port, dsn, dataplanes, env=None,
                 admin_password="admin-test-password"):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = {"VMX_LISTEN": f"127.0.0.1:{port}",
               "VMX_DATABASE_URL": dsn,
               "VMX_MASTER_KEY_FILE": "/etc/vmx/secrets/master.key",
               "VMX_DATAPLANE_TOKEN_FILE": "/etc/vmx/secrets/dataplane.token",
               "VMX_DATAPLANES": ",".join(dataplanes),
               "VMX_RECONCILE_INTERVAL": "1",
               "VMX_LOG_LEVEL": "debug",
               "VMX_ADMIN_PASSWORD": admin_password,
               **(env or {})}
        super().__init__(name, "control-plane", secrets, env)

    def start(self, timeout=30):
        """runs the container; waits for /api/v1/health 200"""
        self.run()
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/v1/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if not self.running():
                break
            time.sleep(0.2)
        log = self.log_text()
        self.stop()
        raise RuntimeError(f"control plane container {self.name} did not become healthy:\n{log}")


class DataPlaneContainer(Container):
    """the gateway at url (/v1/), the config channel at config_url (/vmx/)"""

    def __init__(self, name, secrets, state, port, config_port, metrics_port,
                 control_plane, redis, nodes, workers=2):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_port = config_port
        self.config_url = f"http://127.0.0.1:{config_port}"
        self.token = (pathlib.Path(secrets) / "dataplane.token").read_text().strip()
        state = pathlib.Path(state)
        state.mkdir(parents=True, exist_ok=True)
        os.chown(state, UID, UID)
        super().__init__(name, "dataplane", secrets,
                         {"VMX_CONTROL_PLANE": control_plane, "VMX_REDIS": redis,
                          "VMX_REDIS_NODES": str(nodes), "VMX_PORT": str(port),
                          "VMX_CONFIG_PORT": str(config_port),
                          "VMX_METRICS_PORT": str(metrics_port),
                          "VMX_WORKERS": str(workers), "VMX_LOG_LEVEL": "info"},
                         volumes=[(state, "/var/lib/vmx")])

    def start(self, timeout=30):
        """runs the container; waits until /vmx/config answers"""
        self.run()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.config_version() is not None:
                return
            if not self.running():
                break
            time.sleep(0.2)
        log = self.log_text()
        self.stop()
        raise RuntimeError(f"data plane container {self.name} did not start:\n{log}")

    def config_version(self):
        """GET /vmx/config -> version (0 when none), or None when unreachable"""
        req = urllib.request.Request(self.config_url + "/vmx/config",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=3) as r:
                return int(json.loads(r.read()).get("version", 0))
        except (OSError, ValueError):
            return None
