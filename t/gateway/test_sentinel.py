"""Redis that fails over (`vmx_redis sentinel=... master=...`): a master, its replica and
three sentinels (quorum 2) on loopback; nginx asks the sentinels for the master. Under a
steady load on a requests-per-minute limit the master is killed (SIGKILL); the sentinels
promote the replica, the data plane follows it within a few seconds, and the limit holds
throughout: max(1 %, 2) requests of the configured value are admitted, no more.

A promoted replica may have missed the master's last writes (replication is asynchronous).
The test makes that happen for sure: once the node uses the new master, the counter there
is lowered as if the last grants never reached it; the node raises it again to what it saw
before it grants anything more, so the limit still holds."""
import re
import shutil
import threading
import time

import pytest

from gwutil import connection_for, free_port, http_request
from harness.nginx import Nginx
from harness.redis import Redis, Sentinel
from test_cluster import redis_up, tolerance, wait_redis_up
from test_ha import wait_until

LIMIT = 200
RATE = 20               # requests a second, spread over the threads
THREADS = 4
MASTER = "vmx-counters"
LOST = 20               # the writes the promoted replica is made to miss


def linked_to(node, addr):
    """Every worker answers: several answers in a row name addr, linked."""
    want = f'vmx_redis_master{{address="{addr}"}} 1'
    for _ in range(8):
        r = http_request(node.url, "GET", "/metrics")
        if want not in r.text:
            return False
    return True


def start_node(stack, path, sentinels, master, extra="", workers=1):
    """A node with the session's snapshot, its counters in the master the sentinels name."""
    n = Nginx(path, free_port(), stack.token_file, stack.ca_file, workers=workers,
              http_directives=f"vmx_redis sentinel={','.join(s.addr for s in sentinels)} "
                              f"master={master} timeout=1s {extra};")
    n.write_config()
    shutil.copy(stack.nginx.snapshot_path, n.snapshot_path)
    return n.start()


@pytest.fixture(scope="module")
def failover(stack, gw, fake, tmp_path_factory):
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r": {"model": ("c", "gpt-sentinel")}},
        keys={"k": {"resources": ["r"], "enforceCapacity": True,
                    "capacity": [{"period": "minute", "requests": LIMIT}]}},
    )
    base = tmp_path_factory.mktemp("sentinel")
    master = Redis(base / "master", free_port())
    replica = Redis(base / "replica", free_port(), replica_of=master.port)
    sentinels = [Sentinel(base / f"sentinel{i}", free_port(), MASTER, master.port)
                 for i in range(3)]
    node = None
    try:
        master.start()
        replica.start()
        for s in sentinels:
            s.start()
        # the sentinels know each other and the replica: a failover can be voted
        wait_until("sentinels discover each other", lambda: all(
            s.master_state().get("num-other-sentinels") == "2"
            and s.master_state().get("num-slaves") == "1" for s in sentinels), 20)
        wait_until("replica in sync", lambda: replica.info("replication")
                 .get("master_link_status") == "up", 10)

        node = start_node(stack, base / "node", sentinels, MASTER, "nodes=3", workers=2)
        wait_until("linked to the master", lambda: linked_to(node, master.addr), 10)
        yield env, master, replica, sentinels, node
    finally:
        if node:
            node.stop()
        for s in sentinels:
            s.stop()
        replica.stop()
        master.stop()
    node.check_error_log(everything=True)


class Load:
    """RATE requests a second from THREADS threads until stopped: the statuses, in order."""

    def __init__(self, env, node):
        self.env, self.node = env, node
        self.statuses = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(THREADS)]

    def run(self):
        while not self.stopping.is_set():
            start = time.time()
            r = http_request(self.node.url, "POST", "/v1/chat/completions",
                             {"model": "r", "messages": [{"role": "user", "content": "hi"}]},
                             {"Authorization": f"Bearer {self.env.keys['k']}"})
            with self.lock:
                self.statuses.append(r.status)
            self.stopping.wait(max(THREADS / RATE - (time.time() - start), 0))

    def admitted(self):
        with self.lock:
            return self.statuses.count(200)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join()


def counter(redis):
    """The requests of the key's counter in this Redis (its one vmx: hash)."""
    keys = re.findall(rb"vmx:[a-z]:[^\r\n]*", redis.command("KEYS", "vmx:*"))
    assert len(keys) == 1, keys
    reply = redis.command("HGET", keys[0], "r")
    return keys[0], int(reply.split(b"\r\n")[1])


