"""The Prometheus exposition of the data plane (vmx_status): counters per workspace,
environment, resource, connection, provider and model, accepted by promtool."""
import re
import shutil
import subprocess
import time

import pytest

from gwutil import connection_for, http_request


@pytest.fixture(scope="module")
def env(gw, fake, fake2):
    return gw.provision(
        connections={"a": connection_for(fake), "b": connection_for(fake2)},
        resources={"metered": {"model": ("a", "fail-503"), "fallback": [("b", "gpt-ok")]}},
        keys={"k": {"resources": ["metered"]}},
    )


def scrape(nginx):
    r = http_request(nginx.url, "GET", "/metrics")
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain; version=0.0.4")
    return r.text


def sample(text, name, **labels):
    """The value of the first sample of name whose labels include these."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_counters_follow_requests(env, nginx):
    before = scrape(nginx)
    for _ in range(3):
        assert env.chat("metered").status == 200
    assert env.chat("metered", key="vmx-not-a-key").status == 401
    text = scrape(nginx)

    labels = {"resource": "metered", "provider": "openai", "model": "gpt-ok",
              "connection": env.conns["b"]["id"]}
    got = sample(text, "vmx_requests_total", code="2xx", **labels)
    was = sample(before, "vmx_requests_total", code="2xx", **labels) or 0
    assert got - was == 3, text
    assert sample(text, "vmx_fallbacks_total", **labels) >= 3
    assert sample(text, "vmx_upstream_attempts_total", **labels) >= 6
    assert sample(text, "vmx_tokens_total", type="prompt", **labels) > 0
    assert sample(text, "vmx_request_duration_seconds_count", **labels) >= 3
    assert sample(text, "vmx_requests_total", code="4xx", resource="") >= 1
    assert re.search(r"^vmx_config_version [1-9]\d*$", text, re.M), text


def test_promtool_accepts_the_exposition(env, nginx):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian package prometheus) is missing: ./build.sh installs it")
    env.chat("metered")
    p = subprocess.run([promtool, "check", "metrics"], input=scrape(nginx).encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_metrics_only_from_loopback_and_get(nginx):
    r = http_request(nginx.url, "POST", "/metrics", body=b"x")
    assert r.status == 405, r


def test_sliding_windows_of_connections_and_models(env, nginx):
    """errorRate's data, per connection and model over 5 and 60 minutes, is exposed."""
    env.chat("metered")
    text = scrape(nginx)
    a = env.conns["a"]["id"]
    rate = sample(text, "vmx_provider_error_rate_percent", connection=a, model="fail-503",
                  window="5m")
    assert rate == 100.0, text
    ok = sample(text, "vmx_provider_error_rate_percent", connection=env.conns["b"]["id"],
                model="gpt-ok", window="60m")
    assert ok == 0.0, text
    latency = sample(text, "vmx_provider_latency_seconds", connection=a, model="fail-503",
                     window="5m")
    assert latency is not None and 0 < latency < 5, text


def test_control_plane_metrics_not_on_the_public_port(nginx, stack):
    """/metrics on the gateway's port is the data plane's, loopback only; no spelling of
    the path (the control plane takes a trailing slash as the same path) reaches the
    control plane's own exposition."""
    r = http_request(stack.cp.url, "GET", "/metrics/")
    assert r.status == 200 and "vmx_cp_" in r.text, r
    for path in ("/metrics", "/metrics/", "/metrics//", "/metrics/x", "/metrics?x=1",
                 "/metrics/?x=1", "/%6detrics/"):
        r = http_request(nginx.url, "GET", path)
        assert "vmx_cp_" not in r.text, (path, r.status, r.text[:300])


def test_exposition_larger_than_one_buffer(gw, fake, nginx):
    """Series with the longest labels (names of 128 characters, escaped quotes
    and backslashes) fill several of the exposition's 64 KiB buffers; every
    sample is whole and promtool accepts the text."""
    names = [f'{i:03d}"\\' + "r" * 123 for i in range(24)]
    env = gw.provision(
        connections={"c": connection_for(fake)},
        resources={name: {"model": ("c", "m" * 120 + f"{i:03d}")}
                   for i, name in enumerate(names)},
        keys={"k": {"resources": names}},
    )
    for name in names:
        assert env.chat(name).status == 200
    text = scrape(nginx)
    assert len(text) > 3 * 65536
    for i, name in enumerate(names):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        assert sample(text, "vmx_request_duration_seconds_count", resource=escaped,
                      model="m" * 120 + f"{i:03d}") == 1, name
    promtool = shutil.which("promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_full_tables_count_and_lose_no_total(own_stack, fake):
    """Zones of their own, sized by their directives: a statistics table of 8 series
    given 12 label sets counts the requests of the last ones in the "_overflow" series
    (no total is lost), and every zone reports its slots, the ones taken and the
    lookups that found it full; the warning is logged once."""
    s = own_stack(check_log=False, http_directives="vmx_stats_zone 80k;")
    names = [f"zoned-{i}" for i in range(12)]
    env = s.gw.provision(connections={"c": connection_for(fake)},
                         resources={n: {"model": ("c", f"gpt-zone-{i}")}
                                    for i, n in enumerate(names)},
                         keys={"k": {"resources": names}})
    def total(t):
        return sum(float(line.rsplit(" ", 1)[1]) for line in t.splitlines()
                   if line.startswith("vmx_requests_total{"))

    before = total(scrape(s.nginx))
    for n in names:
        assert env.chat(n).status == 200
    # a request is counted in its log phase, just after its answer was sent
    deadline = time.time() + 5
    while total(text := scrape(s.nginx)) - before < len(names) and time.time() < deadline:
        time.sleep(0.05)
    assert total(text) - before == len(names), text
    assert sample(text, "vmx_zone_slots", zone="vmx_stats") == 8
    assert sample(text, "vmx_zone_slots_used", zone="vmx_stats") == 9   # with the overflow
    assert sample(text, "vmx_zone_full_total", zone="vmx_stats") >= 1
    assert sample(text, "vmx_requests_total", resource="_overflow", model="_overflow") >= 1
    for zone in ("vmx_health", "vmx_capacity", "vmx_pools"):
        assert sample(text, "vmx_zone_slots", zone=zone) >= 256, zone
        assert sample(text, "vmx_zone_full_total", zone=zone) == 0, zone
    log = s.nginx.error_log()
    full = re.findall(r'\[warn\].*the table of zone "vmx_stats" is full \(8 slots\).*'
                      r'"vmx_stats_zone"', log)
    assert len(full) == 1, log[-3000:]
    bad = [line for line in log.splitlines() if re.search(r"\[(alert|crit|emerg)\]", line)]
    assert not bad, "\n".join(bad[:10])


def test_zone_too_small_is_refused(own_stack):
    """A zone that holds no table stops nginx at start with the directive named."""
    from harness.nginx import NginxError
    with pytest.raises(NginxError) as e:
        own_stack(check_log=False, http_directives="vmx_health_zone 64k;")
    assert '"vmx_health_zone" zone of' in str(e.value), str(e.value)[-2000:]
