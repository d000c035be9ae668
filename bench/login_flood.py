#!/usr/bin/python3
"""An administrator's GET /api/v1/workspaces during a flood of failing logins,
against the same without the flood, in one run.

Starts PostgreSQL and the control plane on loopback free ports (the login
throttle set out of reach, so that every failing login runs argon2id), reads
GET /api/v1/workspaces for LOGIN_FLOOD_SECONDS alone, then again while
LOGIN_FLOOD_LOOPS threads fail logins, and prints the reads' p50 and p99
both times and the ratios flood/alone, and what the flood got (401s, and
503s when argon2id had no turn).  Everything started is stopped on exit.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "t"))

from harness.api import Api  # noqa: E402
from harness.control_plane import BINARY, ControlPlane, write_secret_files  # noqa: E402
from harness.login_flood import admin_reads, during_flood  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.postgres import Postgres  # noqa: E402

SECONDS = float(os.environ.get("LOGIN_FLOOD_SECONDS", "10"))
LOOPS = int(os.environ.get("LOGIN_FLOOD_LOOPS", "64"))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def summary(reads):
    ms = [t * 1000 for _, t in reads]
    failed = sum(1 for status, _ in reads if status != 200)
    return percentile(ms, 0.5), percentile(ms, 0.99), len(ms), failed


def main():
    if not BINARY.exists():
        sys.exit("login_flood: build/vmx-control-plane missing: run ./build.sh build first")
    work = Path(tempfile.mkdtemp(prefix="vmx-login-flood-"))
    pg = Postgres(work / "pg", free_port())
    cp = None
    try:
        pg.start()
        token_file, master_key_file = write_secret_files(work / "secrets")
        cp = ControlPlane(work / "cp", free_port(), pg.dsn, [], token_file, master_key_file,
                          env={"VMX_LOG_LEVEL": "warn",
                               "VMX_LOGIN_THROTTLE_USER_FAILURES": "1000000",
                               "VMX_LOGIN_THROTTLE_ADDRESS_FAILURES": "1000000"})
        cp.start()
        api = Api(cp.url)
        api.login()
        for n in range(20):
            api.create_workspace(f"bench-{n}")

        alone = summary(admin_reads(cp.url, api.token, SECONDS))
        reads, statuses = during_flood(cp.url, api.token, SECONDS, LOOPS)
        flooded = summary(reads)

        print(f"GET /api/v1/workspaces, {SECONDS:g} s each, {LOOPS} loops failing logins")
        print(f"{'':>8} {'reads':>7} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for name, (p50, p99, n, failed) in (("alone", alone), ("flood", flooded)):
            print(f"{name:>8} {n:>7} {failed:>7} {p50:>8.1f} {p99:>8.1f}")
        print(f"ratio flood/alone: p50 {flooded[0] / alone[0]:.2f}, "
              f"p99 {flooded[1] / alone[1]:.2f}")
        print("flood answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(
            statuses.items(), key=lambda kv: str(kv[0]))))
    finally:
        if cp is not None:
            cp.stop()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