def test_failover_under_load(failover):
    env, master, replica, sentinels, node = failover

    # the minute's window must hold the test (about 12 s of load)
    left = 60 - time.time() % 60
    if left < 18:
        time.sleep(left + 0.5)

    with Load(env, node) as load:
        time.sleep(2)
        before = load.admitted()
        assert before > 0 and set(load.statuses) == {200}, load.statuses

        killed = time.time()
        master.kill()
        wait_until("the sentinels promote the replica", lambda: all(
            s.master_addr() == replica.addr for s in sentinels[:2]), 20, 0.05)
        promoted = time.time()
        wait_until("the data plane follows", lambda: linked_to(node, replica.addr), 10, 0.05)
        followed = time.time()
        print(f"promoted {promoted - killed:.2f} s after the kill, followed "
              f"{followed - promoted:.2f} s later, "
              f"{load.admitted()} admitted so far")
        assert followed - promoted < 5

        # the promoted master misses the last grants: the node restores them
        time.sleep(0.5)
        key, used = counter(replica)
        assert used >= before, (used, before)
        replica.command("HINCRBY", key, "r", -min(LOST, used))

        wait_until("the limit is reached", lambda: 429 in load.statuses, 20)
        time.sleep(1)

    statuses = load.statuses
    admitted = statuses.count(200)
    print(f"{admitted} of {len(statuses)} admitted, limit {LIMIT}")
    assert set(statuses) <= {200, 429}, statuses
    assert abs(admitted - LIMIT) <= tolerance(LIMIT), admitted
    # once refused, refused: the counters do not let more through later
    assert 200 not in statuses[statuses.index(429) + THREADS:]

    # the new master holds the minute's usage: the node resynchronised it
    time.sleep(0.3)
    key, used = counter(replica)
    assert admitted <= used <= LIMIT, (used, admitted)
    assert redis_up(node) == 1

    log = node.error_log()
    assert f'redis master "{MASTER}" is {replica.addr} (was {master.addr})' in log, log[-3000:]
    assert "is up" in log


def test_sentinel_down_the_next_one_is_asked(failover):
    """A worker whose sentinel is gone asks the next one: a restart of nginx with the first
    sentinel stopped still finds the (new) master."""
    env, master, replica, sentinels, node = failover
    sentinels[0].stop()
    node.stop()
    node.start()
    wait_until("linked through the other sentinels",
             lambda: linked_to(node, replica.addr), 10)
    wait_redis_up(node, 1)


def test_a_server_that_is_not_a_master_is_left(stack, failover):
    """A sentinel that names a replica (here: one made to monitor it as a master): the
    worker checks ROLE, leaves it, says so, and the node counts alone."""
    env, master, replica, sentinels, node = failover
    base = node.base_dir.parent
    other = Redis(base / "other", free_port(), replica_of=replica.port).start()
    sentinel = sentinels[1]
    assert sentinel.command("SENTINEL", "MONITOR", "other", "127.0.0.1", other.port,
                            "1").startswith(b"+OK")
    lone = None
    try:
        lone = start_node(stack, base / "lone", [sentinel], "other")
        wait_until("the replica is left", lambda: "is unreachable (not the master, its role: "
                   "slave)" in lone.error_log(), 10)
        wait_redis_up(lone, 0)
        time.sleep(1)           # tried again: logged once
        log = lone.error_log()
        assert log.count("is unreachable (not the master") == 1, log
        lone.check_error_log(everything=True)
    finally:
        if lone:
            lone.stop()
        sentinel.command("SENTINEL", "REMOVE", "other")
        other.stop()


def test_sentinel_password(stack, failover):
    """sentinel_password_file: AUTH to the sentinels. The right password finds the master;
    a wrong one is logged once, clearly, and the node counts alone."""
    env, master, replica, sentinels, node = failover
    base = node.base_dir.parent
    sentinel = Sentinel(base / "sentinel-auth", free_port(), MASTER, replica.port,
                        password="sentinel-secret-0123").start()
    nodes = []
    try:
        for name, password in (("right", "sentinel-secret-0123"), ("wrong", "not-it")):
            secret = base / f"{name}.password"
            secret.write_text(password + "\n")
            nodes.append(start_node(stack, base / name, [sentinel], MASTER,
                                    f"sentinel_password_file={secret}"))
        right, wrong = nodes
        wait_until("linked with the password", lambda: linked_to(right, replica.addr), 10)
        wait_redis_up(wrong, 0)
        time.sleep(1)           # asked again: logged once
        log = wrong.error_log()
        assert log.count("cannot name master") == 1 and "[error]" in log, log[-3000:]
        for n in nodes:
            n.check_error_log(everything=True)
    finally:
        for n in nodes:
            n.stop()
        sentinel.stop()
