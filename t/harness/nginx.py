"""nginx with the VM-X module, on a private prefix and a loopback port.

The configuration is conf/nginx.conf.in with its @NAME@ placeholders filled.
Extra directives can be injected without touching the template:

  gateway_directives   inside `location /v1/` (after `vmx_gateway;`), e.g.
                       "vmx_first_byte_timeout 2s;"
  http_directives      at the end of the http block's module directives
  main_directives      in the main context

audit=False drops the template's `vmx_audit_spool` (no audit records are written);
audit_thread=False drops its `thread_pool=` (the worker writes the audit ring itself).

daemon=True runs nginx as a daemon, followed by its pid file: nginx changes its binary
(USR2, see upgrade()) only when the master's parent is not the one that started it.

VMX_TEST_NGINX_CORE=1 in the environment makes crashed workers leave a core file
in the prefix. VMX_TEST_NGINX_WRAPPER is a command prefix for nginx, e.g.
"valgrind --log-file={prefix}/valgrind.%p.log" ({prefix}: the nginx prefix), and
VMX_TEST_NGINX_MODULE another build of the module (build.sh's AddressSanitizer run).
"""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "conf" / "nginx.conf.in"
MODULE = Path(os.environ.get("VMX_TEST_NGINX_MODULE")
              or ROOT / "build" / "nginx" / "ngx_http_vmx_module.so")
NGINX = os.environ.get("VMX_NGINX", "/usr/sbin/nginx")

BAD_LOG = re.compile(r"\[(alert|crit|emerg)\]|exited on signal")


class NginxError(AssertionError):
    pass


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return set(out)


