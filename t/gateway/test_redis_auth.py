"""The module authenticates to a Redis that requires a password (`vmx_redis ...
password_file=`): the counters are shared through it. A wrong password is logged once,
clearly, and the node keeps serving with its own counters, as when Redis is gone."""
import shutil
import time

import pytest

from gwutil import connection_for, free_port
from harness.nginx import Nginx
from harness.redis import Redis
from test_cluster import admitted, hammer, per_day, wait_redis_up

PASSWORD = "redis-test-password-0123456789"


@pytest.fixture(scope="module")
def auth_env(stack, gw, fake, tmp_path_factory):
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r": {"model": ("c", "gpt-redis-auth")}},
        keys={name: {"resources": ["r"], "enforceCapacity": True, "capacity": per_day(5)}
              for name in ("right", "wrong")},
    )
    base = tmp_path_factory.mktemp("redis-auth")
    redis = Redis(base / "redis", free_port(), password=PASSWORD).start()
    try:
        yield env, redis, base
    finally:
        redis.stop()


def node(stack, base, redis, name, password):
    """A one-worker node with the session's snapshot, its password in a file."""
    secret = base / f"{name}.password"
    secret.write_text(password + "\n")
    n = Nginx(base / name, free_port(), stack.token_file, stack.ca_file, workers=1,
              http_directives=f"vmx_redis {redis.addr} nodes=1 timeout=1s "
                              f"password_file={secret};")
    n.write_config()
    shutil.copy(stack.nginx.snapshot_path, n.snapshot_path)
    return n.start()


def test_counters_through_redis_with_a_password(stack, auth_env):
    env, redis, base = auth_env
    n = node(stack, base, redis, "right", PASSWORD)
    try:
        wait_redis_up(n, 1)
        assert admitted(hammer(env, [n], "right", 10, threads=2)) == 5
        assert b"vmx:" in redis.command("KEYS", "vmx:*")
        assert "refused" not in n.error_log()
        n.check_error_log(everything=True)
    finally:
        n.stop()


def test_wrong_password_logged_once_and_served_locally(stack, auth_env):
    env, redis, base = auth_env
    n = node(stack, base, redis, "wrong", "not-" + PASSWORD)
    try:
        wait_redis_up(n, 0)
        # local counters: the node enforces the limit alone
        assert admitted(hammer(env, [n], "wrong", 10, threads=2)) == 5
        time.sleep(3)        # reconnections with the backoff, each refused
        log = n.error_log()
        refused = [line for line in log.splitlines() if "refused the password" in line]
        assert len(refused) == 1, log[-3000:]
        assert "[error]" in refused[0] and PASSWORD not in log
        n.check_error_log(everything=True)
    finally:
        n.stop()
