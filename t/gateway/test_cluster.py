"""Capacity counters shared by three nginx nodes through one Redis (SPEC.md §5): a key's
limit holds across the nodes within max(1 %, 2 requests); with Redis gone every node
enforces alone, says so in its log and metrics; with Redis back the nodes push the
outage's usage to the cluster counters and enforce together again.

The nodes load the session's configuration snapshot from a copy of its encrypted disk
file (same token file, same key). Counters are per day: far from any boundary unless the
test starts in the last two minutes of a UTC day, when it waits for the next one."""
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from gwutil import connection_for, free_port, http_request
from harness.nginx import Nginx
from harness.redis import Redis

NODES = 3


def per_day(requests):
    return [{"period": "day", "requests": requests}]


def tolerance(limit):
    return max(limit // 100, 2)


@pytest.fixture(autouse=True)
def _away_from_a_day_boundary():
    left = 86400 - time.time() % 86400
    if left < 120:
        time.sleep(left + 0.5)


@pytest.fixture(scope="module")
def cluster(stack, gw, fake, tmp_path_factory):
    # 8 prompt tokens at $1 per million, output free: 8 micro-dollars a request, as
    # reserved and as settled
    status, price, _ = gw.api.request("POST", "/api/v1/prices",
                                      {"provider": "openai", "model": "gpt-cluster",
                                       "input": 1, "output": 0})
    assert status == 201, price
    keys = {name: {"resources": ["r"], "enforceCapacity": True, "capacity": per_day(limit)}
            for name, limit in (("burst", 300), ("outage", 20), ("after", 30),
                                ("closing", 100000))}
    keys["budget"] = {"resources": ["r"], "enforceCapacity": True,
                      "capacity": [{"period": "day", "cost": 300 * 8e-6}]}
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={"r": {"model": ("c", "gpt-cluster")}},
        keys=keys,
    )
    base = tmp_path_factory.mktemp("cluster")
    redis = Redis(base / "redis", free_port()).start()
    nodes = []
    try:
        for i in range(NODES):
            n = Nginx(base / f"node{i}", free_port(), stack.token_file, stack.ca_file,
                      http_directives=f"vmx_redis {redis.addr} nodes={NODES} timeout=1s;")
            n.write_config()
            shutil.copy(stack.nginx.snapshot_path, n.snapshot_path)
            nodes.append(n.start())
        for n in nodes:
            wait_redis_up(n, 1)
        yield env, redis, nodes
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    for n in nodes:
        n.check_error_log(everything=True)


def redis_up(node):
    r = http_request(node.url, "GET", "/metrics")
    assert r.status == 200, r
    for line in r.text.splitlines():
        if line.startswith("vmx_redis_up "):
            return int(line.split()[1])
    raise AssertionError("no vmx_redis_up in the metrics")


def wait_redis_up(node, want, timeout=15):
    """Every worker answers: several answers in a row say the same."""
    deadline = time.time() + timeout
    same = 0
    while time.time() < deadline:
        same = same + 1 if redis_up(node) == want else 0
        if same >= 8:
            return
        time.sleep(0.05)
    raise AssertionError(f"vmx_redis_up of {node.url} is not {want}")


def hammer(env, nodes, key, total, threads=30):
    """total requests, round-robin across the nodes: {node index: [statuses]}."""
    out = {i: [] for i in range(len(nodes))}
    lock = threading.Lock()

    def one(i):
        n = i % len(nodes)
        r = http_request(nodes[n].url, "POST", "/v1/chat/completions",
                         {"model": "r", "messages": [{"role": "user", "content": "hello"}]},
                         {"Authorization": f"Bearer {env.keys[key]}"})
        with lock:
            out[n].append(r.status)

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(total)))
    statuses = {s for v in out.values() for s in v}
    assert statuses <= {200, 429}, out
    return out


def admitted(out):
    return sum(v.count(200) for v in out.values())


def test_limit_holds_across_nodes(cluster):
    env, redis, nodes = cluster
    out = hammer(env, nodes, "burst", 900)
    n = admitted(out)
    print(f"burst: {n} of 900 admitted, limit 300, per node "
          f"{[v.count(200) for v in out.values()]}")
    assert abs(n - 300) <= tolerance(300), n
    # the cluster's quota is spent: no node admits more
    assert admitted(hammer(env, nodes, "burst", 30)) == 0


def test_budget_holds_across_nodes(cluster):
    """A budget is a counter of micro-dollars leased as tokens are."""
    env, redis, nodes = cluster
    n = admitted(hammer(env, nodes, "budget", 900))
    assert abs(n - 300) <= tolerance(300), n
    assert admitted(hammer(env, nodes, "budget", 30)) == 0


def test_redis_outage_and_return(cluster):
    env, redis, nodes = cluster
    redis.stop()
    for n in nodes:
        wait_redis_up(n, 0)
        assert "is unreachable" in n.error_log()

    # every node enforces the limit from its own counters
    out = hammer(env, nodes, "outage", 150)
    per_node = [v.count(200) for v in out.values()]
    print(f"outage: per node {per_node}, limit 20")
    assert all(c == 20 for c in per_node), per_node
    for n in nodes:
        assert "exited on signal" not in n.error_log()

    redis.start()
    for n in nodes:
        wait_redis_up(n, 1)
        assert "is up" in n.error_log()
    time.sleep(0.5)         # the nodes push the outage's usage

    # the restarted Redis knows the outage's usage: the key stays spent
    assert admitted(hammer(env, nodes, "outage", 30)) == 0

    # a fresh counter is enforced by the cluster again
    out = hammer(env, nodes, "after", 120)
    n = admitted(out)
    print(f"after: {n} of 120 admitted, limit 30")
    assert abs(n - 30) <= tolerance(30), n


def test_clients_closing_while_their_grants_are_pending(cluster):
    """Clients that close while their requests wait for Redis' grants: the
    requests end (499), the grants arrive for nobody, and nothing is touched
    that went with them (the requests' memory is gone by then)."""
    env, redis, nodes = cluster
    node = nodes[0]
    host, port = node.url.split("//")[1].split(":")
    body = json.dumps({"model": "r", "messages": [{"role": "user", "content": "hello"}]})
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {env.keys['closing']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    for _ in range(3):
        # Redis holds every command for 600 ms (under the nodes' 1 s timeout)
        redis.command("CLIENT", "PAUSE", "600", "ALL")
        clients = []
        for _ in range(40):
            c = socket.create_connection((host, int(port)))
            c.sendall((head + body).encode())
            clients.append(c)
        time.sleep(0.2)         # they reach the wait for their grants
        for c in clients:
            c.close()
        time.sleep(0.6)         # the grants come, for nobody
    assert "exited on signal" not in node.error_log()
    # the first round's requests ended when their clients left, not when the
    # grants came (later rounds find the allowance those grants left)
    assert node.access_log_path.read_text().count('" 499 ') >= 40
    out = hammer(env, [node], "closing", 60)
    assert admitted(out) == 60, out