class _Adopted:
    """A master this process did not start (a daemon, the new master of a binary upgrade):
    as much of subprocess.Popen as Nginx uses, by its pid."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                st = f.read()
        except OSError:
            st = ""
        if not st or st[st.rfind(")") + 2:].split()[0] == "Z":
            self.returncode = 0
        return self.returncode

    def send_signal(self, sig):
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.time() + timeout
        while self.poll() is None:
            if deadline is not None and time.time() > deadline:
                raise subprocess.TimeoutExpired(f"nginx master {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


class Nginx:
    def __init__(self, base_dir, port, token_file, ca_file, workers=2, max_body="1m",
                 log_level="info", cp_addr="127.0.0.1:1", module=None,
                 gateway_directives="", http_directives="", main_directives="", template=None,
                 audit=True, audit_thread=True, daemon=False):
        self.base_dir = Path(base_dir)
        self.port = port
        self.token_file = str(token_file)
        self.ca_file = str(ca_file)
        self.workers = workers
        self.max_body = max_body
        self.log_level = log_level
        self.cp_addr = cp_addr
        self.module = Path(module) if module else MODULE
        self.gateway_directives = gateway_directives
        self.http_directives = http_directives
        self.main_directives = main_directives
        self.template = Path(template) if template else TEMPLATE
        self.audit = audit
        self.audit_thread = audit_thread
        self.daemon = daemon
        self.proc = None
        self._log_pos = 0
        self._out = None

    # ------------------------------------------------------------ paths
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_url(self):
        """where the control plane reaches /vmx/: the same listener here"""
        return self.url

    @property
    def conf_path(self):
        return self.base_dir / "nginx.conf"

    @property
    def error_log_path(self):
        return self.base_dir / "logs" / "error.log"

    @property
    def access_log_path(self):
        return self.base_dir / "logs" / "access.log"

    @property
    def snapshot_path(self):
        return self.base_dir / "config.snapshot"

    @property
    def token(self):
        return Path(self.token_file).read_text().strip()

    # ------------------------------------------------------------ config
    def render(self):
        text = self.template.read_text()
        values = {
            "MODULE": str(self.module.resolve()),
            "RANKS": str((self.module.parent.parent / "o200k_base.tiktoken").resolve()),
            "WORKERS": str(self.workers),
            "PREFIX": str(self.base_dir.resolve()),
            "LOG_LEVEL": self.log_level,
            "TOKEN_FILE": self.token_file,
            "CA_FILE": self.ca_file,
            "CP_ADDR": self.cp_addr,
            "LISTEN": f"127.0.0.1:{self.port}",
            "MAX_BODY": self.max_body,
            "UI_ROOT": str(ROOT / "ui" / "dist"),
        }
        for k, v in values.items():
            text = text.replace(f"@{k}@", v)
        left = re.findall(r"@[A-Z_]+@", "\n".join(
            line for line in text.splitlines() if not line.lstrip().startswith("#")))
        if left:
            raise NginxError(f"unfilled placeholders in {self.template.name}: {sorted(set(left))}")
        if not self.audit:
            text = re.sub(r"^\s*vmx_audit_spool [^\n]*;\n", "", text, count=1, flags=re.M)
        elif not self.audit_thread:
            text = re.sub(r"^(\s*vmx_audit_spool [^\n]*?) thread_pool=\S+;$", r"\1;", text,
                          count=1, flags=re.M)
        main = self.main_directives
        # As root, nginx would run its workers as `nobody`, who can read neither the
        # test's private prefix nor the token file.
        if os.geteuid() == 0 and not re.search(r"^\s*user\s", text, re.M):
            main = "user root root;\n" + main
        if os.environ.get("VMX_TEST_NGINX_CORE") == "1":
            # core files of crashed workers in the prefix (kernel core_pattern "core")
            main += f"worker_rlimit_core 2g;\nworking_directory {self.base_dir.resolve()};\n"
        if self.daemon:
            text = re.sub(r"^daemon off;$", "daemon on;", text, count=1, flags=re.M)
        if main:
            text = re.sub(r"^(daemon (?:off|on);)$", lambda m: m.group(1) + "\n" + main, text,
                          count=1, flags=re.M)
        if self.http_directives:
            text = re.sub(r"^(\s*vmx_config_token_file [^\n]*;)$",
                          lambda m: m.group(1) + "\n    " + self.http_directives, text,
                          count=1, flags=re.M)
        if self.gateway_directives:
            text, n = re.subn(r"(vmx_gateway;)", lambda m: m.group(1) + "\n            "
                              + self.gateway_directives, text, count=1)
            if n != 1:
                raise NginxError("no `vmx_gateway;` in the template to add directives to")
        return text

    def write_config(self):
        for d in ("logs", "spool", "tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi",
                  "tmp/scgi"):
            (self.base_dir / d).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.render())

    def _cmd(self, *extra):
        return [NGINX, "-p", str(self.base_dir.resolve()) + "/", "-c", str(self.conf_path),
                "-e", str(self.error_log_path)] + list(extra)

    def test_config(self):
        self.write_config()
        r = subprocess.run(self._cmd("-t"), capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout=15):
        if "@MODULE@" in self.template.read_text() and not self.module.exists():
            raise NginxError(f"{self.module} is missing: build it first (./build.sh build)")
        self.write_config()
        if self.error_log_path.exists():
            self._log_pos = len(self.error_log())
        self._out = open(self.base_dir / "logs" / "stderr.log", "ab")
        wrapper = os.environ.get("VMX_TEST_NGINX_WRAPPER", "").replace(
            "{prefix}", str(self.base_dir.resolve())).split()
        self.proc = subprocess.Popen(wrapper + self._cmd(), stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if wrapper:
            timeout *= 4
        deadline = time.time() + timeout
        if self.daemon:
            self._adopt_daemon(deadline)
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited with {self.proc.returncode}:\n"
                                 f"{self._stderr_tail()}\n{self.error_log()[-3000:]}")
            if self._port_open() and len(self.worker_pids()) >= self.workers:
                return self
            time.sleep(0.05)
        raise NginxError(f"nginx did not listen on {self.port}:\n{self.error_log()[-3000:]}")

    def _adopt_daemon(self, deadline):
        """Follows the daemon once the process started has exited (having forked it)."""
        old = self.master_from_pid_file()
        try:
            code = self.proc.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            code = "no exit"
        pid = self.master_from_pid_file()
        if code != 0 or pid in (None, old):
            raise NginxError(f"nginx did not start as a daemon ({code}):\n"
                             f"{self._stderr_tail()}\n{self.error_log()[-3000:]}")
        self.proc = _Adopted(pid)

    def _stderr_tail(self):
        p = self.base_dir / "logs" / "stderr.log"
        return p.read_text(errors="replace")[-3000:] if p.exists() else ""

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def worker_pids(self):
        return _children(self.proc.pid) if self.proc else set()

    def reload(self, timeout=15):
        """SIGHUP and wait until a full set of new workers runs and the old ones are gone."""
        self.write_config()
        old = self.worker_pids()
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise NginxError(f"nginx exited on reload:\n{self.error_log()[-3000:]}")
            now = self.worker_pids()
            if len(now - old) >= self.workers and not (now & old):
                return self
            time.sleep(0.05)
        raise NginxError(f"nginx reload did not finish: old={old} now={self.worker_pids()}")

    def master_from_pid_file(self, suffix=""):
        try:
            return int(Path(str(self.pid_path) + suffix).read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def pid_path(self):
        return self.base_dir / "nginx.pid"

    def upgrade(self, timeout=15, between=None):
        """A binary upgrade, as an operator does it: USR2 to the master (a new master starts
        from the same binary and inherits the listening sockets), WINCH to the old one (its
        workers finish their requests and exit), then QUIT to it.  Waits for each step;
        between() runs while both masters' workers serve.  Afterwards this object follows
        the new master."""
        old = self.proc
        old_workers = self.worker_pids()
        old.send_signal(signal.SIGUSR2)
        deadline = time.time() + timeout

        def until(what, done):
            while not done():
                if time.time() > deadline:
                    raise NginxError(f"binary upgrade: {what} after {timeout} s:\n"
                                     f"{self.error_log()[-3000:]}")
                time.sleep(0.05)

        until("no new master", lambda: self.master_from_pid_file(".oldbin") == old.pid
              and self.master_from_pid_file() not in (None, old.pid))
        new = _Adopted(self.master_from_pid_file())
        until("the new master has no workers",
              lambda: len(_children(new.pid)) >= self.workers)
        if between:
            between()
            deadline = time.time() + timeout
        old.send_signal(signal.SIGWINCH)
        until("the old workers did not exit", lambda: not (_children(old.pid) & old_workers))
        old.send_signal(signal.SIGQUIT)
        try:
            old.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            raise NginxError(f"binary upgrade: the old master {old.pid} did not exit")
        self.proc = new
        return self

    def stop(self, timeout=15):
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None

    def restart(self):
        self.stop()
        return self.start()

    # ------------------------------------------------------------ logs
    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log(self):
        try:
            return self.access_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_error_log(self, everything=False):
        """Raise when the error log shows [alert], [crit], [emerg] or a crashed worker.

        Looks at what was written since the last check unless everything=True."""
        text = self.error_log()
        part = text if everything else text[self._log_pos:]
        self._log_pos = len(text)
        bad = [line for line in part.splitlines() if BAD_LOG.search(line)]
        if bad:
            raise NginxError("nginx error log:\n" + "\n".join(bad[:30]))

    # ------------------------------------------------------------ admin endpoint
    def config_version(self):
        """GET /vmx/config -> version (0 when none), or None when unreachable."""
        import http.client
        import json
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
            c.request("GET", "/vmx/config", headers={"Authorization": f"Bearer {self.token}"})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status != 200:
                return None
            return int(json.loads(data).get("version", 0))
        except (OSError, ValueError):
            return None
